"""The dashboard's PostgreSQL source: the views' SQL over the daily rollup (days over) and the
events table (the day in progress)."""

# ruff: noqa: S608 - the SQL is made of constants and quoted identifiers; values are parameters

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from jupyter_telemetry_ext.core.errors import StoreError
from jupyter_telemetry_ext.sinks.pgtable import masked, scrub
from jupyter_telemetry_ext.sinks.store import connect

from .pgrollup import DAY, identifiers, refresh
from .query import Query
from .views import ACTIVE_TIME, MINUTES_SQL, SQL_VIEWS, USERLESS, filters

if TYPE_CHECKING:
    import psycopg

# A view that takes longer is stopped: the dashboard must not hold the database.
STATEMENT_TIMEOUT_MS = 60_000
WORK_MEM = "64MB"
REFRESH_SECONDS = 30.0  # how often the rollup is checked (erasures, a new day)
ROLLED = "day >= %s AND day < %s{filters}"
LIVE = "received >= %s AND received < %s{filters}"
LIVE_COUNTS = (
    f"SELECT {DAY}, schema_id, data->>'action', data->>'status', data->>'kernel_name', "
    "username, 1 FROM {t} WHERE " + LIVE + ") AS c"
)
COUNTS = ("(SELECT day, schema_id, action, status, kernel_name, username, events FROM {daily} "
          "WHERE " + ROLLED + " UNION ALL " + LIVE_COUNTS)  # fmt: skip
TOTALS = ("(SELECT day, schema_id, action, status, kernel_name, NULL AS username, events "
          "FROM {totals} WHERE " + ROLLED + " UNION ALL " + LIVE_COUNTS)  # fmt: skip
USERS = ("(SELECT day, schema_id, NULL AS action, NULL AS status, NULL AS kernel_name, "
         "username, 1 AS events FROM {users} WHERE " + ROLLED + " UNION ALL "
         + LIVE_COUNTS)  # fmt: skip
ACTIVE = ("(SELECT day, NULL AS schema_id, NULL AS action, NULL AS status, NULL AS kernel_name, "
          "username, 1 AS events FROM {active} WHERE " + ROLLED + " UNION ALL "
          + LIVE_COUNTS)  # fmt: skip
SESSIONS = (
    "(SELECT day, username, minutes, sessions FROM {sessions} WHERE " + ROLLED + " UNION ALL "
    f"SELECT day, username, {MINUTES_SQL}, count(*) FROM (SELECT {DAY} AS day, username, "
    "data->>'notebook_session', sum(CAST(data->>'active_s' AS float8)) AS s FROM {t} "
    f"WHERE {LIVE} AND schema_id = '{ACTIVE_TIME}' AND data->>'notebook_session' IS NOT NULL "
    "GROUP BY 1, 2, 3) AS per_session GROUP BY 1, 2, 3) AS s"
)


class PostgresSource:
    """Answer views from a PostgreSQL events table and its daily rollup, over one connection."""

    kind = "postgresql"

    def __init__(self, url: str, table: str) -> None:
        """Remember where; connect at the first question."""
        self.url, self.table = url, table
        self.names = identifiers(table)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._rolled_until: datetime | None = None
        self._checked = 0.0

    def rows(self, view: str, query: Query) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """Return a view's columns and rows (blocking: call it off the event loop)."""
        sql, columns = SQL_VIEWS[view](query)
        relation = _relation(view, query)
        sql = sql.replace("{counts}", relation).replace("{sessions}", relation)
        extra, params = filters(query, lambda column: f"{column} = ANY(%s)")
        sql = sql.replace("{filters}", extra).format(**self.names)
        with self._lock:
            rolled = self._refreshed()
            first, end = query.first_day, query.end_day
            split = min(max(_aware(rolled), first), end)
            bounds = [[_naive(first), _naive(split), *params], [split, end, *params]]
            return columns, self._fetch(sql, [*bounds[0], *bounds[1]])

    def last_received(self) -> datetime | None:
        """Return when the newest stored event was received, or None: today's newest, else the
        newest of the last day the rollup counted (each read through the BRIN index, not the
        whole table)."""
        newest = f"SELECT max(received) FROM {self.names['t']} WHERE received >= %s"
        with self._lock:
            today = _aware(self._refreshed())
            found = self._fetch(newest, [today])[0][0]
            if found is None:
                last = self._fetch(f"SELECT max(day) FROM {self.names['totals']}", [])[0][0]
                found = None if last is None else self._fetch(newest, [_aware(last)])[0][0]
        return found  # type: ignore[no-any-return]

    def _refreshed(self) -> datetime:
        """Return the day the rollup reaches, checking it every REFRESH_SECONDS."""
        if self._rolled_until is None or time.monotonic() - self._checked > REFRESH_SECONDS:
            self._rolled_until = self._run(lambda conn: refresh(conn, self.table))
            self._checked = time.monotonic()
        return self._rolled_until

    def _fetch(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        def fetch(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            rows = conn.execute(sql, params).fetchall()
            conn.rollback()
            return list(rows)

        found: list[tuple[Any, ...]] = self._run(fetch)
        return found

    def _run(self, work: Any) -> Any:
        import psycopg

        conn = self._connection()
        try:
            return work(conn)
        except psycopg.OperationalError as e:
            self._close()
            msg = f"PostgreSQL {masked(self.url)}: {scrub(str(e).strip(), self.url)}"
            raise StoreError(msg) from None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.url, self.table)
            self._conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            self._conn.execute(f"SET work_mem = '{WORK_MEM}'")  # a view's sort stays in memory
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


def _relation(view: str, query: Query) -> str:
    """Return the SQL of the rows a view reads: the smallest rollup that holds what it needs."""
    if view == "active-time":
        return SESSIONS
    if view == "active-users":
        return USERS if query.schemas else ACTIVE
    if view in USERLESS and query.users is None:
        return TOTALS
    return COUNTS


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc)


def _naive(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(tzinfo=None)
