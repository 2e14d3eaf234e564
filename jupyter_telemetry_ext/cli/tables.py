"""Plain-text tables for the command line."""

from __future__ import annotations

from collections.abc import Sequence

from jupyter_telemetry_ext.core.printable import printable

MAX_CELL = 64  # a keyed user hash (64 hex digits) fits whole


def cut(text: str, limit: int | None = MAX_CELL) -> str:
    """Return `text`, or its start and how many characters were cut: `abc…(+1234 chars)`."""
    if limit is None or len(text) <= limit:
        return text
    keep = max(limit - len(f"…(+{len(text)} chars)"), 1)
    return f"{text[:keep]}…(+{len(text) - keep} chars)"


def cut_cells(rows: Sequence[Sequence[object]], limit: int | None = MAX_CELL) -> int:
    """Return how many cells of `rows` a table with this `limit` shows cut."""
    if limit is None:
        return 0
    return sum(len(_text(value)) > limit for row in rows for value in row)


def _text(value: object) -> str:
    return "" if value is None else printable(str(value))  # no terminal escapes from a log


def render(
    headers: Sequence[str], rows: Sequence[Sequence[object]], limit: int | None = MAX_CELL
) -> str:
    """Return a table with aligned columns, a header and a rule; longer cells say what was cut."""
    cells = [[cut(_text(v), limit) for v in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    lines = [_line(headers, widths), _line(["-" * w for w in widths], widths)]
    lines += [_line(row, widths) for row in cells]
    return "\n".join(lines)


def _line(values: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()
