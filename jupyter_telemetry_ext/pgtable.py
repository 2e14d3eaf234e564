"""The PostgreSQL event table: its DDL and migration, connection URLs, and idempotent batch writes.

psycopg is imported by the functions that need it, never by `import jupyter_telemetry_ext`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import psycopg

SCHEMA_VERSION = 1  # of the table layout below; a newer table is refused
DEFAULT_TABLE = "telemetry_events"
URL_VARIABLE = "JUPYTER_TELEMETRY_DB"  # where the URL is read from when none is given
CAPSULE_FIELDS = frozenset(
    ("__timestamp__", "__event_time__", "__schema__", "__schema_version__",
     "__metadata_version__", "__user__", "__client_id__")
)  # fmt: skip
COLUMNS = (
    "received", "event_time", "schema_id", "schema_version", "metadata_version",
    "username", "client_id", "data",
)  # fmt: skip
Row = tuple[Any, ...]

# {t} is the events table; every other name derives from it.
DDL = """\
CREATE TABLE IF NOT EXISTS {t} (
    received         timestamptz NOT NULL,  -- __timestamp__: when the server received it
    event_time       timestamptz,           -- __event_time__: when it happened (client clock)
    schema_id        text        NOT NULL,  -- __schema__
    schema_version   text        NOT NULL,  -- __schema_version__
    metadata_version integer     NOT NULL,  -- __metadata_version__
    username         text,                  -- __user__ (a keyed hash, a name, or NULL)
    client_id        text,                  -- __client_id__: the client's event id
    data             jsonb       NOT NULL   -- the event's own properties
){partition};
CREATE INDEX IF NOT EXISTS {t_received} ON {t} USING brin (received);
CREATE INDEX IF NOT EXISTS {t_schema} ON {t} (schema_id, received);
-- One row per (user, client id) ever stored: makes retries idempotent across batches, days
-- (partitions) and collector replicas; a partitioned table cannot hold that unique key itself.
CREATE TABLE IF NOT EXISTS {t_ids} (
    username  text        NOT NULL,  -- '' for events without a user
    client_id text        NOT NULL,
    received  timestamptz NOT NULL,
    PRIMARY KEY (username, client_id)
);
CREATE INDEX IF NOT EXISTS {t_ids_received} ON {t_ids} USING brin (received);
-- Each erasure of a person's events: who ran it, when, how many; never whose.
CREATE TABLE IF NOT EXISTS {t_erasures} (
    at       timestamptz NOT NULL DEFAULT now(),
    operator text        NOT NULL,
    events   bigint      NOT NULL
);
"""
VERSION_DDL = "CREATE TABLE IF NOT EXISTS {t_version} (version integer NOT NULL)"


class StoreError(RuntimeError):
    """The PostgreSQL store cannot be used as it is (a newer table, no URL, ...)."""


def resolve_url(url: str = "") -> str:
    """Return the connection URL: `url`, the variable `env:NAME` names, or $JUPYTER_TELEMETRY_DB."""
    name = url[4:] if url.startswith("env:") else (URL_VARIABLE if not url else "")
    if not name:
        return url
    value = os.environ.get(name, "")
    if not value:
        msg = f"no PostgreSQL URL: the environment variable {name} is empty or not set"
        raise StoreError(msg)
    return value


def password_of(url: str) -> str:
    """Return the password a connection URL (or key=value string) holds, or ""."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        return str(conninfo_to_dict(url).get("password") or "")
    except Exception:  # an unparsable URL: hide it all
        return url


def masked(url: str) -> str:
    """Return where a URL connects to, without its password: `host:port/dbname`."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:
        return "(unparsable URL)"
    host, port = parts.get("host") or "localhost", parts.get("port") or "5432"
    return f"{host}:{port}/{parts.get('dbname') or parts.get('user') or ''}"


def scrub(text: str, url: str) -> str:
    """Return `text` (e.g. an error message) with the URL's password replaced by ***."""
    secret = password_of(url)
    return text.replace(secret, "***") if secret else text


