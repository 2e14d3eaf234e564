"""Text a spreadsheet would run as a formula, in the CSV files users download or export.

A cell starting with `=`, `+`, `-` or `@` (or a tab or carriage return, which some spreadsheets
skip before reading one) is run as a formula when the file is opened: text that users posted
(a kernel name, a path) could make the reader's spreadsheet fetch a URL or run a command. Such
a cell starts with a `'` instead, which spreadsheets read as "text follows". The dashboard's
CSV downloads (its page hands the browser `FORMULA_STARTS`) and research datasets in CSV both
follow this rule.
"""

from __future__ import annotations

FORMULA_STARTS = "=+-@\t\r"
TEXT_MARK = "'"


def neutralised(text: str) -> str:
    """Return `text`, with a leading `'` when a spreadsheet would read it as a formula."""
    return TEXT_MARK + text if text[:1] and text[0] in FORMULA_STARTS else text


def neutralised_sql(expression: str) -> str:
    """Return a SQL expression (DuckDB, PostgreSQL) of the text `expression`, neutralised."""
    starts = ", ".join(_sql_text(char) for char in FORMULA_STARTS)
    mark = _sql_text(TEXT_MARK)
    return (f"CASE WHEN left({expression}, 1) IN ({starts}) THEN {mark} || {expression} "
            f"ELSE {expression} END")  # fmt: skip


def _sql_text(text: str) -> str:
    """Return `text` as a SQL string: chr() for control characters, quotes doubled."""
    return " || ".join(f"chr({ord(c)})" if not c.isprintable() else "'" + c.replace("'", "''") + "'"
                       for c in text)  # fmt: skip
