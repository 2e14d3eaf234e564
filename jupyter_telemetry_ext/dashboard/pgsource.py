"""The dashboard's PostgreSQL source: the views' SQL on the events table, read-only."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jupyter_telemetry_ext.core.errors import StoreError
from jupyter_telemetry_ext.sinks.pgtable import masked, scrub
from jupyter_telemetry_ext.sinks.store import connect

from .query import Query
from .views import POSTGRES, statement

if TYPE_CHECKING:
    import psycopg

# A view that takes longer is stopped: the dashboard must not hold the database.
STATEMENT_TIMEOUT_MS = 30_000


class PostgresSource:
    """Answer views from a PostgreSQL events table over one read-only connection."""

    kind = "postgresql"

    def __init__(self, url: str, table: str) -> None:
        """Remember where; connect at the first question."""
        self.url, self.table = url, table
        self._quoted = '"' + table.replace('"', '""') + '"'
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None

    def rows(self, view: str, query: Query) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """Return a view's columns and rows (blocking: call it off the event loop)."""
        found = statement(view, query, POSTGRES, _aware, self._quoted)
        return found.columns, self._fetch(found.sql, found.params)

    def last_received(self) -> datetime | None:
        """Return when the newest stored event was received, or None."""
        rows = self._fetch(f"SELECT max(received) FROM {self._quoted}", [])  # noqa: S608
        return rows[0][0] if rows else None

    def _fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        import psycopg

        with self._lock:
            conn = self._connection()
            try:
                rows = conn.execute(sql, params).fetchall()
                conn.rollback()
            except psycopg.OperationalError as e:
                self._close()
                msg = f"PostgreSQL {masked(self.url)}: {scrub(str(e).strip(), self.url)}"
                raise StoreError(msg) from None
            return list(rows)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.url, self.table, read_only=True)
            self._conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            self._conn.commit()
        return self._conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._close()


def _aware(value: datetime) -> datetime:
    return value
