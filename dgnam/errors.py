"""The one exception type users see: a single line that says what went wrong and how to fix it."""


class DgnamError(ValueError):
    """A user-facing error. The message is one line and names the fix."""


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so the cleanup that runs for Ctrl-C (KeyboardInterrupt) runs too."""


def first_line(exc: BaseException, limit: int = 150) -> str:
    """The first line of an exception's message (error messages here are one line), cut at a word boundary
    with "..." when longer than ``limit`` (torch's "Weights only load failed ..." was cut mid-word)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0]
    if len(line) <= limit:
        return line
    cut = line[:limit - 3]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" .,;:") + "..."


def terminal_safe(text: object) -> str:
    """``text`` with every control character (ANSI/OSC escapes, newlines, ...) written as its escape: names
    from files and checkpoints reach the terminal as text, and cannot retitle, clear or write the clipboard;
    a path with a newline keeps an error on one line."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in str(text))
