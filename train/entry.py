"""How every training program ends when it does not finish: one line for an error the user can fix (exit 2),
for Ctrl-C (130) and for SIGTERM (143), instead of a traceback, or a SIGTERM that exits 0."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from dgnam.errors import DgnamError, terminal_safe


def run_main(main: Callable[[], int | None], program: str) -> int:
    """Run a training program's ``main`` and return its exit code."""
    try:
        return main() or 0
    except DgnamError as exc:  # raised while the settings are checked: before any step
        print(f"{program}: error: {terminal_safe(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if type(exc).__name__ != "ArgumentError":  # jsonargparse's, on a flag or config key it cannot take
            raise
        said = " ".join(line.strip() for line in str(exc).splitlines())
        print(f"{program}: error: {terminal_safe(said)} (see {program} fit --help)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{program}: interrupted; resume from the last checkpoint", file=sys.stderr)
        return 128 + signal.SIGINT
    except SystemExit as exc:
        # Lightning stops on SIGTERM by raising its SIGTERMException, a SystemExit without a code: exit 0, which
        # would make train.chunks (or a scheduler's script) go on as if the chunk had finished.
        if type(exc).__name__ != "SIGTERMException":
            raise
        print(f"{program}: terminated; resume from the last checkpoint", file=sys.stderr)
        return 128 + signal.SIGTERM
