"""dgnam.engine.transforms: per-row seeded jitter and Gaussian blur."""

import pytest
import torch

import dgnam
from dgnam import GaussianBlur, Jitter, Pixels, class_logit, synthesize
from dgnam.engine.transforms import RowRandom


def test_seeded_transforms_are_row_independent(tiny_model):
    tf = dgnam.engine.preferred.baseline_transforms()
    a = synthesize(class_logit([1, 2]), Pixels(32), model=tiny_model, seeds=[3, 4], steps=5, transforms=tf)
    b = synthesize(class_logit(2), Pixels(32), model=tiny_model, seeds=[4], steps=5, transforms=tf)
    torch.testing.assert_close(a.images[1], b.images[0], atol=1e-5, rtol=1e-5)


def test_jitter_shifts_each_row_by_at_most_its_pixels_and_reaches_every_offset():
    image = torch.zeros(1, 3, 16, 16)
    image[..., 8, 5] = 1.0  # one bright pixel, far enough from the border that padding never reaches it
    seeds = list(range(300))
    shifted = Jitter(2)(image.expand(len(seeds), 3, 16, 16), RowRandom(seeds))
    offsets = set()
    for row in shifted:
        assert row.sum() == 3.0  # a pure shift: the pixel moved whole, nothing blurred or lost
        y, x = (row[0] == 1.0).nonzero()[0].tolist()
        offsets.add((y - 8, x - 5))
    assert offsets == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    again = Jitter(2)(image.expand(len(seeds), 3, 16, 16), RowRandom(seeds))
    assert torch.equal(again, shifted)  # seeded per row
    assert torch.equal(Jitter(0)(image, RowRandom([0])), image)


def test_gaussian_blur_keeps_the_mean_and_spreads_a_point_by_sigma():
    blur = GaussianBlur(1.0)
    assert blur.kernel_1d.sum().item() == pytest.approx(1.0)
    point = torch.zeros(1, 3, 15, 15)
    point[..., 7, 7] = 1.0
    spread = blur(point)[0, 0]
    assert spread.sum().item() == pytest.approx(1.0, abs=1e-6)  # the mean is kept
    assert spread[7, 7] == spread.max() and torch.allclose(spread, spread.T) and torch.allclose(spread, spread.flip(0))
    # The variance along each axis is sigma^2 of the kernel cut at radius ceil(2 sigma) = 2:
    # 2 (e^-0.5 + 4 e^-2) / (1 + 2 e^-0.5 + 2 e^-2) = 0.9243.
    offsets = torch.arange(15.0) - 7
    assert float((spread.sum(0) * offsets**2).sum()) == pytest.approx(0.9243, abs=1e-4)
    images = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    inside = torch.zeros_like(images)
    # Content 3 px from the border: reflect padding mirrors pixels 1-2 (radius 2) outwards, here all 0.
    inside[..., 3:-3, 3:-3] = images[..., 3:-3, 3:-3]
    torch.testing.assert_close(blur(inside).mean((2, 3)), inside.mean((2, 3)))
    assert torch.equal(GaussianBlur(0)(images), images)
