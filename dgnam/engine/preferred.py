"""Preferred inputs: the one-call API for "what do these units of my model prefer?" (:func:`visualize`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dgnam import checks
from dgnam.engine.objectives import Objective, capped
from dgnam.engine.objectives import channel as channel_objective
from dgnam.engine.objectives import code_prior as code_prior_objective
from dgnam.engine.objectives import unit as unit_objective
from dgnam.engine.optim import Optimizer
from dgnam.engine.param import SEEDED_CODE_PRIOR, Parametrization, SeededCode, make_param
from dgnam.engine.render import Result, synthesize
from dgnam.engine.transforms import GaussianBlur, Jitter
from dgnam.errors import DgnamError
from dgnam.nets.layout import Layout
from dgnam.nets.model import OUTPUT, Model, as_model
from dgnam.prior.generator import UpconvGenerator


def check_code_prior(weight: float, generator: UpconvGenerator | None, code_encoder: nn.Module | Model | None) -> None:
    """One-line errors unless a code prior of ``weight`` (0: off) has what it needs."""
    if not weight:
        return
    if not 0 < weight < float("inf"):
        raise DgnamError(f"code_prior must be a finite number >= 0 (0: off), got {weight}")
    if code_encoder is None:
        raise DgnamError("code_prior needs code_encoder: the encoder whose layer the generator inverts")
    if generator is None or not generator.encoder_layer:
        raise DgnamError("code_prior needs the generator's encoder_layer (the layer it inverts); set it on the "
                         "generator, as training does")


def add_code_prior(objective: Objective, weight: float, generator: UpconvGenerator | None,
                   code_encoder: nn.Module | Model | None) -> Objective:
    """``objective + weight * code_prior(generator.encoder_layer, model=code_encoder)``; ``objective``
    itself when ``weight`` is 0 (:func:`dgnam.code_prior`)."""
    check_code_prior(weight, generator, code_encoder)
    if not weight:
        return objective
    return objective + weight * code_prior_objective(generator.encoder_layer, model=as_model(code_encoder))


def _row_objective(layer: str, row_units: list[int], position, token, layout, spatial_mean: bool) -> Objective:
    """Each row's unit as the layer's layout reads it: at a position or token, or the channel's spatial mean."""
    if spatial_mean:
        if position is not None or token is not None:
            raise DgnamError("the spatial mean reads every position; drop position/token")
        return channel_objective(layer, row_units, layout=layout)
    return unit_objective(layer, row_units, position=position, token=token, layout=layout)


def _capped(objective: Objective, target: float | Sequence[float] | None, n_units: int, restarts: int) -> Objective:
    """``objective`` pushed up to an activation target (one number, or one per unit), no further."""
    if target is None:
        return objective
    levels = torch.as_tensor(target, dtype=torch.float32)
    if levels.ndim == 1 and len(levels) != n_units:
        raise DgnamError(f"{len(levels)} activation targets for {n_units} units; give one per unit or one number")
    return capped(objective, levels.repeat_interleave(restarts) if levels.ndim == 1 else levels)


