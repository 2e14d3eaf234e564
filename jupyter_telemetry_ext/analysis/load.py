"""`load_events`: the recorded events of one schema as a pandas DataFrame or an Arrow table."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_telemetry_ext.sinks.pgtable import DEFAULT_TABLE

from . import sources
from .columns import beyond_int64, leaves, properties_structure, select_list, transformed
from .extra import require
from .sources import Selection

if TYPE_CHECKING:
    import duckdb

Source = str | Path  # a log, a glob, a folder, or a PostgreSQL URL (or env:NAME)
Time = datetime | date | str | None


def load_events(
    source: Source,
    schema: str | None = None,
    since: Time = None,
    until: Time = None,
    *,
    as_arrow: bool = False,
    table: str = DEFAULT_TABLE,
) -> Any:
    """Return the events of one schema as a pandas DataFrame (an Arrow table with `as_arrow`).

    Parameters
    ----------
    source
        A JSON-lines log (its rotated files are read too), a glob, a folder of logs, or a
        PostgreSQL URL (`postgresql://...`, or `env:NAME` to read it from a variable).
    schema
        The schema id; None when the source holds events of one schema only.
    since, until
        Events received at or after `since` and before `until`: datetimes (naive is UTC),
        dates (their UTC midnight) or text (RFC 3339, a date, or `2h`/`7d` ago).
    as_arrow
        Return a `pyarrow.Table` instead of a DataFrame.
    table
        The PostgreSQL events table.

    The columns are the capsule's (`received`, `event_time`, `schema`, `version`, `user`,
    `client_id`), then the event's properties, nested objects flattened as `parent.child`
    (a property named as a capsule column becomes `data.<name>`). Rows are in order of
    reception. Events of erased users are never returned.
    """
    selection = Selection(schema, _utc(since, "since"), _utc(until, "until"))
    with staged(source, selection, table) as con:
        schema_id = _one_schema(con, schema)
        params = {"schema": schema_id}
        structure = None
        if schema_id is not None and _none_staged(con):
            # No event selected: the columns are those of the schema's events at any time, so
            # that code written for them works on an empty selection too; an id that no event
            # and no installed schema has is a mistake (a typo), not an empty answer.
            structure = sources.schema_structure(source, schema_id, table)
            if not structure and not installed_schema(schema_id):
                msg = (f"schema={schema_id!r}: no event of the source and no installed schema "
                       "has this id (check its spelling)")  # fmt: skip
                raise ValueError(msg)
        table = read_events(con, "schema = $schema", params, structure)
    return table if as_arrow else to_pandas(table)


def to_pandas(table: Any) -> Any:
    """Return an Arrow table as a DataFrame whose integers and booleans may be missing (Int64,
    boolean: the same types whether or not some event lacks the property)."""
    pd, pa = require("pandas"), require("pyarrow")

    def nullable(arrow_type: Any) -> Any:
        if pa.types.is_integer(arrow_type):
            return pd.Int64Dtype()
        return pd.BooleanDtype() if pa.types.is_boolean(arrow_type) else None

    return table.to_pandas(types_mapper=nullable)


@contextmanager
def staged(
    source: Source | list[Source], selection: Selection, table: str
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Yield a DuckDB connection whose table `capsules` holds the selected events of a store,
    or of several logs (a list)."""
    con = sources.connect()
    try:
        if not isinstance(source, list) and sources.is_database(source):
            url = str(source)
            with sources.postgres_rows(url, table, selection) as rows:
                sources.stage_rows(con, rows)
            tombstones = sources.postgres_tombstones(url, table)
        else:
            files = [f for s in _listed(source) for f in sources.json_files(s)]
            sources.stage_files(con, files, selection)
            tombstones = sources.file_tombstones(files)
        sources.drop_erased(con, tombstones)
        yield con
    finally:
        con.close()


def _listed(source: Source | list[Source]) -> list[Source]:
    return list(source) if isinstance(source, list) else [source]


def read_events(
    con: duckdb.DuckDBPyConnection, where: str, params: dict[str, Any], found: str | None = None
) -> Any:
    """Return the Arrow table of the staged events that match `where`, one column per property
    (of their own, or of the structure `found` elsewhere); OutOfRangeError for an integer beyond
    int64."""
    duck = require("duckdb")
    if found is None:
        query = f"SELECT json_group_structure(json) FROM capsules WHERE {where}"  # noqa: S608
        [(found,)] = con.execute(query, params).fetchall()
    structure = properties_structure(found)
    columns = select_list(structure, list(leaves(structure)))
    source = transformed(where, structure)
    query = f"SELECT {columns} FROM {source} ORDER BY received"  # noqa: S608
    try:
        return con.sql(query, params=params).to_arrow_table()
    except duck.ConversionException:
        label = f"schema {params.get('schema')!r}"
        raise beyond_int64(con, where, params, structure, label) from None


def _none_staged(con: duckdb.DuckDBPyConnection) -> bool:
    """Return whether no event was selected."""
    return con.execute("SELECT count(*) FROM capsules").fetchall() == [(0,)]


def installed_schema(schema_id: str) -> bool:
    """Return whether a schema file in the Jupyter data paths has this id."""
    import logging

    from jupyter_telemetry_ext.core.discovery import register_discovered, schema_folders
    from jupyter_telemetry_ext.core.eventlog import EventLog

    quiet = logging.getLogger("jupyter_telemetry_ext.analysis.discovery")
    found = register_discovered(EventLog(), schema_folders(), quiet)
    return any(schema.id == schema_id for schema in found)


def _one_schema(con: duckdb.DuckDBPyConnection, schema: str | None) -> str | None:
    """Return the schema to read: `schema`, or the only one the source holds."""
    if schema is not None:
        return schema
    query = "SELECT DISTINCT schema FROM capsules ORDER BY 1"
    found = [s for (s,) in con.execute(query).fetchall()]
    if len(found) > 1:
        msg = (f"the source holds events of {len(found)} schemas: name one with schema=... "
               f"({', '.join(found)})")  # fmt: skip
        raise ValueError(msg)
    return found[0] if found else None


def _utc(value: object, name: str) -> datetime | None:
    """Return a time bound as an aware UTC datetime (text as `--since` reads it)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        from jupyter_telemetry_ext.sinks.logreader import parse_since

        try:
            return parse_since(value)
        except ValueError:
            msg = f"{name}: use an RFC 3339 time, a date (2026-11-27) or 30m, 2h, 7d"
            raise ValueError(msg) from None
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time(), timezone.utc)  # a UTC day, as its text is
    if not isinstance(value, datetime):
        msg = f"{name}: a datetime, a date or text, not {type(value).__name__}"
        raise TypeError(msg)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
