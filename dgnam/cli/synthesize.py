"""``dgnam synthesize`` and ``dgnam synthesize-sharded``: images that maximise units of a model.

Both run one path. ``dgnam synthesize-sharded`` takes every argument of ``dgnam synthesize``.
Launched with ``torchrun --nproc_per_node N -m dgnam synthesize-sharded ...`` it splits the units into
N contiguous blocks, each process synthesises its block (always with ``--fixed-batch``, so an image
does not depend on which process made it), and rank 0 merges everything into one folder with one
``manifest.json`` of the same schema, in the same order, as the single-process command. Launched
plainly it is ``dgnam synthesize --fixed-batch`` with the CUDA speed settings below; ``dgnam
synthesize`` itself is that one-process case without them.
On CUDA: bf16 autocast (``--fp32`` turns it off), channels_last (``--no-channels-last``) and, opt-in,
``--compile``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dgnam.cli import common
from dgnam.cli import validate as check
from dgnam.cli.prepare import Run, check_can_seed, prepare
from dgnam.engine.objectives import channel, unit
from dgnam.engine.param import (
    PARAMETRIZATIONS,
    Parametrization,
    SeededCode,
    default_steps,
    make_param,
    top_images,
)
from dgnam.engine.preferred import baseline_transforms, visualize
from dgnam.engine.render import Result
from dgnam.errors import DgnamError
from dgnam.grid import labelled_grid, save_png
from dgnam.images import load_images, to_rgb
from dgnam.io import atomic_write_json, discard_staging, publish_directory, safe_name, staging_directory, writing
from dgnam.nets.model import Model, eval_mode
from dgnam.prior.generator import UpconvGenerator
from dgnam.prior.sampler import load_code_sampler
from dgnam.scale.accel import speed_up
from dgnam.scale.distributed import (
    all_gather,
    broadcast,
    launched_world_size,
    on_every_rank,
    process_group,
    rank_zero_first,
    shard,
)

# grid.png of a sharded run shows at most this many images (the first ones, in manifest order): a grid
# of every unit of an ImageNet layer would be gigabytes. Smaller runs get the same grid as `dgnam synthesize`.
GRID_LIMIT = 400
DATA_LIMIT = 2000  # real images read from --data by default: enough for each unit's max and top seeds


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``synthesize`` and ``synthesize-sharded`` (which takes every argument of ``synthesize``)."""
    s = sub.add_parser("synthesize", help="images that maximise units of a model",
                       description="Synthesise images that maximise chosen units. With no arguments: the shipped "
                                   "CIFAR-10 classifier's 10 class logits through the shipped generator.")
    common.add_model_args(s)
    common.add_unit_args(s, "e.g. 0-9,15 (default: all units of the layer, at most 10)")
    s.add_argument("--param", choices=list(PARAMETRIZATIONS), default="dgn", help="image parametrisation")
    common.add_generator_arg(s)
    s.add_argument("--init-sampler", default=None, metavar="SAMPLER",
                   help="start each image from a code sampler's code for its seed (dgn only; default: h ~ N(0, 1))")
    s.add_argument("--init-data", default=None, metavar="DIR",
                   help="dgn only: image-seeded starts: restart r of a unit starts as its r-th strongest image in DIR "
                        "(at most --data-limit, spread over the folder) and is changed through the prior "
                        "(implies --data DIR unless --data is given)")
    s.add_argument("--target", type=check.activation_target, default=None,
                   help="activation target: push each unit up to 12.5, 1.5x its max or its p99 over --data, no "
                        "further (the remaining steps only keep the code natural)")
    common.add_synthesis_args(s, restarts=2, restarts_help="images per unit (seeds seed, seed+1, ...)", steps=None)
    s.add_argument("--data", default=None,
                   help="folder of real images: report activations relative to each unit's max on them")
    common.add_data_limit_arg(s, DATA_LIMIT)
    common.add_output_args(s, synthesis=True)
    s.set_defaults(handler=cmd_synthesize, validate=validate)

    sharded = sub.add_parser("synthesize-sharded", parents=[s], add_help=False,
                             help="synthesize across processes/GPUs (launch with torchrun); one merged manifest",
                             description="Same arguments and output as `dgnam synthesize`, with the units split across "
                                         "the processes torchrun starts (gloo on CPU, NCCL on CUDA); --fixed-batch is "
                                         "always on, so the merged result equals a single-process run.")
    sharded.add_argument("--no-channels-last", action="store_true", help="keep NCHW weights on CUDA")
    sharded.add_argument("--compile", action="store_true", help="torch.compile the generator (CUDA only)")
    # Not set_defaults(fixed_batch=True): `parents=` shares the action objects, and set_defaults would
    # change the default of `dgnam synthesize --fixed-batch` too (it padded every default run to 64 rows).
    sharded.set_defaults(handler=cmd_synthesize_sharded)  # validate: inherited from synthesize


