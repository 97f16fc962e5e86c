"""``dgnam accentuate``: your images, changed through the generator prior until chosen units respond.

Each image starts as itself; the prior changes it (image + G(h) - G(h0), h0 = the code its encoder reads
from the image) while the unit rises, and a code prior keeps the change natural. Writes one PNG per
(unit, image), grid.png (each original beside its accentuated versions, with the activation before and
after) and manifest.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from dgnam.cli import common
from dgnam.cli import validate as check
from dgnam.cli.prepare import check_can_seed, prepare
from dgnam.engine.param import SEEDED_CODE_PRIOR, SEEDED_STEPS
from dgnam.engine.preferred import accentuate
from dgnam.errors import terminal_safe
from dgnam.grid import labelled_grid, save_png
from dgnam.images import load_images, suffixes_text
from dgnam.io import atomic_write_json, write_directory
from dgnam.prior.generator import UpconvGenerator


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dgnam accentuate`` to the parser's subcommands."""
    a = sub.add_parser("accentuate", help="change your images through the prior until chosen units respond",
                       description=__doc__)
    a.add_argument("images", nargs="+", metavar="IMAGE", help=f"image files ({suffixes_text()})")
    common.add_model_args(a)
    common.add_unit_args(a, "e.g. 3 or 0-9,15", units_required=True)
    common.add_generator_arg(a)
    a.add_argument("--target", type=float, default=None, metavar="LEVEL",
                   help="stop pushing a unit once it reaches this activation")
    common.add_steps_arg(a, SEEDED_STEPS)
    common.add_code_prior_arg(a, f"{SEEDED_CODE_PRIOR:g}, which keeps the change natural")
    common.add_batch_size_arg(a)
    common.add_output_args(a, synthesis=True)
    a.set_defaults(handler=cmd_accentuate, validate=validate)


def validate(args: argparse.Namespace) -> None:
    """The checks of ``args`` alone, before any model is loaded (see :mod:`dgnam.cli.validate`)."""
    check.model_args(args)
    check.at_least(args, 1, "--steps", "--batch-size")
    check.unit_args(args)  # --units is required
    check.generator_args(args)
    check.finite(args.target, "--target")
    for image in args.images:
        check.existing_file(image, "IMAGE")
    check.output(args.out)


def cmd_accentuate(args: argparse.Namespace) -> int:
    start = time.time()
    device = check.resolve_device(args.device)
    run = prepare(args, device, generator=True, seeded=_can_read_images)
    model, generator, units, code_prior, encoder = run.model, run.generator, run.units, run.code_prior, run.code_encoder
    files = [Path(f) for f in args.images]
    images = load_images(files, generator.image_size)
    out_dir = common.fresh_out_dir(args.out, model.name)
    names = model.classes if args.layer == "output" else None
    result = accentuate(model, images, units, layer=args.layer, generator=generator, code_encoder=encoder,
                        steps=args.steps, code_prior=code_prior, target=args.target, position=args.position,
                        spatial_mean=args.spatial_mean, token=args.token, batch_size=args.batch_size, device=device,
                        amp=device.type == "cuda" and not args.fp32, progress=not args.quiet, unit_names=names)
    before, after = result.history[0], result.values
    entries = [{"file": f"images/unit{u:04d}_image{i}.png", "source": str(files[i]), "layer": args.layer, "unit": u,
                "label": result.labels[row], "activation_before": float(before[row]),
                "activation_after": float(after[row])}
               for row, (u, i) in enumerate(zip(result.extra["unit"], result.extra["image"]))]
    settings = {"command": "accentuate", "model": run.names["model"], "model_name": model.name,
                "generator": run.names["generator"], "layer": args.layer, "units": units,
                "layout": str(model.layout(args.layer)), "position": list(args.position) if args.position else None,
                "token": args.token, "spatial_mean": args.spatial_mean, "code_prior": code_prior,
                "target": args.target, "steps": args.steps, "device": str(device), **model.preprocessing(),
                **common.versions(),
                "seconds": round(result.seconds, 2), "engine": result.settings}

    def write(staging: Path) -> None:
        (staging / "images").mkdir()
        for image, entry in zip(result.images, entries):
            save_png(image, staging / entry["file"])
        # One row per image: the original, then its version for each unit.
        tiles, captions = [], []
        for i, file in enumerate(files):
            tiles.append(images[i])
            captions.append(f"original {file.stem}"[:40])
            for row in (r for r, img in enumerate(result.extra["image"]) if img == i):
                tiles.append(result.images[row])
                captions.append(f"{result.labels[row]} {float(before[row]):.1f}->{float(after[row]):.1f}")
        save_png(labelled_grid(torch.stack(tiles), captions, ncol=len(units) + 1), staging / "grid.png")
        atomic_write_json({"settings": settings, "images": entries}, staging / "manifest.json")

    out_dir = write_directory(out_dir, write, unique=args.out is None)
    common.print_table([[terminal_safe(e["label"]), terminal_safe(e["source"]), f"{e['activation_before']:.2f}",
                         f"{e['activation_after']:.2f}"] for e in entries], ["unit", "image", "before", "after"])
    common.wrote(f"{len(entries)} images, grid.png and manifest.json", out_dir, time.time() - start)
    return 0


def _can_read_images(generator: UpconvGenerator | None) -> bool:
    """Every image is a seed: the generator's encoder reads its code at ``encoder_layer``."""
    check_can_seed(generator, "accentuate", "use a generator trained by dgnam or set them with "
                                            "`dgnam import-generator`")
    return True
