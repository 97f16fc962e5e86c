"""Image transforms applied each step before the models see the image (for the pixel baselines).

Randomness is per row: each row draws from its own generator seeded by the row's seed, so an
image does not depend on what else is in the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dgnam import checks


class RowRandom:
    """One ``torch.Generator`` per batch row, seeded from that row's seed."""

    def __init__(self, seeds: list[int]) -> None:
        # Offset so transform randomness differs from the initialisation drawn from the same seed.
        self.generators = [torch.Generator().manual_seed(int(s) + 0x5EED) for s in seeds]

    def randint(self, low: int, high: int) -> torch.Tensor:
        """One integer in [low, high) per row, shape (B,)."""
        return torch.cat([torch.randint(low, high, (1,), generator=g) for g in self.generators])


def crop_rows(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Crop an (h, w) window at a per-row offset (dy[i], dx[i]) out of (B, C, H', W') in one gather."""
    b, c, _, w_pad = padded.shape
    dev = padded.device
    rows = (dy.to(dev)[:, None] + torch.arange(h, device=dev))[:, None, :, None].expand(b, c, h, w_pad)
    out = padded.gather(2, rows)
    cols = (dx.to(dev)[:, None] + torch.arange(w, device=dev))[:, None, None, :].expand(b, c, h, w)
    return out.gather(3, cols)


class Jitter:
    """Shift each image by a random offset in [-pixels, pixels] (reflect padding), Lucid's ``jitter``."""

    def __init__(self, pixels: int = 2) -> None:
        self.pixels = checks.index(pixels, "Jitter pixels")  # a negative shift would pad by a negative amount

    def __call__(self, images: torch.Tensor, rng: RowRandom) -> torch.Tensor:
        p = self.pixels
        if p <= 0:
            return images
        h, w = images.shape[-2:]
        padded = F.pad(images, (p, p, p, p), mode="reflect")
        return crop_rows(padded, rng.randint(0, 2 * p + 1), rng.randint(0, 2 * p + 1), h, w)

    def __repr__(self) -> str:
        return f"Jitter({self.pixels})"


class GaussianBlur:
    """Blur with a Gaussian of standard deviation ``sigma`` pixels (depthwise conv, reflect padding)."""

    def __init__(self, sigma: float = 0.5) -> None:
        self.sigma = checks.non_negative(sigma, "GaussianBlur sigma")  # 0: no blur
        radius = max(1, math.ceil(2 * sigma))
        x = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(x ** 2) / (2 * sigma ** 2))
        self.kernel_1d = kernel / kernel.sum()

    def __call__(self, images: torch.Tensor, rng: RowRandom | None = None) -> torch.Tensor:
        if self.sigma <= 0:
            return images
        c = images.shape[1]
        k = self.kernel_1d.to(images.device, images.dtype)
        r = len(k) // 2
        x = F.pad(images, (r, r, r, r), mode="reflect")
        x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)

    def __repr__(self) -> str:
        return f"GaussianBlur({self.sigma})"
