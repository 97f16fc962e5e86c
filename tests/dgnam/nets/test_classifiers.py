"""dgnam.nets.classifiers: the classifier checkpoint (a plain dict) written and loaded back as a Model."""

import pytest
import torch

from dgnam.errors import DgnamError
from dgnam.io import atomic_save
from dgnam.nets.classifiers import CIFAR10_MEAN, CIFAR10_STD, build_classifier, classifier_checkpoint, load_classifier


def test_checkpoint_round_trip_is_the_same_classifier_with_its_preprocessing(tmp_path):
    kwargs = {"widths": [4, 4], "code_dim": 8}
    torch.manual_seed(0)
    net = build_classifier("cifar_vgg", kwargs).eval()
    ckpt = classifier_checkpoint("cifar_vgg", kwargs, net.state_dict(), mean=CIFAR10_MEAN, std=CIFAR10_STD,
                                 input_size=32, metadata={"classes": ["cat", "dog"], "test_accuracy": 0.5})
    path = atomic_save(ckpt, tmp_path / "enc.pt")
    assert torch.load(path, weights_only=True)["format"] == "dgnam.classifier"  # readable without pickle
    model = load_classifier(path)
    assert model.name == "enc" and model.classes == ["cat", "dog"] and model.metadata["test_accuracy"] == 0.5
    x = torch.rand(3, 3, 32, 32)
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net((x - mean) / std))
        # Larger images are resized to the stored input size first.
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 10)


def test_unknown_architecture_and_damaged_weights(tmp_path):
    with pytest.raises(DgnamError, match="unknown architecture 'cifar_vit'; choose one of cifar_vgg, cifar_resnet"):
        build_classifier("cifar_vit", {})
    kwargs = {"widths": [4, 4], "code_dim": 8}
    state = build_classifier("cifar_vgg", kwargs).state_dict()
    state["fc6.weight"] = torch.zeros(3, 3)
    atomic_save(classifier_checkpoint("cifar_vgg", kwargs, state, mean=CIFAR10_MEAN, std=CIFAR10_STD, input_size=32,
                                      metadata={}), tmp_path / "bad.pt")
    with pytest.raises(DgnamError, match="is damaged or does not match its architecture") as info:
        load_classifier(tmp_path / "bad.pt")
    assert "\n" not in str(info.value)
