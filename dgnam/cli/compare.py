"""Class images that maximise A+B, A-B and B-A; cosine similarity of the two models' outputs on A's class
images (heat map); mimicry: A's image changed until A answers like B does on B's image (L1). Writes PNGs,
report.md, manifest.json."""

from __future__ import annotations

import argparse
import time

from dgnam.analysis.compare import DISAGREEING, KINDS, compare
from dgnam.cli import common
from dgnam.cli import validate as check
from dgnam.cli.prepare import prepare
from dgnam.engine.param import make_param
from dgnam.engine.preferred import baseline_transforms
from dgnam.errors import DgnamError, terminal_safe
from dgnam.io import write_directory


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dgnam compare`` to the parser's subcommands."""
    cmp = sub.add_parser("compare", help="how two classifiers differ: A+B, A-B, B-A images, output similarity, mimicry",
                         description=__doc__)
    cmp.add_argument("--model", action="append", default=None, required=True,
                     help="give twice: --model A --model B (any spec `dgnam synthesize --model` takes)")
    cmp.add_argument("--input-size", type=int, default=None, help="both models' input side in pixels")
    cmp.add_argument("--mean", type=common.rgb_floats, default=None,
                     help="normalisation mean R,G,B of both models (default: each model's own, if any)")
    cmp.add_argument("--std", type=common.rgb_floats, default=None, help="normalisation std R,G,B of both models")
    cmp.add_argument("--device", default="auto")
    cmp.add_argument("--param", choices=["dgn", "pixel"], default="dgn", help="image parametrisation")
    common.add_generator_arg(cmp)
    cmp.add_argument("--classes", default=None, help="e.g. 0-9 (default: all classes, at most 10)")
    common.add_synthesis_args(cmp, restarts=1, restarts_help="images per class and kind", code_prior=None)
    cmp.add_argument("--mimic-steps", type=int, default=None, help="steps of the mimicry phase (default: --steps)")
    common.add_output_args(cmp)
    cmp.set_defaults(handler=cmd_compare, validate=validate)


def validate(args: argparse.Namespace) -> None:
    """The checks of ``args`` alone, before any model is loaded (see :mod:`dgnam.cli.validate`)."""
    if len(args.model) != 2:
        raise DgnamError(f"compare needs exactly two models (--model A --model B); got {len(args.model)}")
    for spec in args.model:
        check.model_spec(spec)
    check.at_least(args, 1, "--steps", "--mimic-steps", "--restarts", "--batch-size", "--input-size")
    check.normalisation(args)
    check.seed(args.seed, args.restarts)
    if args.classes is not None:
        check.unit_ranges(args.classes, "--classes")
    check.existing_file(args.generator, "--generator")
    check.resolve_device(args.device)
    check.output(args.out)


def cmd_compare(args: argparse.Namespace) -> int:
    device = check.resolve_device(args.device)
    # Model A is prepared with the generator (only --param dgn has one) and --classes; B is fitted to the same.
    run = prepare(args, device, generator=args.param == "dgn", units="--classes", model_spec=args.model[0])
    model_a, generator, classes = run.model, run.generator, run.units
    model_b = common.load_model_from_args(args, device, args.model[1])
    common.fit_to_generator(model_b, generator, quiet=args.quiet)
    param = make_param(args.param, generator, model_a.input_size)
    transforms = [] if param.has_prior else baseline_transforms()
    out_dir = common.fresh_out_dir(args.out, f"{model_a.name}-vs-{model_b.name}")

    start = time.time()
    result = compare(model_a, model_b, param, classes=classes, class_names=model_a.classes,
                     restarts=args.restarts, steps=args.steps, mimic_steps=args.mimic_steps, seed=args.seed,
                     transforms=transforms, batch_size=args.batch_size, device=device, progress=not args.quiet)
    seconds = time.time() - start
    a_name, b_name = result.model_names
    scores = {kind: result.class_scores(kind) for kind in KINDS}
    disagreeing = result.most_disagreeing(min(DISAGREEING, len(result.classes)))
    report = result.to_markdown(f"Parametrisation `{args.param}`, {args.steps} steps, {args.restarts} image(s) per "
                                f"class and kind, seed {args.seed}; {seconds:.0f} s.")
    manifest = {"settings": {"command": "compare", "models": [common.model_report_name(spec) for spec in args.model],
                             "model_names": [a_name, b_name], "param": args.param,
                             "generator": run.names["generator"],
                             "preprocessing": [model_a.preprocessing(), model_b.preprocessing()],
                             "classes": result.classes, "restarts": args.restarts, "steps": args.steps,
                             "mimic_steps": args.mimic_steps or args.steps, "seed": args.seed,
                             "device": str(device), "seconds": round(seconds, 1), **common.versions(),
                             "engine": result.synthesis.settings},
                "class_scores": {kind: {"a": scores[kind][0].tolist(),
                                        "b": scores[kind][1].tolist()} for kind in KINDS},
                "class_similarity": result.class_similarity.tolist(),
                "similarity_matrix": result.similarity_matrix.tolist(),
                "most_disagreeing": [result.class_names[i] for i in disagreeing],
                "mimic_l1": {"start": result.mimic_start_l1.tolist(), "end": result.mimic_end_l1.tolist()}}
    figures = {"class_images.png": result.save_class_grid, "similarity.png": result.save_similarity_heatmap,
               "mimicry.png": result.save_mimicry}
    out_dir = write_directory(out_dir, lambda staging: common.write_report(staging, report, manifest, figures),
                              unique=args.out is None)
    print(terminal_safe(result.summary()))  # class names come from checkpoints
    common.wrote("class_images.png, similarity.png, mimicry.png, report.md and manifest.json", out_dir)
    return 0
