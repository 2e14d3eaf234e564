"""Reading and maintaining the PostgreSQL event table: queries, retention, a person's events."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from jupyter_telemetry_ext.core.errors import StoreError

from .pgrows import COLUMNS
from .pgtable import masked, names, resolve_url, scrub, to_capsule

if TYPE_CHECKING:
    import psycopg

PERIODS = {
    "day": "to_char(received AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "hour": "to_char(received AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24\"h\"')",
    "all": "'all'",
}
# The columns `stats` counts per: a name and its expression.
PER_PERIOD = (("schema", "schema_id"), ("version", "schema_version"),
              ("action", "coalesce(data->>'action', '')"))  # fmt: skip
GROUPS = {"user": (("user", "username"),), "schema": PER_PERIOD[:2]}  # the stored key, unresolved


def connect(url: str, table: str, read_only: bool = False) -> psycopg.Connection[Any]:
    """Connect to the store (`url` as PostgresEventHandler takes it); check the table exists."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    resolved = resolve_url(url)
    try:
        conninfo = make_conninfo(resolved, **read_only_options(resolved)) if read_only else resolved
        conn = psycopg.connect(conninfo, connect_timeout=10)
    except psycopg.Error as e:
        msg = f"cannot connect to PostgreSQL {masked(resolved)}: {scrub(str(e).strip(), resolved)}"
        raise StoreError(msg) from None
    found = conn.execute("SELECT to_regclass(%s)", ['"' + table.replace('"', '""') + '"'])
    exists = (found.fetchone() or [None])[0] is not None
    conn.rollback()  # each command then opens its own transaction
    if not exists:
        conn.close()
        msg = f"PostgreSQL {masked(resolved)} has no table {table!r}"
        raise StoreError(msg)
    return conn


def read_only_options(conninfo: str) -> dict[str, str]:
    """Return the libpq `options` that make the session's transactions read-only by default."""
    from psycopg.conninfo import conninfo_to_dict

    given = conninfo_to_dict(conninfo).get("options") or os.environ.get("PGOPTIONS", "")
    return {"options": f"{given} -c default_transaction_read_only=on".strip()}


def _filters(schema_ids: Sequence[str], since: datetime | None) -> tuple[Any, list[Any]]:
    clauses: list[str] = ["TRUE"]
    params: list[Any] = []
    if schema_ids:
        clauses.append("schema_id = ANY(%s)")
        params.append(list(schema_ids))
    if since is not None:
        clauses.append("received >= %s")
        params.append(since)
    from psycopg import sql

    return sql.SQL(" AND ").join(map(sql.SQL, clauses)), params