def validate(args: argparse.Namespace) -> None:
    """The checks of ``args`` alone, before any model is loaded (see :mod:`dgnam.cli.validate`)."""
    if args.steps is None:  # the start's own default: seeded runs stay near their seeds in few steps
        args.steps = default_steps(args.init_data is not None)
    check.model_args(args)
    check.at_least(args, 1, "--steps", "--restarts", "--batch-size")
    check.seed(args.seed, args.restarts)
    check.unit_args(args)
    check.generator_args(args)
    check.existing_file(args.init_sampler, "--init-sampler")
    if args.init_data is not None:
        if args.param != "dgn":
            raise DgnamError(f"--init-data seeds a generator's code (--param dgn), not {args.param!r}; drop it")
        if args.init_sampler:
            raise DgnamError("--init-data and --init-sampler both choose the start; pass one")
        check.existing_folder(args.init_data, "--init-data")
        args.data = args.data or args.init_data
    check.data_limit(args, DATA_LIMIT)
    check.existing_folder(args.data, "--data")
    check.synthesis_size(args)
    check.output(args.out)


def cmd_synthesize(args: argparse.Namespace) -> int:
    if launched_world_size() > 1:  # every rank would do the whole job and race on --out
        raise DgnamError("`dgnam synthesize` runs on one process; under torchrun use `dgnam synthesize-sharded`")
    return run(args, sharded=False)


def cmd_synthesize_sharded(args: argparse.Namespace) -> int:
    args.fixed_batch = True  # a row's image must not depend on which rank made it or what shared its batch
    return run(args, sharded=True)


@dataclass
class Plan:
    """What every process agrees on before synthesising: the prepared ``run`` (model, generator, units, code
    prior), the parametrisation, the class names (output layer only), the real images of ``--data`` (or
    None) and the CUDA settings."""

    run: Run
    param: Parametrization
    classes: list[str]
    real_images: torch.Tensor | None
    seeded: bool  # --init-data: each row starts from its unit's top real images (SeededCode)
    amp: bool
    speed: dict[str, bool]  # synthesize-sharded's CUDA speed settings


def run(args: argparse.Namespace, sharded: bool) -> int:
    """Synthesise ``args``' units on every process torchrun started (one, launched plainly), each writing its
    images into one staging folder, which rank 0 completes with grid.png and manifest.json and renames."""
    start = time.time()
    with process_group(check.resolve_device(args.device)) as ranks:
        plan = rank_zero_first(lambda: prepare_plan(args, ranks.device, sharded), ranks)
        place = on_every_rank(lambda: _place(args, plan) if ranks.is_main else None, ranks)
        out_dir, staging = broadcast(place, ranks)
        try:
            mine = shard(plan.run.units, ranks)
            done = on_every_rank(lambda: synthesize_units(args, plan, mine, out_dir, staging, ranks.device,
                                                          progress=not args.quiet and ranks.is_main), ranks)
            runs = all_gather(done, ranks)  # every rank's images are on disk once this returns
            # seconds: of the whole sharded run (loading and merging too), of synthesis alone in a plain one
            seconds = time.time() - start if sharded else runs[0]["seconds"]
            published = on_every_rank(lambda: publish(args, plan, runs, out_dir, staging, ranks.device, seconds,
                                                       sharded) if ranks.is_main else None, ranks)
        except BaseException:
            if ranks.is_main:
                discard_staging(staging)
            raise
    if ranks.is_main:
        entries, out_dir = published
        print_summary(entries)
        if sharded:
            common.wrote(f"{len(entries)} images from {ranks.world_size} process(es), grid.png and manifest.json",
                         out_dir, time.time() - start)
        else:
            common.wrote(f"{len(entries)} images, grid.png and manifest.json", out_dir, seconds)
    return 0


def prepare_plan(args: argparse.Namespace, device: torch.device, sharded: bool) -> Plan:
    """The loading and checks before synthesis, run on every rank (rank 0 first, see the caller)."""
    run = prepare(args, device, seeded=lambda generator: _seeded(args, generator))
    model, generator = run.model, run.generator
    _check_reading(args, model)
    real_images = (load_images(common.image_files(Path(args.data), args.data_limit), model.input_size)
                   if args.data else None)
    sampler = load_code_sampler(args.init_sampler, device) if args.init_sampler else None
    param = make_param(args.param, generator, model.input_size, sampler)
    speed = speed_up(device, models=[model], generator=generator, channels_last=not args.no_channels_last,
                     compile_generator=args.compile) if sharded else {}
    return Plan(run, param, model.classes if args.layer == "output" else [], real_images, args.init_data is not None,
                amp=device.type == "cuda" and not args.fp32, speed=speed)


