"""The ``dgnam`` command line: one parser, each subcommand registered by its own module.

Every user error is one line on stderr and exit code 2; nothing is written when a run fails.
"""

from __future__ import annotations

import argparse
import sys

import dgnam
from dgnam.cli import attribute, compare, evaluate, import_generator, invert, layers, probe, sample, stats, synthesize
from dgnam.errors import DgnamError

# In `dgnam --help` order; each module's register(sub) adds its subcommands with their handler.
COMMANDS = (synthesize, probe, layers, stats, sample, evaluate, import_generator, invert, compare, attribute)


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
    """Run ``dgnam`` with ``argv`` (default: the process's arguments); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except DgnamError as exc:
        print(f"dgnam: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dgnam: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
