"""The column types an event schema gives its properties, so that every export of a schema
version has the same columns of the same types whatever values its events hold.

JSON Schema types become DuckDB's: integer BIGINT, number DOUBLE (integer or number too),
string VARCHAR, boolean BOOLEAN (an enum or a const without `type`: the type of its values); an
object with `properties` one column per property (dotted names), an array a list of its
`items`' type, anything else (an object without `properties`, mixed types) JSON text.
"""

from __future__ import annotations

from typing import Any

SCALARS = {"integer": "BIGINT", "number": "DOUBLE", "string": "VARCHAR", "boolean": "BOOLEAN"}
# What an enum or a const without `type` holds, by the Python type of its values.
VALUE_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def schema_structure(document: dict[str, Any]) -> dict[str, Any]:
    """Return the structure (as `columns.properties_structure` gives) of a schema's properties."""
    properties = document.get("properties")
    if not isinstance(properties, dict):
        return {}
    return {name: _node(spec) for name, spec in properties.items() if isinstance(spec, dict)}


def typed(found: dict[str, Any], declared: dict[str, Any]) -> dict[str, Any]:
    """Return the structure of the events `found` with the types the schema `declared` (its
    properties that no event holds too; the events' own types for properties it does not
    declare)."""
    merged = dict(found)
    for key, node in declared.items():
        merged[key] = _merged(found.get(key), node)
    lowered = {k.lower() for k in merged}
    return merged if len(lowered) == len(merged) and "" not in merged else declared


def _merged(found: Any, declared: Any) -> Any:
    """Return the declared type of a property, or the type of its values when the schema does
    not allow them (a log that another writer made): kept as they are, never emptied."""
    if isinstance(declared, dict):
        return typed(found, declared) if isinstance(found, dict) else declared
    if isinstance(declared, list) and isinstance(found, list):
        return [_merged(found[0], declared[0])]
    fits = found in (None, "JSON", declared) or declared == "JSON"
    return declared if fits or (declared, found) == ("DOUBLE", "BIGINT") else found


def _node(spec: dict[str, Any]) -> Any:
    types = _types(spec)
    if types == {"object"}:
        return schema_structure(spec) or "JSON"
    if types == {"array"}:
        items = spec.get("items")
        return [_node(items) if isinstance(items, dict) else "JSON"]
    if types == {"integer", "number"}:
        return "DOUBLE"
    return SCALARS.get(next(iter(types)), "JSON") if len(types) == 1 else "JSON"


def _types(spec: dict[str, Any]) -> set[str]:
    """Return the JSON types a property may hold (null left out: every column may be empty)."""
    declared = spec.get("type")
    if isinstance(declared, str):
        found = {declared}
    elif isinstance(declared, list):
        found = {t for t in declared if isinstance(t, str)}
    elif "enum" in spec or "const" in spec:
        values = spec["enum"] if "enum" in spec else [spec["const"]]
        found = {VALUE_TYPES.get(type(v), "other") for v in values if v is not None}
    else:
        found = {"other"}
    return found - {"null"}
