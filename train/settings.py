"""Checks of a training module's settings, made when it is built: before any data is read or step taken."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from dgnam.errors import DgnamError, terminal_safe


def check_numbers(**settings: float) -> None:
    """Loss weights, rates and decays: finite and >= 0, learning rates (names starting ``lr``) > 0. A NaN or
    negative weight would otherwise train, and export, a model without a word."""
    for name, value in settings.items():
        rate = name.startswith("lr")
        if not (math.isfinite(value) and (value > 0 if rate else value >= 0)):
            raise DgnamError(f"--model.{name}={value} must be a finite number {'> 0' if rate else '>= 0'}; fix it "
                             f"in the config or on the command line")


def check_export_path(export_path: str | None) -> None:
    """Where the run exports when it ends: a file in a folder that exists or can be made, checked now rather than
    after hours of training; an existing file there is said to be replaced (the shipped configs export into
    ``checkpoints/``, which is how they reproduce the shipped models)."""
    if not export_path:
        return
    path = Path(export_path)
    if path.is_dir():
        raise DgnamError(f"--model.export_path '{terminal_safe(path)}' is a folder; name the file to write")
    folder = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise DgnamError(f"--model.export_path '{terminal_safe(path)}' cannot be written ('{terminal_safe(folder)}' "
                         f"is not a writable folder); choose another path")
    if path.is_file():
        print(f"note: {terminal_safe(path)} exists and is replaced when training ends (--model.export_path to "
              f"keep it)", file=sys.stderr, flush=True)


def refuse_own_start(option: str, start: str, export_path: str | None) -> None:
    """One-line error if a fine-tuning run's start file (``--model.<option>``) is also its export path."""
    if export_path and Path(start).resolve() == Path(export_path).resolve():
        raise DgnamError(f"--model.{option} and --model.export_path are both '{start}'; the run would "
                         f"overwrite its own start, so export to a new file")
