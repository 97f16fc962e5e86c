"""Draw codes from a trained code sampler (python -m train.code_sampler) and write G(code) as one PNG grid."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.utils import make_grid

from dgnam import checks
from dgnam.cli import common
from dgnam.cli import validate as check
from dgnam.errors import DgnamError, terminal_safe
from dgnam.grid import save_png
from dgnam.io import writing
from dgnam.prior.generator import load_generator
from dgnam.prior.sampler import load_code_sampler


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dgnam sample`` to the parser's subcommands."""
    sm = sub.add_parser("sample", help="samples of a generator prior: G(h) for codes from a trained code sampler",
                        description=__doc__)
    common.add_generator_arg(sm)
    sm.add_argument("--sampler", default=None, help="code sampler checkpoint (default: the shipped CIFAR-10 one)")
    sm.add_argument("--n", type=int, default=None,
                    help="number of samples (default 64); with a class-conditional sampler, samples per class, "
                         "one row per class (default 8)")
    sm.add_argument("--classes", default=None, metavar="NAMES",
                    help="class-conditional samplers only: comma-separated class names or indices "
                         "(default: every class)")
    sm.add_argument("--seed", type=int, default=0, help="the same seed gives the same samples")
    sm.add_argument("--out", required=True, help="PNG file to write (must not exist)")
    sm.add_argument("--device", default="auto")
    sm.set_defaults(handler=cmd_sample, validate=validate)


def validate(args: argparse.Namespace) -> None:
    """The checks of ``args`` alone, before any model is loaded (see :mod:`dgnam.cli.validate`)."""
    if Path(args.out).suffix.lower() != ".png":
        raise DgnamError(f"--out '{args.out}' must be a .png file")
    check.output(args.out, folder=False)
    check.at_least(args, 1, "--n")
    check.seed(args.seed)
    check.existing_file(args.generator, "--generator")
    check.existing_file(args.sampler, "--sampler")
    if args.n is not None:  # the generator's image size is not known yet: 1x1 images, a lower bound
        sample_size(args.n, 1, check.resolve_device(args.device))
    check.resolve_device(args.device)


def sample_size(n: int, image_size: int, device) -> None:
    """``n`` images of ``image_size`` (and their grid) must fit in memory."""
    checks.check_fits(checks.image_batch_bytes(n, image_size), f"{n} samples of {image_size}x{image_size} pixels",
                      "--n", device)


def cmd_sample(args: argparse.Namespace) -> int:
    out = check.output_target(args.out)  # through a symbolic link, its target (never the link replaced)
    device = check.resolve_device(args.device)
    generator = load_generator(common.generator_path(args.generator), device)
    sampler = load_code_sampler(args.sampler or common.DEFAULT_SAMPLER, device)
    sampler.check_generator(generator)
    labels, what = None, ""
    if sampler.num_classes:
        names = args.classes.split(",") if args.classes else sampler.classes
        per_class = args.n or 8
        chosen = [sampler.class_index(name.strip()) for name in names]
        labels = torch.tensor(chosen).repeat_interleave(per_class)  # one row per class
        n, nrow = len(labels), per_class
        what = f" ({per_class} per class, one row each: {', '.join(sampler.classes[c] for c in chosen)})"
    elif args.classes:
        raise DgnamError("--classes needs a class-conditional sampler (python -m train.code_sampler "
                         "--model.num_classes K); this one was trained without classes")
    else:
        n = args.n or 64
        nrow = min(n, 16)
    sample_size(n, generator.image_size, device)
    with torch.no_grad():
        codes = sampler.sample(n, seed=args.seed, labels=labels)
        images = torch.cat([generator.generate(chunk) for chunk in codes.split(256)])
    with writing(out):
        save_png(make_grid(images.cpu(), nrow=nrow, padding=1), out)
    common.wrote(f"{len(images)} samples", out)
    if what:
        print(terminal_safe(what.strip(" ()")))  # class names come from the sampler's checkpoint
    return 0