def names(table: str) -> dict[str, Any]:
    """Return the quoted identifiers of the table and of its companions."""
    from psycopg import sql

    suffixes = ("", "_received", "_schema", "_ids", "_ids_received", "_erasures", "_version")
    return {("t" + s): sql.Identifier(table + s) for s in suffixes}


def is_partitioned(conn: psycopg.Connection[Any], table: str) -> bool:
    """Return True when the events table exists and is partitioned."""
    row = conn.execute(
        "SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [_quoted(table)]
    ).fetchone()
    return row is not None and row[0] == "p"


def _quoted(table: str) -> str:
    return '"' + table.replace('"', '""') + '"'


def ensure_table(conn: psycopg.Connection[Any], table: str, partition_by_day: bool) -> bool:
    """Create or migrate the table; return whether it is partitioned; refuse a newer one."""
    from psycopg import sql

    ids = names(table)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [table])
        conn.execute(sql.SQL(VERSION_DDL).format(**ids))
        row = conn.execute(sql.SQL("SELECT max(version) FROM {t_version}").format(**ids)).fetchone()
        version = row[0] if row else None
        if version is not None and version > SCHEMA_VERSION:
            msg = (
                f"PostgreSQL table {table!r} has layout version {version}; this version of "
                f"jupyter_telemetry_ext understands up to {SCHEMA_VERSION}: upgrade it"
            )
            raise StoreError(msg)
        if version is None:
            partition = " PARTITION BY RANGE (received)" if partition_by_day else ""
            conn.execute(sql.SQL(DDL).format(partition=sql.SQL(partition), **ids))
            conn.execute(
                sql.SQL("INSERT INTO {t_version} VALUES (%s)").format(**ids), [SCHEMA_VERSION]
            )
    return is_partitioned(conn, table)


def ddl_text(table: str = DEFAULT_TABLE, partition_by_day: bool = False) -> str:
    """Return the DDL as plain SQL text (for the README and for admins who create it by hand)."""
    quoted = {k: _quoted(table + k[1:]) for k in names_keys()}
    partition = " PARTITION BY RANGE (received)" if partition_by_day else ""
    return DDL.format(partition=partition, **quoted) + VERSION_DDL.format(**quoted) + ";\n"


def names_keys() -> tuple[str, ...]:
    """Return the keys of `names()` (t, t_ids, ...)."""
    return ("t", "t_received", "t_schema", "t_ids", "t_ids_received", "t_erasures", "t_version")


def to_row(capsule: Mapping[str, Any]) -> Row:
    """Return the table row of a capsule (`data` as JSON text); KeyError without a schema."""
    data = {k: v for k, v in capsule.items() if k not in CAPSULE_FIELDS}
    user, client = capsule.get("__user__"), capsule.get("__client_id__")
    try:
        text = orjson.dumps(data).decode()
    except TypeError:
        text = json.dumps(data, separators=(",", ":"))
    return (
        capsule["__timestamp__"], capsule.get("__event_time__"), str(capsule["__schema__"]),
        str(capsule.get("__schema_version__")), int(capsule.get("__metadata_version__") or 1),
        None if user is None else str(user), None if client is None else str(client), text,
    )  # fmt: skip


def to_capsule(row: Sequence[Any]) -> dict[str, Any]:
    """Return the capsule of a row read back (the inverse of `to_row`)."""
    received, event_time, schema_id, version, metadata, user, client, data = row
    capsule: dict[str, Any] = {
        "__timestamp__": _stamp(received),
        "__schema__": schema_id,
        "__schema_version__": version,
        "__metadata_version__": metadata,
    }
    for key, value in (("__event_time__", event_time), ("__user__", user),
                       ("__client_id__", client)):  # fmt: skip
        if value is not None:
            capsule[key] = _stamp(value) if key == "__event_time__" else value
    capsule.update(data)
    return capsule


