"""The columns of a schema's events: the capsule's, then each property, nested ones dotted.

The types come from the events themselves (DuckDB's `json_group_structure` over the selected
capsules), so that a log read without its schema still gives typed columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

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
    column `__properties` (each column then takes its field, no second read)."""
    typed = f"json_transform(json, {literal(json.dumps(structure))})" if structure else "NULL"
    return f"(SELECT *, {typed} AS __properties FROM capsules WHERE {where})"  # noqa: S608


def property_column(path: tuple[str, ...]) -> str:
    """Return the expression of a property's column over `transformed`."""
    expression = "__properties"
    for key in path:
        expression = f"struct_extract({expression}, {literal(key)})"
    return expression


def select_list(paths: list[tuple[str, ...]]) -> str:
    """Return the SELECT list over `transformed` of the capsule's columns and of `paths`."""
    items = [quote(c) for c in CAPSULE_COLUMNS]
    names = column_names(paths)
    items += [f"{property_column(path)} AS {quote(names[path])}" for path in paths]
    return ", ".join(items)
