"""A research dataset: one Parquet or CSV file per schema version, `manifest.json` and
`datasheet.md`, with users re-keyed by a per-export salt and personal properties left out.

Pseudonyms are an HMAC-SHA256 of the stored user (itself a keyed hash, or a name) with the
export's salt: two exports with different salts cannot be joined by user. The event's client id
(an id that is the same in every export) is left out for the same reason.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_telemetry_ext.core.errors import NothingToExportError
from jupyter_telemetry_ext.core.schema import EventSchema
from jupyter_telemetry_ext.core.spreadsheet import neutralised_sql

from .columns import (
    beyond_int64,
    column_names,
    leaves,
    literal,
    properties_structure,
    property_column,
    quote,
    transformed,
)
from .datasheet import datasheet
from .extra import require
from .load import Source, staged
from .personal import ColumnRules
from .schematypes import schema_structure, typed
from .sources import Selection

if TYPE_CHECKING:
    import duckdb

FORMATS = ("parquet", "csv")
# Times in CSV: UTC, to the millisecond, as LibreOffice and Excel read a date and time.
CSV_TIME = "%Y-%m-%d %H:%M:%S.%g"
PARQUET_BATCH = 100_000  # rows per Arrow batch written
MIN_SALT = 16  # characters: a short salt lets anyone holding a pseudonym try names
PSEUDONYMS = (
    "HMAC-SHA256 of the user as the store records it (a keyed hash, or the name), keyed with "
    "a salt made for this export; two exports with different salts cannot be joined by user"
)
SchemaLookup = Callable[[str, str], EventSchema | None]


@dataclass
class DatasetRequest:
    """What to export, and how."""

    source: Source | list[Source]
    out: Path
    fmt: str = "parquet"
    selection: Selection = field(default_factory=Selection)
    include: frozenset[str] = frozenset()
    salt: str = ""  # empty: a random one, not kept
    table: str = "telemetry_events"
    described_source: str = ""  # how the manifest names the source (never a password)


def check_salt(salt: str) -> str:
    """Return a salt given by the researcher; raise ValueError when too short to be secret."""
    if 0 < len(salt) < MIN_SALT:
        msg = f"--salt: at least {MIN_SALT} characters (got {len(salt)}), or none for a random one"
        raise ValueError(msg)
    return salt


def export_dataset(request: DatasetRequest, lookup: SchemaLookup) -> dict[str, Any]:
    """Write the dataset into `request.out` (a new or empty folder); return its manifest."""
    if request.fmt not in FORMATS:
        msg = f"--format: one of {', '.join(FORMATS)}, not {request.fmt!r}"
        raise ValueError(msg)
    _check_out(request.out)
    salt = check_salt(request.salt).encode() or secrets.token_bytes(32)
    with staged(request.source, request.selection, request.table) as con:
        groups = con.execute(
            "SELECT schema, version, count(*), min(received), max(received) FROM capsules "
            "GROUP BY schema, version ORDER BY schema, version"
        ).fetchall()
        if not groups:
            msg = "no events to export in this selection"
            raise NothingToExportError(msg)
        _pseudonyms(con, salt)
        request.out.mkdir(parents=True, exist_ok=True)
        names = _file_names([(g[0], g[1]) for g in groups], request.fmt)
        files = [_write(con, request, g, names[(g[0], g[1])], lookup) for g in groups]
    manifest = _manifest(request, files)
    (request.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (request.out / "datasheet.md").write_text(datasheet(manifest), encoding="utf-8")
    return manifest


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        msg = f"--out {out}: must be a new or empty folder (a dataset is never mixed with another)"
        raise FileExistsError(msg)


def _pseudonyms(con: duckdb.DuckDBPyConnection, salt: bytes) -> None:
    """Make the table `pseudonyms` (user, pseudonym) of every staged user."""
    users = [u for (u,) in con.execute('SELECT DISTINCT "user" FROM capsules').fetchall() if u]
    con.execute('CREATE OR REPLACE TEMP TABLE pseudonyms ("user" VARCHAR, pseudonym VARCHAR)')
    if users:
        rows = [(u, hmac.new(salt, u.encode(), hashlib.sha256).hexdigest()) for u in users]
        con.executemany("INSERT INTO pseudonyms VALUES (?, ?)", rows)


def _file_names(groups: list[tuple[str, str]], fmt: str) -> dict[tuple[str, str], str]:
    """Return a file name per (schema, version): the id's last part (plus a hash of the id when
    two ids end alike) and the version."""
    short = {i: _safe(i.rstrip("/").rsplit("/", 1)[-1]) for i, _ in groups}
    taken = [short[i] for i in set(short)]
    names = {}
    for schema_id, version in groups:
        name = short[schema_id]
        if taken.count(name) > 1:
            name += "-" + hashlib.sha256(schema_id.encode()).hexdigest()[:8]
        names[(schema_id, version)] = f"{name}-v{_safe(version)}.{fmt}"
    return names


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip(".") or "_"


def _write(
    con: duckdb.DuckDBPyConnection,
    request: DatasetRequest,
    group: tuple[Any, ...],
    name: str,
    lookup: SchemaLookup,
) -> dict[str, Any]:
    """Write one schema version's events; return what the manifest says of the file."""
    schema_id, version, count, first, last = group
    params = {"schema": schema_id, "version": version}
    where = "schema IS NOT DISTINCT FROM $schema AND version IS NOT DISTINCT FROM $version"
    query = f"SELECT json_group_structure(json) FROM capsules WHERE {where}"  # noqa: S608
    [(structure_text,)] = con.execute(query, params).fetchall()
    schema = lookup(schema_id, version)
    structure = properties_structure(structure_text)
    if schema is not None:  # the schema's types, whatever values these events happen to hold
        structure = typed(structure, schema_structure(schema.document))
    rules = ColumnRules(schema, request.include)
    paths = list(leaves(structure))
    names = column_names(paths)
    kept = [p for p in paths if rules.keeps(p)]
    relation = con.sql(_select(structure, kept, names, where, request.fmt == "csv"), params=params)
    try:
        _write_file(relation, request.out / name, request.fmt)
    except require("duckdb").ConversionException:
        label = f"schema {schema_id!r} version {version!r}"
        raise beyond_int64(con, where, params, structure, label) from None
    count_users = f'SELECT count(DISTINCT "user") FROM capsules WHERE {where}'  # noqa: S608
    [(users,)] = con.execute(count_users, params).fetchall()
    return {
        "file": name, "schema": schema_id, "version": version, "found": schema is not None,
        "title": schema.title if schema else "",
        "description": schema.description if schema else "",
        "events": count, "users": users, "first": _iso(first), "last": _iso(last),
        "columns": _columns(relation, rules, kept, names),
        "left_out": [{"name": names[p], "categories": rules.categories(p)}
                     for p in paths if p not in kept],
    }  # fmt: skip


