"""Where recorded events are read from in bulk: JSON-lines files or PostgreSQL, into DuckDB.

Either source ends in the same DuckDB table, `capsules` (received, event_time, schema, version,
user, client_id, json: the capsule of a logged event, the properties of a stored one), holding
the events of the selection only. Events of
erased users (by the store's tombstones) are then taken out of it: an export never brings back
what an erasure removed, even from a copy of a log made before the erasure and kept in the
log's folder under a name starting with the log's (a copy elsewhere has no tombstones beside it).
"""

from __future__ import annotations

import glob
import logging
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_telemetry_ext.core.tombstones import Tombstones, erased_file, read_file
from jupyter_telemetry_ext.sinks.logreader import log_files

from .extra import require

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("jupyter_telemetry_ext.analysis")
DATABASE_URL = re.compile(r"(postgres(ql)?://|env:)", re.IGNORECASE)
# Files beside a log that are not events: its erasure records and its tombstones.
COMPANIONS = ("-erasures.jsonl", "-erased-users.json")
# The capsule's fields are read in one pass over each line (one path list, one parse).
STAGE = """CREATE OR REPLACE TEMP TABLE capsules AS SELECT * FROM (
SELECT TRY_CAST(v[1] AS TIMESTAMPTZ) AS received, TRY_CAST(v[2] AS TIMESTAMPTZ) AS event_time,
       v[3] AS schema, v[4] AS version, v[5] AS "user", v[6] AS client_id, json
FROM (SELECT json_extract_string(json, ['$.__timestamp__', '$.__event_time__', '$.__schema__',
      '$.__schema_version__', '$.__user__', '$.__client_id__']) AS v, json
      FROM read_ndjson_objects($files)))
WHERE schema IS NOT NULL"""
# The stored rows as CSV, their columns as they are (PostgreSQL builds nothing per row), then
# read by DuckDB's CSV reader into the same `capsules`: `json` is then the event's properties.
PG_ROWS = """COPY (SELECT received, event_time, schema_id, schema_version, username, client_id,
    data FROM {t} WHERE {where}{last}) TO STDOUT (FORMAT csv)"""
# The properties of a schema's events in logs, over all of them, read as they stream by.
FILES_STRUCTURE = """SELECT json_group_structure(json) FROM read_ndjson_objects($files)
WHERE json_extract_string(json, '$.__schema__') = $schema"""
# How many of a schema's newest stored rows show its properties when a selection holds none.
STRUCTURE_ROWS = 10_000
STAGE_ROWS = """CREATE OR REPLACE TEMP TABLE capsules AS SELECT * FROM read_csv($files,
    header = false, auto_detect = false, delim = ',', quote = '"', escape = '"', nullstr = '',
    allow_quoted_nulls = false, columns = {'received': 'TIMESTAMPTZ',
    'event_time': 'TIMESTAMPTZ', 'schema': 'VARCHAR', 'version': 'VARCHAR', 'user': 'VARCHAR',
    'client_id': 'VARCHAR', 'json': 'JSON'})"""


@dataclass(frozen=True)
class Selection:
    """Which events to read: of one schema id (None: all), received in [since, until)."""

    schema: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        """Refuse a range that cannot hold an event: it is a mistake, not an empty answer."""
        if self.since is not None and self.until is not None and self.since >= self.until:
            msg = (f"until: {self.until.isoformat()} is not later than since "
                   f"({self.since.isoformat()}): the range holds no time")  # fmt: skip
            raise ValueError(msg)

    def sql(self, column: str = "received") -> tuple[str, dict[str, Any]]:
        """Return a DuckDB condition on the staged `capsules` and its parameters."""
        parts: list[str] = ["true"]
        values: dict[str, Any] = {}
        for name, op, value in (("since", ">=", self.since), ("until", "<", self.until)):
            if value is not None:
                parts.append(f"{column} {op} ${name}")
                values[name] = value
        if self.schema is not None:
            parts.append("schema = $schema")
            values["schema"] = self.schema
        return " AND ".join(parts), values


def is_database(source: object) -> bool:
    """Return True when `source` names a PostgreSQL store (a URL, or env:NAME)."""
    return isinstance(source, str) and DATABASE_URL.match(source) is not None


def json_files(source: str | Path) -> list[Path]:
    """Return the JSON-lines files a source names: a log (with its rotated files, oldest first),
    a glob, or a folder (every file in it but the logs' tombstones and erasure records)."""
    path = Path(source)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and _is_log(p.name))
    elif glob.has_magic(str(source)):
        matches = map(Path, glob.glob(str(source)))  # noqa: PTH207 - any pattern, absolute too
        found = sorted(p for p in matches if p.is_file() and _is_log(p.name))
    else:
        found = log_files(path)
    if not found:
        msg = f"{source}: no event log files found (a log, a glob or a folder of logs)"
        raise FileNotFoundError(msg)
    return found


def _is_log(name: str) -> bool:
    return not name.startswith(".") and not name.endswith((*COMPANIONS, ".tmp"))


def file_tombstones(files: list[Path]) -> list[Tombstones]:
    """Return the tombstones kept beside the logs that `files` belong to (rotations included)."""
    found = []
    for folder in {f.parent for f in files}:
        for kept in folder.glob("*" + COMPANIONS[1]):
            log_name = kept.name[: -len(COMPANIONS[1])]
            if erased_file(folder / log_name) == kept and any(
                f.parent == folder and f.name.startswith(log_name) for f in files
            ):
                found.append(read_file(kept))
    return found


