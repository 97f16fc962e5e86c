"""The one exception type users see: a single line that says what went wrong and how to fix it."""


class DgnamError(ValueError):
    """A user-facing error. The message is one line and names the fix."""


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so the cleanup that runs for Ctrl-C (KeyboardInterrupt) runs too."""


def first_line(exc: BaseException, limit: int = 150) -> str:
    """The first line of an exception's message (error messages here are one line)."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
