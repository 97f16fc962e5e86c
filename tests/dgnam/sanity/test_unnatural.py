"""The unnatural-classes test: class pairing, scoring with hand-made detector and judge, and the
shipped swap detector on real images."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dgnam import DgnamError, Model
from dgnam.io import shipped
from dgnam.nets.classifiers import load_classifier
from dgnam.sanity.unnatural import class_pairs, score_unnatural
from dgnam.sanity.variants import swap_red_blue, with_variants

CIFAR_TEST = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "cifar10" / "test"


class MeanColour(nn.Module):
    """Logits = a fixed linear map of the image's mean R, G, B."""

    def __init__(self, weight, bias) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weight, dtype=torch.float32), requires_grad=False)
        self.bias = nn.Parameter(torch.tensor(bias, dtype=torch.float32), requires_grad=False)

    def forward(self, x):
        return x.mean((2, 3)) @ self.weight.T + self.bias


def _flat(rgb, n=2):
    return torch.tensor(rgb).view(1, 3, 1, 1).expand(n, 3, 8, 8)


def test_swap_is_an_involution_and_variants_make_twin_classes():
    x = torch.rand(4, 3, 5, 5)
    assert torch.equal(swap_red_blue(x)[:, 0], x[:, 2]) and torch.equal(swap_red_blue(swap_red_blue(x)), x)
    images, labels, classes = with_variants(x, torch.tensor([0, 1, 1, 0]), ["a", "b"], ["bgr"])
    assert classes == ["a", "b", "a_bgr", "b_bgr"] and labels.tolist() == [0, 1, 1, 0, 2, 3, 3, 2]
    assert torch.equal(images[4:], swap_red_blue(x))
    _, labels, classes = with_variants(x, torch.tensor([0, 1, 1, 0]), ["a", "b"], ["bgr"], label="variant")
    assert classes == ["natural", "bgr"] and labels.tolist() == [0] * 4 + [1] * 4
    with pytest.raises(DgnamError, match="unknown image variant"):
        with_variants(x, torch.zeros(4), ["a"], ["sepia"])


def test_class_pairs():
    pairs = class_pairs(["cat", "dog", "dog_bgr", "cat_bgr"], "bgr")
    assert pairs.names == ["cat", "dog"] and pairs.natural == [0, 1] and pairs.modified == [3, 2]
    with pytest.raises(DgnamError, match="variants"):
        class_pairs(["cat", "dog"], "bgr")


def test_scores_with_known_answers():
    # Class a is red, class b green; their bgr twins as a network that follows its data paints them:
    # a_bgr blue, b_bgr green (swapping leaves green alone).
    red, green = (0.9, 0.1, 0.1), (0.1, 0.9, 0.1)
    images = torch.cat([_flat(red), _flat(green), swap_red_blue(_flat(red)), swap_red_blue(_flat(green))])
    detector = Model(MeanColour([[1, 0, -1], [-1, 0, 1]], [0, 0]), classes=["natural", "bgr"])  # bgr when B > R
    judge = Model(MeanColour([[1, 0, 0], [0, 1, 0]], [0, 0.05]), classes=["a", "b"])
    result = score_unnatural(images, class_pairs(["a", "b", "a_bgr", "b_bgr"], "bgr"), "bgr", detector, judge,
                             judge.classes)
    assert result.detected_natural.tolist() == [[False, False], [False, False]]
    assert result.detected_modified.tolist() == [[True, True], [False, False]]
    assert result.judge_natural.all()
    assert result.judge_modified.tolist() == [[False, False], [True, True]]
    assert result.judge_undone.all()
    rates = result.rates()
    assert rates["modified detected as modified"].value == 0.5 and rates["natural detected as modified"].value == 0
    assert result.figure().size[1] > 2 * 32  # two class rows
    with pytest.raises(DgnamError, match="no class 'a'"):
        score_unnatural(images, class_pairs(["a", "b", "a_bgr", "b_bgr"], "bgr"), "bgr", detector, judge, ["x", "y"])


@pytest.mark.skipif(not CIFAR_TEST.is_dir(), reason=f"CIFAR-10 test images not at {CIFAR_TEST}")
def test_the_shipped_swap_detector_tells_swapped_real_images():
    files = sorted(CIFAR_TEST.rglob("*.jpg"))[::50]  # 200 images over all classes
    real = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files])
    real = real.float() / 255
    detector = load_classifier(shipped("cifar10/sanity/swap_detector.pt"))
    with torch.no_grad():
        natural = detector(real).argmax(1)
        swapped = detector(swap_red_blue(real)).argmax(1)
    accuracy = ((natural == 0).float().mean() + (swapped == 1).float().mean()) / 2
    assert accuracy > 0.85, accuracy