def connect() -> duckdb.DuckDBPyConnection:
    """Return an in-memory DuckDB connection whose times are UTC."""
    duck = require("duckdb")
    con: duckdb.DuckDBPyConnection = duck.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def stage_files(con: duckdb.DuckDBPyConnection, files: list[Path], selection: Selection) -> None:
    """Read the selected capsules of JSON-lines files (gzip too) into the table `capsules`."""
    duck = require("duckdb")
    where, values = selection.sql()
    try:
        con.execute(f"{STAGE} AND {where}", {"files": [str(f) for f in files], **values})
    except duck.Error as e:
        msg = f"cannot read the event logs: {e}"
        raise ValueError(msg) from e


def stage_rows(con: duckdb.DuckDBPyConnection, rows: Path) -> None:
    """Read the CSV of stored rows that `postgres_rows` wrote into the table `capsules`."""
    duck = require("duckdb")
    try:
        con.execute(STAGE_ROWS, {"files": [str(rows)]})
    except duck.Error as e:
        msg = f"cannot read the rows PostgreSQL sent: {e}"
        raise ValueError(msg) from e


def schema_structure(source: str | Path | list[str | Path], schema: str, table: str) -> str:
    """Return the structure (DuckDB's `json_group_structure`) of a schema's properties in a
    store at any time: of every event in logs, of the newest STRUCTURE_ROWS stored rows."""
    con = connect()
    try:
        if not isinstance(source, list) and is_database(source):
            with postgres_rows(str(source), table, Selection(schema), STRUCTURE_ROWS) as rows:
                stage_rows(con, rows)
            found = con.execute("SELECT json_group_structure(json) FROM capsules").fetchall()
        else:
            listed = source if isinstance(source, list) else [source]
            files = [str(f) for s in listed for f in json_files(s)]
            found = con.execute(FILES_STRUCTURE, {"files": files, "schema": schema}).fetchall()
        return str(found[0][0]) if found and found[0][0] is not None else ""
    finally:
        con.close()


@contextmanager
def postgres_rows(
    url: str, table: str, selection: Selection, newest: int | None = None
) -> Iterator[Path]:
    """Yield a temporary CSV file of the selected stored rows (one COPY); only the `newest`
    when given."""
    from psycopg import sql

    from jupyter_telemetry_ext.sinks.pgtable import resolve_url

    conn = _pg_connect(resolve_url(url))
    with conn, tempfile.TemporaryDirectory(prefix="telemetry-analysis-") as folder:
        conn.execute("SET TimeZone = 'UTC'")  # times as DuckDB reads them: ISO, UTC
        conn.execute("SET DateStyle = 'ISO'")
        path = Path(folder) / "events.csv"
        newest_only = sql.SQL(" ORDER BY received DESC LIMIT {}").format(sql.Literal(newest))
        last = sql.SQL("") if newest is None else newest_only
        statement = sql.SQL(PG_ROWS).format(t=sql.Identifier(table), where=_pg_where(selection),
                                            last=last)  # fmt: skip
        with path.open("wb") as out, conn.cursor().copy(statement) as copy:
            for block in copy:
                out.write(block)
        yield path


def _pg_connect(url: str) -> Any:
    import psycopg

    from jupyter_telemetry_ext.sinks.pgtable import masked, scrub

    try:
        return psycopg.connect(url, autocommit=True)
    except psycopg.Error as e:
        msg = f"cannot connect to PostgreSQL at {masked(url)}: {scrub(str(e).strip(), url)}"
        raise ConnectionError(msg) from None


def _pg_where(selection: Selection) -> Any:
    from psycopg import sql

    parts: list[Any] = [sql.SQL("true")]
    if selection.schema is not None:
        parts.append(sql.SQL("schema_id = {}").format(sql.Literal(selection.schema)))
    if selection.since is not None:
        parts.append(sql.SQL("received >= {}").format(sql.Literal(selection.since)))
    if selection.until is not None:
        parts.append(sql.SQL("received < {}").format(sql.Literal(selection.until)))
    return sql.SQL(" AND ").join(parts)


def postgres_tombstones(url: str, table: str) -> list[Tombstones]:
    """Return the store's tombstones (none when no erasure ever ran on it)."""
    from psycopg import sql

    from jupyter_telemetry_ext.sinks import erasures
    from jupyter_telemetry_ext.sinks.pgtable import resolve_url

    state = table + "_erasure_state"
    with _pg_connect(resolve_url(url)) as conn:
        quoted = '"' + state.replace('"', '""') + '"'
        found = conn.execute("SELECT to_regclass(%s)", [quoted]).fetchone()
        if found is None or found[0] is None:
            return []
        query = sql.SQL("SELECT key FROM {}").format(sql.Identifier(state))
        row = conn.execute(query).fetchone()
        return [erasures.load(conn, table, bytes(row[0]) if row else b"")]


def drop_erased(con: duckdb.DuckDBPyConnection, tombstones: list[Tombstones]) -> int:
    """Delete the staged events of erased users from before their erasure; return how many."""
    if not any(len(t) for t in tombstones):
        return 0
    users = [u for (u,) in con.execute('SELECT DISTINCT "user" FROM capsules').fetchall() if u]
    erased = [(u, max(at)) for u in users
              if (at := [a for t in tombstones if (a := t.erased_at(u)) is not None])]  # fmt: skip
    if not erased:
        return 0
    con.execute('CREATE OR REPLACE TEMP TABLE erased ("user" VARCHAR, erased_at TIMESTAMPTZ)')
    con.executemany("INSERT INTO erased VALUES (?, ?)", erased)
    [(removed,)] = con.execute(
        "DELETE FROM capsules c USING erased e WHERE c.user = e.user "
        "AND (c.received < e.erased_at OR c.event_time < e.erased_at OR c.received IS NULL)"
    ).fetchall()
    log.info("Left out %d events of %d erased users", removed, len(erased))
    return int(removed)
