"""``dgnam layers``: a model's layers with output shapes, layouts, unit counts and parameter counts."""

from __future__ import annotations

import argparse

from dgnam.cli import common
from dgnam.cli import validate as check
from dgnam.errors import DgnamError
from dgnam.nets.model import describe_layers, last_spatial_layer


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``dgnam layers`` to the parser's subcommands."""
    lay = sub.add_parser("layers", help="list a model's layers with output shapes, layouts, units and parameter counts",
                         description="Every layer with its output shape, its layout (how it holds its units: units, "
                                     "conv, channels_last, tokens[:N prefix tokens], or other, which dgnam refuses), "
                                     "its unit count as objectives read it, and its parameter count.")
    common.add_model_args(lay)
    lay.set_defaults(handler=cmd_layers, validate=check.model_args)


def cmd_layers(args: argparse.Namespace) -> int:
    device = check.resolve_device(args.device)
    model = common.load_model_from_args(args, device)
    common.require_input_size(model)
    infos = describe_layers(model)
    try:
        gradcam = last_spatial_layer(model)
    except DgnamError:
        gradcam = None
    rows = []
    for info in infos:
        shape = "x".join(map(str, info.shape)) if info.shape else "-"
        calls = f"{info.calls}" if info.calls != 1 else ""
        mark = "<- last spatial layer (Grad-CAM)" if info.name == gradcam else ""
        layout = str(info.layout) if info.layout is not None else "-"
        units = info.units() if info.calls else None
        rows.append([info.name, info.type, shape, layout, f"{units}" if units is not None else "-",
                     f"{info.n_params:,}", calls, mark])
    common.print_table(rows, ["layer", "type", "output", "layout", "units", "params", "calls", ""])
    print(f"{sum(p.numel() for p in model.module.parameters()):,} parameters; input "
          f"{model.input_size}x{model.input_size}; "
          f"address the k-th call of a reused module as NAME@k (0-based); layout tokens:N = N prefix tokens (CLS "
          f"first; :no-cls: none is a CLS) before the patches, 'other' = not readable as units (declare it with "
          f"--layout)")
    return 0
