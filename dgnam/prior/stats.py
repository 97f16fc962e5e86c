"""Code statistics: per-unit mean and std of an encoder layer over real images (for the code bounds)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from einops import rearrange

from dgnam.errors import DgnamError
from dgnam.nets.model import Model, eval_mode


@torch.no_grad()
def encode_all(encoder: Model, layer: str, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """The flattened ``layer`` code (N, D) of ``images`` (N, 3, H, W): RGB [0, 1] floats, or uint8
    converted batch by batch (50k CIFAR images as floats would cost 600 MB at once)."""
    codes = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        if chunk.dtype == torch.uint8:
            chunk = chunk.float() / 255
        with eval_mode(encoder):  # a caller's encoder keeps its mode and BatchNorm statistics
            codes.append(encoder.run(chunk, [layer])[layer].flatten(1))
    return torch.cat(codes)


@torch.no_grad()
def code_statistics(encoder: Model, layer: str, batches: Iterable[torch.Tensor],
                    device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Per-unit mean and std of ``layer``'s activation over image batches (RGB [0,1]).

    A conv activation (C, H, W) is a code of C*H*W units, flattened as the generator takes it. Returns ``(mean (D,),
    std (D,), summary)`` where ``summary`` holds the fraction of exact zeros, the overall mean and the image count,
    worth checking: a code that is mostly zeros is hard to invert.
    """
    def codes() -> Iterable[torch.Tensor]:
        for images in batches:
            if isinstance(images, (tuple, list)):
                images = images[0]
            images = images.to(device)
            if images.dtype == torch.uint8:
                images = images.float() / 255
            with eval_mode(encoder):  # a caller's encoder keeps its mode and BatchNorm statistics
                code = encoder.run(images, [layer])[layer]
            yield code

    return summarize_codes(codes())


def summarize_codes(codes: Iterable[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """:func:`code_statistics` of codes already computed: batches (B, ...) of one layer's activation."""
    total = None
    n = 0
    zeros = 0
    for batch in codes:
        code = rearrange(batch.double(), "b ... -> b (...)")
        zeros += int((code == 0).sum())
        stacked = torch.stack([code.sum(0), (code * code).sum(0)])
        total = stacked if total is None else total + stacked
        n += code.shape[0]
    if n < 2:
        raise DgnamError("code statistics need at least 2 images; point --data at a folder of real images")
    mean = total[0] / n
    var = (total[1] / n - mean * mean).clamp_min(0) * n / (n - 1)
    summary = {"n_images": n, "zero_fraction": zeros / (n * mean.numel()), "mean": float(mean.mean())}
    return mean.float().cpu(), var.sqrt().float().cpu(), summary