def _select(
    structure: dict[str, Any],
    kept: list[tuple[str, ...]],
    names: dict[tuple[str, ...], str],
    where: str,
    csv: bool,
) -> str:
    """Return the dataset's query: times, schema, version, the pseudonym, the kept properties."""
    times = [f"strftime({t} AT TIME ZONE 'UTC', {literal(CSV_TIME)}) AS {t}" if csv else t
             for t in ("received", "event_time")]  # fmt: skip
    items = [*times, "schema", "version", 'p.pseudonym AS "user"']
    for path in kept:
        node: Any = structure
        for key in path:
            node = node[key]
        expression = property_column(path, node)
        if csv and (isinstance(node, list) or node == "JSON"):
            expression = f"to_json({expression})::VARCHAR"  # one cell of JSON text
        items.append(f"{expression} AS {quote(names[path])}")
    return (f"SELECT {', '.join(items)} FROM {transformed(where, structure)} c "  # noqa: S608
            'LEFT JOIN pseudonyms p ON c."user" = p."user" ORDER BY c.received')  # fmt: skip


def _write_file(relation: duckdb.DuckDBPyRelation, path: Path, fmt: str) -> None:
    if fmt == "csv":
        _no_formulas(relation).write_csv(str(path))
    else:
        _write_parquet(relation, path)


def _write_parquet(relation: duckdb.DuckDBPyRelation, path: Path) -> None:
    """Write a relation as Parquet, every column nullable: DuckDB marks a column that holds no
    empty value required, and two exports of a schema would then not concatenate."""
    pa, pq = require("pyarrow"), require("pyarrow.parquet")
    reader = relation.fetch_record_batch(PARQUET_BATCH)
    schema = pa.schema([field.with_nullable(True) for field in reader.schema])
    with pq.ParquetWriter(str(path), schema, compression="snappy") as writer:
        for batch in reader:
            writer.write_table(pa.Table.from_batches([batch]).cast(schema))


def _no_formulas(relation: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """Return the relation with each text cell a spreadsheet would run as a formula marked as
    text (a leading `'`), as the dashboard's CSV downloads do."""
    items = [f"{neutralised_sql(quote(n)) if str(t) == 'VARCHAR' else quote(n)} AS {quote(n)}"
             for n, t in zip(relation.columns, relation.types, strict=True)]  # fmt: skip
    return relation.project(", ".join(items))


def _columns(
    relation: Any,
    rules: ColumnRules,
    kept: Iterable[tuple[str, ...]],
    names: dict[tuple[str, ...], str],
) -> list[Any]:
    categories = {names[p]: rules.categories(p) for p in kept}
    capsule = {"received": ["unrestricted"], "event_time": ["unrestricted"],
               "schema": ["unrestricted"], "version": ["unrestricted"],
               "user": ["pseudonym of user-identifier"]}  # fmt: skip
    return [{"name": n, "type": str(t), "categories": capsule.get(n) or categories.get(n, [])}
            for n, t in zip(relation.columns, relation.types, strict=True)]  # fmt: skip


def _iso(value: Any) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if isinstance(value, datetime) else None


def _manifest(request: DatasetRequest, files: list[dict[str, Any]]) -> dict[str, Any]:
    selection = request.selection
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "format": request.fmt,
        "source": request.described_source,
        "selection": {"schema": selection.schema, "since": _iso(selection.since),
                      "until": _iso(selection.until)},
        "users": {"pseudonymised": PSEUDONYMS,
                  "salt": "given by the researcher (not written here): exports made with the "
                  "same salt can be joined by user" if request.salt else "random, not kept"},
        "included_categories": sorted({"unrestricted", *request.include}),
        "left_out_always": ["client_id: the same id in every export of the event"],
        "events": sum(f["events"] for f in files),
        "files": files,
    }  # fmt: skip
