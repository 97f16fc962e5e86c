"""The ``dgnam`` console script and ``python -m dgnam``: imports nothing heavy itself, so that a Ctrl-C or a
SIGTERM during the seconds torch and the commands take to import gives ``dgnam: interrupted`` (exit 130) or
``dgnam: terminated`` (exit 143), as they do once :func:`dgnam.cli.main.main` runs, instead of a traceback from
the middle of an import or a silent exit."""

from __future__ import annotations

import signal
import sys


def _terminated(signum: int, frame: object) -> None:
    print("dgnam: terminated", file=sys.stderr)
    raise SystemExit(128 + signal.SIGTERM)


def main() -> int:
    """Import the command line, then run it on the process's arguments; returns the exit code."""
    # Until main() installs its own SIGTERM handler (which cleans up what a command started writing): nothing
    # has been written yet, so the line and the exit code are all there is to do.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        from dgnam.cli.main import main as run  # the heavy import: torch, torchvision, every command
        return run()
    except KeyboardInterrupt:  # main() turns one during a command into this line itself; this is the rest
        print("dgnam: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
