"""Checks of the public API's arguments, shared by its functions (the CLI's are in :mod:`dgnam.cli.validate`):
each raises a one-line :class:`DgnamError` naming the fix, before any compute.

Sizes: what an argument will make dgnam allocate is checked against what the machine can hold. A size that is finite
but huge (``k=10**9``, ``range(10**9)`` units, ``steps=10**10``) would otherwise fill the memory before any check,
and the kernel kills the process or a raw ``MemoryError`` ends it. Estimates here are lower bounds of what the named
tensors take (activations of the user's model are not counted), so a refusal is certain to be right; the message
gives the number and the argument to lower.
"""

from __future__ import annotations

import os

import torch

from dgnam.errors import DgnamError

MAX_SEED = 2 ** 64 - 1  # torch.manual_seed takes an unsigned 64-bit seed

FLOAT = 4  # bytes of a float32
LONG = 8  # bytes of an int64
ROW_OVERHEAD = 300  # Python bytes per synthesised row: its seed, label and metadata entries in lists


def available_bytes(device: str | torch.device = "cpu") -> int:
    """Memory a new allocation can take now: the GPU's free memory, or the system's available memory."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # not Linux: the physical memory is the bound
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def human(n_bytes: float) -> str:
    """``1.5e9`` -> ``'1.4 GiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError  # unreachable


def check_fits(n_bytes: int, what: str, lower: str, device: str | torch.device = "cpu") -> None:
    """Refuse, in one line naming ``lower`` (the arguments to lower), ``what`` needs more than ``device`` holds.

    Example: ``check_fits(steps * rows * 4, f"the history of {steps} steps", "steps", "cpu")``
    """
    device = torch.device(device)
    # The outputs of a CUDA run are gathered on the CPU too: both must hold them.
    devices = [device] if device.type == "cpu" else [device, torch.device("cpu")]
    for where in devices:
        available = available_bytes(where)
        if n_bytes > available:
            memory = "GPU" if where.type == "cuda" else "system"
            raise DgnamError(f"{what} needs at least {human(n_bytes)}, more than the {human(available)} of {memory} "
                             f"memory available; lower {lower}")


def image_batch_bytes(batch_size: int, image_size: int) -> int:
    """One batch of RGB float images of ``image_size`` pixels a side, with its gradient (or its uint8 copy)."""
    return 2 * batch_size * 3 * image_size * image_size * FLOAT


def synthesis_bytes(n_rows: int, steps: int, image_size: int, batch_size: int) -> int:
    """What a synthesis of ``n_rows`` images keeps: the (steps, rows) history, each row's image and parameters
    (at most an image's size; gathered, then concatenated), its Python metadata, and one batch in flight."""
    kept = n_rows * (steps * FLOAT + 2 * 2 * 3 * image_size * image_size * FLOAT + ROW_OVERHEAD)
    return kept + image_batch_bytes(min(batch_size, n_rows), image_size)


def top_k_bytes(n_units: int, k: int, batch_size: int, reservoir: int) -> int:
    """The dataset pass's running state per unit: the top ``k`` (value, image, place) merged with a batch (the
    candidates, their sort and the gathered result: about 3 copies), and the percentile reservoir."""
    per_unit = 3 * (k + batch_size) * (FLOAT + 2 * LONG) + 2 * (reservoir + batch_size) * FLOAT
    return n_units * per_unit


# --- devices, indices, seeds and amounts -------------------------------------------------------------------
def resolve_device(name: str | torch.device, flag: str = "device") -> torch.device:
    """``auto`` (CUDA when there is a GPU), ``cpu``, ``cuda``, ``cuda:1`` ...: a device this machine has."""
    if isinstance(name, str) and name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):  # mps, xla ...: dgnam is tested on CPU and CUDA only
        raise DgnamError(f"{flag} {str(name)!r} is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DgnamError(f"{flag} {name} was asked for but no CUDA GPU is available; use {flag} cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise DgnamError(f"{flag} {name}: there are only {torch.cuda.device_count()} CUDA GPU(s); use cuda:0 to "
                         f"cuda:{torch.cuda.device_count() - 1}")
    return device


def index(value, what: str) -> int:
    """A whole number >= 0 (a unit, a class): ``3``, ``numpy.int64(3)`` or a 0-d integer tensor; never a
    float (1.7 is not unit 1), a bool or a string."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise DgnamError(f"{what} must be whole numbers >= 0, got {value!r}; pass e.g. [0, 3, 5] or range(10)")
    number = value.__index__()
    if number < 0:
        raise DgnamError(f"{what} must be whole numbers >= 0, got {number}")
    return number


def indices(values, what: str = "units") -> list[int]:
    """:func:`index` of each of ``values`` (a list, a range, a tensor ...); a single string is refused, not
    read character by character."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise DgnamError(f"{what} must be a list of whole numbers, got {values!r}; pass e.g. [0, 3, 5] or range(10)")
    return [index(v, what) for v in values]


def seed(value, count: int = 1, what: str = "seed") -> int:
    """A seed whose ``count - 1`` successors (one per restart) are valid 64-bit torch seeds too."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise DgnamError(f"{what} must be a whole number, got {value!r}")
    number = value.__index__()
    if number < 0 or number + count - 1 > MAX_SEED:
        raise DgnamError(f"{what} must be between 0 and {MAX_SEED - count + 1} (seeds {what}, {what}+1, ... per "
                         f"restart are 64-bit), got {value}")
    return number


def non_negative(value: float, what: str) -> float:
    """A finite number >= 0 (a jitter, a blur, a bound)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DgnamError(f"{what} must be a number >= 0, got {value!r}") from None
    if not (number >= 0 and number != float("inf")):
        raise DgnamError(f"{what} must be a finite number >= 0, got {value!r}")
    return number
