"""The ``dgnam`` console script and ``python -m dgnam``: imports nothing heavy itself, so that a Ctrl-C during
the seconds torch and the commands take to import gives ``dgnam: interrupted`` and exit code 130, as it does
once :func:`dgnam.cli.main.main` runs, instead of a traceback from the middle of an import."""

from __future__ import annotations

import signal
import sys


def main() -> int:
    """Import the command line, then run it on the process's arguments; returns the exit code."""
    try:
        from dgnam.cli.main import main as run  # the heavy import: torch, torchvision, every command
        return run()
    except KeyboardInterrupt:  # main() turns one during a command into this line itself; this is the rest
        print("dgnam: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