def _seeded(args: argparse.Namespace, generator: UpconvGenerator | None) -> bool:
    """``--init-data``: image-seeded starts, which the generator must be able to read a seed's code for."""
    if args.init_data is None:
        return False
    check_can_seed(generator, "--init-data", "use a generator trained by dgnam, or drop --init-data")
    return True


def _check_reading(args: argparse.Namespace, model: Model) -> None:
    """``--position``, ``--token`` and ``--spatial-mean`` fit the layer's layout: checked once on one zero
    image, before any synthesis."""
    if args.spatial_mean and (args.position is not None or args.token is not None):
        raise DgnamError("--spatial-mean reads every position; drop --position/--token")
    zeros = torch.zeros(1, 3, model.input_size, model.input_size, device=next(model.buffers()).device)
    with torch.no_grad():
        act = model.run(zeros, [args.layer])[args.layer]
    model.layout(args.layer).read(act, position=args.position, token=args.token, mean=args.spatial_mean,
                                  layer=args.layer)


def _place(args: argparse.Namespace, plan: Plan) -> tuple[Path, Path]:
    """Rank 0: the final folder and a hidden sibling every rank writes into (renamed when complete)."""
    out_dir = common.fresh_out_dir(args.out, plan.run.model.name).resolve()
    return out_dir, staging_directory(out_dir)


def synthesize_units(args: argparse.Namespace, plan: Plan, units: list[int], out_dir: Path, staging: Path,
                     device: torch.device, progress: bool) -> dict[str, Any]:
    """Synthesise ``units`` (this rank's), write their PNGs into ``staging``, return their manifest entries."""
    if not units:  # more ranks than units
        return {"entries": [], "engine": None, "seconds": 0.0}
    real_values = _real_values(args, plan, units, device) if plan.real_images is not None else None
    param = _seeded_param(args, plan, real_values) if plan.seeded else plan.param
    target = args.target.levels(real_values) if args.target is not None else None
    result = visualize(plan.run.model, units, layer=args.layer, generator=plan.run.generator, param=param,
                       restarts=args.restarts, seed=args.seed, steps=args.steps, position=args.position,
                       token=args.token, spatial_mean=args.spatial_mean,
                       transforms=[] if plan.param.has_prior else baseline_transforms(), batch_size=args.batch_size,
                       device=device, amp=plan.amp, progress=progress, unit_names=plan.classes or None,
                       fixed_batch=args.fixed_batch, code_prior=plan.run.code_prior, code_encoder=plan.run.code_encoder,
                       target=target)
    relative = _relative_to_real(units, result, real_values) if real_values is not None else None
    entries = [manifest_entry(args.layer, result, i, relative) for i in range(len(result))]
    with writing(out_dir):
        for image, entry in zip(result.images, entries):
            save_png(image, staging / entry["file"])
    return {"entries": entries, "engine": result.settings, "seconds": result.seconds}


def _real_values(args: argparse.Namespace, plan: Plan, units: list[int], device: torch.device) -> torch.Tensor:
    """(N, U): what the objective maximises (each unit as it is read) on each real image of ``--data``."""
    objective = (channel(args.layer, units, model=plan.run.model) if args.spatial_mean else
                 unit(args.layer, units, model=plan.run.model, position=args.position, token=args.token))
    out = []
    with torch.no_grad(), eval_mode(plan.run.model):
        for start in range(0, len(plan.real_images), args.batch_size):
            batch = plan.real_images[start:start + args.batch_size].to(device)
            act = plan.run.model.run(batch, [args.layer])[args.layer]
            out.append(objective.read_all(act).cpu())
    return torch.cat(out)


