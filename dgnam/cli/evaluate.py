"""Synthesise every class of the target with DGN-AM and the baselines and score them with judge networks:
agreement, KID to real images, diversity, robustness to shift/blur. Writes report.md, grid.png and
results.json."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from dgnam.cli import common
from dgnam.cli import validate as check
from dgnam.errors import DgnamError
from dgnam.evaluation.evaluate import STANDARD_METHODS, Method, evaluate
from dgnam.grid import labelled_grid, save_png
from dgnam.images import is_image_name, load_images
from dgnam.io import atomic_write_json, atomic_write_text, write_directory
from dgnam.nets.zoo import load_model
from dgnam.prior.generator import load_generator


def _sweep(text: str) -> list[tuple[float, float]]:
    try:
        pairs = [tuple(float(v) for v in item.split(":")) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 1:0.99,2:0.99 (k:decay)") from None
    if any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError(f"{text!r}: each item is k:decay, e.g. 2:0.99")
    return pairs


def _steps_list(text: str) -> list[int]:
    try:
        steps = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a step count or a list like 25,50,100,200") from None
    if not steps:
        raise argparse.ArgumentTypeError("give a step count, e.g. 50, or a list like 25,50,100,200")
    return steps


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dgnam evaluate`` to the parser's subcommands."""
    e = sub.add_parser("evaluate", help="DGN-AM vs pixel baselines, scored by independent judges (report + grid)",
                       description=__doc__)
    common.add_model_args(e)
    e.add_argument("--data", required=True, help="dataset root holding test/ and train/ ImageFolder trees "
                                                 "(e.g. ../shared/data/cifar10)")
    e.add_argument("--judge", action="append", default=None,
                   help="judge classifier (repeatable; default: every .pt in the shipped checkpoints/cifar10/judges)")
    common.add_generator_arg(e)
    e.add_argument("--methods", default=None,
                   help="comma list of " + ", ".join(STANDARD_METHODS) + " (default: all; dgn_seeded only when the "
                        "generator names its encoder, which reads a seed's code)")
    e.add_argument("--steps", type=_steps_list, default=None,
                   help="steps per image (default: each method's own, 50 seeded, 200 from noise); a list "
                        "(25,50,100,200) runs every method at each count (rows method@steps)")
    e.add_argument("--target", type=float, default=None, metavar="X",
                   help="DGN-AM: stop pushing each class logit at X times its max over the real test images")
    e.add_argument("--lr", type=float, default=None,
                   help="DGN-AM: first normalised step in code-scale units (default: 8 from noise, 1 seeded)")
    e.add_argument("--restarts", type=int, default=10, help="images per class and method")
    e.add_argument("--sweep", type=_sweep, default=_sweep("1:0.99,3:0.99,0.5:1,3:1"),
                   help="extra DGN-AM runs as k:decay pairs (bound a_i = mean_i + k std_i); '' for none")
    e.add_argument("--sweep-restarts", type=int, default=5)
    common.add_code_prior_arg(e, "the generator's recommended EPS (metadata code_prior), for every DGN-AM run")
    e.add_argument("--fp32", action="store_true", help="on CUDA, synthesise without bf16 autocast (slower)")
    e.add_argument("--real-limit", type=int, default=1000, help="real images per split (spread over classes)")
    e.add_argument("--batch-size", type=int, default=100)
    common.add_run_args(e, quiet=False, steps=False)
    e.set_defaults(handler=cmd_evaluate, validate=validate)


def _method_names(text: str | None, generator) -> list[str]:
    """``--methods``, or every standard method, the seeded one only when the generator can read a seed's code."""
    can_seed = bool(generator.encoder) and bool(generator.encoder_layer)
    if text is None:
        return [name for name, m in STANDARD_METHODS.items() if m.init == "noise" or can_seed]
    names = common.comma_choices(text, "--methods", STANDARD_METHODS)
    if not can_seed and any(STANDARD_METHODS[n].init == "data" for n in names):
        raise DgnamError("dgn_seeded reads each seed's code with the generator's encoder, but the generator names "
                         "none (metadata encoder/encoder_layer); drop dgn_seeded from --methods")
    return names


