"""The one optimisation loop behind DGN-AM and every baseline.

``synthesize(objective, param)`` optimises one image per seed: rows are processed in chunks of
``batch_size`` (bounded memory for thousands of units), each row starts from its own seed, and
every update rule treats rows independently, so a row's image does not depend on its batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from dgnam import checks
from dgnam.engine.objectives import PARAMS, Objective
from dgnam.engine.optim import Optimizer
from dgnam.engine.param import Parametrization
from dgnam.engine.transforms import RowRandom
from dgnam.errors import DgnamError
from dgnam.grid import html_card, labelled_grid, png_bytes, save_png, show_image
from dgnam.nets.model import INPUT, Model, eval_mode, non_finite_cause


@dataclass
class Result:
    """What a synthesis run produced; row i of every tensor belongs to ``seeds[i]`` / ``labels[i]``.

    Attributes:
        images: (N, 3, H, W) RGB in [0, 1], on the CPU.
        values: (N,) final objective value of each image (no transforms applied).
        params: (N, ...) final parameters (codes for DGN-AM).
        seeds: per-image seed.
        labels: per-image label for grids (unit id or class name).
        history: (steps, N) objective value at every step (with transforms, before the update).
        settings: everything needed to reproduce the run.
        extra: per-image metadata columns (unit, restart, layer, ...) of equal length.
    """

    images: torch.Tensor
    values: torch.Tensor
    params: torch.Tensor
    seeds: list[int]
    labels: list[str]
    history: torch.Tensor
    settings: dict
    seconds: float
    extra: dict[str, list] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.seeds)

    def save_grid(self, path: str | Path, ncol: int | None = None, tile: int | None = None,
                  captions: Sequence[str] | None = None) -> Path:
        """Write a labelled grid PNG: each tile has its label and reached value underneath."""
        captions = list(captions) if captions is not None else [
            f"{label} {value:.1f}" for label, value in zip(self.labels, self.values.tolist())]
        return save_png(labelled_grid(self.images, captions, ncol=ncol, tile=tile), path)

    def to_image(self, ncol: int | None = None, tile: int | None = None) -> Image.Image:
        """The labelled grid of :meth:`save_grid` as a PIL image (one row per unit when ``extra`` has restarts)."""
        captions = [f"{label} {value:.1f}" for label, value in zip(self.labels, self.values.tolist())]
        restarts = len(set(self.extra.get("restart", []))) or None
        return labelled_grid(self.images, captions, ncol=ncol or (restarts if restarts and restarts > 1 else None),
                             tile=tile)

    def _repr_png_(self) -> bytes:
        """Jupyter shows a Result as its grid."""
        return png_bytes(self.to_image())

    def _repr_html_(self) -> str:
        """Jupyter's rich view: the grid and one line on the run."""
        what = str(self.settings.get("objective", ""))
        return html_card("dgnam Result", f"{len(self)} image(s), {what}, {self.settings.get('steps', '?')} steps, "
                         f"{self.seconds:.1f}s", self.to_image(), what)

    def show(self) -> Image.Image:
        """Display the grid: inline under IPython, else in the system's image viewer; returns it."""
        return show_image(self, self.to_image())


def _chunks(n: int, size: int) -> list[torch.Tensor]:
    return [torch.arange(start, min(start + size, n)) for start in range(0, n, size)]


def _gather_activations(requirements, images_for_models: torch.Tensor, raw_images: torch.Tensor,
                        code: torch.Tensor | None = None):
    by_model: dict[Model, list[str]] = {}
    acts = {}
    for model, layer in requirements:
        if layer == INPUT and model is None:
            acts[(None, INPUT)] = raw_images
            continue
        if layer == PARAMS and model is None:
            acts[(None, PARAMS)] = code
            continue
        if model is None:
            raise DgnamError("an objective has no model; pass model= to synthesize() or bind it with unit(..., "
                             "model=m)")
        by_model.setdefault(model, []).append(layer)
    for model, layers in by_model.items():
        for layer, value in model.run(images_for_models, layers).items():
            acts[(model, layer)] = value
    return acts


