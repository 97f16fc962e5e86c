"""Class images that maximise A+B, A-B and B-A; cosine similarity of the two models' outputs on A's class
images (heat map); mimicry: A's image changed until A answers like B does on B's image (L1). Writes PNGs,
report.md, manifest.json."""

from __future__ import annotations

import argparse
import time

import torch

from dgnam.analysis.compare import KINDS, compare
from dgnam.cli import validate as check
from dgnam.cli.common import (
    add_generator_arg,
    add_output_args,
    add_synthesis_args,
    fit_to_generator,
    fresh_out_dir,
    load_model_from_args,
    markdown_table,
    model_report_name,
    resolve_device,
    rgb_floats,
    versions,
    write_report,
)
from dgnam.cli.prepare import prepare
from dgnam.engine.param import make_param
from dgnam.engine.preferred import baseline_transforms
from dgnam.errors import DgnamError
from dgnam.io import write_directory


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dgnam compare`` to the parser's subcommands."""
    cmp = sub.add_parser("compare", help="how two classifiers differ: A+B, A-B, B-A images, output similarity, mimicry",
                         description=__doc__)
    cmp.add_argument("--model", action="append", default=None, required=True,
                     help="give twice: --model A --model B (any spec `dgnam synthesize --model` takes)")
    cmp.add_argument("--input-size", type=int, default=None, help="both models' input side in pixels")
    cmp.add_argument("--mean", type=rgb_floats, default=None,
                     help="normalisation mean R,G,B of both models (default: each model's own, if any)")
    cmp.add_argument("--std", type=rgb_floats, default=None, help="normalisation std R,G,B of both models")
    cmp.add_argument("--device", default="auto")
    cmp.add_argument("--param", choices=["dgn", "pixel"], default="dgn", help="image parametrisation")
    add_generator_arg(cmp)
    cmp.add_argument("--classes", default=None, help="e.g. 0-9 (default: all classes, at most 10)")
    add_synthesis_args(cmp, restarts=1, restarts_help="images per class and kind", code_prior=None)
    cmp.add_argument("--mimic-steps", type=int, default=None, help="steps of the mimicry phase (default: --steps)")
    add_output_args(cmp)
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
    resolve_device(args.device)
    check.output(args.out)


