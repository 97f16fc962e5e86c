"""The checks of arguments alone, shared by every command's ``validate(args)``, which ``dgnam.cli.main``
runs before the command's handler: a mistake that shows in the arguments fails here, in one line naming
the fix, before any model is loaded or any file is written."""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

import torch

from dgnam.errors import DgnamError
from dgnam.prior.generator import generator_file

MAX_SEED = 2 ** 64 - 1  # torch.manual_seed takes an unsigned 64-bit seed


def at_least(args: argparse.Namespace, minimum: int, *flags: str, why: str = "") -> None:
    """Each integer option ``--flag`` (given as ``"--flag"``) that is set must be >= ``minimum``
    (``why``: the reason, for the message)."""
    for flag in flags:
        value = getattr(args, _dest(flag))
        if value is not None and value < minimum:
            raise DgnamError(f"{flag} must be >= {minimum}{why}, got {value}; pass e.g. {flag} {minimum}")


def finite(value: float | None, flag: str, minimum: float | None = None) -> None:
    """A float option must be a finite number (and >= ``minimum`` when given); None means unset."""
    if value is None:
        return
    if not math.isfinite(value):
        raise DgnamError(f"{flag} must be a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise DgnamError(f"{flag} must be >= {minimum:g}, got {value:g}")


def normalisation(args: argparse.Namespace) -> None:
    """``--mean`` and ``--std``: both or neither, finite, and a positive std (a zero std divides by zero)."""
    if (args.mean is None) != (args.std is None):
        raise DgnamError("give both --mean and --std, or neither")
    for flag, values in (("--mean", args.mean), ("--std", args.std)):
        if values is not None and not all(math.isfinite(v) for v in values):
            raise DgnamError(f"{flag} must be three finite numbers R,G,B, got {','.join(map(str, values))}")
    if args.std is not None and not all(v > 0 for v in args.std):
        raise DgnamError(f"--std must be > 0 for every channel (images are divided by it), got "
                         f"{','.join(map(str, args.std))}")


def seed(value: int, count: int = 1, flag: str = "--seed") -> None:
    """``--seed`` and the ``count - 1`` seeds after it (one per restart) must be valid torch seeds."""
    if value < 0 or value + count - 1 > MAX_SEED:
        raise DgnamError(f"{flag} must be between 0 and {MAX_SEED - count + 1} (seeds {flag}, {flag}+1, ... per "
                         f"restart are 64-bit), got {value}")


def generator_name(value: str) -> str:
    """The argparse type of ``--generator``: a shipped generator's short name (``fc6``) becomes its file."""
    return str(generator_file(value))


def existing_file(path: str | None, flag: str) -> None:
    """A file option must name a file: not a folder, not a missing path."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise DgnamError(f"{flag} '{p}' is a directory; pass the file itself")
    if not p.is_file():
        raise DgnamError(f"{flag} '{p}' does not exist; check the path")


def existing_folder(path: str | None, flag: str) -> None:
    """A folder option must name a folder."""
    if path is not None and not Path(path).is_dir():
        what = "is a file" if Path(path).is_file() else "does not exist"
        raise DgnamError(f"{flag} folder '{path}' {what}; point it at a folder of images")


def model_spec(spec: str | None, flag: str = "--model") -> None:
    """A ``--model`` that is a path must be a file (specs like ``torchvision:NAME`` are checked on loading)."""
    if spec is not None and Path(spec).is_dir():
        raise DgnamError(f"{flag} '{spec}' is a directory; pass a .pt/TorchScript file or FILE.py:factory")


def output(path: str | Path | None, flag: str = "--out", folder: bool = True) -> None:
    """``path`` can be created as a new output: a new or empty folder (``folder``) or a new file, in a place
    this process can write. None: the default ``dgnam-runs/<time>`` in the working directory."""
    if path is None:
        return writable(Path("dgnam-runs"), flag)
    p = Path(path)
    if p.name in ("", ".", ".."):
        raise DgnamError(f"{flag} '{path}' names no new {'folder' if folder else 'file'}; give a new name, "
                         f"e.g. {flag} runs/first")
    if p.exists() and not (folder and p.is_dir() and not any(p.iterdir())):
        fix = "choose a new directory (runs never overwrite)" if folder else "choose a new file (never overwritten)"
        raise DgnamError(f"{flag} '{p}' exists{' and is not empty' if folder and p.is_dir() else ''}; {fix}")
    writable(p.parent, flag, path)


def writable(folder: Path, flag: str, path: str | Path | None = None) -> None:
    """``folder`` (or, where it does not exist yet, the nearest existing folder above it) accepts new files:
    probed by creating and removing a hidden folder there, since permission bits do not tell for root,
    read-only mounts or immutable folders."""
    shown = path if path is not None else folder
    parent = Path(os.path.abspath(folder))
    while not parent.exists():  # the folders still to create go into the nearest existing one
        parent = parent.parent
    if not parent.is_dir():
        raise DgnamError(f"{flag} '{shown}': '{parent}' is not a directory; choose a path inside a writable folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".dgnam-write-check-", dir=parent))
    except OSError as exc:
        raise DgnamError(f"{flag} '{shown}' cannot be written ({exc.strerror} in '{parent}'); choose a writable "
                         f"location") from None


def resolve_device(name: str) -> torch.device:
    """``--device``: ``auto`` (CUDA when there is a GPU), ``cpu``, ``cuda``, ``cuda:1`` ..."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):  # mps, xla ...: dgnam is tested on CPU and CUDA only
        raise DgnamError(f"--device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DgnamError(f"--device {name} was asked for but no CUDA GPU is available; use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise DgnamError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA GPU(s); use cuda:0 to "
                         f"cuda:{torch.cuda.device_count() - 1}")
    return device


def unit_ranges(text: str, flag: str = "--units") -> list[range]:
    """``"0-9,15"`` -> [range(0, 10), range(15, 16)]: the syntax check, which builds no list of units."""
    ranges: list[range] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(p) for p in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                ranges.append(range(lo, hi + 1))
            elif part:
                ranges.append(range(int(part), int(part) + 1))
    except ValueError:
        raise DgnamError(f"{flag} {text!r} is not a list like 0-9,15") from None
    if not ranges:
        raise DgnamError(f"{flag} is empty; give e.g. 0-9,15")
    return ranges


def parse_units(text: str, n_units: int, flag: str = "--units", of: str = "the layer") -> list[int]:
    """``"0-9,15"`` -> [0, 1, ..., 9, 15] (first occurrence order, no repeats), every unit below ``n_units``:
    checked on the ranges before any list is built, so ``0-1000000000`` costs nothing."""
    ranges = unit_ranges(text, flag)
    for r in ranges:
        if r.stop > n_units:
            bad = r.start if r.start >= n_units else n_units
            raise DgnamError(f"unit {bad} is out of range for {of}, which has {n_units} units "
                             f"(valid: 0-{n_units - 1}); fix {flag}")
    return list(dict.fromkeys(u for r in ranges for u in r))


def model_args(args: argparse.Namespace) -> None:
    """What :func:`dgnam.cli.common.add_model_args` adds: ``--model``, ``--mean``/``--std``, ``--input-size``,
    ``--device``."""
    model_spec(args.model)
    normalisation(args)
    at_least(args, 1, "--input-size")
    resolve_device(args.device)


def synthesis_args(args: argparse.Namespace, min_restarts: int = 1, why: str = "") -> None:
    """What :func:`dgnam.cli.common.add_synthesis_args` and ``--generator`` add (``why``: the reason for
    ``min_restarts``, for the message)."""
    at_least(args, 1, "--steps", "--batch-size")
    at_least(args, min_restarts, "--restarts", why=why)
    seed(args.seed, args.restarts)
    finite(args.code_prior, "--code-prior", minimum=0)
    existing_file(args.generator, "--generator")
    output(args.out)


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")
