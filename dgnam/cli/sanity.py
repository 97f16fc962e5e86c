"""``dgnam sanity``: does the image show the network or the prior? Cascading randomisation of the model
(Adebayo et al. 2018): the model's layers are re-initialised from the top down, one more block per
stage, and the same units are synthesised from the same seeds with DGN-AM and a baseline at every
stage. Writes one figure per method (rows = stages, columns = units), report.md and manifest.json."""

from __future__ import annotations

import argparse
import time

from dgnam.cli import common
from dgnam.cli import validate as check
from dgnam.cli.prepare import prepare
from dgnam.engine.param import make_param
from dgnam.engine.preferred import baseline_transforms, visualize
from dgnam.errors import DgnamError, terminal_safe
from dgnam.io import write_directory
from dgnam.markdown import markdown_text
from dgnam.nets.model import Model
from dgnam.nets.zoo import load_model
from dgnam.sanity.cascade import cascade_markdown, cascading_randomization
from dgnam.sanity.randomize import cascade_stages


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dgnam sanity`` to the parser's subcommands."""
    s = sub.add_parser("sanity", help="does the image show the network or the prior? cascading randomisation",
                       description=__doc__)
    common.add_model_args(s)
    s.add_argument("--layer", default="output", help="layer name (see `dgnam layers`); default: the model output")
    common.add_layout_arg(s)
    s.add_argument("--units", default=None, help="e.g. 0-4 (default: the first 10 units of the layer)")
    common.add_generator_arg(s)
    s.add_argument("--baseline", choices=["fourier", "pixel", "none"], default="fourier",
                   help="the pixel-space method checked beside DGN-AM (default: fourier)")
    s.add_argument("--stages", type=int, default=4,
                   help="randomisation stages from the top block down to the input (0: one per block; default 4)")
    s.add_argument("--judge", default=None,
                   help="classifier whose penultimate features measure image similarity (default: the shipped "
                        "robust CIFAR-10 judge)")
    common.add_synthesis_args(s, restarts=3, restarts_help="images per unit and stage (at least 2)")
    common.add_output_args(s)
    s.set_defaults(handler=cmd_sanity, validate=validate)


def validate(args: argparse.Namespace) -> None:
    """The checks of ``args`` alone, before any model is loaded (see :mod:`dgnam.cli.validate`)."""
    check.model_args(args)
    check.synthesis_args(args, 2, why=" (the check compares the trained model's restarts with each other)")
    check.at_least(args, 0, "--stages", why=" (0: one stage per block)")
    check.unit_args(args)
    check.model_spec(args.judge, "--judge")


def cmd_sanity(args: argparse.Namespace) -> int:
    device = check.resolve_device(args.device)
    # The code prior reads the code with the generator's own encoder, loaded apart from the target
    # (own_encoder): randomising the target must not randomise the prior's reader too.
    run = prepare(args, device, generator=True, tuned=False, own_encoder=True)
    _randomisable(run.model)
    model, generator, units, code_prior, code_encoder = (run.model, run.generator, run.units, run.code_prior,
                                                          run.code_encoder)
    stages = cascade_stages(model, args.layer, args.stages)  # names a layer without parameters below it, early
    judge = load_model(args.judge or str(common.DEFAULT_JUDGE), device=device)
    if judge.input_size is None:
        judge.input_size = model.input_size
    out_dir = common.fresh_out_dir(args.out, f"sanity-{model.name}")
    names = model.classes if args.layer == "output" else None
    shared = dict(layer=args.layer, restarts=args.restarts, seed=args.seed, steps=args.steps,
                  batch_size=args.batch_size, device=device, unit_names=names or None)
    methods = {"dgn": lambda m: visualize(m, units, param=make_param("dgn", generator, model.input_size),
                                          generator=generator, code_prior=code_prior, code_encoder=code_encoder,
                                          **shared)}
    if args.baseline != "none":
        methods[args.baseline] = lambda m: visualize(m, units, param=make_param(args.baseline, None, model.input_size),
                                                     transforms=baseline_transforms(), **shared)

    start = time.time()

    def report_stage(name: str) -> None:
        print(f"stage {terminal_safe(name)} ({time.time() - start:.0f}s)", flush=True)

    result = cascading_randomization(model, methods, judge, layer=args.layer, units=units, restarts=args.restarts,
                                     stages=args.stages, seed=args.seed, device=device,
                                     on_stage=None if args.quiet else report_stage)
    seconds = time.time() - start
    figures = {f"stages_{m}.png": (lambda path, m=m: result.figure(m).save(path)) for m in result.methods}
    report = cascade_markdown(result, {m: f"stages_{m}.png" for m in result.methods},
                              f"Cascading randomisation of {markdown_text(model.name)}") + \
        f"\n{len(stages)} stages x {len(methods)} methods in {seconds:.0f} s on {device}.\n"
    manifest = {"settings": {"command": "sanity", "model": run.names["model"],
                             "model_name": model.name, "layer": args.layer, "units": units,
                             "generator": run.names["generator"], "code_prior": code_prior,
                             "baseline": args.baseline, "judge": common.report_path(args.judge or common.DEFAULT_JUDGE),
                             "stages": [{"name": s.name, "layers": list(s.layers)} for s in stages],
                             "steps": args.steps, "restarts": args.restarts, "seed": args.seed,
                             "device": str(device), "seconds": round(seconds, 1), **model.preprocessing(),
                             **common.versions()},
                "within_restarts": {m: {k: vars(v) for k, v in w.items()} for m, w in result.within.items()},
                "stages": [{"stage": s.stage, "method": s.method, "verdict": s.verdict, "verdicts": s.verdicts,
                            "similarity": {k: vars(v) for k, v in s.similarity.items()},
                            "mean_activation": s.activation} for s in result.scores]}
    out_dir = write_directory(out_dir, lambda staging: common.write_report(staging, report, manifest, figures),
                              unique=args.out is None)
    for method in result.methods:
        verdicts = ", ".join(f"{s.stage}: {s.verdict}" for s in result.verdicts(method))
        print(f"{method}: {verdicts}")
    common.wrote(f"{', '.join(figures)}, report.md and manifest.json", out_dir, seconds)
    return 0


def _randomisable(model: Model) -> None:
    """Cascading randomisation re-initialises the model's parameters: it must have some."""
    if not any(True for _ in model.parameters()):
        raise DgnamError(f"{model.name} has no parameters to randomise; pass a trained model")
