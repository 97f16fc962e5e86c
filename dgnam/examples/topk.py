"""One streaming pass over a folder of images that keeps, for every unit of a layer, its top-k images and
activations and a uniform sample of its activations (for percentiles).

Memory is bounded by units x (k + reservoir), never by the number of images: each batch's activations are
merged into the running top-k (and the reservoir) and dropped. Every unit is read from one forward pass
per batch; nothing loops over units.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dgnam import checks
from dgnam.errors import DgnamError
from dgnam.images import list_images, spread, try_read
from dgnam.nets.model import Model, as_model, eval_mode, non_finite_cause

# The percentile strip: exact min and max, the rest from the reservoir sample.
PERCENTILES = (0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 100)
RESERVOIR = 4096  # images whose activations are kept for percentiles (exact below this many images)
READINGS = ("max", "position", "mean")


class _Images(Dataset):
    """Files -> (3, size, size) uint8 RGB; an unreadable file (see :func:`~dgnam.images.try_read`) gives
    ``ok=False`` instead of raising."""

    def __init__(self, files: Sequence[Path], size: int) -> None:
        self.files, self.size = list(files), size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        image = try_read(self.files[i], self.size)
        if image is None:  # counted by the caller, never fatal
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), i, False
        return image, i, True


def read_units(act: torch.Tensor, units: torch.Tensor, reading: str = "max",
               position: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The per-image value of every unit of a layer's activation ``act``: (B, U) values and, for
    ``reading="max"`` on a conv layer, the (B, U) flat spatial index of the maximum.

    fc layers (B, C): the unit itself. conv layers (B, C, H, W): ``"max"``: the channel's spatial maximum;
    ``"position"``: the channel at ``position`` (default: the centre, as DGN-AM's objective reads it);
    ``"mean"``: the channel's spatial mean.
    """
    if reading not in READINGS:
        raise DgnamError(f"reading must be one of {', '.join(READINGS)}, got {reading!r}")
    act = act.float()
    if act.ndim not in (2, 4):
        raise DgnamError(f"layer output of shape {tuple(act.shape[1:])} is neither (units,) nor (channels, H, W)")
    if len(units) != act.shape[1] or not torch.equal(units, torch.arange(act.shape[1], device=units.device)):
        act = act.index_select(1, units)  # a subset: copy only its units (the whole layer needs no copy)
    if act.ndim == 2:
        return act, None
    h, w = act.shape[-2:]
    if reading == "max":
        values, where = act.flatten(2).max(2)
        return values, where
    if reading == "mean":
        return act.mean((2, 3)), None
    y, x = position if position is not None else (h // 2, w // 2)
    if not (0 <= y < h and 0 <= x < w):
        raise DgnamError(f"position ({y}, {x}) is outside the layer's {h}x{w} map; use 0-{h - 1}, 0-{w - 1}")
    return act[:, :, y, x], None


@dataclass
class DatasetExamples:
    """Per unit of ``layer``: the top-k images of ``files`` and the unit's activation statistics.

    Row ``j`` of every tensor belongs to ``units[j]``; columns of ``values``/``indices``/``locations`` run from
    the highest activation down.

    Attributes:
        values: (U, k) activations of the top-k images (``-inf`` where fewer than k images were read).
        indices: (U, k) indices into ``files`` (-1 where fewer than k images were read).
        locations: (U, k, 2) (row, column) of the spatial maximum in the layer's map (``reading="max"`` on a
            conv layer), else None.
        map_size: (H, W) of a conv layer's map, else None.
        percentiles: (len(PERCENTILES), U) activation percentiles over the images (min and max exact).
        mean: (U,) mean activation over the images.
        skipped: files that could not be read (not counted in ``n_images``).
    """

    layer: str
    units: list[int]
    files: list[Path]
    values: torch.Tensor
    indices: torch.Tensor
    locations: torch.Tensor | None
    map_size: tuple[int, int] | None
    percentiles: torch.Tensor
    mean: torch.Tensor
    n_images: int
    skipped: list[Path]
    reading: str
    position: tuple[int, int] | None
    seconds: float
    percentile_levels: tuple[float, ...] = PERCENTILES
    settings: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        return self.values.shape[1]

    @property
    def unit_max(self) -> torch.Tensor:
        """(U,) each unit's highest activation on the data."""
        return self.values[:, 0]

    def top_files(self, row: int) -> list[Path]:
        """The top-k files of ``units[row]``, highest first."""
        return [self.files[i] for i in self.indices[row].tolist() if i >= 0]


class _TopK:
    """Running top-k per unit over a stream of (B, U) values: one merge per batch, memory U x k."""

    def __init__(self, n_units: int, k: int, device: torch.device) -> None:
        self.values = torch.full((n_units, k), -float("inf"), device=device)
        self.indices = torch.full((n_units, k), -1, dtype=torch.long, device=device)
        self.where = torch.full((n_units, k), -1, dtype=torch.long, device=device)

    def update(self, values: torch.Tensor, indices: torch.Tensor, where: torch.Tensor | None) -> None:
        n_units, k = self.values.shape
        # Candidates: the kept k, then this batch in image order; a stable sort keeps the earlier image on ties.
        cand_v = torch.cat([self.values, values.t()], dim=1)
        cand_i = torch.cat([self.indices, indices[None].expand(n_units, -1)], dim=1)
        batch_where = where.t() if where is not None else torch.full_like(values.t(), -1, dtype=torch.long)
        cand_w = torch.cat([self.where, batch_where], dim=1)
        order = torch.sort(cand_v, dim=1, descending=True, stable=True).indices[:, :k]
        self.values = cand_v.gather(1, order)
        self.indices = cand_i.gather(1, order)
        self.where = cand_w.gather(1, order)


class _Reservoir:
    """A uniform sample without replacement of the images' activations, for percentiles: each image gets a
    random key and the ``size`` smallest keys are kept (a top-k again, so one merge per batch)."""

    def __init__(self, n_units: int, size: int, device: torch.device, seed: int = 0) -> None:
        self.keys = torch.empty(0, device=device)
        self.values = torch.empty(0, n_units, device=device)
        self.size = size
        self.rng = torch.Generator().manual_seed(seed)

    def update(self, values: torch.Tensor) -> None:
        keys = torch.rand(len(values), generator=self.rng).to(values.device)
        self.keys = torch.cat([self.keys, keys])
        self.values = torch.cat([self.values, values])
        if len(self.keys) > self.size:
            keep = torch.topk(self.keys, self.size, largest=False).indices
            self.keys, self.values = self.keys[keep], self.values[keep]


def _quiet_worker(worker_id: int) -> None:
    """A DataLoader worker's signals: Ctrl-C and a SIGTERM sent to the whole process group (``kill -TERM -PGID``,
    a scheduler) reach the workers as well as the main process, which owns the shutdown: it raises, says one
    line, and the DataLoader stops its workers. So a worker ignores SIGINT, and leaves on SIGTERM at once with
    status 0 and no traceback. torch's own handler exits 0 only when the main process sends the SIGTERM and
    otherwise dies by the signal, which the main process's SIGCHLD check turns into a "worker is killed by
    signal" traceback over the one-line message; ignoring SIGTERM too would leave a stuck worker that the
    DataLoader's terminate() could not stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _leave_quietly)


def _leave_quietly(signum: int, frame) -> None:
    os._exit(0)  # no cleanup to run: the worker holds no files, and the main process discards its queue


def _batches(files: Sequence[Path], size: int, batch_size: int, workers: int) -> Iterator:
    loader = DataLoader(_Images(files, size), batch_size=batch_size, shuffle=False, num_workers=workers,
                        persistent_workers=False, worker_init_fn=_quiet_worker if workers else None)
    yield from loader


def _check_top_k(n_units: int, k: int, batch_size: int, reservoir: int, device: torch.device) -> None:
    checks.check_fits(checks.top_k_bytes(n_units, k, batch_size, reservoir),
                      f"keeping the top {k} images of {n_units} unit(s)", "k (CLI: --k) or the number of units", device)


class _UnitStats:
    """Everything the pass keeps per unit: the running top-k, the reservoir, the sum and the minimum. Built at the
    first batch, where the layer's size (and so the unit list) is known."""

    def __init__(self, act: torch.Tensor, units: Sequence[int] | None, layer: str, k: int, batch_size: int,
                 reservoir: int, device: torch.device) -> None:
        n_units = act.shape[1]
        if units is not None and len(units) > n_units:
            raise DgnamError(f"{len(units)} units were asked of layer {layer!r}, which has {n_units}; "
                             f"pass each unit once (valid: 0-{n_units - 1})")
        chosen = list(range(n_units)) if units is None else checks.indices(units)
        bad = [u for u in chosen if not 0 <= u < n_units]
        if bad:
            raise DgnamError(f"unit {bad[0]} is out of range for layer {layer!r}, which has {n_units} "
                             f"units (valid: 0-{n_units - 1})")
        _check_top_k(len(chosen), k, batch_size, reservoir, device)
        self.unit_index = torch.tensor(chosen, device=device)
        self.map_size = tuple(act.shape[-2:]) if act.ndim == 4 else None
        self.top = _TopK(len(chosen), k, device)
        self.reservoir = _Reservoir(len(chosen), reservoir, device)
        self.total = torch.zeros(len(chosen), dtype=torch.float64, device=device)
        self.lowest = torch.full((len(chosen),), float("inf"), device=device)
        self.n_images = 0

    def update(self, values: torch.Tensor, indices: torch.Tensor, where: torch.Tensor | None) -> None:
        """Merge one batch's (B, U) ``values`` of the images ``indices`` (``where``: their spatial maxima)."""
        self.top.update(values, indices, where)
        self.reservoir.update(values)
        self.total += values.sum(0, dtype=torch.float64)
        self.lowest = torch.minimum(self.lowest, values.min(0).values)
        self.n_images += len(indices)

    def percentiles(self) -> torch.Tensor:
        """(len(PERCENTILES), U): the reservoir's percentiles, with the exact minimum and maximum at the ends."""
        levels = torch.tensor([p / 100 for p in PERCENTILES], device=self.lowest.device)
        percentiles = torch.quantile(self.reservoir.values.t(), levels, dim=1)  # (P, U), linear interpolation
        percentiles[0], percentiles[-1] = self.lowest, self.top.values[:, 0]  # the ends exact, not sampled
        return percentiles

    def locations(self, reading: str) -> torch.Tensor | None:
        """(U, k, 2) (row, column) of each top image's spatial maximum for ``reading="max"`` on a conv layer."""
        if reading != "max" or self.map_size is None:
            return None
        w = self.map_size[1]
        locations = torch.stack([self.top.where // w, self.top.where % w], dim=-1).cpu()
        locations[self.top.where < 0] = -1
        return locations


def _files(data: str | os.PathLike | Sequence[Path], limit: int | None) -> tuple[list[Path], list[Path]]:
    """The images of ``data`` (at most ``limit``, spread over the sorted list) and the entries skipped while
    listing a folder (FIFOs, devices, dangling links)."""
    not_files: list[Path] = []
    files = list_images(data, skipped=not_files) if isinstance(data, (str, os.PathLike)) else [Path(f) for f in data]
    if not files:
        raise DgnamError("no images given")
    return spread(files, limit), not_files


def _stream(model: Model, layer: str, files: list[Path], units: Sequence[int] | None, *, k: int, reading: str,
            position: tuple[int, int] | None, batch_size: int, device: torch.device, workers: int, progress: bool,
            amp: bool, reservoir: int, skipped: list[Path]) -> _UnitStats | None:
    """The pass itself: every readable image of ``files`` through ``model`` once, merged into the unit statistics
    (None when no image could be read); unreadable files are appended to ``skipped``."""
    stats: _UnitStats | None = None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")
    bar = tqdm(total=len(files), disable=not progress, unit="img", leave=False)
    try:
        # eval_mode, not a saved model.training: a Model wrapper is in training mode while its network is not.
        with eval_mode(model), torch.inference_mode():
            for images, indices, ok in _batches(files, model.input_size, batch_size, workers):
                bar.update(len(indices))
                if not ok.all():
                    skipped += [files[i] for i in indices[~ok].tolist()]
                    images, indices = images[ok], indices[ok]
                if not len(indices):
                    continue
                images = images.to(device, non_blocking=True).float().div_(255)
                with autocast:
                    act = model.layout(layer).canonical(model.run(images, [layer])[layer], layer)
                if stats is None:  # the layer's size is known at the first batch
                    stats = _UnitStats(act, units, layer, k, batch_size, reservoir, device)
                values, where = read_units(act, stats.unit_index, reading, position)
                finite = torch.isfinite(values).all(1)
                if not finite.all():  # at the first such batch: NaN sorts above every number, a result is garbage
                    first = files[int(indices[~finite.cpu()][0])]
                    raise DgnamError(f"{non_finite_cause(model, layer)} (first on '{first}')")
                stats.update(values, indices.to(device), where)
    finally:
        bar.close()
    return stats


def dataset_examples(model: torch.nn.Module | Model, layer: str, data: str | os.PathLike | Sequence[Path],
                     units: Sequence[int] | None = None, *, k: int = 9, reading: str = "max",
                     position: tuple[int, int] | None = None, batch_size: int = 256, device: str | torch.device = "cpu",
                     workers: int = 0, limit: int | None = None, progress: bool = False, amp: bool = False,
                     reservoir: int = RESERVOIR) -> DatasetExamples:
    """The top-``k`` images of ``data`` for every unit of ``layer`` (all units by default), in one pass.

    ``data`` is a folder (ImageFolder tree or flat) or a list of files; ``limit`` takes at most that many,
    spread over the whole sorted list. Images are resized to the model's input size. A conv unit is
    read as its channel's spatial maximum (``reading="max"``, the location is kept), at ``position``
    (``reading="position"``, default the centre) or as the spatial mean (``"mean"``). An unreadable
    image is skipped and listed in ``skipped``.

    Example::

        ex = dgnam.examples.dataset_examples(model, "layer4", "data/val", k=9)
        ex.top_files(0)      # unit 0's nine strongest images
    """
    model = as_model(model)
    if k < 1:
        raise DgnamError(f"k must be >= 1, got {k}")
    if batch_size < 1:
        raise DgnamError(f"batch size must be >= 1, got {batch_size}")
    if model.input_size is None:
        raise DgnamError("the model's input size is unknown; set model.input_size (CLI: --input-size)")
    device = checks.resolve_device(device)
    size = model.input_size
    checks.check_fits(checks.image_batch_bytes(batch_size, size), f"a batch of {batch_size} images of {size}x{size} "
                      f"pixels", "batch_size (CLI: --data-batch-size) or the model's input size", device)
    if units is not None:  # before the pass, and before range(10**9) becomes a list
        units = units if hasattr(units, "__len__") else checks.indices(units)
        _check_top_k(max(len(units), 1), k, batch_size, reservoir, device)
    files, skipped = _files(data, limit)  # a folder's non-files are counted as skipped
    model.to(device)
    start = time.time()
    stats = _stream(model, layer, files, units, k=k, reading=reading, position=position, batch_size=batch_size,
                    device=device, workers=workers, progress=progress, amp=amp, reservoir=reservoir, skipped=skipped)
    if stats is None:
        raise DgnamError(f"none of the {len(files)} images could be read ({len(skipped)} skipped)")
    map_size = stats.map_size
    return DatasetExamples(layer=layer, units=stats.unit_index.tolist(), files=files, values=stats.top.values.cpu(),
                           indices=stats.top.indices.cpu(), locations=stats.locations(reading), map_size=map_size,
                           percentiles=stats.percentiles().cpu(), mean=(stats.total / stats.n_images).float().cpu(),
                           n_images=stats.n_images, skipped=skipped,
                           reading=reading if map_size is not None else "unit",
                           position=tuple(position) if position is not None and map_size is not None else None,
                           seconds=time.time() - start,
                           settings={"k": k, "batch_size": batch_size, "reservoir": reservoir, "limit": limit})
