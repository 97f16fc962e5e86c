"""Training-only networks: the DeePSiM conditional discriminator."""

from __future__ import annotations

import torch
from torch import nn


class Discriminator(nn.Module):
    """Conditional discriminator (Dosovitskiy & Brox 2016): it sees the image *and* the code.

    Image path: convs ``[[c_out, kernel, stride], ...]`` with LeakyReLU, then global average pool.
    Code path: FC layers ``code_dims``. The two are concatenated, then dropout 0.5 -> FC -> dropout
    0.5 -> one logit (real vs generated; equivalent to the original 2-way softmax).
    """

    def __init__(self, code_dim: int, convs: list[list[int]] | None = None,
                 code_dims: list[int] | None = None, hidden: int = 512, dropout: float = 0.5) -> None:
        super().__init__()
        convs = convs or [[32, 3, 1], [64, 4, 2], [128, 3, 2], [256, 3, 2]]
        code_dims = code_dims or [512, 256]
        layers: list[nn.Module] = []
        c_in = 3
        for c_out, kernel, stride in convs:
            layers += [nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2 if stride == 1 else (kernel - 1) // 2),
                       nn.LeakyReLU(0.2)]
            c_in = c_out
        self.image_path = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        code_layers: list[nn.Module] = []
        d_in = code_dim
        for d in code_dims:
            code_layers += [nn.Linear(d_in, d), nn.LeakyReLU(0.2)]
            d_in = d
        self.code_path = nn.Sequential(*code_layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c_in + d_in, hidden), nn.LeakyReLU(0.2),
                                  nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, images: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Logit (B,) that the (image, code) pair is real."""
        joint = torch.cat([self.image_path(images), self.code_path(code)], dim=1)
        return self.head(joint).squeeze(1)