def methods(names: list[str], steps: list[int] | None, target: float | None, lr: float | None) -> list[Method]:
    """The standard methods ``names``, each at every count of ``steps`` (named ``name@steps`` when there are
    several; None: each at its own default), DGN-AM ones with the activation target and first step given."""
    chosen = []
    for name in names:
        method = STANDARD_METHODS[name]
        if method.param == "dgn":
            method = dataclasses.replace(method, target=target, lr=lr)
        if steps is None:
            chosen.append(method)
        else:
            chosen += ([method.with_steps(s) for s in steps] if len(steps) > 1
                       else [dataclasses.replace(method, steps=steps[0])])
    return chosen


def _judge_name(spec: str) -> str:
    """Short table name: the file stem of a checkpoint, the factory of FILE.py:factory, torchvision's NAME."""
    if spec.startswith("torchvision:"):
        return spec.split(":")[1]
    if ":" in spec and not Path(spec).exists():
        return spec.rsplit(":", 1)[1]
    return Path(spec).stem


def load_labelled(root: Path, limit: int, size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images, labels and class names of an ImageFolder tree, ``limit`` images spread over all classes."""
    if not root.is_dir():
        raise DgnamError(f"'{root}' is not a folder; --data must hold test/ and train/ class folders")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise DgnamError(f"'{root}' has no class folders; --data must hold test/ and train/ ImageFolder trees")
    files = common.image_files(root, limit)
    labels = torch.tensor([classes.index(f.relative_to(root).parts[0]) for f in files])
    return load_images(files, size), labels, classes


def validate(args: argparse.Namespace) -> None:
    """The checks of ``args`` alone, before any model is loaded (see :mod:`dgnam.cli.validate`)."""
    check.model_args(args)
    check.at_least(args, 1, "--batch-size", "--real-limit")
    for steps in args.steps or []:
        check.finite(steps, "--steps", minimum=1)
    check.finite(args.target, "--target", minimum=0)
    check.finite(args.lr, "--lr", minimum=0)
    check.at_least(args, 2, "--restarts", *(["--sweep-restarts"] if args.sweep else []),
                   why=" (diversity compares the images of each class with each other)")
    check.seed(args.seed, max(args.restarts, args.sweep_restarts))
    for k, decay in args.sweep:
        check.finite(k, "--sweep k", minimum=0)
        check.finite(decay, "--sweep decay", minimum=0)
    check.finite(args.code_prior, "--code-prior", minimum=0)
    if args.methods is not None:
        common.comma_choices(args.methods, "--methods", STANDARD_METHODS)
    check.existing_file(args.generator, "--generator")
    for judge in args.judge or []:
        check.model_spec(judge, "--judge")
    for split in ("test", "train"):
        check.existing_folder(str(Path(args.data) / split), "--data " + split)
        _no_loose_images(Path(args.data) / split)
    check.output(args.out)


def _no_loose_images(root: Path) -> None:
    """An image directly in ``root`` (test/ or train/) belongs to no class: its label would be unknown."""
    loose = sorted(p.name for p in root.iterdir() if is_image_name(p.name))
    if loose:
        raise DgnamError(f"'{root / loose[0]}' lies directly in '{root}', outside any class folder "
                         f"({len(loose)} image(s)); move it into its class folder, e.g. '{root}/CLASS/'")


def _class_mismatch(data: Path, classes: list[str], target_classes: list[str]) -> str:
    """Why the data's class folders do not fit the target's classes, told by what differs."""
    fix = "point --data at the dataset the target was trained on"
    if len(classes) > len(target_classes):
        extra = [c for c in classes if c not in target_classes] or classes[len(target_classes):]
        return (f"{data} has {len(classes)} class folders but the target has {len(target_classes)} classes "
                f"(not: {', '.join(extra[:5])}); {fix}")
    first = next(i for i, (a, b) in enumerate(zip(classes, target_classes)) if a != b)
    return (f"{data}'s class folder {first} is {classes[first]!r} but the target's class {first} is "
            f"{target_classes[first]!r}; {fix}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    device = check.resolve_device(args.device)
    target = common.load_model_from_args(args, device)
    generator = load_generator(common.generator_path(args.generator), device)
    names = _method_names(args.methods, generator)
    common.fit_to_generator(target, generator)
    judge_paths = args.judge or sorted(str(p) for p in common.DEFAULT_JUDGES.glob("*.pt"))
    if not judge_paths:
        raise DgnamError("no judges found; pass --judge PATH (a classifier never used to make the images)")
    # A judge that made the images (the target) or shaped the prior (the generator's encoder) is no judge.
    makers = {common.same_file(args.model or str(common.DEFAULT_MODEL)): "the target",
              common.same_file(common.resolve_shipped(generator.encoder or "")): "the generator's encoder"}
    for path in judge_paths:
        role = makers.get(common.same_file(path))
        if role:
            raise DgnamError(f"judge '{path}' is {role}; pass judges that played no part in making the images")
    judges = {}
    for path in judge_paths:
        judge = load_model(path, device=device)
        if judge.input_size is None:
            judge.input_size = target.input_size
        name = _judge_name(path)
        judges[name if name not in judges else f"{name}_{len(judges)}"] = judge
    args.code_prior = common.recommended_code_prior(args.code_prior, generator)
    seeded = any(STANDARD_METHODS[m].init == "data" for m in names)
    # Seeded runs read their start codes with the generator's encoder even when no code prior is asked for.
    code_encoder = common.load_code_prior_encoder(args.code_prior > 0 or seeded, generator,
                                                  device, args.model, target)
    data = Path(args.data)
    test_x, test_y, classes = load_labelled(data / "test", args.real_limit, target.input_size)
    train_x, _, train_classes = load_labelled(data / "train", args.real_limit, target.input_size)
    if train_classes != classes:
        raise DgnamError(f"{data}/train and {data}/test hold different class folders; use one dataset layout")
    if target.classes and target.classes[: len(classes)] != classes:
        raise DgnamError(_class_mismatch(data, classes, target.classes))
    out_dir = common.fresh_out_dir(args.out, f"evaluate-{target.name}")

    ev = evaluate(target, judges, generator, real_test=(test_x, test_y), real_train=train_x, classes=classes,
                  methods=methods(names, args.steps, args.target, args.lr), restarts=args.restarts,
                  steps=args.steps[0] if args.steps and len(args.steps) == 1 else None,  # the sweep's too
                  sweep=args.sweep, sweep_restarts=args.sweep_restarts, seed=args.seed,
                  batch_size=args.batch_size, device=device, amp=not args.fp32, code_prior=args.code_prior,
                  code_encoder=code_encoder)

    def write(staging: Path) -> None:
        images, captions = ev.grid()
        save_png(labelled_grid(images, captions, ncol=len(classes)), staging / "grid.png")
        atomic_write_text(ev.to_markdown() + "\n![methods x classes](grid.png)\n", staging / "report.md")
        results = {"target": common.model_report_name(args.model),
                   "judges": [common.model_report_name(j) for j in judge_paths],
                   "data": args.data,
                   "restarts": args.restarts, "steps": ev.steps, "seed": args.seed, "code_prior": args.code_prior,
                   "judge_accuracy": ev.judge_accuracy, "judge_pgd": ev.judge_pgd,
                   "real": dataclasses.asdict(ev.real),
                   "methods": {k: dataclasses.asdict(v) for k, v in ev.methods.items()},
                   "sweep": [{"k": k, "decay": d, **dataclasses.asdict(s)} for k, d, s in ev.sweep]}
        atomic_write_json(results, staging / "results.json")

    out_dir = write_directory(out_dir, write, unique=args.out is None)
    common.wrote("report.md, grid.png and results.json", out_dir)
    return 0