def _stamp(value: Any) -> str:
    """Return a timestamptz read back as RFC 3339 UTC text ending in Z."""
    from .eventlog import format_timestamp

    return format_timestamp(value)


def ensure_partitions(conn: psycopg.Connection[Any], table: str, rows: Iterable[Row]) -> None:
    """Create the daily partitions (UTC days) that `rows` fall in, if missing."""
    from psycopg import sql

    for day in sorted({str(row[0])[:10] for row in rows}):
        name = sql.Identifier(f"{table}_{day.replace('-', '')}")
        statement = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {p} PARTITION OF {t} FOR VALUES FROM "
            "({start}) TO ({start}::timestamptz + interval '1 day')"
        ).format(p=name, t=sql.Identifier(table), start=sql.Literal(day + "T00:00:00Z"))
        conn.execute(statement)


def copy_rows(conn: psycopg.Connection[Any], table: str, rows: Sequence[Row]) -> None:
    """COPY rows into the events table."""
    from psycopg import sql

    statement = sql.SQL("COPY {t} ({cols}) FROM STDIN").format(
        t=sql.Identifier(table), cols=sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    )
    with conn.cursor().copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _keys(rows: Sequence[Row]) -> list[tuple[int, str, str, Any]]:
    """Return (position, user, client id, received) of the rows that have a client id."""
    return [(i, row[5] or "", row[6], row[0]) for i, row in enumerate(rows) if row[6] is not None]


def write_batch(
    conn: psycopg.Connection[Any], table: str, rows: Sequence[Row], partitioned: bool
) -> int:
    """Store rows in one transaction, each (user, client id) once ever; return how many stored.

    The fast path copies the ids and the rows straight in; when an id is already stored (a
    retry) the unique key refuses the copy, and the batch goes through a staging table.
    """
    from psycopg import errors

    try:
        with conn.transaction():
            if partitioned:
                ensure_partitions(conn, table, rows)
            _copy_ids(conn, table, _keys(rows))
            copy_rows(conn, table, rows)
        return len(rows)
    except errors.UniqueViolation:
        pass
    with conn.transaction():
        if partitioned:
            ensure_partitions(conn, table, rows)
        fresh = _new_rows(conn, table, rows)
        copy_rows(conn, table, fresh)
    return len(fresh)


def _copy_ids(
    conn: psycopg.Connection[Any], table: str, keys: list[tuple[int, str, str, Any]]
) -> None:
    from psycopg import sql

    if not keys:
        return
    statement = sql.SQL("COPY {t_ids} (username, client_id, received) FROM STDIN")
    with conn.cursor().copy(statement.format(**names(table))) as copy:
        for _, user, client, received in keys:
            copy.write_row((user, client, received))


STAGING = """CREATE TEMP TABLE IF NOT EXISTS telemetry_staging_ids
(n integer, username text, client_id text, received timestamptz) ON COMMIT DELETE ROWS"""
CLAIM = """INSERT INTO {t_ids} (username, client_id, received)
SELECT DISTINCT ON (username, client_id) username, client_id, received
FROM telemetry_staging_ids ORDER BY username, client_id, n
ON CONFLICT DO NOTHING RETURNING username, client_id"""


def _new_rows(conn: psycopg.Connection[Any], table: str, rows: Sequence[Row]) -> list[Row]:
    """Claim the rows' ids; return the rows without an id, and the first row of each new id."""
    from psycopg import sql

    conn.execute(STAGING)
    with conn.cursor().copy("COPY telemetry_staging_ids FROM STDIN") as copy:
        for staged in _keys(rows):
            copy.write_row(staged)
    claimed = {(r[0], r[1]) for r in conn.execute(sql.SQL(CLAIM).format(**names(table)))}
    fresh: list[Row] = []
    for row in rows:
        key = (row[5] or "", row[6])
        if row[6] is None:
            fresh.append(row)
        elif key in claimed:
            claimed.discard(key)
            fresh.append(row)
    return fresh
