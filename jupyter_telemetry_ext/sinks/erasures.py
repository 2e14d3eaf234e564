"""Tombstones in a PostgreSQL store: erased users, checked by every writer before it copies.

Two tables beside the events table: `<table>_erased_users` (a keyed hash of each erased user
and when) and `<table>_erasure_state` (the store's erasure key, and a version that each erasure
bumps, so that a writer reloads the tombstones only when they changed). A writer holds a shared
advisory lock from reading the version until its batch is committed; an erasure takes it
exclusively, so no batch checked against older tombstones commits after an erasure's delete.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from struct import Struct
from typing import TYPE_CHECKING, Any

from jupyter_telemetry_ext.core.tombstones import Tombstones, user_key

from .pgrows import TUPLE_COLUMNS, Row, fields

if TYPE_CHECKING:
    import psycopg

DDL = """\
-- Users erased from the store: events of theirs from before `erased_at` are never written.
CREATE TABLE IF NOT EXISTS {erased} (
    user_key  text        PRIMARY KEY,  -- the stored keyed hash, or an HMAC of a stored name
    erased_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS {state} (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    key     bytea   NOT NULL,           -- the HMAC key of stored names
    version bigint  NOT NULL DEFAULT 0  -- bumped by each erasure
);
"""
# Seconds an erasure waits for the writers' batches under way (their COPY) before it gives up.
LOCK_TIMEOUT = 60
_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)  # of the row's binary timestamps
_MICROSECOND = timedelta(microseconds=1)
_SIZE = Struct(">i")
_USER = TUPLE_COLUMNS.index("username")
_RECEIVED = TUPLE_COLUMNS.index("received")
_EVENT_TIME = TUPLE_COLUMNS.index("event_time")


def _names(table: str) -> dict[str, Any]:
    from psycopg import sql

    return {"erased": sql.Identifier(table + "_erased_users"),
            "state": sql.Identifier(table + "_erasure_state")}  # fmt: skip


def _lock_name(table: str) -> str:
    return table + ":erasures"


def ensure(conn: psycopg.Connection[Any], table: str) -> bytes:
    """Create the tombstone tables (and the store's key) if missing; return the key."""
    from psycopg import sql

    ids = _names(table)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [table + ":erasures-ddl"])
        conn.execute(sql.SQL(DDL).format(**ids))
        conn.execute(sql.SQL("INSERT INTO {state} (key) VALUES (%s) ON CONFLICT DO NOTHING")
                     .format(**ids), [secrets.token_bytes(32)])  # fmt: skip
        row = conn.execute(sql.SQL("SELECT key FROM {state}").format(**ids)).fetchone()
    return bytes(row[0]) if row else b""


def load(conn: psycopg.Connection[Any], table: str, key: bytes) -> Tombstones:
    """Return the store's tombstones."""
    from psycopg import sql

    rows = conn.execute(sql.SQL("SELECT user_key, erased_at FROM {erased}").format(**_names(table)))
    return Tombstones(key, dict(rows.fetchall()))


class WriterTombstones:
    """A writer's view of the tombstones, checked again (one query) before each batch."""

    def __init__(self, table: str) -> None:
        """Check the tombstones of the events table `table`."""
        self.table = table
        self.current = Tombstones()
        self._key = b""
        self._version: int | None = None

    def ensure(self, conn: psycopg.Connection[Any]) -> None:
        """Create the tables on a new connection; read the store's key."""
        self._key = ensure(conn, self.table)
        self._version = None

    def erased_at(self, user: str | None) -> datetime | None:
        """Return when `user` was erased (as of the writer's last batch), or None."""
        return self.current.erased_at(user)

    @contextmanager
    def guard(self, conn: psycopg.Connection[Any]) -> Iterator[Tombstones]:
        """Hold off erasures while a batch is checked and written; yield the tombstones.

        On an error the connection is closed, which releases the lock.
        """
        from psycopg import sql

        query = sql.SQL("SELECT pg_advisory_lock_shared(hashtext(%s)), version FROM {state}")
        row = conn.execute(query.format(**_names(self.table)), [_lock_name(self.table)]).fetchone()
        version = row[1] if row else 0
        if version != self._version:
            self.current = load(conn, self.table, self._key)
            self._version = version
        try:
            yield self.current
        except BaseException:
            conn.close()  # whatever failed, the lock goes with the session: erasures never wait
            raise
        conn.execute("SELECT pg_advisory_unlock_shared(hashtext(%s))", [_lock_name(self.table)])


def drops(tombstones: Tombstones, row: Row) -> bool:
    """Return True when a row is an event of an erased user from before the erasure."""
    field = _user_field(row)
    user = field.decode() if field is not None else None
    if tombstones.erased_at(user) is None:  # most rows: their times are never read
        return False
    values = fields(row)
    return tombstones.drops(user, _time(values[_RECEIVED]), _time(values[_EVENT_TIME]))


def _user_field(row: Row) -> bytes | None:
    """Return a row's user field (None for NULL), skipping the fields before it unread."""
    at = 2
    for _ in range(_USER):
        (size,) = _SIZE.unpack_from(row, at)
        at += 4 + max(size, 0)
    (size,) = _SIZE.unpack_from(row, at)
    return None if size < 0 else row[at + 4 : at + 4 + size]


def _time(field: bytes | None) -> datetime | None:
    if field is None:
        return None
    return _EPOCH + int.from_bytes(field, "big", signed=True) * _MICROSECOND


def add(conn: psycopg.Connection[Any], table: str, users: Sequence[str]) -> None:
    """Record tombstones of `users` (now) and hold off writers until the caller's transaction
    ends; call it inside the transaction that deletes their events, before the delete."""
    from psycopg import sql

    ids = _names(table)
    conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}s'")
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [_lock_name(table)])
    row = conn.execute(sql.SQL("SELECT key FROM {state}").format(**ids)).fetchone()
    key = bytes(row[0]) if row else b""
    keys = sorted({user_key(key, user) for user in users})
    conn.execute(
        sql.SQL("INSERT INTO {erased} (user_key, erased_at) SELECT k, now() FROM unnest(%s::text[])"
                " AS k ON CONFLICT (user_key) DO UPDATE SET erased_at = excluded.erased_at")
        .format(**ids), [keys],
    )  # fmt: skip
    conn.execute(sql.SQL("UPDATE {state} SET version = version + 1").format(**ids))
