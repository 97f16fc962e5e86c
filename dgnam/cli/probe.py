"""``dgnam probe``: every unit of a layer seen two ways, its strongest real images (one streaming pass over
``--data``) beside the images DGN-AM synthesises for it (one batched synthesis, as ``dgnam synthesize``),
written as a static gallery site (``index.html``) with its ``manifest.json``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from dgnam.cli import common
from dgnam.cli import validate as check
from dgnam.cli.prepare import can_seed, check_can_seed, prepare
from dgnam.engine.param import PAPER_STEPS, PARAMETRIZATIONS, default_steps
from dgnam.errors import DgnamError
from dgnam.examples.probe import Probe, probe
from dgnam.examples.topk import READINGS, RESERVOIR
from dgnam.prior.generator import UpconvGenerator

SUMMARY_UNITS = 10  # units listed on the terminal; the gallery has all of them


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``probe``."""
    p = sub.add_parser("probe",
                       help="dataset examples beside synthesised images for every unit of a layer, as a web gallery",
                       description="For each unit of a layer: its top-k images of --data (one streaming pass) and "
                                   "DGN-AM's synthesised images (one batched synthesis), written as a static gallery "
                                   "site (open OUT/index.html; works offline from file://) and manifest.json.")
    common.add_model_args(p)
    p.add_argument("--layer", default="output", help="layer name (see `dgnam layers`); default: the model output")
    p.add_argument("--units", default=None, help="e.g. 0-9,15 (default: every unit of the layer)")
    p.add_argument("--data", required=True, help="folder of real images (an ImageFolder tree or a flat folder)")
    common.add_data_limit_arg(p, None)
    p.add_argument("--k", type=int, default=9, help="top images kept per unit")
    p.add_argument("--reading", choices=READINGS, default="max",
                   help="how a conv unit is read on real images: the channel's spatial max (its place boxed), at "
                        "--position, or the spatial mean (fc units are read as they are)")
    p.add_argument("--position", type=common.position, default=None,
                   help="row,column of a conv unit: where DGN-AM maximises it and --reading position reads it "
                        "(default: the centre)")
    common.add_layout_arg(p)
    p.add_argument("--param", choices=list(PARAMETRIZATIONS), default="dgn", help="image parametrisation")
    common.add_generator_arg(p)
    p.add_argument("--baseline", choices=[n for n in PARAMETRIZATIONS if n != "dgn"], default=None,
                   help="also synthesise with this parametrisation (jitter and blur), shown beside DGN-AM")
    p.add_argument("--init", choices=["data", "noise"], default=None,
                   help="dgn: start each unit's restart r as its r-th top image, changed through the prior (data; "
                        "the default when the generator names its encoder), or from h ~ N(0, 1), the paper's start")
    common.add_synthesis_args(p, restarts=1, restarts_help="synthesised images per unit (seeds seed, seed+1, ...)",
                              steps=None, steps_note="; 0: dataset examples only")
    p.add_argument("--data-batch-size", type=int, default=256, help="real images per forward pass")
    p.add_argument("--workers", type=int, default=2, help="processes decoding images (0: in the main process)")
    p.add_argument("--thumbnails", choices=["png", "jpg"], default="png",
                   help="file format of the real images' thumbnails")
    common.add_output_args(p, synthesis=True)
    p.set_defaults(handler=cmd_probe, validate=validate)


def validate(args: argparse.Namespace) -> None:
    """The checks of ``args`` alone, before any model is loaded (see :mod:`dgnam.cli.validate`)."""
    check.model_args(args)
    check.at_least(args, 1, "--k", "--restarts", "--batch-size", "--data-batch-size")
    check.data_limit(args, None)
    check.at_least(args, 0, "--steps", why=" (0: no synthesis)")
    check.at_least(args, 0, "--workers")
    check.seed(args.seed, args.restarts)
    synthesis = args.steps != 0  # None: the start's default steps
    if args.init != "noise" and args.param == "dgn" and synthesis and args.restarts > args.k:
        raise DgnamError(f"--init data starts restart r from a unit's r-th top image: --restarts ({args.restarts}) "
                         f"must be <= --k ({args.k}); raise --k or pass --init noise")
    check.unit_args(args)
    check.generator_args(args)
    check.existing_folder(args.data, "--data")
    check.dataset_pass_size(args, RESERVOIR)
    if synthesis:  # sized for the longer default when the start (and so the steps) is chosen later
        check.synthesis_size(argparse.Namespace(**{**vars(args), "steps": args.steps or PAPER_STEPS}))
    check.output(args.out)


