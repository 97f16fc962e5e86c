"""A trained sampler of a generator's code: z ~ N(0, I) -> a code h that G turns into an image.

A DeePSiM generator inverts an encoder's code and has no distribution of its own, so G(h) for a
random h is only as natural as h is like a real code. Fits of real codes miss that badly for a
sparse spatial code (CIFAR-10's relu4_2: 4096 values, 63% exact zeros, heavy tails); a small GAN in
code space (trained by ``python -m train.code_sampler``) learns it instead. Uses: "samples" of the
prior, ``G(sampler.sample(n))``, and diverse natural start codes for activation maximisation
(``GeneratorCode(G, init_codes=sampler.sample(n))``).

A sampler trained with class labels (``num_classes > 0``) takes a class with each z, so
``sampler.sample(n, labels=...)`` draws codes of chosen classes ("show me this prior's horses").
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import nn

from dgnam.errors import DgnamError
from dgnam.io import atomic_save, load_checkpoint

SAMPLER_FORMAT = "dgnam.code_sampler"


class CodeSampler(nn.Module):
    """z (B, latent_dim) -> code (B, prod(code_shape)), non-negative (codes are post-ReLU).

    Args:
        code_shape: ``[C, H, W]`` for a spatial conv code (z -> a (width, H, W) map -> ``depth``
            3x3 convs), or ``[D]`` for a flat fc code (an MLP with ``depth`` hidden layers).
        latent_dim: size of z.
        width: channels (spatial) or hidden units (flat).
        encoder_layer, encoder: which code this samples (metadata, checked against the generator).
        num_classes: 0 for an unconditional sampler; otherwise it also takes a class label per z (a
            learned class embedding of ``latent_dim`` joins z at the first layer).
        classes: the class names (``num_classes`` of them; default ``"0", "1", ...``).
        metadata: what its checkpoint records about its training (iterations, losses, ...).

    The last layer is a ReLU, so a sampled code has exact zeros where a real one does.
    """

    def __init__(self, code_shape: list[int] | tuple[int, ...], latent_dim: int = 128, width: int = 256,
                 depth: int = 2, encoder_layer: str = "", encoder: str = "", num_classes: int = 0,
                 classes: list[str] | None = None, metadata: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.code_shape = tuple(int(s) for s in code_shape)
        if len(self.code_shape) not in (1, 3) or min(self.code_shape) < 1:
            raise DgnamError(f"code_shape must be [C, H, W] or [D], got {list(code_shape)}")
        if min(latent_dim, width, depth) < 1:
            raise DgnamError(f"latent_dim, width and depth must be >= 1, got {latent_dim}, {width}, {depth}")
        self.latent_dim, self.width, self.depth = int(latent_dim), int(width), int(depth)
        self.encoder_layer, self.encoder = encoder_layer, encoder
        self.code_dim = math.prod(self.code_shape)
        if num_classes < 0:
            raise DgnamError(f"num_classes must be >= 0 (0: unconditional), got {num_classes}")
        self.num_classes = int(num_classes)
        self.classes = [str(c) for c in classes] if classes is not None else [str(i) for i in range(self.num_classes)]
        if len(self.classes) != self.num_classes:
            raise DgnamError(f"{len(self.classes)} class names for num_classes {self.num_classes}; pass one name per "
                             "class")
        self.metadata = dict(metadata or {})
        self.class_embedding = nn.Embedding(self.num_classes, self.latent_dim) if self.num_classes else None
        stem_in = self.latent_dim * (2 if self.num_classes else 1)
        act = nn.LeakyReLU(0.2)
        if len(self.code_shape) == 3:
            _, h, w = self.code_shape
            self.stem = nn.Linear(stem_in, self.width * h * w)
            layers: list[nn.Module] = []
            for i in range(self.depth):
                c_out = self.code_shape[0] if i == self.depth - 1 else self.width
                layers += [act, nn.Conv2d(self.width, c_out, 3, 1, 1)]
        else:
            self.stem = nn.Linear(stem_in, self.width)
            layers = []
            for i in range(self.depth):
                d_out = self.code_dim if i == self.depth - 1 else self.width
                layers += [act, nn.Linear(self.width, d_out)]
        self.body = nn.Sequential(*layers, nn.ReLU())

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Codes (B, code_dim) for z (B, latent_dim) and, for a class-conditional sampler, labels (B,)."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise DgnamError(f"code sampler expects z of shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        if self.class_embedding is not None:
            labels = self.check_labels(labels, len(z)).to(z.device)
            z = torch.cat([z, self.class_embedding(labels)], 1)
        elif labels is not None:
            raise DgnamError("this code sampler was trained without classes; drop the labels (or --classes)")
        x = self.stem(z)
        if len(self.code_shape) == 3:
            _, h, w = self.code_shape
            x = rearrange(x, "b (c h w) -> b c h w", h=h, w=w)
        return self.body(x).flatten(1)

    def check_labels(self, labels: torch.Tensor | None, n: int) -> torch.Tensor:
        """``labels`` as a (n,) long tensor of valid classes, or a one-line error."""
        if labels is None:
            raise DgnamError(f"this code sampler is class-conditional ({self.num_classes} classes); pass labels")
        labels = torch.as_tensor(labels, dtype=torch.long)
        if labels.shape != (n,):
            raise DgnamError(f"expected {n} labels, one per sample, got shape {tuple(labels.shape)}")
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise DgnamError(f"class labels must be in [0, {self.num_classes - 1}], got {labels.min()}..{labels.max()}")
        return labels

    def class_index(self, name: str) -> int:
        """The label of a class given by name or index (as a string), or a one-line error listing the classes."""
        if name in self.classes:
            return self.classes.index(name)
        if name.isdigit() and int(name) < self.num_classes:
            return int(name)
        raise DgnamError(f"unknown class {name!r}; this sampler knows {', '.join(self.classes) or 'no classes'}")

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, batch: int = 1000, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` codes (n, code_dim) from z drawn with ``seed`` (the same seed gives the same codes).

        A class-conditional sampler draws codes of ``labels`` (n,), or, without them, of classes
        drawn with the same seed.
        """
        if n < 1:
            raise DgnamError(f"the number of samples must be at least 1, got {n}")
        device = next(self.parameters()).device
        rng = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent_dim, generator=rng)
        if self.num_classes:
            labels = (torch.randint(self.num_classes, (n,), generator=rng) if labels is None
                      else self.check_labels(labels, n))
        # forward() refuses labels for an unconditional sampler
        return torch.cat([self(z[i:i + batch].to(device), None if labels is None else labels[i:i + batch])
                          for i in range(0, n, batch)])

    def check_generator(self, generator) -> None:
        """One-line error unless this sampler's codes fit ``generator``."""
        if generator.code_dim != self.code_dim or (self.encoder_layer and generator.encoder_layer
                                                   and generator.encoder_layer != self.encoder_layer):
            raise DgnamError(f"the code sampler makes {self.code_dim}-d codes of {self.encoder_layer or '?'!r} but the "
                             f"generator takes {generator.code_dim}-d codes of {generator.encoder_layer or '?'!r}; "
                             f"train a sampler for this generator (python -m train.code_sampler)")

    def checkpoint(self, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"format": SAMPLER_FORMAT, "version": 1, "code_shape": list(self.code_shape),
                "latent_dim": self.latent_dim, "width": self.width, "depth": self.depth,
                "encoder_layer": self.encoder_layer, "encoder": self.encoder,
                "num_classes": self.num_classes, "classes": list(self.classes),
                "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
                "metadata": dict(metadata or {})}

    def save(self, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
        """Write a ``weights_only``-loadable checkpoint atomically."""
        return atomic_save(self.checkpoint(metadata), path)


def load_code_sampler(path: str | os.PathLike, device: str | torch.device = "cpu") -> CodeSampler:
    """Load a sampler saved by :meth:`CodeSampler.save` (``torch.load(weights_only=True)``).

    Example: ``codes = dgnam.load_code_sampler("checkpoints/cifar10/code_sampler.pt").sample(64)``
    """
    ckpt = load_checkpoint(path, SAMPLER_FORMAT, "dgnam code sampler")
    try:
        sampler = CodeSampler(ckpt["code_shape"], ckpt["latent_dim"], ckpt["width"], ckpt["depth"],
                              ckpt.get("encoder_layer", ""), ckpt.get("encoder", ""),
                              ckpt.get("num_classes", 0), ckpt.get("classes"), ckpt.get("metadata", {}))
        sampler.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise DgnamError(f"'{path}' is a damaged code sampler ({str(exc).splitlines()[0][:100]}); "
                         f"re-export it with python -m train.code_sampler export") from None
    return sampler.to(device).eval()
