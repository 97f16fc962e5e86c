"""dgnam.analysis.invert: inverting a representation through the prior and in pixels."""

import pytest
import torch

from dgnam import DgnamError
from dgnam.analysis import invert
from dgnam.nets.model import Model

from helpers import _image


def test_inversion_error_decreases_from_random_init(tiny_model, tiny_gen):
    layers = ["conv", "fc1", "output"]
    image = _image()
    res = invert(tiny_model, image, layers, tiny_gen, params=("dgn", "pixel"), steps=40)
    assert res.errors.shape == res.start_errors.shape == (2, 3)
    assert res.images.shape == (2, 3, 3, 32, 32)
    assert (res.errors < res.start_errors).all(), (res.errors, res.start_errors)
    # Pixels have every degree of freedom: they get far closer than where they started.
    assert (res.errors[1] < 0.5 * res.start_errors[1]).all()
    # The reported number is the normalised error of the image itself, recomputed here by hand.
    with torch.no_grad():
        target = tiny_model.run(image[None], ["fc1"])["fc1"]
        got = tiny_model.run(res.images[1, 1][None], ["fc1"])["fc1"]
    assert float(res.errors[1, 1]) == pytest.approx(float((got - target).norm() / target.norm()), rel=1e-4)


def test_inversion_without_generator_refuses_dgn(tiny_model):
    with pytest.raises(DgnamError, match="needs a generator"):
        invert(tiny_model, _image(), ["output"], None, params=("dgn",), steps=2)
    res = invert(tiny_model, _image(), ["output"], None, params=("pixel",), steps=2)
    assert res.params == ["pixel"]


def test_inversion_leaves_a_training_module_in_training_mode_with_its_batchnorm_statistics():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten()).train()
    stats = {k: v.clone() for k, v in net[1].state_dict().items()}
    invert(Model(net, input_size=32), _image(), ["1"], None, params=("pixel",), steps=2)
    assert net.training and net[1].training
    assert all(torch.equal(v, stats[k]) for k, v in net[1].state_dict().items())