def cmd_probe(args: argparse.Namespace) -> int:
    start = time.time()
    device = check.resolve_device(args.device)
    files = common.image_files(Path(args.data), args.data_limit or 2**62)
    prepared = prepare(args, device, generator=args.steps != 0 and (args.param == "dgn" or bool(args.generator)),
                       all_units=True, seeded=lambda generator: _seeded(args, generator))
    model, generator, units = prepared.model, prepared.generator, prepared.units
    out_dir = common.fresh_out_dir(args.out, model.name)
    result = probe(model, args.layer, units, data=files, generator=generator, param=args.param,
                   restarts=args.restarts, steps=args.steps, seed=args.seed, k=args.k, init=args.init,
                   reading=args.reading,
                   position=args.position, baseline=args.baseline, batch_size=args.batch_size,
                   data_batch_size=args.data_batch_size, device=device, amp=device.type == "cuda" and not args.fp32,
                   workers=args.workers, progress=not args.quiet, code_prior=prepared.code_prior,
                   code_encoder=prepared.code_encoder, fixed_batch=args.fixed_batch, thumbnail_format=args.thumbnails)
    result.settings.update({"command": "probe", **prepared.names, "model_name": model.name,
                            "data": args.data, "layout": str(model.layout(args.layer)), **model.preprocessing(),
                            **common.versions()})
    out_dir = result.save(out_dir, unique=args.out is None)
    print_summary(result)
    ex = result.examples
    print(f"read {ex.n_images} images ({len(ex.skipped)} unreadable, skipped) in {ex.seconds:.1f}s"
          + (f", synthesised {len(result.synthesis)} images in {result.synthesis.seconds:.1f}s"
             if result.synthesis else ""))
    common.wrote(f"the gallery of {len(units)} units", out_dir / "index.html", time.time() - start)
    return 0


def _seeded(args: argparse.Namespace, generator: UpconvGenerator | None) -> bool:
    """Settle ``--init`` (:func:`_init`) and, with it, the default ``--steps``; whether synthesis is seeded."""
    args.init = _init(args, generator)
    seeded = args.init == "data" and args.param == "dgn" and args.steps != 0
    if args.steps is None:
        args.steps = default_steps(seeded)
    return seeded


def _init(args: argparse.Namespace, generator: UpconvGenerator | None) -> str:
    """``--init``, or by default ``data`` when the generator can read a seed's code (it names its encoder and
    layer), else ``noise`` with a notice."""
    if args.init is not None:
        if args.init == "data" and args.param == "dgn" and args.steps != 0:
            check_can_seed(generator, "--init data", "pass --init noise")
        return args.init
    if args.param == "dgn" and args.steps != 0 and not can_seed(generator):
        if not args.quiet:
            common.notice("the generator names no encoder to read seed images with; synthesis starts from noise "
                          "(--init noise silences this)")
        return "noise"
    return "data"


def print_summary(result: Probe) -> None:
    """The units whose synthesised images most exceed their real maximum (the gallery sorts them all)."""
    ratios = result.ratios()
    rows = [(r, row) for row, r in enumerate(ratios)]
    rows.sort(key=lambda x: -(x[0] if x[0] is not None else -float("inf")))
    table = [[result.labels[row], f"{float(result.examples.unit_max[row]):.2f}", f"{r:.2f}" if r is not None else "n/a"]
             for r, row in rows[:SUMMARY_UNITS]]
    if len(ratios) > SUMMARY_UNITS:
        print(f"top {SUMMARY_UNITS} of {len(ratios)} units by synthesised / real max:")
    common.print_table(table, ["unit", "real max", "synth / real max"])
