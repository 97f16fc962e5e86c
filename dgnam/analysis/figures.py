"""Figures for the analyses: colour maps, heat-map overlays and a labelled similarity matrix (PIL only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

# Anchor colours of the maps (RGB in [0, 1]), interpolated linearly.
_HEAT = np.array([[0, 0, 0.5], [0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0], [0.5, 0, 0]], dtype=np.float32)  # jet-like
_DIVERGING = np.array([[0.13, 0.4, 0.67], [0.97, 0.97, 0.97], [0.7, 0.09, 0.17]], dtype=np.float32)  # blue-white-red


def _lookup(values: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB by piecewise-linear interpolation between ``anchors``; shape (..., 3)."""
    position = np.clip(values, 0, 1) * (len(anchors) - 1)
    low = np.minimum(np.floor(position).astype(int), len(anchors) - 2)
    frac = (position - low)[..., None]
    return anchors[low] * (1 - frac) + anchors[low + 1] * frac


def heat(maps: torch.Tensor) -> torch.Tensor:
    """(N, H, W) non-negative maps -> (N, 3, H, W) jet-like colours, each map scaled by its own maximum."""
    peak = maps.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    rgb = _lookup((maps / peak).cpu().numpy(), _HEAT)
    return torch.from_numpy(rgb).permute(0, 3, 1, 2).contiguous()


def overlay(images: torch.Tensor, maps: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Blend ``heat(maps)`` (N, H, W) over ``images`` (N, 3, H, W); the map weighs ``alpha``."""
    return (1 - alpha) * images.cpu() + alpha * heat(maps)


def signed_gradient_image(gradients: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) signed gradients -> viewable RGB: zero is grey, +-3 std of each image spans [0, 1].

    This is how guided backprop images are usually shown (Springenberg et al.; the Grad-CAM paper).
    """
    centred = gradients - gradients.mean(dim=(1, 2, 3), keepdim=True)
    spread = centred.flatten(1).std(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return (0.5 + centred / (6 * spread)).clamp(0, 1).cpu()


def similarity_heatmap(matrix: torch.Tensor, row_labels: Sequence[str], col_labels: Sequence[str],
                       row_title: str, col_title: str, cell: int = 44) -> Image.Image:
    """A (R, C) matrix of values in [-1, 1] as coloured cells with the value printed in each.

    Blue is -1, white 0, red 1; rows and columns are labelled, with one title per axis.
    """
    font = ImageFont.load_default()
    values = matrix.detach().float().cpu().numpy()
    n_rows, n_cols = values.shape
    label_w = max(70, max(int(font.getlength(str(t))) for t in row_labels) + 10)
    top = 34
    canvas = Image.new("RGB", (label_w + n_cols * cell + 8, top + n_rows * cell + 30), "white")
    draw = ImageDraw.Draw(canvas)
    colours = (_lookup((values + 1) / 2, _DIVERGING) * 255).round().astype(np.uint8)
    for i in range(n_rows):
        y = top + i * cell
        draw.text((4, y + cell // 2 - 5), str(row_labels[i])[:14], fill="black", font=font)
        for j in range(n_cols):
            x = label_w + j * cell
            draw.rectangle([x, y, x + cell - 2, y + cell - 2], fill=tuple(int(c) for c in colours[i, j]))
            text = f"{values[i, j]:.2f}"
            draw.text((x + (cell - font.getlength(text)) / 2, y + cell // 2 - 6), text, fill="black", font=font)
    for j in range(n_cols):
        x = label_w + j * cell
        draw.text((x + 2, top - 12), str(col_labels[j])[:7], fill="black", font=font)
    draw.text((label_w, 4), col_title, fill="black", font=font)
    draw.text((4, top + n_rows * cell + 8), f"rows: {row_title}", fill="black", font=font)
    return canvas
