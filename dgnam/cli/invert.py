"""Reconstruct an image from each layer's representation, through the generator prior and with a
TV-regularised pixel baseline; reports the normalised error ||phi(x') - phi(x)|| / ||phi(x)|| per cell.
Writes grid.png, report.md, manifest.json."""

from __future__ import annotations

import argparse

from dgnam.analysis.invert import DEFAULT_TV_WEIGHT, invert
from dgnam.cli import common
from dgnam.cli import validate as check
from dgnam.cli.prepare import prepare
from dgnam.engine.param import PARAMETRIZATIONS
from dgnam.images import suffixes_text
from dgnam.io import write_directory
from dgnam.markdown import markdown_table, markdown_text


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dgnam invert`` to the parser's subcommands."""
    inv = sub.add_parser("invert", help="reconstruct an image from layer representations (inversion)",
                         description=__doc__)
    common.add_model_args(inv)
    inv.add_argument("--image", required=True, help=f"the image to invert ({suffixes_text()})")
    inv.add_argument("--layers", required=True,
                     help="comma list of layers (see `dgnam layers`), e.g. features.relu2_2,output")
    inv.add_argument("--params", default="dgn,pixel", help="comma list of dgn, pixel, fourier (grid rows)")
    common.add_generator_arg(inv)
    inv.add_argument("--tv-weight", type=float, default=DEFAULT_TV_WEIGHT,
                     help="total-variation weight of pixel/Fourier rows")
    common.add_run_args(inv)
    inv.set_defaults(handler=cmd_invert, validate=validate)


def validate(args: argparse.Namespace) -> None:
    """The checks of ``args`` alone, before any model is loaded (see :mod:`dgnam.cli.validate`)."""
    check.model_args(args)
    check.at_least(args, 1, "--steps")
    check.seed(args.seed)
    common.comma_choices(args.params, "--params", PARAMETRIZATIONS)
    common.comma_list(args.layers, "--layers")
    check.finite(args.tv_weight, "--tv-weight", minimum=0)
    check.existing_file(args.image, "--image")
    check.existing_file(args.generator, "--generator")
    check.output(args.out)


def cmd_invert(args: argparse.Namespace) -> int:
    device = check.resolve_device(args.device)
    params = common.comma_choices(args.params, "--params", PARAMETRIZATIONS)
    layers = common.comma_list(args.layers, "--layers")
    run = prepare(args, device, generator="dgn" in params or bool(args.generator), units=None)
    model, generator = run.model, run.generator
    for layer in layers:
        common.layer_size(model, layer, device)  # unknown names, calls and shapes fail here, in one line
    image = common.read_image(args.image, model.input_size)
    out_dir = common.fresh_out_dir(args.out, model.name)

    result = invert(model, image, layers, generator, params=params, steps=args.steps, tv_weight=args.tv_weight,
                    seed=args.seed, device=device, progress=not args.quiet)
    rows = [[kind] + [f"{float(error):.3f} (start {float(start):.2f})"
                      for error, start in zip(result.errors[p], result.start_errors[p])]
            for p, kind in enumerate(params)]
    report = "\n\n".join([
        f"# Inversion of `{markdown_text(common.short_path(args.image))}` by {markdown_text(model.name)}",
        "Each cell reconstructs the image from one layer's representation phi(x) and reports the normalised "
        "representation error ||phi(x') - phi(x)|| / ||phi(x)|| of the reconstruction x' (in brackets: the same "
        f"error for the random image the optimisation started from). `dgn` optimises the generator's code "
        f"(the prior regularises); `pixel`/`fourier` optimise the image with a total-variation penalty "
        f"(weight {args.tv_weight:g}). {args.steps} steps, seed {args.seed}.",
        markdown_table(["param \\ layer", *[f"`{layer}`" for layer in layers]], rows),
        "![inversion grid: rows = parametrisation, first column = original](grid.png)",
    ]) + "\n"
    manifest = {"settings": {"command": "invert", **run.names, "model_name": model.name, "image": args.image,
                             "layers": layers, "params": params, "steps": args.steps, "tv_weight": args.tv_weight,
                             "seed": args.seed,
                             **model.preprocessing(),
                             "device": str(device), **common.versions(),
                             "engine": [run.settings for run in result.runs]},
                "errors": {kind: dict(zip(layers, result.errors[p].tolist())) for p, kind in enumerate(params)},
                "start_errors": {kind: dict(zip(layers, result.start_errors[p].tolist()))
                                 for p, kind in enumerate(params)}}
    figures = {"grid.png": result.save_grid}
    out_dir = write_directory(out_dir, lambda staging: common.write_report(staging, report, manifest, figures),
                              unique=args.out is None)
    common.print_table([[kind, *[f"{float(e):.3f}" for e in result.errors[p]]] for p, kind in enumerate(params)],
                        ["param", *layers])
    common.wrote("grid.png, report.md and manifest.json", out_dir)
    return 0
