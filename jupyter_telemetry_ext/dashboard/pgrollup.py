"""Daily counts of the PostgreSQL events table, kept beside it for the dashboard's speed.

`<table>_daily` holds, for each whole UTC day already over, the events per (schema, action,
status, kernel name, user); `_daily_totals` the same without the user (the counts a viewer of
everything asks, from far fewer rows), `_daily_users` who was active, per schema, and
`_daily_active` who was active at all;
`<table>_daily_sessions` the notebook sessions per (user, active minutes). The dashboard adds
each day once it is over and reads the day in progress from the events table. All are rebuilt
from the events table whenever an erasure was recorded since (an erased user's counts go with
their events) and once a day (events pruned, or stored late from a spool, are then counted as
the events table holds them).
"""

# ruff: noqa: S608 - the SQL is made of constants and quoted identifiers; values are parameters

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from jupyter_telemetry_ext.core.errors import StoreError

from .views import ACTIVE_TIME, MINUTES_SQL

if TYPE_CHECKING:
    import psycopg

REBUILD_AFTER = "1 day"
REBUILD_TIMEOUT = "30min"
ROLLUPS = ("daily", "totals", "users", "active", "sessions")
DDL = """\
CREATE TABLE IF NOT EXISTS {daily} (
    day timestamp NOT NULL, schema_id text NOT NULL, action text, status text,
    kernel_name text, username text, events bigint NOT NULL);
CREATE INDEX IF NOT EXISTS {daily_day} ON {daily} (day);
CREATE TABLE IF NOT EXISTS {totals} (
    day timestamp NOT NULL, schema_id text NOT NULL, action text, status text,
    kernel_name text, events bigint NOT NULL);
CREATE INDEX IF NOT EXISTS {totals_day} ON {totals} (day);
CREATE TABLE IF NOT EXISTS {users} (day timestamp NOT NULL, schema_id text NOT NULL, username text);
CREATE INDEX IF NOT EXISTS {users_day} ON {users} (day);
CREATE TABLE IF NOT EXISTS {active} (day timestamp NOT NULL, username text NOT NULL);
CREATE INDEX IF NOT EXISTS {active_day} ON {active} (day);
CREATE TABLE IF NOT EXISTS {sessions} (
    day timestamp NOT NULL, username text, minutes int NOT NULL, sessions bigint NOT NULL);
CREATE INDEX IF NOT EXISTS {sessions_day} ON {sessions} (day);
CREATE TABLE IF NOT EXISTS {state} (
    rolled_until timestamp NOT NULL, erasures bigint NOT NULL, built_at timestamptz NOT NULL)"""
DAY = "date_trunc('day', received AT TIME ZONE 'UTC')"
ROLL_DAILY = f"""INSERT INTO {{daily}} SELECT {DAY}, schema_id, data->>'action', data->>'status',
data->>'kernel_name', username, count(*) FROM {{t}}
WHERE received >= %(start)s AND received < %(end)s GROUP BY 1, 2, 3, 4, 5, 6"""
# Derived from the day's rows in {daily}: the counts without users, and who was active.
ROLL_TOTALS = """INSERT INTO {totals} SELECT day, schema_id, action, status, kernel_name,
sum(events) FROM {daily} WHERE day >= %(start_day)s AND day < %(end_day)s GROUP BY 1, 2, 3, 4, 5"""
ROLL_USERS = """INSERT INTO {users} SELECT DISTINCT day, schema_id, username FROM {daily}
WHERE day >= %(start_day)s AND day < %(end_day)s AND username IS NOT NULL"""
ROLL_ACTIVE = """INSERT INTO {active} SELECT DISTINCT day, username FROM {users}
WHERE day >= %(start_day)s AND day < %(end_day)s"""
ROLL_SESSIONS = f"""INSERT INTO {{sessions}} SELECT day, username, {MINUTES_SQL}, count(*) FROM
(SELECT {DAY} AS day, username, data->>'notebook_session',
 sum(CAST(data->>'active_s' AS float8)) AS s FROM {{t}}
 WHERE received >= %(start)s AND received < %(end)s AND schema_id = '{ACTIVE_TIME}'
 AND data->>'notebook_session' IS NOT NULL GROUP BY 1, 2, 3) AS per_session GROUP BY 1, 2, 3"""


