"""Saliency, Grad-CAM (layer: the last spatial feature map unless --layer), guided backprop and guided
Grad-CAM via captum, with a deletion check per method. Writes attribution.png, report.md, manifest.json."""

from __future__ import annotations

import argparse

import torch

from dgnam.analysis.attribute import METHODS, attribute
from dgnam.cli import common
from dgnam.cli import validate as check
from dgnam.errors import DgnamError, terminal_safe
from dgnam.io import write_directory
from dgnam.markdown import markdown_table, markdown_text


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dgnam attribute`` to the parser's subcommands."""
    att = sub.add_parser("attribute",
                         help="which pixels drove a decision: saliency, Grad-CAM, guided backprop (captum)",
                         description=__doc__)
    common.add_model_args(att)
    att.add_argument("--image", action="append", required=True, help="image to explain (repeatable)")
    att.add_argument("--target", default=None, help="class index or name (default: each image's predicted class)")
    att.add_argument("--layer", default=None,
                     help="Grad-CAM layer (default: the last spatial layer, see `dgnam layers`)")
    att.add_argument("--methods", default=",".join(METHODS), help="comma list of " + ", ".join(METHODS))
    common.add_output_args(att, quiet=False)
    att.set_defaults(handler=cmd_attribute, validate=validate)


def _target(text: str | None, classes: list[str]) -> int | None:
    """``--target`` as a class index: a number, or a class name of the model."""
    if text is None:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    if text in classes:
        return classes.index(text)
    hint = f"one of {', '.join(classes)}" if classes else "a class index (the model has no class names)"
    raise DgnamError(f"--target {text!r} is not a class of the model; give {hint}")


def validate(args: argparse.Namespace) -> None:
    """The checks of ``args`` alone, before any model is loaded (see :mod:`dgnam.cli.validate`)."""
    check.model_args(args)
    common.comma_choices(args.methods, "--methods", METHODS)
    for path in args.image:
        check.existing_file(path, "--image")
    check.output(args.out)


def cmd_attribute(args: argparse.Namespace) -> int:
    device = check.resolve_device(args.device)
    methods = common.comma_choices(args.methods, "--methods", METHODS)
    model = common.load_model_from_args(args, device)
    common.require_input_size(model)
    classes = model.classes
    target = _target(args.target, classes)
    images = torch.stack([common.read_image(path, model.input_size) for path in args.image])
    out_dir = common.fresh_out_dir(args.out, model.name)

    result = attribute(model, images, target, layer=args.layer, methods=methods, device=device)

    def name(index: int) -> str:
        return classes[index] if index < len(classes) else str(index)

    rows = [[f"`{common.short_path(path)}`", name(t), name(p), f"{float(prob):.2f}",
             *[f"{float(result.deletion[m][i, 0]):.2f} / {float(result.deletion[m][i, 1]):.2f}" for m in methods]]
            for i, (path, t, p, prob) in enumerate(zip(args.image, result.targets, result.predicted,
                                                       result.probabilities))]
    chosen = " (chosen automatically: the last spatial feature map)" if args.layer is None else ""
    layer_note = f"Grad-CAM layer: `{markdown_text(result.layer)}`{chosen}. " if result.layer else ""
    report = "\n\n".join([
        f"# Attribution by {markdown_text(model.name)}",
        f"{layer_note}Methods (captum): {', '.join(methods)}. Deletion check: the target's probability after "
        "greying (0.5) the 25% of pixels each method ranks highest / lowest; a map that finds the evidence "
        "makes the first number much lower than the second.",
        markdown_table(["image", "target", "predicted", "p(target)",
                               *[f"{m}: top / bottom 25% greyed" for m in methods]], rows),
        "![image, then one map per method](attribution.png)",
    ]) + "\n"
    manifest = {"settings": {"command": "attribute", "model": common.model_report_name(args.model),
                             "model_name": model.name,
                             "images": args.image, "target": args.target, "layer": result.layer,
                             "methods": methods, "device": str(device), **model.preprocessing(), **common.versions()},
                "images": [{"file": path, "target": t, "predicted": p, "probability": float(prob),
                            "deletion": {m: result.deletion[m][i].tolist() for m in methods}}
                           for i, (path, t, p, prob) in enumerate(zip(args.image, result.targets, result.predicted,
                                                                      result.probabilities))]}
    figures = {"attribution.png": lambda path: result.save_overlays(path, classes)}
    out_dir = write_directory(out_dir, lambda staging: common.write_report(staging, report, manifest, figures),
                              unique=args.out is None)
    common.print_table([row[:4] for row in rows], ["image", "target", "predicted", "p(target)"])
    if result.layer:
        print(f"Grad-CAM layer: {terminal_safe(result.layer)}")
    common.wrote("attribution.png, report.md and manifest.json", out_dir)
    return 0
