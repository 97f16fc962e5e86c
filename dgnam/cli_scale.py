"""ImageNet-scale commands: ``import-generator`` and ``synthesize-sharded``.

``dgnam import-generator SRC OUT`` converts the published DeePSiM fc6 generator (a PyTorch port's
state dict) into a dgnam generator file.

``dgnam synthesize-sharded`` takes every argument of ``dgnam synthesize``. Launched with
``torchrun --nproc_per_node N -m dgnam synthesize-sharded ...`` it splits the units into N
contiguous blocks, each process synthesises its block (always with ``--fixed-batch``, so an image
does not depend on which process made it), and rank 0 merges everything into one folder with one
``manifest.json`` of the same schema, in the same order, as the single-process command. Launched
plainly it is ``dgnam synthesize --fixed-batch`` with the CUDA speed settings below.
On CUDA: bf16 autocast (``--fp32`` turns it off), channels_last (``--no-channels-last``) and, opt-in,
``--compile``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import dgnam
import dgnam.cli as cli  # attributes are read at call time: dgnam.cli imports this module while loading
from dgnam.errors import DgnamError

# grid.png shows at most this many images (the first ones, in manifest order): a grid of every
# unit of an ImageNet layer would be gigabytes. Smaller runs get the same grid as `dgnam synthesize`.
GRID_LIMIT = 400


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``import-generator`` and ``synthesize-sharded`` (after ``synthesize``, whose arguments it reuses)."""
    imp = sub.add_parser("import-generator", help="convert the published DeePSiM fc6 generator to a dgnam generator",
                         description="Convert a PyTorch port of the DeePSiM fc6 generator (Caffe layer names defc7 ... "
                                     "deconv0; BGR 0-255 mean-subtracted output) into a dgnam generator whose images "
                                     "are RGB in [0, 1]. Reads SRC with torch.load(weights_only=True); never overwrites OUT.")
    imp.add_argument("src", help="the port's state dict, e.g. upconvGAN_fc6.pt")
    imp.add_argument("out", help="the dgnam generator to write (must not exist)")
    imp.add_argument("--bounds", default=None,
                     help="per-unit code upper bounds, whitespace-separated (the paper's act_range/3x/fc6.txt); "
                          "default: none until `dgnam stats` sets them")
    imp.set_defaults(handler=cmd_import_generator)

    sharded = sub.add_parser("synthesize-sharded", parents=[sub.choices["synthesize"]], add_help=False,
                             help="synthesize across processes/GPUs (launch with torchrun); one merged manifest",
                             description="Same arguments and output as `dgnam synthesize`, with the units split across "
                                         "the processes torchrun starts (gloo on CPU, NCCL on CUDA); --fixed-batch is "
                                         "always on, so the merged result equals a single-process run.")
    # --fp32 comes with synthesize's arguments (parents=).
    sharded.add_argument("--no-channels-last", action="store_true", help="keep NCHW weights on CUDA")
    sharded.add_argument("--compile", action="store_true", help="torch.compile the generator (CUDA only)")
    # Not set_defaults(fixed_batch=True): `parents=` shares the action objects, and set_defaults would
    # change the default of `dgnam synthesize --fixed-batch` too (it padded every default run to 64 rows).
    sharded.set_defaults(handler=cmd_synthesize_sharded)


# --- import-generator ---------------------------------------------------------------------------
def cmd_import_generator(args) -> int:
    from dgnam.prior.importers import import_deepsim_fc6, load_port_state_dict, read_act_range

    out = Path(args.out)
    if out.exists():
        raise DgnamError(f"OUT '{out}' exists; choose a new file (import never overwrites)")
    bounds = read_act_range(args.bounds) if args.bounds else None
    generator = import_deepsim_fc6(load_port_state_dict(args.src), bounds)
    kept = [name for name, layer in generator.convs.items() if layer.bias is not None]
    metadata = {"imported_from": str(args.src), "original": "DeePSiM fc6 generator (Dosovitskiy & Brox 2016), "
                "inverting CaffeNet fc6 after ReLU", "bounds_file": args.bounds, "conv_biases_kept": kept}
    generator.save(out, metadata)
    bound = generator.code_upper_bound
    bounds_text = (f"bounds {float(bound.min()):.1f}-{float(bound.max()):.1f} (mean {float(bound.mean()):.1f})"
                   if bounds is not None else "no code bounds (pass --bounds or run `dgnam stats`)")
    print(f"wrote {out}: fc6 generator, 4096-d code -> 256x256, output caffe_bgr -> RGB [0,1]; {bounds_text}")
    return 0


