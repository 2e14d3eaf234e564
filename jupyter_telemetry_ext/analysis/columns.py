"""The columns of a schema's events: the capsule's, then each property, nested ones dotted.

The types come from the events themselves (DuckDB's `json_group_structure` over the selected
capsules), so that a log read without its schema still gives typed columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from jupyter_telemetry_ext.core.errors import OutOfRangeError

from .extra import require

if TYPE_CHECKING:
    import duckdb

# The capsule's columns, as staged in `capsules` (see sources.STAGE), in this order.
CAPSULE_COLUMNS = ("received", "event_time", "schema", "version", "user", "client_id")
# A property named as a capsule column is kept under this prefix (`data.version`).
CLASH_PREFIX = "data."
# Integer types of a structure that pandas and Parquet readers take as plain 64-bit integers.
_WIDE = {"UBIGINT": "BIGINT", "HUGEINT": "BIGINT", "NULL": "JSON"}


def quote(name: str) -> str:
    """Return a DuckDB identifier for any column name."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """Return a DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


def properties_structure(structure_text: str | None) -> dict[str, Any]:
    """Return the structure of the events' own properties (the capsule's fields left out)."""
    structure = json.loads(structure_text) if structure_text else {}
    if not isinstance(structure, dict):
        return {}
    properties = {k: _widened(v) for k, v in structure.items() if not _is_capsule_field(k)}
    if _case_clash(properties):
        names = sorted(properties, key=str.lower)
        clashing = [n for n in names if not n or sum(m.lower() == n.lower() for m in names) > 1]
        msg = (f"the properties {', '.join(map(repr, clashing))} differ only by case, or are "
               "named '': DuckDB reads columns by name whatever their case, and cannot read "
               "them apart")  # fmt: skip
        raise ValueError(msg)
    return properties


def _is_capsule_field(key: str) -> bool:
    return key.startswith("__") and key.endswith("__")


def _widened(node: Any) -> Any:
    if isinstance(node, dict):
        # An object whose keys differ only by case (`{"A": 1, "a": 2}`, keys a user chose), or
        # with an empty key, cannot be a DuckDB struct (its fields are named whatever their
        # case, and never ""): JSON text.
        return (
            {k: _widened(v) for k, v in node.items()} if node and not _case_clash(node) else "JSON"
        )
    if isinstance(node, list):
        return [_widened(node[0])] if node else ["JSON"]
    return _WIDE.get(node, node)


def _case_clash(node: dict[str, Any]) -> bool:
    """Return True when two of the keys differ only by case, or one is empty (no struct field
    can be named so either)."""
    return "" in node or len({k.lower() for k in node}) < len(node)


def leaves(structure: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Yield the path of each column, a property or a leaf of a nested object, by name (the
    same order whichever store the events come from)."""
    for key, node in sorted(structure.items()):
        if isinstance(node, dict):
            yield from leaves(node, (*path, key))
        else:
            yield (*path, key)


def column_name(path: tuple[str, ...]) -> str:
    """Return a property's column name: dotted for nested objects, prefixed if it clashes."""
    name = ".".join(path)
    return CLASH_PREFIX + name if path[0] in CAPSULE_COLUMNS else name


def column_names(paths: list[tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    """Return each path's column name, unique whatever its case: a name a column before it has
    (a property named `cell.index` beside `cell: {index}`, or `data: {user}` beside `user`) is
    followed by `#2`, `#3`, ... (properties named as a capsule column first, then in the order
    of `paths`)."""
    names: dict[tuple[str, ...], str] = {}
    taken = set(CAPSULE_COLUMNS)  # lower case: DuckDB's names are the same whatever their case
    for path in sorted(paths, key=lambda p: p[0] not in CAPSULE_COLUMNS):
        name = base = column_name(path)
        number = 1
        while name.lower() in taken:
            number += 1
            name = f"{base}#{number}"
        taken.add(name.lower())
        names[path] = name
    return names


def transformed(where: str, structure: dict[str, Any]) -> str:
    """Return the staged capsules that match `where`, their properties read once into the struct
    column `__properties` (each column then takes its field, no second read).

    Integers are read as 128-bit ones, and each column casts them to 64 bits: a value beyond
    int64 then stops the query (an `OutOfRangeError`), where reading it as BIGINT gives NULL.
    """
    spec = literal(json.dumps(_read_wide(structure)))
    typed = f"json_transform(json, {spec})" if structure else "NULL"
    return f"(SELECT *, {typed} AS __properties FROM capsules WHERE {where})"  # noqa: S608


def _read_wide(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _read_wide(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_read_wide(node[0])]
    return "HUGEINT" if node == "BIGINT" else node


def node_at(structure: dict[str, Any], path: tuple[str, ...]) -> Any:
    """Return the type of a column in a structure (a name, a list, or a dict for an object)."""
    node: Any = structure
    for key in path:
        node = node[key]
    return node


def duck_type(node: Any) -> str:
    """Return the DuckDB type of a structure's node."""
    if isinstance(node, dict):
        fields = ", ".join(f"{quote(k)} {duck_type(v)}" for k, v in node.items())
        return f"STRUCT({fields})"
    if isinstance(node, list):
        return duck_type(node[0]) + "[]"
    return str(node)


def _holds_integers(node: Any) -> bool:
    if isinstance(node, dict):
        return any(_holds_integers(v) for v in node.values())
    if isinstance(node, list):
        return _holds_integers(node[0])
    return bool(node == "BIGINT")


def property_column(path: tuple[str, ...], node: Any = None) -> str:
    """Return the expression of a property's column over `transformed` (of type `node`)."""
    expression = "__properties"
    for key in path:
        expression = f"struct_extract({expression}, {literal(key)})"
    if _holds_integers(node):
        expression = f"CAST({expression} AS {duck_type(node)})"
    return expression


def select_list(structure: dict[str, Any], paths: list[tuple[str, ...]]) -> str:
    """Return the SELECT list over `transformed` of the capsule's columns and of `paths`."""
    items = [quote(c) for c in CAPSULE_COLUMNS]
    names = column_names(paths)
    items += [f"{property_column(p, node_at(structure, p))} AS {quote(names[p])}" for p in paths]
    return ", ".join(items)


def beyond_int64(
    con: duckdb.DuckDBPyConnection,
    where: str,
    params: dict[str, Any],
    structure: dict[str, Any],
    label: str,
) -> OutOfRangeError:
    """Return the error naming the first column whose integers do not fit in int64 (`label` says
    whose events they are; the value is never named)."""
    duck = require("duckdb")
    names = column_names(list(leaves(structure)))
    for path, name in names.items():
        node = node_at(structure, path)
        if not _holds_integers(node):
            continue
        column, source = property_column(path, node), transformed(where, structure)
        query = f"SELECT count({column}) FROM {source}"  # noqa: S608
        try:
            con.execute(query, params).fetchall()
        except duck.ConversionException:
            return OutOfRangeError(_beyond_message(label, name))
    return OutOfRangeError(_beyond_message(label, "?"))


def _beyond_message(label: str, name: str) -> str:
    return (f"{label}: the property {name!r} holds an integer beyond the 64-bit range "
            "(-2**63 to 2**63 - 1), which no int64 column holds: nothing was read (take those "
            "events out with since/until, or fix what wrote them)")  # fmt: skip
