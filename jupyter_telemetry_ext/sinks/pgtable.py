"""The PostgreSQL event table: its DDL and migration, connection URLs, and idempotent batch writes.

psycopg is imported by the functions that need it, never by `import jupyter_telemetry_ext`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from jupyter_telemetry_ext.core.errors import StoreError

from .pgrows import ID_COLUMNS, TUPLE_COLUMNS, Row, id_tuple, key_of, received_of, stream

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("jupyter_telemetry_ext.sinks.pgtable")
SCHEMA_VERSION = 2  # of the table layout below; an older one is migrated, a newer one refused
DEFAULT_TABLE = "telemetry_events"
URL_VARIABLE = "JUPYTER_TELEMETRY_DB"  # where the URL is read from when none is given
# {t} is the events table; every other name derives from it. {unique} is UNIQUE_DDL for a plain
# table, IDS_DDL for one partitioned by day.
DDL = """\
CREATE TABLE IF NOT EXISTS {t} (
    received         timestamptz NOT NULL,  -- __timestamp__: when the server received it
    event_time       timestamptz,           -- __event_time__: when it happened (client clock)
    schema_id        text        NOT NULL,  -- __schema__
    schema_version   text        NOT NULL,  -- __schema_version__
    metadata_version integer     NOT NULL,  -- __metadata_version__
    username         text,                  -- __user__ (a keyed hash, a name, or NULL)
    client_id        text,                  -- __client_id__: the client's event id
    data             jsonb       NOT NULL,  -- the event's own properties
    key              uuid                   -- the event's idempotency key (see below)
){partition};
CREATE INDEX IF NOT EXISTS {t_received} ON {t} USING brin (received);
CREATE INDEX IF NOT EXISTS {t_schema} ON {t} (schema_id, received);
-- Idempotency: one row per key ever stored, across batches, days and collector replicas. An
-- event posted with a client id is keyed by a keyed hash of (poster, client id), whatever
-- record_user says; one posted without, by a new key given when it was received; one a
-- program recorded, by the first 16 bytes of sha256(UTF-8 user || 0x00 || UTF-8 client id)
-- (user '' when none), or a new key without a client id. Rows stored before every event
-- had a key have NULL without a client id.
{unique}-- Each erasure of a person's events: who ran it, when, how many; never whose.
CREATE TABLE IF NOT EXISTS {t_erasures} (
    at       timestamptz NOT NULL DEFAULT now(),
    operator text        NOT NULL,
    events   bigint      NOT NULL
);
"""
# A plain table holds the key itself (NULLs never conflict): one COPY into one table.
UNIQUE_DDL = """\
CREATE UNIQUE INDEX IF NOT EXISTS {t_key} ON {t} (key);
"""
# A partitioned table cannot: its unique indexes must include the partition key (received).
IDS_DDL = """\
-- Partitioned by day: a unique index must include the partition key, so the keys stored
-- live in a table of their own.
CREATE TABLE IF NOT EXISTS {t_ids} (
    key      uuid        PRIMARY KEY,
    received timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS {t_ids_received} ON {t_ids} USING brin (received);
"""
VERSION_DDL = "CREATE TABLE IF NOT EXISTS {t_version} (version integer NOT NULL)"
# The key in SQL of an event a program recorded (the same bytes as `pgrows.id_key`), and of
# every event stored by layout 1.
KEY_SQL = """encode(substring(sha256(convert_to(coalesce({user}, ''), 'UTF8') || '\\x00'::bytea
    || convert_to({client}, 'UTF8')) FROM 1 FOR 16), 'hex')::uuid"""
EVENTS_KEY = KEY_SQL.format(user="username", client="client_id")
# Layout 1 had no key column and kept the ids in <table>_ids keyed by (username, client_id).
# A plain table takes the key of each (user, client id) it holds (of its first row, should a
# hand-made copy hold two) and loses the ids table; a partitioned one keeps the ids, rekeyed.
MIGRATE_1 = ("ALTER TABLE {t} ADD COLUMN key uuid",)
MIGRATE_1_PLAIN = (
    "UPDATE {t} SET key = " + EVENTS_KEY + " WHERE ctid IN (SELECT DISTINCT ON "  # noqa: S608
    "(coalesce(username, ''), client_id) ctid FROM {t} WHERE client_id IS NOT NULL "
    "ORDER BY coalesce(username, ''), client_id, received)",
    "CREATE UNIQUE INDEX {t_key} ON {t} (key)",
    "DROP TABLE {t_ids}",
)
MIGRATE_1_PARTITIONED = (
    "UPDATE {t} SET key = " + EVENTS_KEY + " WHERE client_id IS NOT NULL",  # noqa: S608
    "ALTER TABLE {t_ids} ADD COLUMN key uuid",
    "UPDATE {t_ids} SET key = " + KEY_SQL.format(user="username", client="client_id"),  # noqa: S608
    "ALTER TABLE {t_ids} DROP COLUMN username, DROP COLUMN client_id",
    "ALTER TABLE {t_ids} ALTER COLUMN key SET NOT NULL, ADD PRIMARY KEY (key)",
)


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

    return {key: sql.Identifier(table + key[1:]) for key in names_keys()}


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
        if version == SCHEMA_VERSION:
            partitioned = is_partitioned(conn, table)
            _ensure_key_index(conn, table, partitioned)
            return partitioned
        if version is None:
            conn.execute(sql.SQL(ddl(partition_by_day)).format(**ids))
        else:
            _migrate(conn, ids, version, is_partitioned(conn, table))
        conn.execute(sql.SQL("INSERT INTO {t_version} VALUES (%s)").format(**ids), [SCHEMA_VERSION])
    return is_partitioned(conn, table)


# What storing each event once stands on, checked at each start on a table of this layout: one
# that lost it (an index dropped by hand, a copy made without it) gets it back, or the start
# fails loudly (say the table now holds a key twice) rather than storing every retry again.
KEY_INDEX = """SELECT 1 FROM pg_index i JOIN pg_attribute a
ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indnatts = 1 AND a.attname = 'key'"""
KEY_COLUMN = """SELECT 1 FROM pg_attribute
WHERE attrelid = to_regclass(%s) AND attname = 'key' AND NOT attisdropped"""


def _ensure_key_index(conn: psycopg.Connection[Any], table: str, partitioned: bool) -> None:
    """Add the key column and its unique index (the ids table, partitioned) when missing."""
    from psycopg import sql

    holder = table + "_ids" if partitioned else table
    if conn.execute(KEY_INDEX, [_quoted(holder)]).fetchone() is not None:
        return
    log.warning("Telemetry: PostgreSQL table %s has no unique index on its keys: making it, "
                "so that each event is stored once", holder)  # fmt: skip
    ids = names(table)
    if conn.execute(KEY_COLUMN, [_quoted(table)]).fetchone() is None:
        conn.execute(sql.SQL(MIGRATE_1[0]).format(**ids))
    conn.execute(sql.SQL(IDS_DDL if partitioned else UNIQUE_DDL).format(**ids))
    if partitioned and conn.execute(KEY_INDEX, [_quoted(holder)]).fetchone() is None:
        conn.execute(sql.SQL("ALTER TABLE {t_ids} ADD PRIMARY KEY (key)").format(**ids))
    if conn.execute(KEY_INDEX, [_quoted(holder)]).fetchone() is None:
        msg = (
            f"PostgreSQL table {holder!r} has no unique index on its key column and none could "
            "be made (another object has its name): events would be stored more than once"
        )
        raise StoreError(msg)


def _migrate(
    conn: psycopg.Connection[Any], ids: dict[str, Any], version: int, partitioned: bool
) -> None:
    """Bring the tables of layout `version` to the current one (in the caller's transaction)."""
    from psycopg import sql

    if version < 2:  # the layout that put the key in the events table
        for statement in MIGRATE_1 + (MIGRATE_1_PARTITIONED if partitioned else MIGRATE_1_PLAIN):
            conn.execute(sql.SQL(statement).format(**ids))


def ddl(partition_by_day: bool) -> str:
    """Return the DDL template of a plain or a partitioned store (names still to format)."""
    partition = " PARTITION BY RANGE (received)" if partition_by_day else ""
    unique = IDS_DDL if partition_by_day else UNIQUE_DDL
    return DDL.replace("{partition}", partition).replace("{unique}", unique)


def ddl_text(table: str = DEFAULT_TABLE, partition_by_day: bool = False) -> str:
    """Return the DDL as plain SQL text (for the README and for admins who create it by hand)."""
    quoted = {k: _quoted(table + k[1:]) for k in names_keys()}
    return ddl(partition_by_day).format(**quoted) + VERSION_DDL.format(**quoted) + ";\n"


def names_keys() -> tuple[str, ...]:
    """Return the keys of `names()` (t, t_ids, ...): each the suffix of a name after `t`."""
    return ("t", "t_received", "t_schema", "t_key", "t_ids", "t_ids_received", "t_erasures",
            "t_version", "t_staging")  # fmt: skip


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
    from jupyter_telemetry_ext.core.timestamps import format_timestamp

    return format_timestamp(value)


def ensure_partitions(conn: psycopg.Connection[Any], table: str, rows: Iterable[Row]) -> None:
    """Create the daily partitions (UTC days) that `rows` fall in, if missing."""
    from psycopg import sql

    for day in sorted({received_of(row).date().isoformat() for row in rows}):
        name = sql.Identifier(f"{table}_{day.replace('-', '')}")
        statement = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {p} PARTITION OF {t} FOR VALUES FROM "
            "({start}) TO ({start}::timestamptz + interval '1 day')"
        ).format(p=name, t=sql.Identifier(table), start=sql.Literal(day + "T00:00:00Z"))
        conn.execute(statement)


def copy_stream(conn: psycopg.Connection[Any], statement: Any, tuples: Iterable[bytes]) -> None:
    """Run a binary COPY FROM STDIN of `tuples` (each one tuple's bytes)."""
    from psycopg.copy import LibpqWriter

    cursor = conn.cursor()
    with cursor.copy(statement, writer=LibpqWriter(cursor, flush_threshold=1 << 30)) as copy:
        for block in stream(tuples):
            copy.write(block)


def copy_rows(
    conn: psycopg.Connection[Any], table: str, rows: Iterable[Row], taken: list[Row]
) -> None:
    """COPY rows into the events table, noting in `taken` each as the COPY takes it (`rows` may
    be made as they go: PostgreSQL works meanwhile; a list is taken whole)."""
    from psycopg import sql

    statement = sql.SQL("COPY {t} ({cols}) FROM STDIN (FORMAT BINARY)").format(
        t=sql.Identifier(table), cols=sql.SQL(", ").join(map(sql.Identifier, TUPLE_COLUMNS))
    )
    if isinstance(rows, list):
        taken.extend(rows)
        copy_stream(conn, statement, rows)
        return
    keep = taken.append

    def tuples() -> Iterator[bytes]:
        for row in rows:
            keep(row)
            yield row

    copy_stream(conn, statement, tuples())


def write_batch(
    conn: psycopg.Connection[Any], table: str, rows: Iterable[Row], partitioned: bool
) -> int:
    """Store rows in one transaction, each (user, client id) once ever; return how many stored.

    `rows` may be made as the COPY takes them. The fast path copies the rows (and, partitioned,
    their ids) straight in; when a key is already stored (a retry) the unique index refuses the
    copy, and the batch goes through a staging table. On a connection in autocommit mode, the
    COPY into a plain table is a transaction of its own: no BEGIN and COMMIT to wait for.
    """
    from psycopg import errors

    if partitioned and not isinstance(rows, list):
        rows = list(rows)
    left = rows if isinstance(rows, list) else iter(rows)  # a list: taken whole by the COPY
    written: list[Row] = []
    try:
        if partitioned or not conn.autocommit:
            with conn.transaction():
                if partitioned:
                    ensure_partitions(conn, table, rows)
                copy_rows(conn, table, left, written)
                if partitioned:
                    _copy_ids(conn, table, written)
        else:
            copy_rows(conn, table, left, written)
        return len(written)
    except errors.UniqueViolation:
        if left is not rows:
            written.extend(left)  # those the refused COPY did not get to
    with conn.transaction():
        if not partitioned:
            return _insert_new(conn, table, written)
        ensure_partitions(conn, table, written)
        fresh = _new_rows(conn, table, written)
        copy_rows(conn, table, fresh, [])
    return len(fresh)


def _copy_ids(conn: psycopg.Connection[Any], table: str, rows: list[Row]) -> None:
    from psycopg import sql

    statement = sql.SQL("COPY {t_ids} ({cols}) FROM STDIN (FORMAT BINARY)").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, ID_COLUMNS)), **names(table)
    )
    copy_stream(conn, statement, [t for t in map(id_tuple, rows) if t is not None])