# --- synthesize-sharded -------------------------------------------------------------------------
@dataclass
class _Plan:
    """What every rank agrees on before synthesising: the validated model, generator and units."""

    model: dgnam.Model
    generator: dgnam.UpconvGenerator | None
    units: list[int]
    classes: list[str]
    real_images: torch.Tensor | None
    amp: bool
    speed: dict[str, bool] = field(default_factory=dict)
    code_encoder: dgnam.Model | None = None  # --code-prior's reader of the code


def _prepare(args, device: torch.device) -> _Plan:
    """The checks and loading of ``dgnam synthesize``, run on every rank (rank 0 first, see the caller)."""
    from dgnam.scale.accel import speed_up

    model, generator, units, classes, real_images = cli.prepare_synthesis(args, device)
    speed = speed_up(device, models=[model], generator=generator, channels_last=not args.no_channels_last,
                     compile_generator=args.compile)
    return _Plan(model, generator, units, classes, real_images, amp=device.type == "cuda" and not args.fp32, speed=speed,
                 code_encoder=cli.load_code_prior_encoder(args, generator, device, model))


def _staging_dir(args, plan: _Plan) -> tuple[Path, Path]:
    """Rank 0: the final folder and a hidden sibling every rank writes into (renamed when complete)."""
    out_dir = cli._fresh_out_dir(args.out, plan.model.name).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return out_dir, Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))


def _run_shard(args, plan: _Plan, units: list[int], staging: Path, device: torch.device, progress: bool) -> dict[str, Any]:
    """Synthesise this rank's units, write their PNGs, return their manifest entries."""
    from dgnam.engine.param import make_param
    from dgnam.engine.probe import baseline_transforms
    from dgnam.grid import save_png

    if not units:  # more ranks than units
        return {"entries": [], "engine": None, "seconds": 0.0}
    param = make_param(args.param, plan.generator, plan.model.input_size, cli.load_init_sampler(args, device))
    transforms = baseline_transforms() if args.param != "dgn" else []
    result = dgnam.visualize(plan.model, units, layer=args.layer, generator=plan.generator, param=param,
                             restarts=args.restarts, seed=args.seed, steps=args.steps, position=args.position,
                             transforms=transforms, batch_size=args.batch_size, device=device, amp=plan.amp,
                             progress=progress, unit_names=plan.classes or None, fixed_batch=True,
                             code_prior=args.code_prior, code_encoder=plan.code_encoder)
    relative = None
    if plan.real_images is not None:
        unit_max = dict(zip(units, cli._real_unit_max(plan.model, args.layer, units, args.position, plan.real_images,
                                                   device, args.batch_size)))
        # None where the unit never fires on real images (a ratio to <= 0 means nothing).
        relative = [v / unit_max[u] if unit_max[u] > 0 else None
                    for u, v in zip(result.extra["unit"], result.values.tolist())]
    entries = []
    for i in range(len(result)):  # the entry schema of `dgnam synthesize`
        u, r, s = result.extra["unit"][i], result.extra["restart"][i], result.seeds[i]
        name = f"images/{cli._safe(args.layer)}_unit{u:04d}_restart{r}_seed{s}.png"
        save_png(result.images[i], staging / name)
        entry = {"file": name, "layer": args.layer, "unit": u, "restart": r, "seed": s,
                 "activation": float(result.values[i]), "label": result.labels[i],
                 "start_activation": float(result.history[0, i])}
        if relative is not None:
            entry["activation_relative_to_real_max"] = relative[i]
        entries.append(entry)
    return {"entries": entries, "engine": result.settings, "seconds": result.seconds}


