"""dgnam.evaluation.metrics on cases with known answers."""

import pytest
import torch
from torch import nn

from dgnam.errors import DgnamError
from dgnam.evaluation import metrics
from dgnam.nets.model import Model

from helpers import TinyNet


def test_kid_is_zero_for_one_distribution_and_large_for_two():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(400, 16, generator=gen)
    b = torch.randn(400, 16, generator=gen)
    shifted = torch.randn(400, 16, generator=gen) + 1.0
    same = metrics.kid(a, b)
    diff = metrics.kid(a, shifted)
    assert abs(same.mean) < 3 * same.std + 1e-3  # unbiased: zero up to sampling noise
    assert diff.mean > 1.0 and diff.mean > 100 * abs(same.mean)
    # Identical sets: ~0 on the scale of a real difference (slightly negative: the subsets overlap, so
    # the cross term holds some k(x, x) pairs, which the unbiased within-set terms leave out).
    assert abs(metrics.kid(a, a.clone()).mean) < 0.01 * diff.mean


def test_judge_score_is_the_class_count_for_confident_spread_images_and_one_without_an_object():
    confident = 50.0 * torch.eye(4).repeat(25, 1)  # every image one class, the four classes equally
    spread = metrics.judge_score(confident)
    assert spread.inception_score == pytest.approx(4.0, rel=1e-6) and spread.confidence == pytest.approx(1.0)
    # Confident but all the same class, or no class at all: nothing is gained over the marginal.
    assert metrics.judge_score(50.0 * torch.eye(4)[[0] * 100]).inception_score == pytest.approx(1.0)
    flat = metrics.judge_score(torch.zeros(100, 4))
    assert flat.inception_score == pytest.approx(1.0) and flat.confidence == pytest.approx(0.25)
    # Half of the images blurred to no class: exp of the mean KL, here exp(0.5 * log 4) = 2.
    half = metrics.judge_score(torch.cat([confident[:48], torch.zeros(48, 4)]))
    assert half.inception_score == pytest.approx(2.0, rel=1e-3)
    # Logits 2,000 apart: a class no image gives any probability (it underflows to 0) stays finite.
    three_of_four = 2000.0 * torch.eye(4)[[0, 1, 2] * 30]
    assert metrics.judge_score(three_of_four).inception_score == pytest.approx(3.0)
    with pytest.raises(DgnamError, match="finite"):
        metrics.judge_score(torch.tensor([[0.0, float("nan")]]))


def test_mmd_unbiased_matches_the_formula_on_a_tiny_case():
    x = torch.tensor([[1.0], [2.0]])
    y = torch.tensor([[0.0], [1.0]])
    k = lambda u, v: (u * v + 1) ** 3  # noqa: E731 - D = 1
    expected = (k(1, 2) + k(2, 1)) / 2 + (k(0, 1) + k(1, 0)) / 2 - 2 * (k(1, 0) + k(1, 1) + k(2, 0) + k(2, 1)) / 4
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(expected)


def test_constant_judge_agrees_ten_percent_with_a_wilson_interval():
    intended = torch.arange(10).repeat(20)  # 200 images, 20 per class
    always_zero = torch.zeros(200, dtype=torch.long)
    rate = metrics.agreement(always_zero, intended)
    assert rate.value == pytest.approx(0.10)
    assert rate.low < 0.10 < rate.high
    assert rate.low == pytest.approx(0.0657, abs=1e-4) and rate.high == pytest.approx(0.1494, abs=1e-4)  # by hand
    perfect = metrics.agreement(intended, intended)
    assert perfect.value == 1.0 and perfect.high == 1.0 and perfect.low > 0.98


def test_diversity_is_zero_for_collapsed_restarts():
    classes = torch.arange(5).repeat_interleave(4)
    collapsed = torch.randn(5, 8).repeat_interleave(4, dim=0)
    assert metrics.within_class_diversity(collapsed, classes) == pytest.approx(0.0, abs=1e-9)
    spread = torch.randn(20, 8)
    assert metrics.within_class_diversity(spread, classes) > 1.0


def test_judge_outputs_give_the_input_of_the_last_linear_layer():
    net = TinyNet()
    model = Model(net, input_size=32)
    images = torch.rand(5, 3, 32, 32)
    logits, features = metrics.judge_outputs(model, images, batch_size=2)
    with torch.no_grad():
        expected = net.relu1(net.fc1(net.pool(net.relu(net.conv(images))).flatten(1)))
    assert torch.allclose(features, expected, atol=1e-6)
    assert torch.allclose(logits, net.fc2(expected), atol=1e-5)
    with pytest.raises(DgnamError, match="no nn.Linear head"):
        metrics.last_linear(nn.Conv2d(3, 3, 1))


def test_shift_and_blur_moves_content_by_the_shift():
    images = torch.zeros(1, 3, 16, 16)
    images[..., 4, 4] = 1.0
    moved = metrics.shift_and_blur(images, shift=2, sigma=0)
    assert moved[0, 0, 6, 6] == 1.0 and moved.sum() == 3.0
    blurred = metrics.shift_and_blur(images, shift=2, sigma=0.5)
    assert blurred[0, 0, 6, 6] < 1.0 and blurred.sum() == pytest.approx(3.0, abs=1e-4)


def test_pgd_lowers_accuracy_of_a_standard_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    model = Model(net, input_size=8)
    images = torch.rand(64, 3, 8, 8)
    labels = model(images).argmax(1).detach()  # the clean accuracy is 100% by construction
    assert metrics.pgd_accuracy(model, images, labels, eps=0.0) == 1.0
    assert metrics.pgd_accuracy(model, images, labels, eps=0.1, step_size=0.02, steps=10) < 0.5


def test_pgd_attacks_saturated_pixels():
    # A linear judge on an all-white image: the only way to flip it is to darken pixels already at 1,
    # which an attack with a clamp inside the forward does only for the ~half of pixels whose random
    # start points inward (zero gradient through the clamp): 24 x 0.05 < 1.5 needed.
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].weight[0].fill_(1.0)
        net[1].bias.copy_(torch.tensor([-46.5, 0.0]))  # class 0 iff the pixel sum > 46.5 (white: 48)
    model = Model(net, input_size=4)
    white = torch.ones(8, 3, 4, 4)
    labels = torch.zeros(8, dtype=torch.long)
    assert metrics.pgd_accuracy(model, white, labels, eps=0.0) == 1.0
    assert metrics.pgd_accuracy(model, white, labels, eps=0.05, step_size=0.05, steps=3) == 0.0
