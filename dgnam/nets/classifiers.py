"""Classifier checkpoints: the shipped CIFAR-10 encoder and judges, and any classifier trained with ``train``.

A dgnam classifier checkpoint is a plain dict (architecture name and arguments, state dict,
preprocessing, metadata) so that ``torch.load(weights_only=True)`` can read it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dgnam.errors import DgnamError, first_line
from dgnam.io import load_checkpoint
from dgnam.nets import ARCHITECTURES
from dgnam.nets.model import Model

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CLASSIFIER_FORMAT = "dgnam.classifier"


def build_classifier(arch: str, arch_kwargs: dict[str, Any]) -> nn.Module:
    """Instantiate a ``dgnam.nets`` architecture by name."""
    if arch not in ARCHITECTURES:
        raise DgnamError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in arch_kwargs.items()}
    return ARCHITECTURES[arch](**kwargs)


def classifier_checkpoint(arch: str, arch_kwargs: dict[str, Any], state_dict: dict[str, torch.Tensor], *,
                          mean: tuple[float, ...], std: tuple[float, ...], input_size: int,
                          metadata: dict[str, Any], weights_dtype: torch.dtype | None = None) -> dict[str, Any]:
    """The dict written to ``*.pt`` for a dgnam classifier. ``weights_dtype`` (e.g. ``torch.float16``)
    stores floating-point tensors in that type, to halve the file; loading casts them back to the
    network's own type."""
    def stored(value: torch.Tensor) -> torch.Tensor:
        value = value.detach().cpu()
        return value.to(weights_dtype) if weights_dtype is not None and value.is_floating_point() else value

    return {"format": CLASSIFIER_FORMAT, "version": 1, "arch": arch, "arch_kwargs": dict(arch_kwargs),
            "state_dict": {k: stored(v) for k, v in state_dict.items()},
            "mean": list(mean), "std": list(std), "input_size": int(input_size), "metadata": dict(metadata)}


def load_classifier(path: str | os.PathLike, device: str | torch.device = "cpu") -> Model:
    """Load a dgnam classifier checkpoint as a :class:`Model` (RGB [0,1] in, logits out) whose
    ``classes`` and ``metadata`` are the checkpoint's.
    """
    ckpt = load_checkpoint(path, CLASSIFIER_FORMAT, "dgnam classifier")
    metadata = dict(ckpt.get("metadata", {}))
    try:
        net = build_classifier(ckpt["arch"], ckpt["arch_kwargs"])
        net.load_state_dict(ckpt["state_dict"])
        model = Model(net.eval(), input_size=ckpt["input_size"], mean=ckpt["mean"], std=ckpt["std"],
                      name=Path(path).stem, classes=metadata.get("classes", []), metadata=metadata)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise DgnamError(f"'{path}' is damaged or does not match its architecture "
                         f"({type(exc).__name__}: {first_line(exc, 100)}); re-export the checkpoint") from None
    return model.to(device)  # outside the try: a device that fails is no damage to the file