def _merge(args, plan: _Plan, runs: list[dict[str, Any]], out_dir: Path, staging: Path, device: torch.device,
           seconds: float) -> list[dict[str, Any]]:
    """Rank 0: grid and manifest over every rank's images, then the rename that publishes the run."""
    from dgnam.grid import labelled_grid, save_png
    from dgnam.io import atomic_write_json

    entries = [entry for run in runs for entry in run["entries"]]  # rank order = the single-process order
    shown = entries[:GRID_LIMIT]
    try:
        pixels = []
        for entry in shown:
            with Image.open(staging / entry["file"]) as im:
                pixels.append(np.asarray(im.convert("RGB")))
        # PNGs hold the images rounded to 8 bits, which is also all the grid keeps of them.
        images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255
        captions = [f"{e['label']} {e['activation']:.1f}" for e in shown]
        ncol = args.restarts * min(len(plan.units), max(1, 10 // args.restarts))
        save_png(labelled_grid(images, captions, ncol=ncol), staging / "grid.png")
        generator = plan.generator
        settings = {"command": "synthesize-sharded", "model": args.model or str(cli.DEFAULT_MODEL),
                    "model_name": plan.model.name,
                    "generator": str(Path(args.generator) if args.generator else cli.DEFAULT_GENERATOR) if generator else None,
                    "generator_metadata": getattr(generator, "metadata", None) if generator else None,
                    "layer": args.layer, "units": plan.units, "position": list(args.position) if args.position else None,
                    "param": args.param, "init_sampler": args.init_sampler, "code_prior": args.code_prior, "steps": args.steps, "restarts": args.restarts, "seed": args.seed,
                    "batch_size": args.batch_size, "fixed_batch": True, "fit": plan.model.fit, "device": str(device),
                    "mean": args.mean, "std": args.std, "input_size": plan.model.input_size, "data": args.data,
                    "dgnam_version": dgnam.__version__, "torch_version": torch.__version__, "seconds": round(seconds, 2),
                    "engine": next((run["engine"] for run in runs if run["engine"] is not None), None),
                    "world_size": len(runs), "units_per_rank": [len({e["unit"] for e in run["entries"]}) for run in runs],
                    "rank_seconds": [round(run["seconds"], 2) for run in runs], "amp": plan.amp, **plan.speed,
                    "grid_images": len(shown)}
        atomic_write_json({"settings": settings, "images": entries}, staging / "manifest.json")
        if out_dir.exists():
            out_dir.rmdir()  # an empty --out directory is allowed
        staging.rename(out_dir)
    except OSError as exc:
        raise DgnamError(f"could not write the run to '{out_dir}' ({exc.strerror or exc}); check space and "
                         f"permissions, and that --out stayed empty") from None
    return entries


def _print_summary(entries: list[dict[str, Any]]) -> None:
    by_unit: dict[int, list[dict[str, Any]]] = {}
    for entry in entries:
        by_unit.setdefault(entry["unit"], []).append(entry)
    rows = []
    for group in by_unit.values():
        acts = [e["activation"] for e in group]
        rows.append([group[0]["label"], f"{sum(acts) / len(acts):.2f}", f"{max(acts):.2f}"])
    cli._print_table(rows, ["unit", "mean act", "max act"])


def cmd_synthesize_sharded(args) -> int:
    from dgnam.scale.distributed import all_gather, broadcast, on_every_rank, process_group, rank_zero_first, shard

    if args.steps < 1 or args.restarts < 1 or args.batch_size < 1:
        raise DgnamError("--steps, --restarts and --batch-size must be >= 1")
    args.fixed_batch = True  # a row's image must not depend on which rank made it or what shared its batch
    requested = cli._device(args.device)
    start = time.time()
    with process_group(requested) as ranks:
        plan = rank_zero_first(lambda: _prepare(args, ranks.device), ranks)
        place = on_every_rank(lambda: _staging_dir(args, plan) if ranks.is_main else None, ranks)
        out_dir, staging = broadcast(place, ranks)
        try:
            mine = shard(plan.units, ranks)
            run = on_every_rank(lambda: _run_shard(args, plan, mine, staging, ranks.device,
                                                   progress=not args.quiet and ranks.is_main), ranks)
            runs = all_gather(run, ranks)  # every rank's images are on disk once this returns
            entries = on_every_rank(lambda: _merge(args, plan, runs, out_dir, staging, ranks.device, time.time() - start)
                                    if ranks.is_main else None, ranks)
        except BaseException:
            if ranks.is_main:
                shutil.rmtree(staging, ignore_errors=True)
            raise
    if ranks.is_main:
        _print_summary(entries)
        print(f"wrote {len(entries)} images from {ranks.world_size} process(es), grid.png and manifest.json to "
              f"{out_dir} ({time.time() - start:.1f}s)")
    return 0
