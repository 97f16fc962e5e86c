"""``dgnam stats``: a generator's code bounds, recomputed from real images or from a new k."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dgnam.cli import common
from dgnam.cli import validate as check
from dgnam.errors import DgnamError
from dgnam.images import load_images
from dgnam.io import writing
from dgnam.prior.generator import UpconvGenerator, load_generator
from dgnam.prior.stats import code_statistics

DATA_LIMIT = 50000  # real images whose codes give the statistics by default (all of CIFAR-10's train set)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dgnam stats`` to the parser's subcommands."""
    st = sub.add_parser("stats", help="recompute a generator's code bounds from a folder of real images, "
                                      "or set a new k on the statistics it stores")
    st.add_argument("--generator", required=True, type=check.generator_name)
    st.add_argument("--data", default=None, help="folder of real images (ImageFolder tree or flat); without it, "
                                                 "the generator's stored per-unit mean and std are kept and only k "
                                                 "changes")
    st.add_argument("--encoder", default=None, help="encoder checkpoint (default: the one named in the generator)")
    st.add_argument("--k", type=float, default=3.0, help="bound = mean + k * std (paper: 3)")
    st.add_argument("--code-prior", type=float, default=None, metavar="EPS",
                    help="also record EPS as this generator's recommended code prior for synthesis (0: the paper's "
                         "DGN-AM; default: keep what it records)")
    st.add_argument("--out", required=True, help="where to write the generator with new bounds (must not exist)")
    common.add_data_limit_arg(st, DATA_LIMIT)
    st.add_argument("--device", default="auto")
    st.set_defaults(handler=cmd_stats, validate=validate)


def validate(args: argparse.Namespace) -> None:
    """The checks of ``args`` alone, before any model is loaded (see :mod:`dgnam.cli.validate`)."""
    check.resolve_device(args.device)
    check.existing_file(args.generator, "--generator")
    check.existing_file(args.encoder, "--encoder")
    check.existing_folder(args.data, "--data")
    check.data_limit(args, DATA_LIMIT)
    check.finite(args.k, "--k", minimum=0)  # an infinite bound would reach every later run's manifest
    check.finite(args.code_prior, "--code-prior", minimum=0)
    check.output(args.out, folder=False)


def cmd_stats(args: argparse.Namespace) -> int:
    device = check.resolve_device(args.device)
    out = check.output_target(args.out)  # through a symbolic link, its target (never the link replaced)
    generator = load_generator(args.generator, device, rebounding=True)
    metadata = {**generator.metadata, **({"code_prior": args.code_prior} if args.code_prior is not None else {})}
    if args.data is None:
        return _rebound(generator, metadata, args.k, out)
    encoder = common.load_code_encoder(generator, device, args.encoder, fix="pass --encoder with the encoder's file")
    files = common.image_files(Path(args.data), args.data_limit)
    batches = (load_images(files[i:i + 256], encoder.input_size) for i in range(0, len(files), 256))
    mean, std, summary = code_statistics(encoder, generator.encoder_layer, batches, device)
    if mean.numel() != generator.code_dim:
        raise DgnamError(f"encoder layer {generator.encoder_layer!r} has {mean.numel()} units but the generator takes "
                         f"{generator.code_dim}; pass the matching --encoder")
    generator.set_code_statistics(mean.to(device), std.to(device), args.k)
    with writing(out):
        generator.save(out, {**metadata, "bound_k": args.k, "code_summary": summary, "stats_data": args.data})
    bound = generator.code_upper_bound
    print(f"{summary['n_images']} images: code zeros {summary['zero_fraction']:.2f}, mean {summary['mean']:.3f}; "
          f"bounds {float(bound.min()):.2f}-{float(bound.max()):.2f} (mean {float(bound.mean()):.2f}); wrote {out}")
    return 0


def _rebound(generator: UpconvGenerator, metadata: dict[str, Any], k: float, out: Path) -> int:
    """``dgnam stats`` without --data: the same per-unit statistics, bound = mean + k * std."""
    if not generator.has_code_statistics:
        raise DgnamError("the generator stores no code statistics; pass --data to compute them from real images")
    old_k = generator.metadata.get("bound_k")
    generator.set_code_statistics(generator.code_mean, generator.code_std, k)
    with writing(out):
        generator.save(out, {**metadata, "bound_k": k})
    bound = generator.code_upper_bound
    print(f"bound k {old_k} -> {k} on the stored statistics: bounds {float(bound.min()):.2f}-{float(bound.max()):.2f} "
          f"(mean {float(bound.mean()):.2f}); wrote {out}")
    return 0
