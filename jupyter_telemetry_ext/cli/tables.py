"""Plain-text tables for the command line."""

from __future__ import annotations

from collections.abc import Sequence

from jupyter_telemetry_ext.core.printable import printable

MAX_CELL = 60


def _cell(value: object) -> str:
    text = "" if value is None else printable(str(value))  # no terminal escapes from a log
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def render(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Return a table with aligned columns, a header and a rule under it."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    lines = [_line(headers, widths), _line(["-" * w for w in widths], widths)]
    lines += [_line(row, widths) for row in cells]
    return "\n".join(lines)


def _line(values: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()
