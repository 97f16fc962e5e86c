"""Inversion (Mahendran & Vedaldi 2015): what a layer keeps of an image.

An image x is reconstructed from one layer's representation phi(x) by maximising
``match(layer, phi(x))``, either through the generator prior (DGN-AM's code, as in Dosovitskiy &
Brox's inversions with a learned prior) or over plain pixels regularised by total variation (the
Mahendran & Vedaldi baseline). Every layer is one row of a single :func:`~dgnam.engine.render.synthesize`
call per parametrisation; the score of each (parametrisation, layer) cell is the normalised
representation error ||phi(x') - phi(x)|| / ||phi(x)||.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dgnam.engine.objectives import Objective, match, scale_rows, total_variation
from dgnam.engine.param import make_param
from dgnam.engine.render import Result, synthesize
from dgnam.errors import DgnamError
from dgnam.grid import labelled_grid, save_png
from dgnam.nets.model import Model, as_model, eval_mode
from dgnam.prior.generator import UpconvGenerator

# Weight of the TV penalty for pixel inversions. TV here is the mean absolute neighbour difference of
# a [0, 1] image (about 0.05 for CIFAR photos, 0.3 for noise) and the error is normalised (about 1 at
# the start), so 0.5 costs noise more than it gains while leaving room for real edges.
DEFAULT_TV_WEIGHT = 0.5


@dataclass
class InversionResult:
    """Reconstructions of one image from several layers under several parametrisations.

    Attributes:
        original: (3, H, W) the inverted image, RGB in [0, 1].
        params: parametrisation of each grid row (``dgn``, ``pixel``, ``fourier``).
        layers: inverted layer of each grid column.
        images: (P, L, 3, H', W') reconstruction of cell (param, layer); rows made at a smaller size (a
            generator's images on a larger model) are shown resized to the largest.
        errors: (P, L) normalised representation error of each reconstruction.
        start_errors: (P, L) the same error for the image the optimisation started from.
        runs: the :class:`~dgnam.engine.render.Result` of each parametrisation (settings, histories).
    """

    original: torch.Tensor
    params: list[str]
    layers: list[str]
    images: torch.Tensor
    errors: torch.Tensor
    start_errors: torch.Tensor
    runs: list[Result]

    def save_grid(self, path: str | Path) -> Path:
        """Grid PNG: one row per parametrisation, the original first, then one column per layer."""
        size = self.images.shape[-1]
        original = self.original[None]
        if original.shape[-1] != size:
            original = F.interpolate(original, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        tiles, captions = [], []
        for p, kind in enumerate(self.params):
            tiles.append(original[0])
            captions.append(f"{kind}: original")
            for column, layer in enumerate(self.layers):
                tiles.append(self.images[p, column])
                # The last name component keeps the caption inside its tile (features.relu4_2 -> relu4_2).
                captions.append(f"{layer.rsplit('.', 1)[-1]} err {float(self.errors[p, column]):.2f}")
        return save_png(labelled_grid(torch.stack(tiles), captions, ncol=len(self.layers) + 1, tile=max(96, size)),
                        path)


def representation_error(model: Model, images: torch.Tensor, fidelity: Objective,
                         layers: Sequence[str]) -> torch.Tensor:
    """(N,) normalised representation error of each image under a row-wise ``match`` objective.

    ``fidelity`` is minus the error (it is what the inversion maximises), so the error is its negation.
    """
    device = next((b.device for b in model.buffers()), torch.device("cpu"))
    with torch.no_grad(), eval_mode(model):  # the user's module keeps its mode and BatchNorm statistics
        acts = model.run(images.to(device), layers)
        return -fidelity({(model, layer): value for layer, value in acts.items()}).cpu()


def invert(model: nn.Module | Model, image: torch.Tensor, layers: Sequence[str],
           generator: UpconvGenerator | None = None, *, params: Sequence[str] = ("dgn", "pixel"),
           steps: int = 200, tv_weight: float = DEFAULT_TV_WEIGHT, seed: int = 0,
           device: str | torch.device = "cpu", progress: bool = False) -> InversionResult:
    """Reconstruct ``image`` from each of ``layers`` with each parametrisation in ``params``.

    Args:
        model: the network whose representations are inverted.
        image: (3, H, W) or (1, 3, H, W) RGB in [0, 1].
        layers: layer names (``dgnam layers``), ``output`` for the logits.
        generator: the prior for ``dgn`` rows (required if ``"dgn" in params``).
        params: ``dgn`` (generator code), ``pixel`` (TV-regularised) and/or ``fourier`` (TV-regularised).
        tv_weight: weight of the total-variation penalty on the pixel and Fourier rows.

    Example::

        res = invert(net, x, ["features.relu2_2", "features.relu4_2", "output"], generator=G)
        res.errors          # (2, 3): rows dgn, pixel
        res.save_grid("inversion.png")
    """
    model = as_model(model)
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise DgnamError("no layers to invert; name at least one (e.g. output)")
    if not params:
        raise DgnamError("no parametrisation given; use dgn and/or pixel")
    if steps < 1:
        raise DgnamError(f"steps must be >= 1, got {steps}")
    image = image[None] if image.ndim == 3 else image
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise DgnamError(f"invert takes one RGB image (3, H, W); got shape {tuple(image.shape)}")
    device = torch.device(device)
    model.to(device)
    with torch.no_grad(), eval_mode(model):
        targets = model.run(image.to(device), layers)  # phi(x) for every layer, (1, ...) each
    # Row i inverts layers[i]: every layer's match term is switched on for its own row only.
    fidelity = sum(scale_rows(match(layer, targets[layer][0], model=model, normalize=True),
                              [float(row_layer == layer) for row_layer in layers])
                   for layer in layers)
    seeds = [seed] * len(layers)

    images, errors, start_errors, runs = [], [], [], []
    for kind in params:
        param = make_param(kind, generator, model.input_size)
        # The generator is the prior of code rows; pixel and Fourier rows get Mahendran & Vedaldi's TV.
        objective = fidelity if param.has_prior else fidelity - tv_weight * total_variation()
        run = synthesize(objective, param, seeds=seeds, model=model, steps=steps, optimizer=param.matching_optimizer(),
                         device=device, progress=progress, labels=[f"{kind}:{layer}" for layer in layers],
                         extra={"param": [kind] * len(layers), "layer": layers})
        with torch.no_grad():
            start = param.images(param.init(seeds, torch.arange(len(layers)), device))
        runs.append(run)
        images.append(run.images)
        errors.append(representation_error(model, run.images, fidelity, layers))
        start_errors.append(representation_error(model, start, fidelity, layers))
    # A generator's images have its size, pixel and Fourier rows the model's: the grid shows them at the larger.
    side = max(run.shape[-1] for run in images)
    images = [run if run.shape[-1] == side else
              F.interpolate(run, size=(side, side), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
              for run in images]
    return InversionResult(original=image[0].detach().cpu(), params=list(params), layers=layers,
                           images=torch.stack(images), errors=torch.stack(errors),
                           start_errors=torch.stack(start_errors), runs=runs)