def _non_finite_cause(step: int, images: torch.Tensor, acts: dict, recorded: torch.Tensor) -> str:
    """One line naming why the objective is NaN/inf at ``step``: the images, a model's activation on finite
    images (its output, or its normalisation), or the terms added to the unit (the code prior's weight)."""
    where = f"the objective became NaN/inf at step {step}"
    if not torch.isfinite(images).all():
        return (f"{where}: the images themselves are not finite; check the generator's weights and the code's "
                f"start (--init-sampler)")
    for (model, layer), value in acts.items():
        if model is None or torch.isfinite(value).all():
            continue
        return f"{where}: {non_finite_cause(model, layer)}"
    if torch.isfinite(recorded).all():
        return f"{where}: the unit is finite but an added term is not; lower its weight (--code-prior)"
    return f"{where}: the objective's own arithmetic overflows; check its weights"


def _checked_run(param: Parametrization, seeds: Sequence[int], steps: int | None, batch_size: int,
                 device: str | torch.device) -> tuple[int, torch.device, list[int]]:
    """The run's step count, device and seeds, each checked; refuses a run that cannot fit in memory."""
    steps = param.default_steps if steps is None else steps
    if steps < 1:
        raise DgnamError(f"steps must be >= 1, got {steps}")
    if batch_size < 1:
        raise DgnamError(f"batch size must be >= 1, got {batch_size}")
    device = checks.resolve_device(device)
    if hasattr(seeds, "__len__"):  # before the list is built: range(10**9) seeds must not fill the memory first
        checks.check_fits(checks.synthesis_bytes(len(seeds), steps, param.image_size, batch_size),
                          f"synthesising {len(seeds)} images of {steps} steps",
                          "steps or the number of seeds (units x restarts)", device)
    seeds = [checks.seed(s, what="seeds") for s in seeds]
    if not seeds:
        raise DgnamError("nothing to synthesise: give at least one seed/unit")
    return steps, device, seeds


def _bound(objective: Objective, record: Objective | None, model: Model | None,
           n: int) -> tuple[Objective, Objective | None]:
    """``objective`` and ``record`` with ``model`` bound to their model-less leaves, checked against ``n`` rows."""
    if model is not None:
        objective = objective.bind(model)
        record = record.bind(model) if record is not None else None
    for checked in (objective, record):
        if checked is not None and checked.n_rows is not None and checked.n_rows != n:
            raise DgnamError(f"objective has {checked.n_rows} per-row units but {n} seeds were given")
    return objective, record


@dataclass
class _Run:
    """What every chunk of one :func:`synthesize` run shares; ``history`` is filled in place, chunk by chunk."""

    objective: Objective
    record: Objective | None
    param: Parametrization
    requirements: set
    optimizer: Optimizer
    transforms: Sequence
    steps: int
    device: torch.device
    autocast: object
    history: torch.Tensor
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None

    def chunk(self, rows: torch.Tensor, n_real: int, seeds: list[int],
              bar) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Optimise the rows ``rows`` (the first ``n_real`` real, the rest padding) from their ``seeds``:
        the final images, their recorded values and the final parameters, padding included."""
        objective = self.objective.take(rows)
        record = self.record.take(rows) if self.record is not None else None
        # Like act_max.py, the start code is not clipped: the box applies after each step.
        params = self.param.init(seeds, rows, self.device)
        params.requires_grad_(True)
        self.optimizer.start(params, self.steps)
        rng = RowRandom(seeds)
        for step in range(self.steps):
            recorded = self._step(step, params, objective, record, rng)
            self.history[step, rows[:n_real]] = recorded.detach()[:n_real].cpu()
            if self.callback is not None:
                self.callback(step, rows[:n_real], params.detach()[:n_real])
            bar.update(1)
        final, final_value = self._final(params, objective, record)
        return final, final_value, params

    def _step(self, step: int, params: torch.Tensor, objective: Objective, record: Objective | None,
              rng: RowRandom) -> torch.Tensor:
        """One update of ``params``; returns the recorded value of the images it started from."""
        with self.autocast:
            images = self.param.images(params)
            seen = images
            for transform in self.transforms:
                seen = transform(seen, rng)
            acts = _gather_activations(self.requirements, seen, images, self.param.code(params))
            value = objective(acts).float()
            recorded = value if record is None else record(acts).float()
        if not torch.isfinite(value).all():  # stop at once: every later step would be NaN too
            raise DgnamError(_non_finite_cause(step, images, acts, recorded))
        (grad,) = torch.autograd.grad(value.sum(), params)
        self.optimizer.update(params, grad.float(), step, self.param.project)
        return recorded

    def _final(self, params: torch.Tensor, objective: Objective,
               record: Objective | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The images of the final ``params`` and their recorded value, without transforms."""
        with torch.no_grad(), self.autocast:
            final = self.param.images(params)
            acts = _gather_activations(self.requirements, final, final, self.param.code(params))
            final_value = objective(acts).float()
            if record is not None and torch.isfinite(final_value).all():  # else the check below fails
                final_value = record(acts).float()
        if not torch.isfinite(final_value).all():
            raise DgnamError(_non_finite_cause(self.steps, final, acts, final_value))
        return final, final_value


