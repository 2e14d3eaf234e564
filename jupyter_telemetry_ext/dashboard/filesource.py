"""The dashboard's JSON-lines source: the views' SQL through DuckDB (the `[analysis]` extra).

The files (the log and its rotated copies) are loaded into an in-memory table of the columns
the views read, again only when one of them changed.
"""

# ruff: noqa: S608 - the SQL is made of constants; every value a request gives is a parameter

from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jupyter_telemetry_ext.core.errors import DashboardStoreError
from jupyter_telemetry_ext.sinks.logreader import log_files

from .query import Query
from .views import ACTIVE_TIME, FIELDS, MINUTES_SQL, SQL_VIEWS, filters

INSTALL = "the file-backed dashboard needs DuckDB: pip install 'jupyter_telemetry_ext[analysis]'"
EMPTY = ("CREATE OR REPLACE TABLE events (received TIMESTAMP, schema_id VARCHAR, "
         "username VARCHAR, " + ", ".join(f"{f} VARCHAR" for f in FIELDS) + ")")  # fmt: skip
LOAD = (
    "CREATE OR REPLACE TABLE events AS SELECT "
    "CAST(json->>'__timestamp__' AS TIMESTAMP) AS received, json->>'__schema__' AS schema_id, "
    "json->>'__user__' AS username, "
    + ", ".join(f"json->>'{f}' AS {f}" for f in FIELDS)
    + " FROM read_ndjson_objects(?, ignore_errors = true) "
    "WHERE json->>'__timestamp__' IS NOT NULL AND json->>'__schema__' IS NOT NULL"
)
WHERE = "received >= ? AND received < ?"
COUNTS = ("(SELECT date_trunc('day', received) AS day, schema_id, action, status, kernel_name, "
          "username, 1 AS events FROM events WHERE " + WHERE + "{filters}) AS c")  # fmt: skip
SESSIONS = (
    f"(SELECT day, username, {MINUTES_SQL} AS minutes, count(*) AS sessions FROM "
    "(SELECT date_trunc('day', received) AS day, username, notebook_session, "
    "sum(CAST(active_s AS DOUBLE)) AS s FROM events WHERE " + WHERE + "{filters} "
    f"AND schema_id = '{ACTIVE_TIME}' AND notebook_session IS NOT NULL GROUP BY 1, 2, 3) "
    "AS per_session GROUP BY 1, 2, 3) AS s"
)


class FileSource:
    """Answer views from a JSON-lines log file and its rotated copies."""

    kind = "files"

    def __init__(self, path: Path) -> None:
        """Check that DuckDB can be imported; load nothing yet."""
        try:
            import duckdb
        except ImportError:
            raise DashboardStoreError(INSTALL, 501) from None
        self.path = path
        self._db = duckdb.connect(":memory:")
        self._lock = threading.Lock()
        self._loaded: tuple[Any, ...] | None = None

    def rows(self, view: str, query: Query) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """Return a view's columns and rows (blocking: call it off the event loop)."""
        sql, columns = SQL_VIEWS[view](query)
        extra, params = filters(query, lambda column: f"list_contains(?, {column})")
        relation = SESSIONS if "{sessions}" in sql else COUNTS
        sql = sql.replace("{counts}", relation).replace("{sessions}", relation)
        sql = sql.replace("{filters}", extra)
        bounds = [_naive(query.first_day), _naive(query.end_day)]
        with self._lock:
            self._refresh()
            return columns, self._db.execute(sql, [*bounds, *params]).fetchall()

    def last_received(self) -> datetime | None:
        """Return when the newest event in the files was received, or None."""
        with self._lock:
            self._refresh()
            row = self._db.execute("SELECT max(received) FROM events").fetchone()
        value = row[0] if row else None
        return value.replace(tzinfo=timezone.utc) if value is not None else None

    def _refresh(self) -> None:
        files = log_files(self.path) if self.path.parent.is_dir() else []
        signature = tuple((str(p), *_stat(p)) for p in files)
        if signature == self._loaded:
            return
        if files:
            self._db.execute(LOAD, [[str(p) for p in files]])
        else:
            self._db.execute(EMPTY)
        self._loaded = signature

    def close(self) -> None:
        """Close the in-memory database."""
        with self._lock:
            self._db.close()


def _stat(path: Path) -> tuple[int, int, int]:
    try:
        found = path.stat()
    except FileNotFoundError:
        return (0, 0, 0)
    return (found.st_ino, found.st_size, found.st_mtime_ns)


def _naive(value: datetime) -> datetime:
    """Return a UTC time as the naive UTC the table holds."""
    return value.astimezone(timezone.utc).replace(tzinfo=None)
