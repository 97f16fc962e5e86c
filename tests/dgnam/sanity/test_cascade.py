"""Cascading randomisation: stages, untouched models, and the verdict on models with known answers."""

import pytest
import torch
from torch import nn

from dgnam import DgnamError, Model, visualize
from dgnam.sanity.cascade import cascading_randomization
from dgnam.sanity.randomize import cascade_stages, parameterised_blocks, randomized

from helpers import TinyNet


class ConstantOutput(nn.Module):
    """Logits that ignore the input: a trained-looking bias, reached through a parameterised layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        features = self.conv(x).mean((2, 3)) * 0  # the image never reaches the output
        return self.fc(features)


class PixelColour(nn.Module):
    """Unit c is a learned mix of the colours of one pixel (16, 16): its preferred image depends on
    the weights, so re-initialising them changes it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.mix = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.mix(x)[:, :, 16, 16]


def _fourier(units, restarts=3):
    def run(model):
        return visualize(model, units, param="fourier", restarts=restarts, steps=20, seed=5)
    return run


def _judge():
    return Model(TinyNet(seed=3), input_size=32)


def test_blocks_group_batchnorm_with_its_conv_in_forward_order():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    model = Model(net, input_size=8)
    model(torch.zeros(1, 3, 8, 8))
    assert parameterised_blocks(model) == [["0", "1"], ["4"]]
    assert parameterised_blocks(model, "1") == [["0", "1"]]  # only what feeds the layer


def test_stages_are_cumulative_from_the_top_and_end_with_no_trained_layer():
    model = Model(TinyNet(), input_size=32)
    stages = cascade_stages(model, stages=0)
    assert [s.layers for s in stages] == [("fc2",), ("fc2", "fc1"), ("fc2", "fc1", "conv")]
    two = cascade_stages(model, stages=2)
    assert two[-1].layers == ("fc2", "fc1", "conv") and len(two) == 2
    with pytest.raises(DgnamError, match="nothing to randomise"):
        cascade_stages(Model(nn.Flatten(), input_size=4))


def test_randomized_copies_and_leaves_the_model_untouched():
    model = Model(TinyNet(), input_size=32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy = randomized(model, ("fc2",), seed=0)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not torch.equal(copy.module.fc2.weight, model.module.fc2.weight)
    assert torch.equal(copy.module.fc1.weight, model.module.fc1.weight)
    assert torch.equal(randomized(model, ("fc2",), seed=0).module.fc2.weight, copy.module.fc2.weight)  # seeded


def test_a_model_that_ignores_its_input_fails_every_stage():
    model = Model(ConstantOutput(), input_size=32)
    result = cascading_randomization(model, {"fourier": _fourier([0, 1, 2])}, _judge(), units=[0, 1, 2],
                                     restarts=3, stages=0)
    scores = result.verdicts("fourier")
    assert len(scores) == 2
    assert all(s.verdict == "fails" for s in scores)
    assert all(s.similarity["ssim"].value > 0.999 for s in scores)  # the images did not change at all


def test_a_model_whose_unit_is_a_pixel_colour_passes():
    model = Model(PixelColour(), input_size=32)
    result = cascading_randomization(model, {"fourier": _fourier([0, 1, 2])}, _judge(), units=[0, 1, 2],
                                     restarts=3, stages=0)
    (score,) = result.verdicts("fourier")
    assert score.verdict == "passes", score
    assert score.similarity["ssim"].high < result.within["fourier"]["ssim"].low
    assert result.images["fourier"].shape == (2, 9, 3, 32, 32)
    assert result.figure("fourier").size[0] > 0


def test_one_restart_is_refused_before_any_synthesis():
    calls = []
    with pytest.raises(DgnamError, match="--restarts 2"):
        cascading_randomization(Model(TinyNet(), input_size=32), {"x": lambda m: calls.append(m)}, _judge(),
                                units=[0], restarts=1)
    assert not calls
