"""Convert a PyTorch port of the DeePSiM fc6 generator (Caffe layer names defc7 ... deconv0; BGR 0-255
mean-subtracted output) into a dgnam generator whose images are RGB in [0, 1]. Reads SRC with
torch.load(weights_only=True); never overwrites OUT."""

from __future__ import annotations

import argparse

from dgnam.cli import validate as check
from dgnam.errors import terminal_safe
from dgnam.io import writing
from dgnam.prior.importers import import_deepsim_fc6, load_port_state_dict, read_act_range


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dgnam import-generator`` to the parser's subcommands."""
    imp = sub.add_parser("import-generator", help="convert the published DeePSiM fc6 generator to a dgnam generator",
                         description=__doc__)
    imp.add_argument("src", help="the port's state dict, e.g. upconvGAN_fc6.pt")
    imp.add_argument("out", help="the dgnam generator to write (must not exist)")
    imp.add_argument("--bounds", default=None,
                     help="per-unit code upper bounds, whitespace-separated (the paper's act_range/3x/fc6.txt); "
                          "default: none until `dgnam stats` sets them")
    imp.set_defaults(handler=cmd_import_generator, validate=validate)


def validate(args: argparse.Namespace) -> None:
    """The checks of ``args`` alone, before anything is read (see :mod:`dgnam.cli.validate`)."""
    check.existing_file(args.src, "SRC")
    check.existing_file(args.bounds, "--bounds")
    check.output(args.out, "OUT", folder=False)


def cmd_import_generator(args: argparse.Namespace) -> int:
    out = check.output_target(args.out, "OUT")  # through a symbolic link, its target (never the link replaced)
    bounds = read_act_range(args.bounds) if args.bounds else None
    generator = import_deepsim_fc6(load_port_state_dict(args.src), bounds)
    kept = [name for name, layer in generator.convs.items() if layer.bias is not None]
    metadata = {"imported_from": str(args.src), "original": "DeePSiM fc6 generator (Dosovitskiy & Brox 2016), "
                "inverting CaffeNet fc6 after ReLU", "bounds_file": args.bounds, "conv_biases_kept": kept}
    with writing(out):
        generator.save(out, metadata)
    bound = generator.code_upper_bound
    bounds_text = (f"bounds {float(bound.min()):.1f}-{float(bound.max()):.1f} (mean {float(bound.mean()):.1f})"
                   if bounds is not None else "no code bounds (pass --bounds or run `dgnam stats`)")
    print(f"wrote {terminal_safe(out)}: fc6 generator, 4096-d code -> 256x256, output caffe_bgr -> RGB [0,1]; "
          f"{bounds_text}")
    return 0
