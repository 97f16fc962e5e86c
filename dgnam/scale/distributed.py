"""Several processes, one job: torchrun's process group, sharding, and failing together.

Launched by ``torchrun`` (which sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the rendezvous
address), every process joins one group: NCCL when it runs on CUDA (one GPU per process, chosen by
``LOCAL_RANK``), gloo on CPU. Launched plainly, the same code runs as a group of one with no
communication at all, so a single-process run needs neither torchrun nor a process group.

Collectives here carry small Python objects (manifest entries, paths, error messages); images go
through the file system, so multi-node runs need an output folder every node can see.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from dgnam.errors import DgnamError, first_line

T = TypeVar("T")
# Ranks wait in a collective while rank 0 alone downloads weights or merges thousands of images;
# NCCL's default 10 minutes is too short for that.
COLLECTIVE_TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class Ranks:
    """Where this process stands: ``rank`` of ``world_size``, on ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the merged output."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_world_size() -> int:
    """``WORLD_SIZE`` as set by torchrun; 1 for a plain launch."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise DgnamError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; launch with torchrun") from None


def _rank_device(requested: torch.device, local_rank: int, world_size: int) -> torch.device:
    # Under torchrun each process owns one GPU; an explicit cuda:N would stack every rank on one card.
    if requested.type == "cuda" and world_size > 1:
        if local_rank >= torch.cuda.device_count():
            raise DgnamError(f"LOCAL_RANK {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                             f"use --nproc_per_node <= the number of GPUs")
        return torch.device("cuda", local_rank)
    return requested


@contextmanager
def process_group(requested: torch.device) -> Iterator[Ranks]:
    """Join torchrun's process group for the duration (gloo on CPU, NCCL on CUDA), then leave it.

    Example::

        with process_group(torch.device("cpu")) as ranks:
            mine = shard(units, ranks)
    """
    world_size = launched_world_size()
    if world_size <= 1:
        yield Ranks(0, 1, 0, requested)
        return
    if not dist.is_available():
        raise DgnamError("this PyTorch build has no torch.distributed; run without torchrun")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _rank_device(requested, local_rank, world_size)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL collectives and object transfers use the current device
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    try:
        yield Ranks(dist.get_rank(), dist.get_world_size(), local_rank, device)
    finally:
        if created:
            dist.destroy_process_group()


def shard(items: Sequence[T], ranks: Ranks) -> list[T]:
    """This rank's contiguous block of ``items``; blocks differ in length by at most one.

    Concatenating the blocks of ranks 0, 1, ... gives ``items`` back in order, which is what lets
    rank 0 merge per-rank results into the single-process order. Example: 10 items on 3 ranks ->
    blocks of 4, 3, 3.
    """
    n, w, r = len(items), ranks.world_size, ranks.rank
    start = r * (n // w) + min(r, n % w)
    stop = start + n // w + (1 if r < n % w else 0)
    return list(items[start:stop])


def all_gather(obj: Any, ranks: Ranks) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not ranks.distributed:
        return [obj]
    gathered: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast(obj: Any, ranks: Ranks) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not ranks.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def rank_zero_first(fn: Callable[[], T], ranks: Ranks) -> T:
    """``fn`` on rank 0, then on the other ranks, each failing together (see :func:`on_every_rank`).

    For loading that may download (torchvision weights): the file is fetched once, then read from
    the cache by everyone else.
    """
    first = on_every_rank(lambda: fn() if ranks.is_main else None, ranks)
    rest = on_every_rank(lambda: None if ranks.is_main else fn(), ranks)
    return first if ranks.is_main else rest


def on_every_rank(fn: Callable[[], T], ranks: Ranks) -> T:
    """Run ``fn`` on this rank; if it fails on any rank, every rank raises.

    A rank that fails alone would otherwise leave the others waiting forever in their next
    collective. A :class:`DgnamError` is re-raised with its one-line message (prefixed by the
    failing rank when there are several); any other exception is re-raised as itself on the rank
    where it happened, with its traceback.
    """
    value: T | None = None
    error: str | None = None
    original: BaseException | None = None
    try:
        value = fn()
    except DgnamError as exc:
        error = str(exc)
    except Exception as exc:  # report to the other ranks first, then re-raise below
        error, original = f"{type(exc).__name__}: {first_line(exc)}", exc
    errors = all_gather(error, ranks)
    if original is not None:
        raise original
    for rank, message in enumerate(errors):
        if message is not None:
            raise DgnamError(message if not ranks.distributed else f"rank {rank}: {message}")
    return value  # type: ignore[return-value]
