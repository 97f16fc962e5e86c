"""The checks of arguments alone, shared by every command's ``validate(args)``, which ``dgnam.cli.main``
runs before the command's handler: a mistake that shows in the arguments fails here, in one line naming
the fix, before any model is loaded or any file is written."""

from __future__ import annotations

import argparse
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from dgnam import checks
from dgnam.errors import DgnamError
from dgnam.io import name_max
from dgnam.prior.generator import generator_file


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


# The smallest --std taken: a [0, 1] image divided by less is scaled by over a million, a typo (0.0229 for 0.229
# is 10x, not 10^6); it overflows float32 inside the network, far from the flag that caused it.
MIN_STD = 1e-6


def normalisation(args: argparse.Namespace) -> None:
    """``--mean`` and ``--std``: both or neither, finite, and a std of at least :data:`MIN_STD` (a zero std
    divides by zero)."""
    if (args.mean is None) != (args.std is None):
        raise DgnamError("give both --mean and --std, or neither")
    for flag, values in (("--mean", args.mean), ("--std", args.std)):
        if values is not None and not all(math.isfinite(v) for v in values):
            raise DgnamError(f"{flag} must be three finite numbers R,G,B, got {','.join(map(str, values))}")
    if args.std is not None and not all(v >= MIN_STD for v in args.std):
        raise DgnamError(f"--std must be >= {MIN_STD:g} for every channel (images are divided by it), got "
                         f"{','.join(map(str, args.std))}")


def seed(value: int, count: int = 1, flag: str = "--seed") -> None:
    """``--seed`` and the ``count - 1`` seeds after it (one per restart) must be valid torch seeds."""
    checks.seed(value, count, flag)


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
    try:
        is_dir = spec is not None and Path(spec).is_dir()
    except OSError:  # FILE.py:factory with a name near the limit is too long a path to look up: not a folder
        is_dir = False
    if is_dir:
        raise DgnamError(f"{flag} '{spec}' is a directory; pass a .pt/TorchScript file or FILE.py:factory")


def output(path: str | Path | None, flag: str = "--out", folder: bool = True) -> Path:
    """``path`` can be created as a new output: a new or empty folder (``folder``) or a new file, in a place
    this process can write; returns where to write it (:func:`output_target`). None: the default
    ``dgnam-runs/<time>`` in the working directory."""
    if path is None:
        writable(Path("dgnam-runs"), flag)
        return Path("dgnam-runs")
    p = Path(path)
    if p.name in ("", ".", ".."):
        raise DgnamError(f"{flag} '{path}' names no new {'folder' if folder else 'file'}; give a new name, "
                         f"e.g. {flag} runs/first")
    names_fit(path, flag)
    p = output_target(path, flag)
    if p.exists() and not (folder and p.is_dir() and not any(p.iterdir())):
        fix = "choose a new directory (runs never overwrite)" if folder else "choose a new file (never overwritten)"
        raise DgnamError(f"{flag} '{p}' exists{' and is not empty' if folder and p.is_dir() else ''}; {fix}")
    writable(p.parent, flag, path)
    return p


def output_target(path: str | Path, flag: str = "--out") -> Path:
    """Where the output ``path`` is written: ``path`` itself, or, where a symbolic link is on the way, the path
    it leads to, whose folder must exist (dgnam writes through a link, never replaces it, and never creates
    folders wherever a dangling link points)."""
    real = Path(os.path.realpath(path))
    if real == Path(os.path.abspath(path)):
        return Path(path)
    if not real.parent.is_dir():
        raise DgnamError(f"{flag} '{path}' leads through a symbolic link to '{real}', whose folder does not exist; "
                         f"create it, or give a path without the link")
    return real


def names_fit(path: str | Path, flag: str) -> None:
    """Every name in ``path`` fits the filesystem's limit, checked before compute (the output is created only
    once the run is done) and before anything looks at the path (which fails on such a name)."""
    limit = name_max(nearest_folder(Path(os.path.abspath(path))))
    for name in Path(path).parts:
        if len(os.fsencode(name)) > limit:
            raise DgnamError(f"{flag} '{path}': the name '{name[:40]}...' is {len(os.fsencode(name))} bytes, over "
                             f"the filesystem's limit of {limit}; choose a shorter name")


