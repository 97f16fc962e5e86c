"""Image files as dgnam reads them: which suffixes count as images, listing a folder, a sample spread over
it, and decoding a file to RGB at the model's input size.

The command line, the dataset pass (:mod:`dgnam.examples.topk`) and the evaluation read images through
here, so one folder gives the same images, in the same order and the same pixels, to each of them.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from dgnam.errors import DgnamError
from dgnam.io import reading

# Lower case; a file's suffix is compared case-insensitively (``.JPG`` is an image).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

T = TypeVar("T")


def is_image_name(name: str | os.PathLike) -> bool:
    """Whether a file of this name is one dgnam reads as an image (by its suffix, any case)."""
    return os.fspath(name).lower().endswith(IMAGE_SUFFIXES)


def suffixes_text() -> str:
    """The accepted suffixes as messages name them: ``.png/.jpg/.jpeg/.bmp/.webp``."""
    return "/".join(IMAGE_SUFFIXES)


def list_images(folder: str | os.PathLike, what: str = "data folder", skipped: list[Path] | None = None) -> list[Path]:
    """Every image under ``folder`` (an ImageFolder tree or a flat folder), sorted by path.

    Symlinked folders are followed (a class folder linked in from elsewhere is part of the data), each real
    folder once, so a link loop ends; only regular files are taken: opening a FIFO or a device named
    ``*.jpg`` would block or never end. Those left out (FIFOs, devices, dangling links) are appended to
    ``skipped``, when given, so that they count among the unreadable images. ``what`` names the folder in
    the errors (``"--data folder"``).
    """
    root = Path(folder)
    if not root.is_dir():
        raise DgnamError(f"{what} '{root}' does not exist; point it at a folder of images")
    files, seen = [], set()
    for here, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:  # a link back up the tree, or a second link to a folder already read
            dirs.clear()
            continue
        seen.add(real)
        for name in names:
            if is_image_name(name):
                path = Path(here, name)
                (files if is_regular_file(path) else skipped if skipped is not None else []).append(path)
    if skipped is not None:
        skipped.sort()
    if not files:
        raise DgnamError(f"{what} '{root}' holds no images ({suffixes_text()})")
    return sorted(files)


def is_regular_file(path: Path) -> bool:
    """A regular file (a link to one included): safe to open. False for FIFOs, devices and dangling links."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:  # a dangling link, a file gone meanwhile
        return False


def spread(items: Sequence[T], limit: int | None) -> list[T]:
    """At most ``limit`` of ``items``, evenly spaced over the whole sequence: of a sorted ImageFolder tree's
    files, a sample from every class rather than the first classes only. ``None``: all of them."""
    if limit is None or len(items) <= limit:
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB whatever its mode. PIL's ``convert("RGB")`` clips 16-bit, 32-bit and float
    greyscale to 255 (a 16-bit PNG came out white), so those are scaled from their range: ``I;16`` and ``I``
    (how PIL opens 16-bit PNGs) from 0-65535, ``F`` from 0-1 when its values lie there, else 0-255. Alpha,
    a palette's transparency included, is dropped (as torchvision's loader does); CMYK is converted by PIL."""
    if image.mode.startswith("I") or image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        if image.mode == "F":
            top = 1.0 if values.size and values.max() <= 1.0 else 255.0
        else:
            top = 65535.0
        grey = np.clip(values * (255.0 / top), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")  # PIL warns converting a palette with transparency straight to RGB
    return image.convert("RGB")


def decode(image: Image.Image, size: int) -> np.ndarray:
    """An opened image as (size, size, 3) uint8 RGB: :func:`to_rgb`, then a bicubic resize if it differs."""
    image = to_rgb(image)
    if image.size != (size, size):
        image = image.resize((size, size), Image.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def load_images(files: Sequence[str | os.PathLike], size: int) -> torch.Tensor:
    """RGB [0, 1] tensor (N, 3, size, size) of image files (resized if needed); a file that cannot be read
    is a one-line :class:`DgnamError` naming it."""
    arrays = []
    for f in files:
        with reading(f, "image", "remove or fix it"), Image.open(f) as im:
            arrays.append(decode(im, size))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


def try_read(path: Path, size: int) -> torch.Tensor | None:
    """(3, size, size) uint8 RGB of one file, or None when it cannot be read: not a regular file (never
    opened: a FIFO would block), or anything PIL raises or warns about (a truncated or odd file), so that a
    pass over many images counts it among the skipped instead of stopping or printing the warning raw."""
    try:
        if not is_regular_file(path):
            return None
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("error")
            array = decode(im, size).copy()
        return torch.from_numpy(array).permute(2, 0, 1)
    except Exception:  # truncated, not an image, unreadable: the caller counts it, never fatal
        return None


def load_image(path: str | os.PathLike, size: int) -> torch.Tensor:
    """(3, size, size) RGB [0, 1] of one file, read as the dataset pass reads it (:func:`try_read`)."""
    image = try_read(Path(path), size)
    if image is None:
        raise DgnamError(f"cannot read image '{path}'")
    return image.float() / 255