def _seeded_param(args: argparse.Namespace, plan: Plan, real_values: torch.Tensor) -> SeededCode:
    """Image-seeded starts: restart r of unit u starts as the real image with u's r-th highest value."""
    seeds = top_images(plan.real_images, real_values, args.restarts, "lower --restarts or add images to --init-data")
    size = plan.run.generator.image_size
    if seeds.shape[-1] != size:
        seeds = F.interpolate(seeds, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return SeededCode(plan.run.generator, seeds.clamp(0, 1), plan.run.code_encoder, bound_k=plan.param.bound_k)


def _relative_to_real(units: list[int], result: Result, real_values: torch.Tensor) -> list[float | None]:
    """Each image's activation over its unit's max on the real images of ``--data``; None where the unit
    never fires on them (a ratio to <= 0 means nothing)."""
    unit_max = dict(zip(units, real_values.max(0).values.tolist()))
    return [v / unit_max[u] if unit_max[u] > 0 else None for u, v in zip(result.extra["unit"], result.values.tolist())]


def manifest_entry(layer: str, result: Result, i: int, relative: list[float | None] | None) -> dict[str, Any]:
    """The manifest's record of image ``i`` of ``result`` (its PNG is ``file`` in the run folder), with its
    activation relative to the real images' max when ``--data`` gave them (``relative``)."""
    u, r, s = result.extra["unit"][i], result.extra["restart"][i], result.seeds[i]
    entry = {"file": f"images/{safe_name(layer)}_unit{u:04d}_restart{r}_seed{s}.png", "layer": layer, "unit": u,
             "restart": r, "seed": s, "activation": float(result.values[i]), "label": result.labels[i],
             "start_activation": float(result.history[0, i])}
    if relative is not None:
        entry["activation_relative_to_real_max"] = relative[i]
    return entry


def run_settings(args: argparse.Namespace, plan: Plan, device: torch.device, seconds: float,
                 engine: dict | None) -> dict[str, Any]:
    """The manifest's ``settings``: everything that reproduces the run."""
    generator = plan.run.generator
    return {"command": args.command, "model": plan.run.names["model"], "model_name": plan.run.model.name,
            "generator": plan.run.names["generator"],
            "generator_metadata": generator.metadata if generator else None,
            "layer": args.layer, "layout": str(plan.run.model.layout(args.layer)), "units": plan.run.units,
            "position": list(args.position) if args.position else None, "token": args.token,
            "spatial_mean": args.spatial_mean,
            "param": args.param, "init_sampler": args.init_sampler, "init_data": args.init_data,
            "target": str(args.target) if args.target is not None else None, "code_prior": plan.run.code_prior,
            "steps": args.steps, "restarts": args.restarts, "seed": args.seed, "batch_size": args.batch_size,
            "fixed_batch": args.fixed_batch, "device": str(device), **plan.run.model.preprocessing(),
            "generator_image_size": generator.image_size if generator else None, "data": args.data,
            **({"data_limit": args.data_limit} if args.data else {}),  # which images are read, when any are
            **common.versions(), "seconds": round(seconds, 2),
            "engine": engine}


def publish(args: argparse.Namespace, plan: Plan, runs: list[dict[str, Any]], out_dir: Path, staging: Path,
            device: torch.device, seconds: float, sharded: bool) -> tuple[list[dict[str, Any]], Path]:
    """Rank 0: grid and manifest over every rank's images, then the rename that publishes the run; returns the
    manifest's entries and where the run went (the default ``--out`` gets a suffix if another run took it)."""
    entries = [entry for run in runs for entry in run["entries"]]  # rank order = the single-process order
    shown = entries[:GRID_LIMIT] if sharded else entries
    with writing(out_dir):
        pixels = []
        for entry in shown:
            with Image.open(staging / entry["file"]) as im:
                pixels.append(np.asarray(to_rgb(im)))
        # PNGs hold the images rounded to 8 bits, which is also all the grid keeps of them.
        images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255
        captions = [f"{e['label']} {e['activation']:.1f}" for e in shown]
        ncol = args.restarts * min(len(plan.run.units), max(1, 10 // args.restarts))
        save_png(labelled_grid(images, captions, ncol=ncol), staging / "grid.png")
        settings = run_settings(args, plan, device, seconds,
                                engine=next((run["engine"] for run in runs if run["engine"] is not None), None))
        if sharded:
            settings.update({"world_size": len(runs),
                             "units_per_rank": [len({e["unit"] for e in run["entries"]}) for run in runs],
                             "rank_seconds": [round(run["seconds"], 2) for run in runs], "amp": plan.amp,
                             **plan.speed, "grid_images": len(shown)})
        atomic_write_json({"settings": settings, "images": entries}, staging / "manifest.json")
        out_dir = publish_directory(staging, out_dir, unique=args.out is None)
    return entries, out_dir


def print_summary(entries: list[dict[str, Any]]) -> None:
    """Per unit: mean and max activation (and the max relative to real images, with ``--data``)."""
    by_unit: dict[int, list[dict[str, Any]]] = {}
    for entry in entries:
        by_unit.setdefault(entry["unit"], []).append(entry)
    with_real = any("activation_relative_to_real_max" in e for e in entries)
    rows = []
    for group in by_unit.values():
        acts = [e["activation"] for e in group]
        row = [group[0]["label"], f"{sum(acts) / len(acts):.2f}", f"{max(acts):.2f}"]
        if with_real:
            ratios = [e["activation_relative_to_real_max"] for e in group
                      if e["activation_relative_to_real_max"] is not None]
            row.append(f"{max(ratios):.2f}" if ratios else "n/a")
        rows.append(row)
    common.print_table(rows, ["unit", "mean act", "max act"] + (["max / real max"] if with_real else []))

