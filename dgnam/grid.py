"""Image grids with a caption under each tile, and PNG writing (atomic)."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageDraw, ImageFont

from dgnam.errors import terminal_safe
from dgnam.io import atomic_write


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float [0, 1] -> (B, H, W, 3) uint8 (rounded, as PNG files store them)."""
    return rearrange((images.detach().float().clamp(0, 1) * 255).round().byte().cpu(), "b c h w -> b h w c").numpy()


def save_png(image: Image.Image | torch.Tensor, path: str | Path) -> Path:
    """Save a PIL image or one (3, H, W) tensor in [0, 1] as PNG, atomically."""
    if isinstance(image, torch.Tensor):
        image = Image.fromarray(to_uint8(image[None])[0])
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def labelled_grid(images: torch.Tensor, captions: Sequence[str], ncol: int | None = None,
                  tile: int | None = None, pad: int = 4) -> Image.Image:
    """Tile images (upscaled with nearest neighbour to ``tile`` px, default >= 96) with a caption under each."""
    n = len(images)
    ncol = ncol or min(n, 10)
    nrow = math.ceil(n / ncol)
    size = images.shape[-1]
    tile = tile or size * max(1, math.ceil(96 / size))
    font = ImageFont.load_default()
    caption_h = 14
    canvas = Image.new("RGB", (ncol * (tile + pad) + pad, nrow * (tile + caption_h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, array in enumerate(to_uint8(images)):
        r, c = divmod(i, ncol)
        x, y = pad + c * (tile + pad), pad + r * (tile + caption_h + pad)
        canvas.paste(Image.fromarray(array).resize((tile, tile), Image.NEAREST), (x, y))
        # Captions name classes from checkpoints: control characters as their escapes (a newline would make
        # PIL refuse the text), and at most a glyph per pixel before the trim to the tile's width.
        text = terminal_safe(captions[i])[:tile] if i < len(captions) else ""
        while text and draw.textlength(text, font=font) > tile:  # keep captions inside their tile
            text = text[:-1]
        draw.text((x, y + tile + 1), text, fill="black", font=font)
    return canvas


# --- inline display (Jupyter) and show() ---------------------------------------------------------
def png_bytes(image: Image.Image) -> bytes:
    """The PNG file of ``image``, in memory (what Jupyter's ``_repr_png_`` returns)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def html_image(image: Image.Image, alt: str = "") -> str:
    """An ``<img>`` holding ``image`` as a data URI: self-contained HTML for ``_repr_html_``."""
    data = base64.b64encode(png_bytes(image)).decode("ascii")
    return (f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" '
            f'style="image-rendering: pixelated; max-width: 100%">')


def html_card(title: str, text: str, image: Image.Image, alt: str = "") -> str:
    """The HTML every ``_repr_html_`` returns: a bold ``title``, one line of plain ``text``, then ``image``.

    All three strings are escaped here, and only here: model, layer and class names come from files and
    checkpoints, so a name such as ``<img src=x onerror=...>`` must show as text, never run in Jupyter.
    """
    return (f"<div><p><b>{html.escape(title)}</b>: {html.escape(text)}</p>"
            f"{html_image(image, alt)}</div>")


def show_image(obj, image: Image.Image) -> Image.Image:
    """Display ``obj`` inline when running under IPython (notebook or terminal), else open ``image`` in the
    system's image viewer; returns ``image``."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(obj)
    else:
        image.show()
    return image