# A plain table: the rows in order (n), then each inserted unless its key is stored already.
STAGING_ROWS = """CREATE TEMP TABLE IF NOT EXISTS {t_staging}
(LIKE {t}, n bigint GENERATED ALWAYS AS IDENTITY) ON COMMIT DELETE ROWS"""
INSERT_NEW = """INSERT INTO {t} ({cols}) SELECT {cols} FROM {t_staging} ORDER BY n
ON CONFLICT (key) DO NOTHING"""


def _insert_new(conn: psycopg.Connection[Any], table: str, rows: list[Row]) -> int:
    """Insert the rows without a key, and the first row of each key not stored; return how many."""
    from psycopg import sql

    ids = names(table)
    conn.execute(sql.SQL(STAGING_ROWS).format(**ids))
    cols = sql.SQL(", ").join(map(sql.Identifier, TUPLE_COLUMNS))
    copy_stream(conn, sql.SQL("COPY {t_staging} ({cols}) FROM STDIN (FORMAT BINARY)").format(
        cols=cols, **ids), rows)  # fmt: skip
    return conn.execute(sql.SQL(INSERT_NEW).format(cols=cols, **ids)).rowcount


# A partitioned table: its keys claimed in the ids table, then the rows of the claimed keys.
STAGING = """CREATE TEMP TABLE IF NOT EXISTS telemetry_staging_keys
(key uuid, received timestamptz) ON COMMIT DELETE ROWS"""
CLAIM = """INSERT INTO {t_ids} (key, received)
SELECT DISTINCT ON (key) key, received FROM telemetry_staging_keys
ON CONFLICT DO NOTHING RETURNING key"""


def _new_rows(conn: psycopg.Connection[Any], table: str, rows: Sequence[Row]) -> list[Row]:
    """Claim the rows' ids; return the rows without an id, and the first row of each new id."""
    from psycopg import sql

    conn.execute(STAGING)
    copy_stream(conn, "COPY telemetry_staging_keys FROM STDIN (FORMAT BINARY)",
                [t for t in map(id_tuple, rows) if t is not None])  # fmt: skip
    claimed = {r[0].bytes for r in conn.execute(sql.SQL(CLAIM).format(**names(table)))}
    fresh: list[Row] = []
    for row in rows:
        key = key_of(row)
        if key is None:
            fresh.append(row)
        elif key in claimed:
            claimed.discard(key)
            fresh.append(row)
    return fresh
