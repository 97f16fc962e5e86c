"""Run a long training in resumable chunks from a schedule file.

A schedule (YAML) names the training program, its config, the Lightning checkpoint that each chunk
resumes, and the chunks: each trains to ``until`` iterations with the config's settings plus its
``flags`` (``--model.*`` overrides). Chunks the checkpoint has already passed are skipped, so the same
command continues a stopped run where it stopped; ``--until N`` stops early (at N iterations, or at
the end of the chunk that reaches it), for a machine that is only free for a while.

Run: ``python -m train.chunks configs/cifar10/generator_fc6_chunks.yaml [--until 4000] [--dry-run]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dgnam.errors import DgnamError
from dgnam.io import read_torch
from train.entry import run_main


@dataclass(frozen=True)
class Chunk:
    until: int
    flags: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Schedule:
    program: str
    config: str
    checkpoint: str
    chunks: tuple[Chunk, ...]


def read_schedule(path: str | Path) -> Schedule:
    """Parse and check a schedule file (one-line errors naming the fix)."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DgnamError(f"cannot read the schedule '{path}' ({type(exc).__name__}); pass a YAML schedule "
                         "file") from None
    if not isinstance(raw, dict) or not {"program", "config", "checkpoint", "chunks"} <= raw.keys():
        raise DgnamError(f"'{path}' needs the keys program, config, checkpoint and chunks")
    chunks = []
    for i, entry in enumerate(raw["chunks"] or []):
        until = entry.get("until") if isinstance(entry, dict) else None
        flags = entry.get("flags") or {} if isinstance(entry, dict) else None
        # bool is an int to isinstance: `until: true` would train to "True" steps
        if not isinstance(until, int) or isinstance(until, bool) or until <= 0 or not isinstance(flags, dict):
            raise DgnamError(f"'{path}' chunk {i}: write {{until: ITERATIONS, flags: {{model.NAME: VALUE}}}}")
        if chunks and until <= chunks[-1].until:
            raise DgnamError(f"'{path}' chunk {i}: until {until} does not follow {chunks[-1].until}; list chunks in "
                             "order")
        chunks.append(Chunk(until, flags))
    if not chunks:
        raise DgnamError(f"'{path}' lists no chunks")
    return Schedule(str(raw["program"]), str(raw["config"]), str(raw["checkpoint"]), tuple(chunks))


def trained_steps(checkpoint: str | Path) -> int:
    """The iterations a Lightning checkpoint has done (0 when there is none yet)."""
    path = Path(checkpoint)
    if path.is_dir():
        raise DgnamError(f"the schedule's checkpoint '{path}' is a folder; name the last.ckpt the config writes")
    if not path.is_file():
        return 0
    fix = "move it aside to start again, or restore it"
    state = read_torch(path, "the checkpoint", fix, mmap=True)
    if not isinstance(state, dict) or "global_step" not in state:
        raise DgnamError(f"cannot read the checkpoint '{path}' (no global_step: not a Lightning checkpoint); {fix}")
    return int(state["global_step"])


def commands(schedule: Schedule, done: int, stop_at: int | None = None) -> list[list[str]]:
    """The training commands still to run after ``done`` iterations, up to ``stop_at`` if given."""
    out = []
    for chunk in schedule.chunks:
        if chunk.until <= done:
            continue
        until = min(chunk.until, stop_at) if stop_at is not None else chunk.until
        if until <= done:
            break
        cmd = [sys.executable, "-m", schedule.program, "fit", "--config", schedule.config,
               "--trainer.max_steps", str(until)]
        if done > 0 or out:
            cmd += ["--ckpt_path", schedule.checkpoint]
        for name, value in chunk.flags.items():
            cmd += [f"--{name}", str(value)]
        out.append(cmd)
        done = until
        if stop_at is not None and until >= stop_at:
            break
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.chunks", description=__doc__.splitlines()[0])
    parser.add_argument("schedule", help="schedule YAML (program, config, checkpoint, chunks)")
    parser.add_argument("--until", type=int, default=None, help="stop at this many iterations")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    try:
        schedule = read_schedule(args.schedule)
        done = trained_steps(schedule.checkpoint)
    except DgnamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    todo = commands(schedule, done, args.until)
    print(f"{schedule.checkpoint}: {done} iterations done; {len(todo)} chunk(s) to run", flush=True)
    for cmd in todo:
        print("+ " + " ".join(cmd[1:]), flush=True)
        if not args.dry_run and subprocess.run(cmd).returncode != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, "python -m train.chunks"))
