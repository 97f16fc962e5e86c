"""train.classifier: the classifier training module (preprocessing, a frozen trunk under a new head,
FGSM-RS adversarial examples); full training runs are in test_generator.py and test_generator_head.py."""

import pytest
import torch

from dgnam.errors import DgnamError
from dgnam.io import atomic_save
from dgnam.nets.classifiers import CIFAR10_MEAN, CIFAR10_STD, build_classifier, classifier_checkpoint
from train.classifier import ClassifierModule

TRUNK = {"widths": [4, 4], "code_dim": 8}


def _trunk_file(path, kwargs=TRUNK, seed=0):
    torch.manual_seed(seed)
    net = build_classifier("cifar_vgg", kwargs)
    with torch.no_grad():  # trained-looking BatchNorm statistics, so a copy can be told from a fresh start
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
    atomic_save(classifier_checkpoint("cifar_vgg", kwargs, net.state_dict(), mean=CIFAR10_MEAN, std=CIFAR10_STD,
                                      input_size=32, metadata={}), path)
    return net


def test_forward_normalises_with_the_dataset_statistics():
    module = ClassifierModule(arch_kwargs=TRUNK).eval()
    x = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(module(x), module.net((x - mean) / std))


def test_frozen_trunk_is_copied_and_stays_in_inference_mode(tmp_path):
    trunk = _trunk_file(tmp_path / "trunk.pt")
    module = ClassifierModule(arch_kwargs={**TRUNK, "head": "flatten", "code_dim": 16, "fc7_dim": 8},
                              init_from=str(tmp_path / "trunk.pt"), freeze=["features"])
    for name, value in trunk.features.state_dict().items():
        assert torch.equal(module.net.features.state_dict()[name], value), name  # the trunk, copied
    module.train()  # as Lightning's fit loop would
    assert not module.net.features.training and not module.net.features.bn1_1.training
    assert module.net.fc6.training and module.net.drop6.training  # the new head trains
    assert not any(p.requires_grad for p in module.net.features.parameters())
    assert all(p.requires_grad for p in module.net.fc6.parameters())
    _trunk_file(tmp_path / "other.pt", {"widths": [8, 8], "code_dim": 8})
    with pytest.raises(DgnamError, match=r"has no weights of matching shape for features.bn1_1.bias \(and 19 more\)"):
        ClassifierModule(arch_kwargs=TRUNK, init_from=str(tmp_path / "other.pt"), freeze=["features"])
    with pytest.raises(DgnamError, match="keeps random weights fixed without --model.init_from"):
        ClassifierModule(arch_kwargs=TRUNK, freeze=["features"])
    with pytest.raises(DgnamError, match="names 'trunk', which cifar_vgg lacks; use one of features"):
        ClassifierModule(arch_kwargs=TRUNK, init_from=str(tmp_path / "trunk.pt"), freeze=["trunk"])
    with pytest.raises(DgnamError, match="--model.optimizer 'lion' is unknown"):
        ClassifierModule(arch_kwargs=TRUNK, optimizer="lion")


def test_fgsm_examples_stay_in_the_eps_ball_and_the_image_range():
    torch.manual_seed(0)
    eps = 8 / 255
    module = ClassifierModule(arch_kwargs=TRUNK, adv_eps=eps)
    images = 0.2 + 0.6 * torch.rand(4, 3, 32, 32)  # away from 0 and 1: the clamp to [0, 1] does not bite
    labels = torch.tensor([0, 1, 2, 3])
    adversarial = module._fgsm_rs(images, labels)
    delta = (adversarial - images).abs()
    assert delta.max() <= eps + 1e-6
    # A random start in the ball, then a 1.25 eps step along the gradient's sign, clipped back to the ball:
    # every pixel whose start was within 0.25 eps of the far side ends on the boundary (5/8 of them).
    assert 0.55 < float((delta > eps - 1e-6).float().mean()) < 0.7
    assert 0 <= adversarial.min() and adversarial.max() <= 1


def test_test_accuracy_is_over_the_whole_set_not_a_mean_of_batches():
    torch.manual_seed(0)
    module = ClassifierModule(arch_kwargs=TRUNK).eval()
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        predicted = module(images).argmax(1)
    wrong = (predicted + 1) % 10
    labels = torch.stack([predicted[0], predicted[1], wrong[2], wrong[3]])
    with torch.no_grad():  # a batch of 1 (all right), then one of 3 (1 in 3 right): batch means average to 2/3
        module.validation_step((images[:1], labels[:1]), 0)
        module.validation_step((images[1:], labels[1:]), 1)
    assert float(module.test_acc.compute()) == 0.5  # 2 of the 4 images
