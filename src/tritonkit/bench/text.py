"""Plain text that reads the same in a terminal, a log file, a pipe or CI: aligned columns, wrapped sentences.

Nothing is cut to the width of a terminal: a table is as wide as its widest row, and prose wraps at ``width``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

__all__ = ["paragraph", "table"]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1) -> str:
    """Columns padded to their widest cell; the first ``left`` columns align left, the others right."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(cell).ljust(width) if i < left else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def paragraph(text: str, *, width: int = 80, bullet: str = "") -> str:
    """``text`` wrapped at ``width``; with a ``bullet``, the following lines are indented under its text."""
    return textwrap.fill(
        text,
        width=width,
        initial_indent=bullet,
        subsequent_indent=" " * len(bullet),
        break_long_words=False,
        break_on_hyphens=False,
    )
