"""``dgnam unnatural``: the DGN-AM paper's test of whether the images follow the network or the prior.
A classifier trained on natural classes plus the same classes modified (e.g. red and blue swapped)
is visualised through a prior trained on natural images only; a detector of the modification and an
independent judge score the images. Writes classes.png, report.md and manifest.json."""

from __future__ import annotations

import argparse
import time

from dgnam.cli import common
from dgnam.cli import validate as check
from dgnam.cli.prepare import prepare
from dgnam.engine.param import make_param
from dgnam.engine.preferred import visualize
from dgnam.io import shipped, write_directory
from dgnam.nets.zoo import load_model
from dgnam.sanity.unnatural import check_scorers, class_pairs, score_unnatural
from dgnam.sanity.variants import VARIANTS

DEFAULT_UNNATURAL_MODEL = shipped("cifar10/sanity/bgr20_resnet14.pt")
DEFAULT_DETECTOR = shipped("cifar10/sanity/swap_detector.pt")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dgnam unnatural`` to the parser's subcommands."""
    s = sub.add_parser("unnatural", help="the paper's natural + modified classes test of the prior",
                       description=__doc__)
    common.add_model_args(s)
    s.set_defaults(model=str(DEFAULT_UNNATURAL_MODEL))
    s.add_argument("--variant", choices=list(VARIANTS), default="bgr", help="the modification (default: bgr)")
    s.add_argument("--detector", default=str(DEFAULT_DETECTOR),
                   help="classifier of natural vs modified images (default: the shipped CIFAR-10 swap detector)")
    s.add_argument("--judge", default=str(common.DEFAULT_JUDGE),
                   help="classifier of the natural classes, never used to make the images (default: the shipped "
                        "robust CIFAR-10 judge)")
    common.add_generator_arg(s)
    common.add_synthesis_args(s, restarts=10, restarts_help="images per class")
    common.add_output_args(s)
    s.set_defaults(handler=cmd_unnatural, validate=validate)


def validate(args: argparse.Namespace) -> None:
    """The checks of ``args`` alone, before any model is loaded (see :mod:`dgnam.cli.validate`)."""
    check.model_args(args)
    check.synthesis_args(args)
    check.model_spec(args.detector, "--detector")
    check.model_spec(args.judge, "--judge")


def cmd_unnatural(args: argparse.Namespace) -> int:
    device = check.resolve_device(args.device)
    # The generator's recommended code prior applies to any target here (tuned=False), read by the generator's own
    # encoder loaded apart from the target; --quiet hides the progress only, not the image-size notice.
    run = prepare(args, device, generator=True, units=None, tuned=False, own_encoder=True, quiet=False)
    model, generator, code_prior, code_encoder = run.model, run.generator, run.code_prior, run.code_encoder
    pairs = class_pairs(model.classes, args.variant)
    detector = load_model(args.detector, device=device)
    judge = load_model(args.judge, device=device)
    check_scorers(pairs, args.variant, detector, judge.classes)
    for other in (detector, judge):
        other.input_size = other.input_size or model.input_size
    out_dir = common.fresh_out_dir(args.out, f"unnatural-{model.name}")

    start = time.time()
    result = visualize(model, pairs.natural + pairs.modified, param=make_param("dgn", generator, model.input_size),
                       generator=generator, code_prior=code_prior, code_encoder=code_encoder, restarts=args.restarts,
                       seed=args.seed, steps=args.steps, batch_size=args.batch_size, device=device,
                       progress=not args.quiet, unit_names=model.classes)
    scores = score_unnatural(result.images, pairs, args.variant, detector, judge, judge.classes, device=device)
    seconds = time.time() - start
    rates = scores.rates()
    detector_acc = detector.metadata.get("test_accuracy")
    model_acc = model.metadata.get("test_accuracy")
    report = scores.to_markdown(
        model.name, f"DGN-AM through `{run.names['generator']}` (code prior {code_prior:g}), {args.steps} steps, "
                    f"{args.restarts} images per class, seed {args.seed}; {seconds:.0f} s on {device}. The "
                    f"classifier's test accuracy on its {len(model.classes)} classes: {_percent(model_acc)}; the "
                    f"detector's on real natural and modified test images: {_percent(detector_acc)}.")
    manifest = {"settings": {"command": "unnatural", "model": run.names["model"], "variant": args.variant,
                             "detector": common.report_path(args.detector), "judge": common.report_path(args.judge),
                             "generator": run.names["generator"],
                             "code_prior": code_prior, "steps": args.steps, "restarts": args.restarts,
                             "seed": args.seed, "device": str(device), "seconds": round(seconds, 1),
                             **common.versions(),
                             "engine": result.settings},
                "classes": pairs.names, "model_test_accuracy": model_acc, "detector_test_accuracy": detector_acc,
                "rates": {name: vars(r) for name, r in rates.items()},
                "per_image": {"detected_natural": scores.detected_natural.tolist(),
                              "detected_modified": scores.detected_modified.tolist(),
                              "judge_natural": scores.judge_natural.tolist(),
                              "judge_modified": scores.judge_modified.tolist(),
                              "judge_undone": scores.judge_undone.tolist()}}
    figures = {"classes.png": lambda p: scores.figure().save(p)}
    out_dir = write_directory(out_dir, lambda staging: common.write_report(staging, report, manifest, figures),
                              unique=args.out is None)
    print(", ".join(f"{name} {100 * r.value:.0f}%" for name, r in rates.items()))
    common.wrote("classes.png, report.md and manifest.json", out_dir, seconds)
    return 0


def _percent(value: float | None) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "unknown"
