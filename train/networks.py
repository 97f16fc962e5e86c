"""Training-only networks: the DeePSiM conditional discriminator and the code sampler's critics."""

from __future__ import annotations

import torch
from torch import nn

from dgnam.errors import DgnamError


def conv_stack(convs: list[list[int]], c_in: int = 3) -> list[nn.Module]:
    """Convs ``[[c_out, kernel, stride], ...]`` each followed by LeakyReLU(0.2); stride 2 halves the size."""
    layers: list[nn.Module] = []
    for c_out, kernel, stride in convs:
        layers += [nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2 if stride == 1 else (kernel - 1) // 2),
                   nn.LeakyReLU(0.2)]
        c_in = c_out
    return layers


def minibatch_std(features: torch.Tensor) -> torch.Tensor:
    """Append the batch's mean feature standard deviation to every row (Karras et al. 2018): a critic
    that sees it catches a generator that collapses to a few outputs."""
    return torch.cat([features, features.std(0, unbiased=False).mean().expand(len(features), 1)], 1)


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
        self.image_path = nn.Sequential(*conv_stack(convs), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        c_in = convs[-1][0]
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


class CodeCritic(nn.Module):
    """Discriminator in code space for :class:`~dgnam.prior.sampler.CodeSampler`: real code vs sampled code.

    A spatial code ``[C, H, W]`` goes through 3x3 convs, a flat one through FC layers; then one logit.
    A minibatch-standard-deviation feature (Karras et al. 2018) lets it see a batch's diversity,
    so a sampler that collapses to a few codes is caught. With ``num_classes > 0`` it is a projection
    critic (Miyato & Koyama 2018): the logit adds the inner product of a learned class embedding with
    its last hidden features, so it judges "a real code *of this class*".
    """

    def __init__(self, code_shape: list[int] | tuple[int, ...], width: int = 256, depth: int = 2,
                 num_classes: int = 0) -> None:
        super().__init__()
        self.code_shape = tuple(int(s) for s in code_shape)
        act = nn.LeakyReLU(0.2)
        layers: list[nn.Module] = []
        if len(self.code_shape) == 3:
            c_in = self.code_shape[0]
            for _ in range(depth):
                layers += [nn.Conv2d(c_in, width, 3, 1, 1), act]
                c_in = width
            features = width * self.code_shape[1] * self.code_shape[2]
        else:
            d_in = self.code_shape[0]
            for _ in range(depth):
                layers += [nn.Linear(d_in, width), act]
                d_in = width
            features = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(features + 1, width), act, nn.Linear(width, 1))  # the name older runs saved
        self.class_embedding = nn.Embedding(num_classes, width) if num_classes else None

    def forward(self, code: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logit (B,) that each code (B, code_dim) is a real one (of class ``labels`` (B,), if conditional)."""
        features = minibatch_std(self.body(code.view(len(code), *self.code_shape)).flatten(1))
        return projected_logit(self.head, self.class_embedding, features, labels)


class ImageCritic(nn.Module):
    """Unconditional image discriminator for the code sampler's optional image term: real image vs
    G(sampler(z)). Strided convs down to a small map, flattened (layout counts), minibatch std, one logit.
    With ``num_classes > 0`` a projection critic, like :class:`CodeCritic`: "a real image of this class"."""

    def __init__(self, image_size: int = 32, convs: list[list[int]] | None = None, hidden: int = 256,
                 num_classes: int = 0) -> None:
        super().__init__()
        convs = convs or [[32, 3, 1], [64, 4, 2], [128, 4, 2], [128, 4, 2]]
        self.body = nn.Sequential(*conv_stack(convs), nn.Flatten())
        side = image_size // 2 ** sum(1 for *_, stride in convs if stride == 2)
        self.head = nn.Sequential(nn.Linear(convs[-1][0] * side * side + 1, hidden), nn.LeakyReLU(0.2),
                                  nn.Linear(hidden, 1))
        self.class_embedding = nn.Embedding(num_classes, hidden) if num_classes else None

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Logit (B,) that each RGB [0, 1] image is a real one (of class ``labels`` (B,), if conditional)."""
        return projected_logit(self.head, self.class_embedding, minibatch_std(self.body(images)), labels)


def projected_logit(head: nn.Sequential, class_embedding: nn.Embedding | None, features: torch.Tensor,
                    labels: torch.Tensor | None) -> torch.Tensor:
    """``head`` (hidden layer, activation, output layer) on ``features``, plus, for a projection critic
    (Miyato & Koyama 2018), the inner product of the class embedding with the hidden layer."""
    if (class_embedding is None) != (labels is None):
        raise DgnamError("a conditional critic needs labels and an unconditional one takes none")
    hidden = head[:2](features)
    logit = head[2](hidden).squeeze(1)
    if labels is not None:
        logit = logit + (class_embedding(labels) * hidden).sum(1)
    return logit