def synthesize(objective: Objective, param: Parametrization, *, seeds: Sequence[int],
               model: Model | None = None, steps: int | None = None, optimizer: Optimizer | None = None,
               transforms: Sequence = (), batch_size: int = 64, device: str | torch.device = "cpu",
               amp: bool = False, progress: bool = False, labels: Sequence[str] | None = None,
               extra: dict[str, list] | None = None,
               callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
               fixed_batch: bool = False, record: Objective | None = None) -> Result:
    """Maximise ``objective`` over images produced by ``param``, one image per seed.

    Args:
        objective: per-row or shared :class:`~dgnam.engine.objectives.Objective`; model-less leaves use ``model``.
        param: :class:`~dgnam.engine.param.GeneratorCode` (DGN-AM), ``Pixels`` or ``Fourier``.
        seeds: one seed per image; a per-row objective must have ``len(seeds)`` rows.
        steps: optimisation steps (default: ``param.default_steps``: the paper's 200 from noise, 50 seeded).
        optimizer: update rule; default ``param.default_optimizer()`` (DGN-AM's normalised ascent for codes).
        transforms: callables ``(images, RowRandom) -> images`` applied before the models each step.
        batch_size: rows per forward/backward; bounds memory.
        amp: bfloat16 autocast for the model forwards on CUDA.
        callback: called as ``callback(step, rows, params)`` after every update (e.g. to record frames).
        fixed_batch: pad every chunk to ``batch_size`` rows (repeating its last row). Math kernels
            round differently for different batch sizes (~1e-6), so only then is an image bit-identical
            whatever else was in its batch; it costs a full batch for a small run.
        record: the objective whose values fill ``Result.values`` and ``history`` (default: ``objective``),
            e.g. the unit alone when a penalty such as the code prior is added to what is optimised.

    Example::

        G = dgnam.load_generator("checkpoints/cifar10/generator.pt")
        net = dgnam.load_classifier("checkpoints/cifar10/encoder.pt")
        res = synthesize(dgnam.class_logit(range(10)), dgnam.GeneratorCode(G), model=net, seeds=range(10))
        res.save_grid("classes.png")
    """
    steps, device, seeds = _checked_run(param, seeds, steps, batch_size, device)
    n = len(seeds)
    objective, record = _bound(objective, record, model, n)
    param.to(device)
    requirements = objective.requirements() | (record.requirements() if record is not None else set())
    models = {m for m, _ in requirements if m is not None}
    for m in models:
        m.to(device)
    optimizer = optimizer or param.default_optimizer()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp and device.type == "cuda" else nullcontext()
    run = _Run(objective=objective, record=record, param=param, requirements=requirements, optimizer=optimizer,
               transforms=transforms, steps=steps, device=device, autocast=autocast, history=torch.zeros(steps, n),
               callback=callback)

    images_out, values_out, params_out = [], [], []
    start = time.time()
    bar = tqdm(total=steps * math.ceil(n / batch_size), disable=not progress, unit="step", leave=False)
    with eval_mode(*models, *param.modules()), bar:  # the bar is cleared before an error is printed, not after it
        for rows in _chunks(n, batch_size):
            n_real = len(rows)
            if fixed_batch and n_real < batch_size:
                rows = torch.cat([rows, rows[-1:].expand(batch_size - n_real)])
            final, final_value, params = run.chunk(rows, n_real, [seeds[i] for i in rows.tolist()], bar)
            images_out.append(final.detach()[:n_real].float().clamp(0, 1).cpu())
            values_out.append(final_value.detach()[:n_real].cpu())
            params_out.append(params.detach()[:n_real].cpu())
    settings = {"objective": objective.name, "steps": steps, "batch_size": batch_size, "fixed_batch": fixed_batch,
                "device": str(device), "amp": amp, "transforms": [repr(t) for t in transforms], **param.describe(),
                **optimizer.describe(), **({"recorded": record.name} if record is not None else {})}
    return Result(images=torch.cat(images_out), values=torch.cat(values_out), params=torch.cat(params_out),
                  seeds=seeds, labels=list(labels) if labels is not None else [str(s) for s in seeds],
                  history=run.history, settings=settings, seconds=time.time() - start, extra=dict(extra or {}))