def nearest_folder(path: Path) -> Path:
    """``path``, or the nearest folder above it that exists: where a new output's folders would be created."""
    while True:
        try:
            if path.exists():
                return path
        except OSError:  # a name too long to look up
            pass
        path = path.parent


def writable(folder: Path, flag: str, path: str | Path | None = None) -> None:
    """``folder`` (or, where it does not exist yet, the nearest existing folder above it) accepts new files:
    probed by creating and removing a hidden folder there, since permission bits do not tell for root,
    read-only mounts or immutable folders."""
    shown = path if path is not None else folder
    parent = nearest_folder(Path(os.path.abspath(folder)))  # the folders still to create go into it
    if not parent.is_dir():
        raise DgnamError(f"{flag} '{shown}': '{parent}' is not a directory; choose a path inside a writable folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".dgnam-write-check-", dir=parent))
    except OSError as exc:
        raise DgnamError(f"{flag} '{shown}' cannot be written ({exc.strerror} in '{parent}'); choose a writable "
                         f"location") from None


def resolve_device(name: str) -> torch.device:
    """``--device``: ``auto`` (CUDA when there is a GPU), ``cpu``, ``cuda``, ``cuda:1`` ..."""
    return checks.resolve_device(name, "--device")


def unit_ranges(text: str, flag: str = "--units") -> list[range]:
    """``"0-9,15"`` -> [range(0, 10), range(15, 16)]: the syntax check, which builds no list of units."""
    if not text.strip():
        raise DgnamError(f"{flag} is empty; give e.g. 0-9,15")
    ranges: list[range] = []
    for part in text.split(","):
        # ASCII digits only: int() would also take "1_0", "+1" and other scripts' digits, naming another unit
        match = re.fullmatch(r"\s*([0-9]+)\s*(?:-\s*([0-9]+)\s*)?", part)
        if match is None or int(match[2] or match[1]) < int(match[1]):
            raise DgnamError(f"{flag} {text!r} is not a list like 0-9,15")
        ranges.append(range(int(match[1]), int(match[2] or match[1]) + 1))
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
    ``--device``; a batch of one image at ``--input-size`` must fit in memory."""
    model_spec(args.model)
    normalisation(args)
    at_least(args, 1, "--input-size")
    device = resolve_device(args.device)
    if args.input_size is not None:
        checks.check_fits(checks.image_batch_bytes(1, args.input_size),
                          f"one image of {args.input_size}x{args.input_size} pixels", "--input-size", device)


# --- sizes: what the flags make dgnam allocate, checked before the model loads (its layers are unknown yet, so
# a layer's unit count is taken as --units gives it, else 1: the estimates stay lower bounds) -----------------
def unit_count(args: argparse.Namespace) -> int:
    """How many units ``--units`` names (1 when it is not given: the layer's size is not known yet)."""
    return sum(len(r) for r in unit_ranges(args.units)) if getattr(args, "units", None) else 1


def synthesis_size(args: argparse.Namespace, rows_per_restart: int | None = None) -> None:
    """``--units`` x ``--restarts`` images of ``--steps`` steps at ``--input-size`` must fit in memory."""
    rows = (rows_per_restart or unit_count(args)) * args.restarts
    checks.check_fits(checks.synthesis_bytes(rows, args.steps, args.input_size or 1, args.batch_size),
                      f"synthesising {rows} image(s) of {args.steps} steps", "--steps, --restarts or --units",
                      resolve_device(args.device))
    if args.input_size is not None:
        checks.check_fits(checks.image_batch_bytes(args.batch_size, args.input_size),
                          f"a batch of {args.batch_size} images of {args.input_size}x{args.input_size} pixels",
                          "--batch-size or --input-size", resolve_device(args.device))


def dataset_pass_size(args: argparse.Namespace, reservoir: int) -> None:
    """The dataset pass's top ``--k`` per unit and a batch of ``--data-batch-size`` images must fit in memory."""
    device = resolve_device(args.device)
    units = unit_count(args)
    checks.check_fits(checks.top_k_bytes(units, args.k, args.data_batch_size, reservoir),
                      f"keeping the top {args.k} images of {units} unit(s)", "--k (or --units)", device)
    if args.input_size is not None:
        checks.check_fits(checks.image_batch_bytes(args.data_batch_size, args.input_size),
                          f"a batch of {args.data_batch_size} images of {args.input_size}x{args.input_size} pixels",
                          "--data-batch-size or --input-size", device)


def synthesis_args(args: argparse.Namespace, min_restarts: int = 1, why: str = "") -> None:
    """What :func:`dgnam.cli.common.add_synthesis_args` and ``--generator`` add (``why``: the reason for
    ``min_restarts``, for the message)."""
    at_least(args, 1, "--steps", "--batch-size")
    at_least(args, min_restarts, "--restarts", why=why)
    seed(args.seed, args.restarts)
    generator_args(args)
    synthesis_size(args)
    output(args.out)


def data_limit(args: argparse.Namespace, default: int | None) -> None:
    """``--data-limit`` (declared with ``default``): at least 1, and only with ``--data``, which it limits."""
    at_least(args, 1, "--data-limit")
    if args.data is None and args.data_limit != default:
        raise DgnamError("--data-limit limits the images of --data; pass --data DIR or drop it")


def generator_args(args: argparse.Namespace) -> None:
    """What ``--code-prior`` and ``--generator`` add: a finite prior weight only where there is a code, and a
    generator file that exists."""
    code_prior_needs_code(args)
    existing_file(args.generator, "--generator")


def unit_args(args: argparse.Namespace) -> None:
    """What :func:`dgnam.cli.common.add_unit_args` adds: ``--units`` ranges when given, ``--position`` only on a
    spatial layer."""
    if args.units is not None:
        unit_ranges(args.units)
    position_on_spatial_layer(args)


def position_on_spatial_layer(args: argparse.Namespace) -> None:
    """``--position`` reads a conv, channels-last or token layer: the model output has no positions."""
    if getattr(args, "position", None) is not None and getattr(args, "layer", "output") == "output":
        raise DgnamError("--position applies to conv layers; the model output has no spatial positions")


def code_prior_needs_code(args: argparse.Namespace) -> None:
    """``--code-prior`` (finite, >= 0) weighs a prior on the generator's code: only ``--param dgn`` has one."""
    finite(args.code_prior, "--code-prior", minimum=0)
    param = getattr(args, "param", "dgn")
    if param != "dgn" and args.code_prior:
        raise DgnamError(f"--code-prior applies to --param dgn (a code), not {param!r}; drop it")


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class ActivationTarget:
    """``--target``: an activation level, absolute (``12.5``), a multiple of the unit's max over the real images
    (``1.5x``) or a percentile of the unit over them (``p99``)."""

    value: float
    relative_to: str | None  # None (absolute), "max" or "percentile"

    def __str__(self) -> str:
        return {None: f"{self.value:g}", "max": f"{self.value:g}x", "percentile": f"p{self.value:g}"}[self.relative_to]

    def levels(self, real_values: torch.Tensor | None) -> torch.Tensor | float:
        """One level per unit from ``real_values`` (N images, U units), or the absolute number."""
        if self.relative_to is None:
            return self.value
        if real_values is None:
            raise DgnamError(f"--target {self} is relative to real images; pass --data DIR (or --init-data DIR)")
        if self.relative_to == "max":
            return self.value * real_values.max(0).values
        return torch.quantile(real_values.float(), self.value / 100, dim=0)


def activation_target(text: str) -> ActivationTarget:
    """argparse type of ``--target``: ``12.5``, ``1.5x`` or ``p99``."""
    text = text.strip()
    try:
        if text.lower().endswith("x"):
            target = ActivationTarget(float(text[:-1]), "max")
        elif text.lower().startswith("p"):
            target = ActivationTarget(float(text[1:]), "percentile")
        else:
            target = ActivationTarget(float(text), None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a target like 12.5, 1.5x (the unit's real max) or "
                                         "p99") from None
    if not math.isfinite(target.value) or (target.relative_to == "percentile" and not 0 <= target.value <= 100) \
            or (target.relative_to == "max" and target.value <= 0):
        raise argparse.ArgumentTypeError(f"{text!r}: a multiple must be > 0 and a percentile within 0-100")
    return target
