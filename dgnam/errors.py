"""The one exception type users see: a single line that says what went wrong and how to fix it."""


class DgnamError(ValueError):
    """A user-facing error. The message is one line and names the fix."""