def identifiers(table: str) -> dict[str, str]:
    """Return the quoted names of the events table and of the rollup's tables and indexes."""
    suffixes = {"t": "", "daily": "_daily", "daily_day": "_daily_day",
                "totals": "_daily_totals", "totals_day": "_daily_totals_day",
                "users": "_daily_users", "users_day": "_daily_users_day",
                "active": "_daily_active", "active_day": "_daily_active_day",
                "sessions": "_daily_sessions", "sessions_day": "_daily_sessions_day",
                "state": "_daily_state", "erasures": "_erasures"}  # fmt: skip
    return {key: '"' + (table + s).replace('"', '""') + '"' for key, s in suffixes.items()}


# The rollup's tables that name users (their keyed hash, or name, and daily activity).
USER_TABLES = ("daily", "users", "active", "sessions")
# The user-free totals of the (day, schema) buckets an erasure took rows out of, counted again.
RECOUNT_TOTALS = """INSERT INTO {totals} SELECT day, schema_id, action, status, kernel_name,
sum(events) FROM {daily} WHERE (day, schema_id) IN (SELECT * FROM unnest(%s::timestamp[],
%s::text[])) GROUP BY 1, 2, 3, 4, 5"""
# A day's activity stays only for a user with a schema left that day.
UNACTIVE = """DELETE FROM {active} a WHERE {who} AND NOT EXISTS
(SELECT 1 FROM {users} u WHERE u.day = a.day AND u.username = a.username)"""


def erase_users(
    conn: psycopg.Connection[Any],
    table: str,
    users: Sequence[str] | None,
    schema_ids: Sequence[str] | None = None,
) -> None:
    """Take the rows of `users` (None: anyone's) of `schema_ids` (None: every schema) out of
    the rollup, and count the totals of the days and schemas they were in again.

    Run in the erasure's transaction, so their daily counts go with their events rather than
    at the dashboard's next rebuild, which may never come. It waits for a rebuild in progress
    (the rollup's lock), so that none counts the erased events again after this ran.
    """
    names = identifiers(table)
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [table + "_daily"])
    if not _exists(conn, names["daily"]):  # no dashboard ran yet: the tables come together
        return
    who, whose = ("TRUE", []) if users is None else ("username = ANY(%s)", [list(users)])
    which, schemas = ("TRUE", []) if schema_ids is None else (
        "schema_id = ANY(%s)", [list(schema_ids)])  # fmt: skip
    where = f" WHERE {who} AND {which}"
    gone = conn.execute(
        f"WITH d AS (DELETE FROM {names['daily']}{where} RETURNING day, schema_id) "
        "SELECT DISTINCT day, schema_id FROM d", [*whose, *schemas]
    ).fetchall()  # fmt: skip
    conn.execute(f"DELETE FROM {names['users']}{where}", [*whose, *schemas])
    conn.execute(UNACTIVE.format(who=who, **names), whose)
    if schema_ids is None or ACTIVE_TIME in schema_ids:
        conn.execute(f"DELETE FROM {names['sessions']} WHERE {who}", whose)
    if gone:
        buckets = [[day for day, _ in gone], [schema for _, schema in gone]]
        conn.execute(f"DELETE FROM {names['totals']} WHERE (day, schema_id) IN "
                     "(SELECT * FROM unnest(%s::timestamp[], %s::text[]))", buckets)  # fmt: skip
        conn.execute(RECOUNT_TOTALS.format(**names), buckets)