def visualize(model: nn.Module | Model, units: Sequence[int], *, layer: str = OUTPUT,
              generator: UpconvGenerator | None = None, param: str | Parametrization = "dgn",
              restarts: int = 1, seed: int = 0, steps: int | None = None,
              position: tuple[int, int] | torch.Tensor | None = None,
              spatial_mean: bool = False, token: int | str | None = None, layout: str | Layout | None = None,
              optimizer: Optimizer | None = None, transforms: Sequence = (),
              batch_size: int = 64, device: str | torch.device = "cpu", amp: bool = False,
              progress: bool = False, unit_names: Sequence[str] | None = None, fixed_batch: bool = False,
              code_prior: float = 0.0, code_encoder: nn.Module | Model | None = None,
              target: float | Sequence[float] | None = None) -> Result:
    """Synthesise preferred images for ``units`` of ``layer``, ``restarts`` images per unit, in batches.

    Image (unit u, restart r) uses seed ``seed + r``, whatever else is in the batch, so any single
    image can be reproduced from its (unit, seed) (bit for bit with ``fixed_batch=True``).
    A unit is read as the layer's layout says (:mod:`dgnam.nets.layout`; ``layout`` overrides the detected one):
    a conv or channels-last channel at ``position`` (default: the centre; a (rows, 2) tensor: one per row,
    unit-major) or its spatial mean
    (``spatial_mean``); a token layer's neuron at ``token`` (an index, ``"cls"``, ``"mean"``; default: CLS).
    ``code_prior`` > 0 (DGN-AM only) adds that multiple of PPGN's code prior, read by
    ``code_encoder`` (the encoder whose ``generator.encoder_layer`` the generator inverts): the code
    is pulled towards what the encoder reads back from its image (:func:`dgnam.code_prior`); the
    result's values and history are still the unit's activation alone.
    ``target`` (one number, or one per unit) is an activation target: each unit is pushed up to it, no
    further (:func:`dgnam.capped`); the rest of the steps only pull the code towards natural ones.
    ``param`` may be a :class:`~dgnam.engine.param.SeededCode` (image-seeded starts, one seed per row:
    unit-major, ``restarts`` rows per unit).

    Example::

        res = dgnam.visualize(net, range(10), generator=G, restarts=4)   # class logits
        res.save_grid("classes.png")
    """
    model = as_model(model)
    if restarts < 1:
        raise DgnamError(f"restarts must be >= 1, got {restarts}")
    if isinstance(param, str):
        param = make_param(param, generator, model.input_size)
    steps = param.default_steps if steps is None else steps
    device = checks.resolve_device(device)
    if hasattr(units, "__len__") and not isinstance(units, (str, bytes)):  # before range(10**9) becomes a list
        rows = len(units) * restarts
        checks.check_fits(checks.synthesis_bytes(rows, steps, param.image_size, batch_size),
                          f"synthesising {rows} images ({len(units)} units x {restarts} restarts) of {steps} steps",
                          "steps, restarts or the number of units", device)
    units = checks.indices(units, "units")
    if not units:
        raise DgnamError("no units given; pass at least one unit index")
    checks.seed(seed, restarts)
    row_units = [u for u in units for _ in range(restarts)]
    row_restarts = [r for _ in units for r in range(restarts)]
    seeds = [seed + r for r in row_restarts]
    unit_objective_only = _row_objective(layer, row_units, position, token, layout, spatial_mean)
    objective = _capped(unit_objective_only, target, len(units), restarts)
    if code_prior and not param.has_prior:
        raise DgnamError("code_prior needs param 'dgn' (a generator's code); pixels and Fourier have no code")
    objective = add_code_prior(objective, code_prior, param.generator, code_encoder)
    names = list(unit_names) if unit_names is not None else None
    labels = [names[u] if names and u < len(names) else f"{layer}:{u}" for u in row_units]
    return synthesize(objective, param, seeds=seeds, model=model, steps=steps, optimizer=optimizer,
                      transforms=transforms, batch_size=batch_size, device=device, amp=amp,
                      progress=progress, labels=labels, fixed_batch=fixed_batch, record=unit_objective_only,
                      extra={"layer": [layer] * len(row_units), "unit": row_units, "restart": row_restarts})


def accentuate(model: nn.Module | Model, images: torch.Tensor, units: Sequence[int], *, layer: str = OUTPUT,
               generator: UpconvGenerator, code_encoder: nn.Module | Model, steps: int | None = None,
               code_prior: float = SEEDED_CODE_PRIOR, target: float | Sequence[float] | None = None,
               position: tuple[int, int] | None = None, spatial_mean: bool = False, token: int | str | None = None,
               layout: str | Layout | None = None, bound_k: float | None = None, optimizer: Optimizer | None = None,
               batch_size: int = 64, device: str | torch.device = "cpu", amp: bool = False, progress: bool = False,
               unit_names: Sequence[str] | None = None) -> Result:
    """Image-seeded synthesis: each of ``images`` changed through the prior until each of ``units`` responds.

    Every (unit, image) pair is one row, unit-major (``extra["image"]`` says which image): the row starts as the
    image itself, and the prior changes it (:class:`~dgnam.engine.param.SeededCode`: image + G(h) - G(h0), h0 =
    the image's code). ``history[0]`` is each unit's activation on the unchanged image, ``values`` after
    ``steps``. ``code_prior`` (PPGN's, read by ``code_encoder``, the encoder the generator inverts) keeps the
    change natural; ``target`` stops pushing a unit at that activation.

    Example::

        res = dgnam.accentuate(net, load_images(["dog.png"], 32), [5], generator=G, code_encoder=net)
        res.history[0], res.values    # the dog logit before and after
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise DgnamError("images must be a (N, 3, H, W) tensor of RGB images in [0, 1]")
    units = checks.indices(units, "units")
    if not units:
        raise DgnamError("no units given; pass at least one unit index")
    seeds = images.repeat(len(units), 1, 1, 1)  # row order of visualize: each unit's rows, one per image
    param = SeededCode(generator, seeds, code_encoder, bound_k=bound_k)
    result = visualize(model, units, layer=layer, generator=generator, param=param, restarts=len(images), steps=steps,
                       position=position, spatial_mean=spatial_mean, token=token, layout=layout, optimizer=optimizer,
                       batch_size=batch_size, device=device, amp=amp, progress=progress, unit_names=unit_names,
                       code_prior=code_prior, code_encoder=code_encoder, target=target)
    result.extra["image"] = result.extra.pop("restart")
    result.settings["command"] = "accentuate"
    return result


def baseline_transforms(jitter: int = 2, blur_sigma: float = 0.5) -> list:
    """The regularised pixel baseline's transforms: random jitter and a slight blur each step."""
    return [Jitter(jitter), GaussianBlur(blur_sigma)]
