"""Unnatural image variants: the extra classes of the DGN-AM paper's prior-versus-network test.

The paper trained a classifier on 1000 real ImageNet classes plus the same classes modified, and
showed that DGN-AM, through a prior trained on natural images only, still paints the modified look
for the modified classes: the picture follows the network, not the prior. Each variant maps an
RGB batch ``(B, 3, H, W)`` (uint8 or float) to the modified batch; applying it twice gives the
original back where the variant is an involution (``bgr``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dgnam.errors import DgnamError


def swap_red_blue(images: torch.Tensor) -> torch.Tensor:
    """RGB -> BGR (and back): the red and blue channels exchanged."""
    return images.flip(-3)


VARIANTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"bgr": swap_red_blue}


def variant(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The image transform called ``name`` in :data:`VARIANTS`."""
    if name not in VARIANTS:
        raise DgnamError(f"unknown image variant {name!r}; use one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


def with_variants(images: torch.Tensor, labels: torch.Tensor, classes: list[str], names: list[str],
                  label: str = "class") -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The dataset followed by one modified copy per variant in ``names``.

    ``label="class"``: a copy's labels are shifted by ``len(classes)`` per variant and its classes are
    named ``<class>_<variant>`` (the paper's 20-class set for ``["bgr"]``). ``label="variant"``: every
    label is the variant's index, 0 for the unmodified images (a detector of the modification).
    """
    if label not in ("class", "variant"):
        raise DgnamError(f"label {label!r} is unknown; use class or variant")
    transforms = [variant(n) for n in names]
    parts = [images] + [t(images) for t in transforms]
    if label == "class":
        all_labels = [labels + i * len(classes) for i in range(len(parts))]
        all_classes = classes + [f"{c}_{n}" for n in names for c in classes]
    else:
        all_labels = [torch.full_like(labels, i) for i in range(len(parts))]
        all_classes = ["natural", *names]
    return torch.cat(parts), torch.cat(all_labels), all_classes