def lock(conn: psycopg.Connection[Any], table: str) -> None:
    """Wait for a rebuild in progress, and hold the rollup until the transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [table + "_daily"])


def prune_days(conn: psycopg.Connection[Any], table: str, before: datetime) -> None:
    """Take the days before `before` out of the rollup and count its day again from the events
    left (run in the prune's transaction, so that no count, and no user's daily activity,
    outlives the events pruned; the prune takes `lock` before the events)."""
    names = identifiers(table)
    lock(conn, table)
    if not _exists(conn, names["daily"]):  # no dashboard ran yet: the tables come together
        return
    day = before.astimezone(timezone.utc).replace(tzinfo=None, hour=0, minute=0, second=0,
                                                  microsecond=0)  # fmt: skip
    partial = day != before.astimezone(timezone.utc).replace(tzinfo=None)
    last = day + timedelta(days=1) if partial else day
    for key in ROLLUPS:
        conn.execute(f"DELETE FROM {names[key]} WHERE day < %s", [last])
    state = conn.execute(f"SELECT rolled_until FROM {names['state']}").fetchone()
    if partial and state is not None and state[0] > day:  # the day was rolled: count it again
        _roll(conn, names, day, min(last, state[0]))


def _exists(conn: psycopg.Connection[Any], name: str) -> bool:
    """Return True when the (quoted) table exists."""
    found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [name]).fetchone()
    return bool(found and found[0])


def refresh(conn: psycopg.Connection[Any], table: str) -> datetime:
    """Bring the rollup up to the start of today (UTC); return that day (naive UTC)."""
    names = identifiers(table)
    with conn.transaction():
        # A rebuild reads the whole events table: longer than a view may take
        conn.execute(f"SET LOCAL statement_timeout = '{REBUILD_TIMEOUT}'")
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [table + "_daily"])
        conn.execute(DDL.format(**names))
        today, erasures, stale = _now(conn, names)
        state = conn.execute(f"SELECT rolled_until, erasures FROM {names['state']}").fetchone()
        if state is None or state[1] != erasures or stale:
            _rebuild(conn, names, today, erasures)
        elif state[0] < today:
            _roll(conn, names, state[0], today)
            conn.execute(f"UPDATE {names['state']} SET rolled_until = %s", [today])
        else:
            return today
        # The planner's row counts of the new rows: without them it sorts on disk.
        conn.execute("ANALYZE " + ", ".join(names[k] for k in ROLLUPS))
    return today


def _now(conn: psycopg.Connection[Any], names: dict[str, str]) -> tuple[datetime, int, bool]:
    """Return today's UTC midnight, how many erasures were recorded, and whether to rebuild."""
    row = conn.execute(
        f"SELECT date_trunc('day', now() AT TIME ZONE 'UTC'), "
        f"(SELECT count(*) FROM {names['erasures']}), "
        f"coalesce((SELECT built_at < now() - interval '{REBUILD_AFTER}' FROM {names['state']}), "
        "true)"
    ).fetchone()
    if row is None:  # a SELECT without FROM has its row: a server that answers none is broken
        msg = "PostgreSQL answered no row to a SELECT without FROM"
        raise StoreError(msg)
    return row[0], int(row[1]), bool(row[2])


def _rebuild(
    conn: psycopg.Connection[Any], names: dict[str, str], today: datetime, erasures: int
) -> None:
    """Count every day before today again, from the events table."""
    tables = ", ".join(
        names[k] for k in ("daily", "totals", "users", "active", "sessions", "state")
    )
    conn.execute(f"TRUNCATE {tables}")
    _roll(conn, names, None, today)
    conn.execute(f"INSERT INTO {names['state']} VALUES (%s, %s, now())", [today, erasures])


def _roll(
    conn: psycopg.Connection[Any], names: dict[str, str], start: datetime | None, end: datetime
) -> None:
    """Add the days from `start` (None: the first) to `end` (naive UTC midnights)."""
    bounds = {"start": "-infinity" if start is None else _utc(start), "end": _utc(end),
              "start_day": "-infinity" if start is None else start.isoformat(),
              "end_day": end.isoformat()}  # fmt: skip
    for statement in (ROLL_DAILY, ROLL_TOTALS, ROLL_USERS, ROLL_ACTIVE, ROLL_SESSIONS):
        conn.execute(statement.format(**names), bounds)


def _utc(value: datetime) -> str:
    """Return a naive UTC time as a literal PostgreSQL reads as UTC, whatever its TimeZone."""
    return value.isoformat() + "+00:00"
