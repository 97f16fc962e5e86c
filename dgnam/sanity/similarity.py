"""How alike two images are: SSIM on pixels and cosine similarity in a judge's features."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dgnam.errors import DgnamError


def _gaussian_window(size: int, sigma: float, channels: int, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = (g / g.sum()).float()
    return torch.outer(g, g).expand(channels, 1, size, size).contiguous()


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) of each pair ``a[i], b[i]`` of RGB [0, 1] images
    (N, 3, H, W): the mean over channels and positions of the SSIM map; 1 for identical images.

    The Gaussian window is 7 px (the standard 11 px would leave 22x22 of a 32x32 image; smaller
    than the image is all that matters), never larger than the image.
    """
    if a.shape != b.shape or a.ndim != 4:
        raise DgnamError(f"ssim needs two (N, C, H, W) batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.float(), b.float()
    window = min(window, a.shape[-1], a.shape[-2])
    w = _gaussian_window(window, sigma, a.shape[1], a.device)
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, groups=a.shape[1])

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return index.flatten(1).mean(1)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each pair of feature rows ``a[i], b[i]``."""
    return F.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=1)

