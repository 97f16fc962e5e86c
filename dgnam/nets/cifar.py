"""Small CIFAR-10 classifiers.

``CifarVGG`` is the encoder a CIFAR generator inverts. With ``head="flatten"`` (CaffeNet's head) its
post-ReLU ``relu6`` fully connected layer reads the flattened last conv map and is the code, the
analogue of CaffeNet fc6 (non-negative, so the [0, bound] box of DGN-AM makes sense); an 8x8 conv
block serves as the comparator for the feature loss. ``CifarResNet`` is a
different architecture, used as an independent judge and as a target the prior never saw.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from dgnam.errors import DgnamError


def _conv_bn_relu(name: str, c_in: int, c_out: int) -> list[tuple[str, nn.Module]]:
    return [
        (f"conv{name}", nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)),
        (f"bn{name}", nn.BatchNorm2d(c_out)),
        (f"relu{name}", nn.ReLU()),
    ]


class CifarVGG(nn.Module):
    """VGG-style 32x32 classifier: 4 conv blocks (2 convs each), then a fully connected head.

    ``head="pool"``: global average pool -> fc6 + ReLU -> dropout -> fc8.
    ``head="flatten"`` (CaffeNet's, whose fc6 reads the flattened 6x6 pool5 map): the flattened last
    conv map (layout kept) -> fc6 + ReLU -> dropout -> fc7 + ReLU -> dropout -> fc8. A generator can
    invert this fc6 code into an image with a layout; the pooled one holds none.
    Layer names follow Caffe's so that ``relu6`` reads as "the fc6 code".
    Input: RGB in [0, 1], normalised by the caller (see ``dgnam.Model``).
    """

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512), code_dim: int = 512,
                 n_classes: int = 10, dropout: float = 0.3, head: str = "pool",
                 fc7_dim: int | None = None) -> None:
        super().__init__()
        if head not in ("pool", "flatten"):
            raise DgnamError(f"head must be 'pool' or 'flatten', got {head!r}")
        self.head = head
        layers: list[tuple[str, nn.Module]] = []
        c_in = 3
        for block, width in enumerate(widths, start=1):
            layers += _conv_bn_relu(f"{block}_1", c_in, width)
            layers += _conv_bn_relu(f"{block}_2", width, width)
            # The last block is pooled globally below; the others halve the resolution.
            if block < len(widths):
                layers.append((f"pool{block}", nn.MaxPool2d(2)))
            c_in = width
        self.features = nn.Sequential(OrderedDict(layers))
        side = 32 // 2 ** (len(widths) - 1)
        self.pool = nn.AdaptiveAvgPool2d(1) if head == "pool" else nn.Identity()
        self.fc6 = nn.Linear(c_in if head == "pool" else c_in * side * side, code_dim)
        self.relu6 = nn.ReLU()
        self.drop6 = nn.Dropout(dropout)
        d_last = code_dim
        if head == "flatten":
            d_last = fc7_dim or code_dim
            self.fc7 = nn.Linear(code_dim, d_last)
            self.relu7 = nn.ReLU()
            self.drop7 = nn.Dropout(dropout)
        self.fc8 = nn.Linear(d_last, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop6(self.relu6(self.fc6(self.pool(self.features(x)).flatten(1))))
        if self.head == "flatten":
            x = self.drop7(self.relu7(self.fc7(x)))
        return self.fc8(x)


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)  # in place, as torchvision does: capture must cope with it
        return self.relu(out)


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs (He et al. 2016, CIFAR variant): 3 stages of ``depth`` basic blocks."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128), depth: int = 2, n_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        c_in = widths[0]
        for stage, width in enumerate(widths, start=1):
            blocks = [_BasicBlock(c_in if i == 0 else width, width, 2 if (i == 0 and stage > 1) else 1)
                      for i in range(depth)]
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            c_in = width
        self.n_stages = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for stage in range(1, self.n_stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(self.avgpool(x).flatten(1))
