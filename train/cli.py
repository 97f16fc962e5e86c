"""The LightningCLI behind every training entry point."""

from __future__ import annotations

import inspect
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch.cli import LightningCLI


class TrainCLI(LightningCLI):
    """LightningCLI in which ``--model.*`` flags given on the command line win on resume.

    With ``--ckpt_path``, LightningCLI re-applies the model hyperparameters stored in the checkpoint
    on top of the parsed config, so ``--ckpt_path last.ckpt --model.lambda_code 1.0`` silently
    trains with the checkpoint's old value. Here the checkpoint fills in only the model settings the
    command line did not name, and each one it keeps from the checkpoint is not overridden.
    A model setting the checkpoint predates (added to the module after it was saved) takes the
    module's default, which is "off" for every optional term, not the current YAML's value: the
    run continues as it was trained unless the command line says otherwise.
    """

    def __init__(self, *args, **kwargs) -> None:
        given = kwargs.get("args")
        tokens = list(given) if isinstance(given, list) else sys.argv[1:]
        self._explicit_model_keys = {t[len("--model."):].split("=", 1)[0].split(".", 1)[0]
                                     for t in tokens if isinstance(t, str) and t.startswith("--model.")}
        super().__init__(*args, **kwargs)

    def _parse_ckpt_path(self) -> None:  # overrides LightningCLI's (private) hook; same logic, one filter added
        if not self.config.get("subcommand"):
            return
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        stored = torch.load(ckpt_path, weights_only=True, map_location="cpu").get("hyper_parameters", {})
        hparams = {k: v for k, v in stored.items() if not k.startswith("_") and k not in self._explicit_model_keys}
        if stored and self.model_class is not None:
            for name, param in inspect.signature(self.model_class.__init__).parameters.items():
                if (name not in stored and name not in self._explicit_model_keys and name != "self"
                        and param.default is not inspect.Parameter.empty):
                    hparams[name] = param.default
        if hparams:
            _note_overridden(self.config[self.config.subcommand].get("model"), hparams, predated=set(hparams) - set(stored))
            self.config = self.parser.parse_object({self.config.subcommand: {"model": hparams}}, self.config)


def _plain(value):
    """Tuples as lists, dicts by value: a YAML list and a checkpoint's tuple are the same setting."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _note_overridden(configured, restored: dict, predated: set[str]) -> None:
    """Say which model settings of the config files the checkpoint overrides on resume.

    A value in a second ``--config`` loses to the checkpoint like the base config's does (the base
    config is passed again on every resume, so it must not win); without this note a resumed chunk
    meant to train at other settings would silently train at the old ones.
    """
    if configured is None:
        return
    for name, value in restored.items():
        now = configured.get(name) if hasattr(configured, "get") else None
        if now is not None and _plain(now) != _plain(value):
            source = "the module's default (the checkpoint predates it)" if name in predated else "the checkpoint's"
            print(f"resuming: model.{name} = {value!r}, {source}, not the config's {now!r}; "
                  f"pass --model.{name} on the command line to change it", file=sys.stderr, flush=True)


def module_from_checkpoint(module_class, ckpt_path: str):
    """Rebuild a training module from its own Lightning checkpoint: ``(module, checkpoint dict)``."""
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    hparams = {k: v for k, v in state["hyper_parameters"].items() if not k.startswith("_")}  # LightningCLI adds _instantiator
    module = module_class(**hparams)
    module.load_state_dict(state["state_dict"])
    module.on_load_checkpoint(state)
    module._fit_start = time.time()
    return module, state


def run(module_class, data_class, export, program: str, args: list[str] | None = None,
        cli_class: type[LightningCLI] = TrainCLI) -> None:
    """``program fit|validate ... [--config YAML]`` through :class:`TrainCLI`, or
    ``program export LIGHTNING_CKPT OUT.pt``, which calls ``export(ckpt, out)``."""
    argv = sys.argv[1:] if args is None else args
    if argv[:1] == ["export"]:
        if len(argv) != 3:
            raise SystemExit(f"usage: python -m {program} export LIGHTNING_CKPT OUT.pt")
        export(argv[1], argv[2])
        return
    torch.set_float32_matmul_precision("high")
    cli_class(module_class, data_class, args=args, save_config_kwargs={"overwrite": True})
