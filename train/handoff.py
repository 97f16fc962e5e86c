"""Carry a DeePSiM run over to another machine in a few megabytes, beside its exported generator.

A Lightning checkpoint of a generator run holds G, its moving average, D, the frozen encoder and
Adam's moments: hundreds of megabytes for the fc6 generator, too much to keep beside the shipped
file. ``pack`` keeps what the exported generator (EMA weights) does not already hold: D's weights
(float16), the balance rule's state, the loop counters and the settings. ``unpack`` rebuilds a
checkpoint that ``fit --ckpt_path`` resumes: G and its average start from the exported weights, D from
the packed ones, the encoder from its own file, and Adam's moments start afresh (its bias correction
makes that a warm restart, not a jump). The step count carries over, so chunk schedules go on.

Run: ``python -m train.handoff pack runs/generator_fc6/ckpt/last.ckpt checkpoints/cifar10/generator_fc6.pt OUT.pt``
     ``python -m train.handoff unpack OUT.pt checkpoints/cifar10/generator_fc6.pt runs/generator_fc6/ckpt/last.ckpt``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from dgnam.errors import DgnamError
from dgnam.io import atomic_save, read_torch
from dgnam.prior.generator import UpconvGenerator, load_generator
from train.entry import run_main

HANDOFF_FORMAT = "dgnam-generator-training"
# Lightning checkpoint entries carried as they are (counters, callback and data settings: all small).
CARRIED = ("epoch", "global_step", "pytorch-lightning_version", "loops", "callbacks", "hparams_name",
           "hyper_parameters", "datamodule_hparams_name", "datamodule_hyper_parameters")


def _exported(generator_path: str | Path, step: int) -> UpconvGenerator:
    generator = load_generator(generator_path)
    if generator.metadata.get("iterations") != step:
        raise DgnamError(f"'{generator_path}' was exported at {generator.metadata.get('iterations')} iterations, "
                         f"the run is at {step}; export the run's last checkpoint first "
                         f"(python -m train.generator export CKPT {generator_path})")
    return generator


def pack(ckpt_path: str | Path, generator_path: str | Path, out: str | Path) -> Path:
    """Write the handoff of the Lightning checkpoint ``ckpt_path`` whose G was exported to ``generator_path``."""
    from train.cli import LIGHTNING_FIX
    from train.generator import averaged_weights  # the module is only needed here

    state = read_torch(ckpt_path, "Lightning checkpoint", LIGHTNING_FIX)
    generator = _exported(generator_path, state["global_step"])
    ema = averaged_weights(state)  # either checkpoint layout
    if ema is None:
        raise DgnamError(f"'{ckpt_path}' keeps no moving average of G; a handoff restarts G from the exported "
                         f"average, so train with --model.ema_decay (e.g. 0.998)")
    drift = max((ema[name].float() - param.float()).abs().max().item() for name, param in generator.named_parameters())
    if drift > 1e-2:
        raise DgnamError(f"'{generator_path}' is not the export of '{ckpt_path}' (weights differ by {drift:.3g}); "
                         f"export it again")
    prefix = "discriminator."
    handoff = {key: state[key] for key in CARRIED if key in state}
    handoff.update({
        "format": HANDOFF_FORMAT, "version": 1,
        "discriminator": {k[len(prefix):]: v.half() if v.is_floating_point() else v
                          for k, v in state["state_dict"].items() if k.startswith(prefix)},
        "optimizer_param_groups": [opt["param_groups"] for opt in state["optimizer_states"]],
        "dgnam": dict(state.get("dgnam", {})),
    })
    return atomic_save(handoff, out)


def unpack(handoff_path: str | Path, generator_path: str | Path, out: str | Path) -> Path:
    """Rebuild a resumable Lightning checkpoint at ``out`` from a handoff and its exported generator."""
    from train.generator import GeneratorModule  # the module is only needed here

    handoff = read_torch(handoff_path, "handoff", "pass a file written by python -m train.handoff pack")
    if not isinstance(handoff, dict) or handoff.get("format") != HANDOFF_FORMAT:
        raise DgnamError(f"'{handoff_path}' is not a generator training handoff; write one with "
                         f"python -m train.handoff pack")
    step = handoff["global_step"]
    generator = _exported(generator_path, step)
    if Path(out).exists() and torch.load(out, map_location="cpu", weights_only=True, mmap=True)["global_step"] >= step:
        raise DgnamError(f"'{out}' is already at or past {step} iterations; resume it instead of unpacking")
    # G comes from the checkpoint from now on, not from the run's first start file.
    hparams = {k: v for k, v in handoff["hyper_parameters"].items() if not k.startswith("_")}
    hparams["init_generator"] = None
    module = GeneratorModule(**hparams)
    module.generator.load_state_dict(generator.state_dict())
    if module.generator_ema is None:
        raise DgnamError(f"'{handoff_path}' has ema_decay 0; a handoff restarts G from the exported average, "
                         f"so pack a run trained with --model.ema_decay (e.g. 0.998)")
    module.generator_ema.update_parameters(module.generator)  # the first update copies: the average is G
    module.discriminator.load_state_dict(handoff["discriminator"])
    checkpoint = {key: handoff[key] for key in CARRIED if key in handoff}
    checkpoint["hyper_parameters"] = {**handoff["hyper_parameters"], "init_generator": None}
    checkpoint.update({
        "state_dict": {k: v.detach().clone() for k, v in module.state_dict().items()},
        # Adam's moments start afresh: only the settings of each parameter group are restored.
        "optimizer_states": [{"state": {}, "param_groups": groups} for groups in handoff["optimizer_param_groups"]],
        "lr_schedulers": [],
        "dgnam": dict(handoff["dgnam"]),
    })
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return atomic_save(checkpoint, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.handoff", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="Lightning checkpoint + its exported generator -> handoff file")
    p.add_argument("checkpoint"), p.add_argument("generator"), p.add_argument("out")
    u = sub.add_parser("unpack", help="handoff file + exported generator -> resumable Lightning checkpoint")
    u.add_argument("handoff"), u.add_argument("generator"), u.add_argument("out")
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            path = pack(args.checkpoint, args.generator, args.out)
        else:
            path = unpack(args.handoff, args.generator, args.out)
    except (DgnamError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m train.handoff"))
