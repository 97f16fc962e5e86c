"""The LightningCLI behind every training entry point."""

from __future__ import annotations

import inspect
import sys
from copy import deepcopy
from pathlib import Path

import torch
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI

from dgnam.errors import DgnamError
from dgnam.io import read_torch


class TrainCLI(LightningCLI):
    """LightningCLI in which ``--model.*`` flags given on the command line win on resume.

    With ``--ckpt_path``, LightningCLI re-applies the model hyperparameters stored in the checkpoint
    on top of the parsed config, so ``--ckpt_path last.ckpt --model.lambda_code 1.0`` silently
    trains with the checkpoint's old value. Here the checkpoint fills in only the model settings the
    command line did not name, and each one it keeps from the checkpoint is not overridden.
    A model setting the checkpoint predates (added to the module after it was saved) takes the
    module's default, which is "off" for every optional term, not the current YAML's value: the
    run continues as it was trained unless the command line says otherwise.

    Done with LightningCLI's public hooks: :meth:`parse_arguments` keeps the model settings as parsed,
    and :meth:`before_instantiate_classes`, which runs after LightningCLI has applied the checkpoint's,
    puts back the ones the command line named and sets the predated ones to their defaults.
    """

    def __init__(self, *args, **kwargs) -> None:
        given = kwargs.get("args")
        tokens = list(given) if isinstance(given, list) else sys.argv[1:]
        self._explicit_model_keys = {t[len("--model."):].split("=", 1)[0].split(".", 1)[0]
                                     for t in tokens if isinstance(t, str) and t.startswith("--model.")}
        self._parsed_model = None
        # A bad flag raises instead of printing the whole usage (about 90 lines) before its one line of error;
        # train.entry.run_main prints that line.
        kwargs.setdefault("parser_kwargs", {"exit_on_error": False})
        super().__init__(*args, **kwargs)

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand:  # the model settings before LightningCLI lays the checkpoint's over them
            self._parsed_model = deepcopy(self.config[subcommand].get("model"))

    def before_instantiate_classes(self) -> None:
        subcommand = self.config.get("subcommand")
        if not subcommand or self._parsed_model is None or self.model_class is None:
            return
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        stored = torch.load(ckpt_path, weights_only=True, map_location="cpu", mmap=True).get("hyper_parameters", {})
        stored = {k: v for k, v in stored.items() if not k.startswith("_")}
        if not stored:
            return
        explicit = self._explicit_model_keys
        predated = {name: param.default
                    for name, param in inspect.signature(self.model_class.__init__).parameters.items()
                    if name not in stored and name not in explicit and name != "self"
                    and param.default is not inspect.Parameter.empty}
        restored = {k: v for k, v in stored.items() if k not in explicit}
        _note_overridden(self._parsed_model, {**restored, **predated}, predated=set(predated))
        given = {k: _plain_namespace(self._parsed_model.get(k)) for k in explicit if k in self._parsed_model}
        if predated or given:
            self.config = self.parser.parse_object({subcommand: {"model": {**predated, **given}}}, self.config)


def _plain_namespace(value):
    """A parsed value as ``parse_object`` takes it back (a nested namespace as a dict)."""
    return value.as_dict() if isinstance(value, Namespace) else value


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


# What to do about a Lightning checkpoint that cannot be read.
LIGHTNING_FIX = "pass a Lightning checkpoint this program wrote (runs/.../ckpt/last.ckpt)"


def module_from_checkpoint(module_class, ckpt_path: str):
    """Rebuild a training module from its own Lightning checkpoint: ``(module, checkpoint dict)``."""
    state = read_torch(ckpt_path, "Lightning checkpoint", LIGHTNING_FIX)
    # LightningCLI adds _instantiator
    hparams = {k: v for k, v in state.get("hyper_parameters", {}).items() if not k.startswith("_")}
    unknown = set(hparams) - set(inspect.signature(module_class.__init__).parameters)
    if "state_dict" not in state or unknown:
        raise DgnamError(f"'{ckpt_path}' is not a checkpoint of {module_class.__name__} (settings "
                         f"{', '.join(sorted(unknown)) or 'missing'}); export it with the program that trained it")
    module = module_class(**hparams)
    module.on_load_checkpoint(state)  # before the weights, as Lightning calls it (it may adapt the state dict)
    module.load_state_dict(state["state_dict"])
    return module, state


def run(module_class, data_class, export, program: str, args: list[str] | None = None,
        cli_class: type[LightningCLI] = TrainCLI) -> None:
    """``program fit|validate ... [--config YAML]`` through :class:`TrainCLI`, or
    ``program export LIGHTNING_CKPT OUT.pt``, which calls ``export(ckpt, out)``."""
    argv = sys.argv[1:] if args is None else args
    if argv[:1] == ["export"]:
        if len(argv) != 3:
            raise SystemExit(f"usage: python -m {program} export LIGHTNING_CKPT OUT.pt")
        if not Path(argv[1]).is_file():
            raise DgnamError(f"checkpoint '{argv[1]}' does not exist; pass a Lightning checkpoint of this program "
                             f"(e.g. runs/.../ckpt/last.ckpt)")
        export(argv[1], argv[2])
        return
    torch.set_float32_matmul_precision("high")
    cli_class(module_class, data_class, args=args, save_config_kwargs={"overwrite": True})