def cmd_compare(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    # Model A is prepared with the generator (only --param dgn has one) and --classes; B is fitted to the same.
    run = prepare(args, device, generator=args.param == "dgn", units="--classes", model_spec=args.model[0])
    model_a, generator, classes = run.model, run.generator, run.units
    model_b = load_model_from_args(args, device, args.model[1])
    fit_to_generator(model_b, generator, quiet=args.quiet)
    param = make_param(args.param, generator, model_a.input_size)
    transforms = [] if param.has_prior else baseline_transforms()
    out_dir = fresh_out_dir(args.out, f"{model_a.name}-vs-{model_b.name}")

    start = time.time()
    result = compare(model_a, model_b, param, classes=classes, class_names=model_a.classes,
                     restarts=args.restarts, steps=args.steps, mimic_steps=args.mimic_steps, seed=args.seed,
                     transforms=transforms, batch_size=args.batch_size, device=device, progress=not args.quiet)
    seconds = time.time() - start
    a_name, b_name = result.model_names
    names = result.class_names
    scores = {kind: result.class_scores(kind) for kind in KINDS}
    score_rows = [[kind, *[f"{float(a):.1f} / {float(b):.1f}" for a, b in zip(*scores[kind])],
                   f"{float((scores[kind][0] - scores[kind][1]).mean()):+.1f}"] for kind in KINDS]
    disagreeing = result.most_disagreeing(min(3, len(names)))
    label = dict(zip(result.classes, names))
    top_a = result.logits_a[result.rows("A")].argmax(1).tolist()  # on A's class images
    top_b = result.logits_b[result.rows("A")].argmax(1).tolist()
    first = [i * result.restarts for i in disagreeing]  # restart 0 of each class
    disagree_lines = [f"- **{names[i]}**: cosine {float(result.class_similarity[i]):.2f}; on A's image A's top class "
                      f"is {label.get(top_a[row], top_a[row])}, B's is {label.get(top_b[row], top_b[row])}"
                      for i, row in zip(disagreeing, first)]
    mimic_tops = zip(result.mimic_targets.argmax(1).tolist(), result.mimic_start_logits.argmax(1).tolist(),
                     result.mimic_end_logits.argmax(1).tolist())
    mimic_rows = [[name, f"{float(start_l1):.1f}", f"{float(end_l1):.1f}", *[str(label.get(c, c)) for c in tops]]
                  for name, start_l1, end_l1, tops in zip(result.row_names(), result.mimic_start_l1,
                                                          result.mimic_end_l1, mimic_tops)]
    diagonal = result.similarity_matrix.diagonal()
    off_diagonal = result.similarity_matrix[~torch.eye(len(names), dtype=torch.bool)]
    report = "\n\n".join([
        f"# {a_name} (A) vs {b_name} (B)",
        f"Parametrisation `{args.param}`, {args.steps} steps, {args.restarts} image(s) per class and kind, seed "
        f"{args.seed}; {seconds:.0f} s. Logits are the models' raw (pre-softmax) outputs.",
        "## Class images: A, B, A+B, A-B, B-A",
        "Each cell: logit of the intended class under A / under B (mean over restarts); last column: mean A - B.",
        markdown_table(["kind", *names, "mean A-B"], score_rows),
        "![class images: rows A, B, A+B, A-B, B-A](class_images.png)",
        "## Output space",
        f"On A's image of each class, the cosine similarity of A's and B's output vectors (diagonal of the heat "
        f"map): mean {float(diagonal.mean()):.2f}; off the diagonal (A's output on one class image vs B's on "
        f"another) mean {float(off_diagonal.mean()) if len(off_diagonal) else float('nan'):.2f}. "
        "Classes where the models disagree most:",
        "\n".join(disagree_lines),
        "![cosine similarity of A's and B's outputs](similarity.png)",
        "## Mimicry",
        "Starting from A's image of a class, the image is changed until A's output matches (L1) B's output on B's "
        "image of that class. L1 before / after; top classes of B on its image and of A before / after.",
        markdown_table(["class", "L1 start", "L1 end", "B's top (target)", "A's top start", "A's top end"], mimic_rows),
        "![A's image, the mimic made from it, B's image](mimicry.png)",
    ]) + "\n"
    manifest = {"settings": {"command": "compare", "models": [model_report_name(spec) for spec in args.model],
                             "model_names": [a_name, b_name], "param": args.param,
                             "generator": run.names["generator"],
                             "preprocessing": [model_a.preprocessing(), model_b.preprocessing()],
                             "classes": result.classes, "restarts": args.restarts, "steps": args.steps,
                             "mimic_steps": args.mimic_steps or args.steps, "seed": args.seed,
                             "device": str(device), "seconds": round(seconds, 1), **versions(),
                             "engine": result.synthesis.settings},
                "class_scores": {kind: {"a": scores[kind][0].tolist(),
                                        "b": scores[kind][1].tolist()} for kind in KINDS},
                "class_similarity": result.class_similarity.tolist(),
                "similarity_matrix": result.similarity_matrix.tolist(),
                "most_disagreeing": [names[i] for i in disagreeing],
                "mimic_l1": {"start": result.mimic_start_l1.tolist(), "end": result.mimic_end_l1.tolist()}}
    figures = {"class_images.png": result.save_class_grid, "similarity.png": result.save_similarity_heatmap,
               "mimicry.png": result.save_mimicry}
    out_dir = write_directory(out_dir, lambda staging: write_report(staging, report, manifest, figures),
                              unique=args.out is None)
    mean_gap = {kind: float((scores[kind][0] - scores[kind][1]).mean()) for kind in ("A-B", "B-A")}
    print(f"A-B images: A leads B by {mean_gap['A-B']:+.1f} logits; B-A images: {mean_gap['B-A']:+.1f}; "
          f"output cosine on A's images {float(diagonal.mean()):.2f}; most different: "
          f"{', '.join(names[i] for i in disagreeing)}; mimicry L1 {float(result.mimic_start_l1.mean()):.1f} -> "
          f"{float(result.mimic_end_l1.mean()):.1f}")
    print(f"wrote class_images.png, similarity.png, mimicry.png, report.md and manifest.json to {out_dir}")
    return 0
