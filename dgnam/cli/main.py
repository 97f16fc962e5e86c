"""The ``dgnam`` command line: one parser, each subcommand registered by its own module.

Every user error is one line on stderr and exit code 2; nothing is written when a run fails.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import dgnam
from dgnam.cli import (
    accentuate,
    attribute,
    compare,
    evaluate,
    import_generator,
    invert,
    layers,
    probe,
    sample,
    sanity,
    stats,
    synthesize,
    unnatural,
)
from dgnam.errors import DgnamError, Terminated, terminal_safe

# In `dgnam --help` order; each module's register(sub) adds its subcommands with their handler.
COMMANDS = (synthesize, probe, accentuate, layers, stats, sample, evaluate, import_generator, invert, compare,
            attribute, sanity, unnatural)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2), like every other dgnam error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="dgnam", description="Synthesise preferred inputs of neurons (DGN-AM).")
    parser.add_argument("--version", action="version", version=f"dgnam {dgnam.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``dgnam`` with ``argv`` (default: the process's arguments); returns the exit code.

    The command's ``validate(args)`` checks the arguments before its handler loads or computes anything.
    """
    for stream in (sys.stdout, sys.stderr):  # a label the terminal's encoding lacks is escaped, not a traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        with terminate_like_interrupt():
            args.validate(args)
            return args.handler(args)
    except DgnamError as exc:
        print(f"dgnam: error: {terminal_safe(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # one not met where it arises (those are DgnamErrors naming their fix)
        where = f" '{exc.filename}'" if exc.filename else ""
        print(f"dgnam: error: {terminal_safe(exc.strerror or exc)}{terminal_safe(where)}; check the path, free space "
              f"and permissions",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dgnam: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("dgnam: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM


@contextmanager
def terminate_like_interrupt() -> Iterator[None]:
    """SIGTERM (``timeout``, a batch scheduler's preemption) raises :class:`Terminated` in the main thread,
    so the cleanup that runs on Ctrl-C (staging folders, temporary files) runs too; the previous handler is
    restored afterwards."""
    def terminate(signum, frame):
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread (an embedding application's worker): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
