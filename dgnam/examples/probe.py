"""Probe a layer: each unit's strongest real images (:func:`dataset_examples`) beside DGN-AM's synthesised
images of the same units (one batched :func:`dgnam.visualize`), shown inline in Jupyter, with ``show()``,
or as a static gallery site (:meth:`Probe.save`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from dgnam import checks
from dgnam.engine.param import GeneratorCode, Parametrization, SeededCode, default_steps, make_param
from dgnam.engine.preferred import baseline_transforms, visualize
from dgnam.engine.render import Result
from dgnam.errors import DgnamError
from dgnam.examples.topk import DatasetExamples, dataset_examples, read_units
from dgnam.gallery import write_site
from dgnam.grid import html_card, labelled_grid, png_bytes, show_image, to_uint8
from dgnam.images import load_image, to_rgb
from dgnam.io import write_directory
from dgnam.nets.model import OUTPUT, Model, as_model, eval_mode
from dgnam.prior.generator import UpconvGenerator

INLINE_UNITS = 16  # units drawn by the inline view; the gallery shows all of them
THUMB = 128  # the gallery's real images are at most this many pixels a side


@dataclass
class Probe:
    """Dataset examples and synthesised images of the same units of one layer.

    Attributes:
        examples: the top-k real images and activation statistics per unit.
        synthesis: DGN-AM's images (``restarts`` per unit, unit-major), or None.
        synthesis_values: (N,) each synthesised image's activation read as ``examples`` reads real images
            (e.g. the channel's spatial max), so it compares with the real images' values.
        baseline, baseline_values: the same for an optional baseline (e.g. Fourier), or None.
        labels: a name per unit (class names on the output layer, else ``layer:unit``).
    """

    model_name: str
    examples: DatasetExamples
    synthesis: Result | None
    synthesis_values: torch.Tensor | None
    labels: list[str]
    baseline: Result | None = None
    baseline_values: torch.Tensor | None = None
    settings: dict = field(default_factory=dict)

    @property
    def layer(self) -> str:
        return self.examples.layer

    @property
    def units(self) -> list[int]:
        return self.examples.units

    def _rows(self, result: Result | None, values: torch.Tensor | None, u: int) -> list[tuple[int, float]]:
        """(row in ``result``, activation) of unit ``u``'s images, best first."""
        if result is None:
            return []
        rows = [(i, float(values[i])) for i, unit in enumerate(result.extra["unit"]) if unit == u]
        return sorted(rows, key=lambda r: -r[1])

    def ratios(self) -> list[float | None]:
        """Per unit: its best synthesised image's activation over its real maximum (None without synthesis or
        when the unit never fires on the data: a ratio to <= 0 means nothing)."""
        out = []
        for row, u in enumerate(self.units):
            real_max = float(self.examples.unit_max[row])
            synth = self._rows(self.synthesis, self.synthesis_values, u)
            out.append(synth[0][1] / real_max if synth and real_max > 0 else None)
        return out

    def box(self, row: int, col: int) -> list[float] | None:
        """Where the ``col``-th top image of unit row ``row`` peaks: (top, left, height, width) as fractions of
        the image (the layer's map cell, scaled to the image; not the receptive field), or None."""
        ex = self.examples
        if ex.locations is None:
            return None
        y, x = ex.locations[row, col].tolist()
        h, w = ex.map_size
        return [y / h, x / w, 1 / h, 1 / w]

    # --- inline view ------------------------------------------------------------------------------
    def to_image(self, max_units: int = INLINE_UNITS, tile: int | None = None) -> Image.Image:
        """One row per unit (the first ``max_units``): synthesised images, then the top-k real images with
        their peak boxed; captions give the activations."""
        ex = self.examples
        restarts = max((len(self._rows(self.synthesis, self.synthesis_values, u)) for u in self.units), default=0)
        size = self.settings.get("input_size") or 32
        tiles, captions = [], []
        for row, u in enumerate(self.units[:max_units]):
            synth = self._rows(self.synthesis, self.synthesis_values, u)
            for j in range(restarts):
                if j < len(synth):
                    tiles.append(self.synthesis.images[synth[j][0]])
                    captions.append(f"{self.labels[row]} {synth[j][1]:.1f}")
                else:
                    tiles.append(torch.ones(3, size, size))
                    captions.append("")
            for col in range(ex.k):
                index = int(ex.indices[row, col])
                if index < 0:
                    tiles.append(torch.ones(3, size, size))
                    captions.append("")
                    continue
                tiles.append(_with_box(load_image(ex.files[index], size), self.box(row, col)))
                captions.append(f"real {float(ex.values[row, col]):.1f}")
        images = torch.stack([t if t.shape[-1] == size else torch.nn.functional.interpolate(t[None], size)[0]
                              for t in tiles])
        return labelled_grid(images, captions, ncol=restarts + ex.k, tile=tile)

    def _repr_png_(self) -> bytes:
        return png_bytes(self.to_image())

    def _repr_html_(self) -> str:
        ex = self.examples
        shown = min(len(self.units), INLINE_UNITS)
        more = f" (first {shown} shown; .save(folder) writes the gallery of all)" if shown < len(self.units) else ""
        skipped = f" ({len(ex.skipped)} unreadable, skipped)" if ex.skipped else ""
        return html_card("dgnam probe", f"{self.model_name} · {self.layer}: {len(self.units)} units{more}; each row: "
                         f"synthesised images, then the top {ex.k} of {ex.n_images} real images{skipped}.",
                         self.to_image(), f"probe of {self.layer}")

    def show(self, max_units: int = INLINE_UNITS) -> Image.Image:
        """Display the inline view: in the notebook under IPython, else in the system's image viewer."""
        return show_image(self, self.to_image(max_units))

    # --- the gallery ------------------------------------------------------------------------------
    def manifest(self) -> tuple[dict[str, Any], dict[str, Image.Image]]:
        """What the gallery shows, as data (``manifest.json``), and the images it names (path -> picture)."""
        ex = self.examples
        images: dict[str, Image.Image] = {}
        real_files: dict[int, str] = {}
        ext = self.settings.get("thumbnail_format", "png")

        def real(index: int) -> str:
            if index not in real_files:  # one thumbnail per image, however many units share it
                real_files[index] = f"images/real/{index:06d}.{ext}"
                with Image.open(ex.files[index]) as im:
                    im = to_rgb(im)
                    im.thumbnail((THUMB, THUMB), Image.BICUBIC)
                    images[real_files[index]] = im.copy()
            return real_files[index]

        def synthesised(result: Result | None, values: torch.Tensor | None, u: int, folder: str, real_max: float):
            items = []
            for i, value in self._rows(result, values, u):
                path = f"images/{folder}/unit{u:05d}_seed{result.seeds[i]}.png"
                images[path] = Image.fromarray(to_uint8(result.images[i:i + 1])[0])
                items.append({"file": path, "seed": result.seeds[i], "restart": result.extra["restart"][i],
                              "activation": value, "objective": float(result.values[i]),
                              "relative": value / real_max if real_max > 0 else None})
            return items

        units = []
        for row, (u, ratio) in enumerate(zip(self.units, self.ratios())):
            real_max = float(ex.unit_max[row])
            top = [{"file": real(int(i)), "source": "/".join(ex.files[int(i)].parts[-2:]),
                    "activation": float(ex.values[row, col]), "box": self.box(row, col)}
                   for col, i in enumerate(ex.indices[row].tolist()) if i >= 0]
            units.append({"unit": u, "label": self.labels[row], "ratio": ratio, "max": real_max,
                          "mean": float(ex.mean[row]), "percentiles": ex.percentiles[:, row].tolist(),
                          "synthesized": synthesised(self.synthesis, self.synthesis_values, u, "synth", real_max),
                          "baseline": synthesised(self.baseline, self.baseline_values, u, "baseline", real_max),
                          "top": top})
        manifest = {"model": self.model_name, "layer": self.layer, "k": ex.k, "reading": ex.reading,
                    "position": list(ex.position) if ex.position else None,
                    "map_size": list(ex.map_size) if ex.map_size else None, "n_images": ex.n_images,
                    "skipped_count": len(ex.skipped), "skipped": [str(f) for f in ex.skipped],
                    "percentile_levels": list(ex.percentile_levels), "settings": self.settings,
                    "dataset_seconds": round(ex.seconds, 2),
                    "synthesis_seconds": round(self.synthesis.seconds, 2) if self.synthesis else None,
                    "units": units}
        return manifest, images

    def save(self, out: str | os.PathLike, unique: bool = False) -> Path:
        """Write the gallery site to ``out`` (new or empty; all or nothing) and return where it went; open
        ``out/index.html`` in a browser. ``unique``: if another writer takes ``out`` meanwhile, write to
        ``out-2``, ``out-3`` ... instead of failing (for a name chosen for the user, like the CLI's default)."""
        out = Path(out)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise DgnamError(f"'{out}' exists and is not empty; choose a new folder (a gallery never overwrites)")
        manifest, images = self.manifest()
        return write_directory(out, lambda staging: write_site(staging, manifest, images), unique)


def _with_box(image: torch.Tensor, box: list[float] | None) -> torch.Tensor:
    """``image`` (3, H, W) with ``box`` (fractions) drawn in red, for the inline view."""
    if box is None:
        return image
    pil = Image.fromarray(to_uint8(image[None])[0])
    h, w = image.shape[-2:]
    top, left, bh, bw = box
    ImageDraw.Draw(pil).rectangle([left * w, top * h, (left + bw) * w - 1, (top + bh) * h - 1], outline=(255, 45, 45))
    return torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float() / 255


def read_images(model: Model, layer: str, images: torch.Tensor, row_units: Sequence[int], reading: str,
                position: tuple[int, int] | None, batch_size: int, device: torch.device) -> torch.Tensor:
    """(N,) each image's value of its own unit (``row_units[i]``), read as the dataset pass reads units."""
    out = []
    units = sorted(set(row_units))
    column = {u: j for j, u in enumerate(units)}
    cols = torch.tensor([column[u] for u in row_units])
    index = torch.tensor(units, device=device)
    with torch.no_grad(), eval_mode(model):  # as synthesis read them: running statistics, no dropout
        for start in range(0, len(images), batch_size):
            act = model.run(images[start:start + batch_size].to(device), [layer])[layer]
            values, _ = read_units(model.layout(layer).canonical(act, layer), index, reading, position)
            out.append(values.cpu().gather(1, cols[start:start + batch_size, None]).squeeze(1))
    return torch.cat(out)


def _seeded(param: str | Parametrization, restarts: int, steps: int | None, k: int,
            init: str | None, code_encoder: Model | None) -> bool:
    """Whether DGN-AM starts from each unit's top images (``init``, default: with an encoder), checked."""
    if init is None:
        init = "data" if code_encoder is not None else "noise"
    if init not in ("data", "noise"):
        raise DgnamError(f"init must be 'data' (the unit's top images) or 'noise', got {init!r}")
    seeded = steps != 0 and init == "data" and (
        param == "dgn" if isinstance(param, str) else isinstance(param, GeneratorCode))
    if seeded:
        if code_encoder is None:
            raise DgnamError("seeded starts (init='data') read each seed's code with the generator's encoder: pass "
                             "code_encoder=, or init='noise'")
        if restarts > k:
            raise DgnamError(f"seeded starts use a unit's top-k images: restarts ({restarts}) must be <= k ({k})")
    return seeded


def _parametrizations(model: Model, param: str | Parametrization, baseline: str | None,
                      generator: UpconvGenerator | None, units: Sequence[int] | None, restarts: int, steps: int,
                      batch_size: int, device: torch.device) -> list[Parametrization]:
    """The synthesis's parametrisation and the baseline's (none when ``steps`` is 0), built before the dataset
    pass, so a synthesis that cannot fit is refused before any compute."""
    params = []
    if steps > 0:
        params.append(make_param(param, generator, model.input_size) if isinstance(param, str) else param)
        if baseline:
            params.append(make_param(baseline, generator, model.input_size))
    rows = (len(units) if units is not None and hasattr(units, "__len__") else 1) * restarts
    for parametrization in params:
        checks.check_fits(checks.synthesis_bytes(rows, steps, parametrization.image_size, batch_size),
                          f"synthesising {rows} images of {steps} steps", "steps, restarts or the number of units",
                          device)
    return params


def _seeded_param(base: GeneratorCode, examples: DatasetExamples, restarts: int,
                  code_encoder: Model) -> SeededCode:
    """``base`` started from the data: restart r of unit u starts as u's r-th strongest real image."""
    if int((examples.indices[:, :restarts] < 0).sum()):
        raise DgnamError(f"seeded starts need {restarts} real image(s) per unit but the data gave "
                         f"{examples.n_images}; lower restarts or add images")
    seeds = torch.stack([load_image(examples.top_files(row)[r], base.image_size)
                         for row in range(len(examples.units)) for r in range(restarts)])
    return SeededCode(base.generator, seeds, code_encoder, lower_bound=base.lower_bound,
                      bound_scale=base.bound_scale, bound_k=base.bound_k)


def probe(model: nn.Module | Model, layer: str = OUTPUT, units: Sequence[int] | None = None, *,
          data: str | os.PathLike | Sequence[Path], generator: UpconvGenerator | None = None,
          param: str | Parametrization = "dgn", restarts: int = 1, steps: int | None = None, seed: int = 0,
          k: int = 9, init: str | None = None,
          reading: str = "max", position: tuple[int, int] | None = None, baseline: str | None = None,
          batch_size: int = 64, data_batch_size: int = 256, device: str | torch.device = "cpu", amp: bool = False,
          workers: int = 0, limit: int | None = None, progress: bool = False, code_prior: float = 0.0,
          code_encoder: nn.Module | Model | None = None, fixed_batch: bool = False,
          unit_names: Sequence[str] | None = None, thumbnail_format: str = "png") -> Probe:
    """Probe ``units`` of ``layer`` (all by default): the top-``k`` images of ``data`` per unit, in one
    streaming pass, and ``restarts`` synthesised images per unit, in one batched synthesis.

    Conv units are read on the data as the channel's spatial maximum (``reading="max"``, the peak is
    boxed), at ``position`` (``"position"``) or as the mean (``"mean"``); DGN-AM maximises the unit at
    ``position`` (default: the centre, as in the paper), and each synthesised image is then read the same
    way as the real ones, so "relative to the real max" compares like with like. ``baseline="fourier"``
    (or ``"pixel"``) adds that parametrisation's images beside DGN-AM's. ``steps=0`` skips synthesis; None: 50
    seeded, the paper's 200 from noise.
    ``init="data"`` (DGN-AM): restart r of a unit starts as the unit's r-th top image and is changed through
    the prior (:class:`~dgnam.engine.param.SeededCode`; needs ``code_encoder``, the encoder the generator
    inverts, and ``restarts <= k``); ``"noise"``: the paper's start, h ~ N(0, 1); None: ``"data"`` when
    ``code_encoder`` is given, else ``"noise"``.

    Example::

        p = dgnam.probe(net, "layer4", range(64), data="data/val", generator=G)
        p                      # inline in Jupyter; p.show() elsewhere
        p.save("probe-layer4") # the gallery: open probe-layer4/index.html
    """
    model = as_model(model)
    if restarts < 1:
        raise DgnamError(f"restarts must be >= 1, got {restarts}")
    if thumbnail_format not in ("png", "jpg"):
        raise DgnamError(f"thumbnail_format must be png or jpg, got {thumbnail_format!r}")
    device = checks.resolve_device(device)
    checks.seed(seed, restarts)
    seeded = _seeded(param, restarts, steps, k, init, code_encoder)
    if steps is None:
        steps = default_steps(seeded)
    params = _parametrizations(model, param, baseline, generator, units, restarts, steps, batch_size, device)
    examples = dataset_examples(model, layer, data, units, k=k, reading=reading, position=position,
                                batch_size=data_batch_size, device=device, workers=workers, limit=limit,
                                progress=progress, amp=amp)
    units = examples.units
    names = list(unit_names) if unit_names is not None else (model.classes if layer == OUTPUT else [])
    labels = [names[u] if u < len(names) else f"{layer}:{u}" for u in units]
    # A spatial unit is synthesised where it is read: at the position, by default the map's centre (a token
    # layer's centre patch, not its CLS token, since the dataset pass reads the patch grid).
    map_size = examples.map_size
    synth_position = (position or (map_size[0] // 2, map_size[1] // 2)) if map_size is not None else None

    by_unit = dict(zip(units, labels))
    label_list = [by_unit.get(u, "") for u in range(max(units) + 1)]  # visualize names unit u by index u
    reading_synth = "max" if examples.reading == "unit" else examples.reading  # fc layers ignore it

    if seeded:
        params[0] = _seeded_param(params[0], examples, restarts, code_encoder)
    # A seeded image is raised where its seed peaks (the cell the gallery boxes), not at the centre: there the
    # seed already drives the unit hardest, so the ratio compares the change with the best real image.
    positions = (examples.locations[:, :restarts].reshape(-1, 2)
                 if seeded and examples.locations is not None and examples.reading == "max" else None)

    # A closure, and probe() longer than most: the two runs share fifteen of probe's arguments unchanged.
    def run(parametrization: Parametrization, prior: float) -> tuple[Result, torch.Tensor]:
        # The generator is the prior; pixel and Fourier images need the usual jitter and blur.
        transforms = [] if parametrization.has_prior else baseline_transforms()
        result = visualize(model, units, layer=layer, generator=generator, param=parametrization,
                           restarts=restarts, seed=seed, steps=steps, position=positions if parametrization is
                           params[0] and positions is not None else synth_position, transforms=transforms,
                           batch_size=batch_size, device=device, amp=amp, progress=progress, unit_names=label_list,
                           fixed_batch=fixed_batch, code_prior=prior, code_encoder=code_encoder)
        return result, read_images(model, layer, result.images, result.extra["unit"], reading_synth, position,
                                   batch_size, device)

    synthesis = values = base = base_values = None
    if params:
        synthesis, values = run(params[0], code_prior)
        if baseline:
            base, base_values = run(params[1], 0.0)
    settings = {"param": param if isinstance(param, str) else param.name, "init": "data" if seeded else "noise",
                "baseline": baseline, "restarts": restarts,
                "steps": steps, "seed": seed, "k": k, "reading": reading,
                "position": list(position) if position else None,
                "batch_size": batch_size, "data_batch_size": data_batch_size, "device": str(device),
                "code_prior": code_prior, "input_size": model.input_size, "data": str(data) if isinstance(
                    data, (str, os.PathLike)) else None, "limit": limit, "thumbnail_format": thumbnail_format}
    return Probe(model_name=model.name, examples=examples, synthesis=synthesis, synthesis_values=values,
                 labels=labels, baseline=base, baseline_values=base_values, settings=settings)