def select_events(
    conn: psycopg.Connection[Any],
    table: str,
    schema_ids: Sequence[str] = (),
    since: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the capsules of the stored events, oldest first."""
    from psycopg import sql

    where, params = _filters(schema_ids, since)
    query = sql.SQL("SELECT {cols} FROM {t} WHERE {where} ORDER BY received").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), t=sql.Identifier(table), where=where
    )
    with conn.cursor(name="telemetry_events") as cursor:
        cursor.execute(query, params)
        for row in cursor:
            yield to_capsule(row)


def count_events(
    conn: psycopg.Connection[Any],
    table: str,
    by: str,
    schema_ids: Sequence[str] = (),
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Count events per `by` (a key of GROUPS), as `stats` does for files."""
    from psycopg import sql

    where, params = _filters(schema_ids, since)
    columns = GROUPS.get(by) or (("period", PERIODS[by]), *PER_PERIOD)
    positions = [str(n) for n in range(1, len(columns) + 1)]
    order = ["count(*) DESC"] * (by in GROUPS) + [f"{n} NULLS FIRST" for n in positions]
    query = sql.SQL(
        "SELECT {columns}, count(*) FROM {t} WHERE {where} GROUP BY {keys} ORDER BY {order}"
    ).format(
        columns=sql.SQL(", ").join(sql.SQL(expression) for _, expression in columns),
        t=sql.Identifier(table),
        where=where,
        keys=sql.SQL(", ".join(positions)),
        order=sql.SQL(", ".join(order)),
    )
    keys = [name for name, _ in columns]
    return [dict(zip([*keys, "count"], row, strict=True)) for row in conn.execute(query, params)]


def read_only_query(
    conn: psycopg.Connection[Any], query: str
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one statement in a read-only transaction, then roll back; return its rows.

    The statement is prepared (the extended query protocol), so PostgreSQL refuses a string of
    several (`COMMIT; DELETE ...`), and what one statement can do after ending the transaction
    (`COMMIT`, `SET SESSION ... READ WRITE`) reaches no later statement: there is none.
    """
    conn.read_only = True  # BEGIN READ ONLY
    try:
        cursor = conn.execute(query.encode(), prepare=True)  # the admin's own query, by design
        headers = [column.name for column in cursor.description or []]
        return headers, cursor.fetchall() if cursor.description else []
    finally:
        conn.rollback()


def prune(conn: psycopg.Connection[Any], table: str, before: datetime) -> int:
    """Remove the events received before `before`: whole daily partitions, then rows, and the
    dashboard's daily counts of them."""
    from psycopg import sql

    from jupyter_telemetry_ext.dashboard.pgrollup import lock, prune_days

    ids = names(table)
    removed = 0
    with conn.transaction():
        lock(conn, table)  # before the events, as a rebuild of the dashboard's rollup takes it
        for partition, day in _partitions(conn, table):
            if day + timedelta(days=1) <= before:
                name = sql.Identifier(partition)
                count = conn.execute(sql.SQL("SELECT count(*) FROM {p}").format(p=name))
                removed += (count.fetchone() or [0])[0]
                conn.execute(sql.SQL("DROP TABLE {p}").format(p=name))
        deleted = conn.execute(
            sql.SQL("DELETE FROM {t} WHERE received < %s").format(**ids), [before]
        )
        removed += deleted.rowcount
        if has_ids_table(conn, table):
            conn.execute(sql.SQL("DELETE FROM {t_ids} WHERE received < %s").format(**ids),
                         [before])  # fmt: skip
        prune_days(conn, table, before)  # the dashboard's daily counts of those days go too
    return int(removed)


def has_ids_table(conn: psycopg.Connection[Any], table: str) -> bool:
    """Return True when the store keeps its keys in a table of their own (partitioned by day)."""
    found = conn.execute(
        "SELECT to_regclass(%s)", ['"' + (table + "_ids").replace('"', '""') + '"']
    )
    return (found.fetchone() or [None])[0] is not None


def _partitions(conn: psycopg.Connection[Any], table: str) -> list[tuple[str, datetime]]:
    """Return the daily partitions (named `<table>_YYYYMMDD`) and the UTC day each holds."""
    from datetime import timezone

    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(%s)",
        ['"' + table.replace('"', '""') + '"'],
    ).fetchall()
    found = []
    for (name,) in rows:
        suffix = name[len(table) + 1 :]
        if name.startswith(table + "_") and suffix.isdigit() and len(suffix) == 8:
            day = datetime.strptime(suffix, "%Y%m%d").replace(tzinfo=timezone.utc)
            found.append((name, day))
    return found


def select_user(
    conn: psycopg.Connection[Any], table: str, users: Sequence[str]
) -> Iterator[dict[str, Any]]:
    """Yield the capsules of the events whose `__user__` is one of `users`, oldest first."""
    from psycopg import sql

    query = sql.SQL("SELECT {cols} FROM {t} WHERE username = ANY(%s) ORDER BY received").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), t=sql.Identifier(table)
    )
    for row in conn.execute(query, [list(users)]):
        yield to_capsule(row)


def holds_hashed_users(conn: psycopg.Connection[Any], table: str) -> bool:
    """Return True when the store records users as keyed hashes (`record_user = "hashed"`)."""
    from psycopg import sql

    query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {t} WHERE username ~ '^[0-9a-f]{{64}}$')")
    found = conn.execute(query.format(t=sql.Identifier(table))).fetchone()
    conn.rollback()
    return bool(found and found[0])


def user_client_ids(conn: psycopg.Connection[Any], table: str, users: Sequence[str]) -> set[str]:
    """Return the client ids of the stored events of `users`."""
    from psycopg import sql

    query = sql.SQL("SELECT client_id FROM {t} WHERE username = ANY(%s) AND client_id IS NOT NULL")
    rows = conn.execute(query.format(t=sql.Identifier(table)), [list(users)]).fetchall()
    conn.rollback()
    return {row[0] for row in rows}


def erase_user(
    conn: psycopg.Connection[Any], table: str, users: Sequence[str], operator: str
) -> int:
    """Delete the events (and ids) of `users` and keep their tombstones, so that no event of
    theirs from before now is written later; record who erased how many, when; return how many."""
    from psycopg import sql

    from jupyter_telemetry_ext.dashboard.pgrollup import erase_users as erase_from_rollup

    from . import erasures

    ids = names(table)
    erasures.ensure(conn, table)
    with conn.transaction():
        erasures.add(conn, table, users)  # first: writers wait until this commits
        if has_ids_table(conn, table):  # else the keys go with the rows
            conn.execute(
                sql.SQL("DELETE FROM {t_ids} WHERE key IN (SELECT key FROM {t} "
                        "WHERE username = ANY(%s) AND key IS NOT NULL)").format(**ids),
                [list(users)],
            )  # fmt: skip
        deleted = conn.execute(
            sql.SQL("DELETE FROM {t} WHERE username = ANY(%s)").format(**ids), [list(users)]
        ).rowcount
        erase_from_rollup(conn, table, users)  # the dashboard's daily counts per user
        conn.execute(
            sql.SQL("INSERT INTO {t_erasures} (operator, events) VALUES (%s, %s)").format(**ids),
            [operator, deleted],
        )
    return int(deleted)
