"""Walking the subschemas of a JSON Schema document (never into data such as `enum`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

# Subschemas that every valid value must also satisfy where they apply.
_POSITIVE = (
    "additionalItems", "additionalProperties", "else", "items", "then", "unevaluatedItems",
    "unevaluatedProperties",
)  # fmt: skip
# Subschemas whose failure can make the whole succeed.
_NEGATIVE = ("contains", "if", "not", "propertyNames")
_LISTS = ("allOf", "anyOf", "items", "oneOf", "prefixItems")
_MAPS = (
    "$defs",
    "definitions",
    "dependencies",
    "dependentSchemas",
    "patternProperties",
    "properties",
)


def children(
    schema: Mapping[str, Any], *, positive_only: bool = False
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Yield (location, subschema) for each direct subschema, e.g. ("properties.a", {...})."""
    for key in _POSITIVE if positive_only else _POSITIVE + _NEGATIVE:
        value = schema.get(key)
        if isinstance(value, Mapping):
            yield key, value
    for key in _LISTS:
        value = schema.get(key)
        if isinstance(value, list):
            yield from ((f"{key}[{i}]", v) for i, v in enumerate(value) if isinstance(v, Mapping))
    for key in _MAPS:
        value = schema.get(key)
        if isinstance(value, Mapping):
            yield from ((f"{key}.{n}", v) for n, v in value.items() if isinstance(v, Mapping))


def walk(
    schema: Mapping[str, Any], *, positive_only: bool = False
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Yield (location, subschema) for the schema and every subschema below it.

    With `positive_only`, skip subschemas under `not`, `if`, `contains` and `propertyNames`.
    """
    stack: list[tuple[str, Mapping[str, Any]]] = [("", schema)]
    while stack:
        location, current = stack.pop()
        yield location, current
        below = children(current, positive_only=positive_only)
        stack.extend((f"{location}.{key}" if location else key, sub) for key, sub in below)
