"""Markdown for the reports (``report.md``) that commands and analyses write: one table format for all, and
untrusted names (of classes, models, layers, files) made inert."""

from __future__ import annotations

import html
from collections.abc import Sequence

from dgnam.errors import terminal_safe


def markdown_text(text: object) -> str:
    """A name from a file or checkpoint as inert markdown: control characters (newlines, escapes) written as
    their escapes, HTML's ``<``, ``>`` and ``&`` as entities (a viewer renders no tag of it), ``|`` escaped (it
    adds no table column)."""
    return html.escape(terminal_safe(text), quote=False).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table: ``header``, then one line per row; every cell through :func:`markdown_text` (the
    markup a caller writes around a name, ``**``, backticks, stays)."""
    lines = ["| " + " | ".join(map(markdown_text, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_text(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)
