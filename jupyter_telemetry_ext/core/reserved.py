"""Keys starting with `__` belong to the capsule: refused in every object of an event.

The check is a rule added to the schema the validator compiles, so it runs in the validator's
own pass over the event, at every depth, in objects the schema describes or not. It sits
under `not`, so it adds no annotations: `unevaluatedProperties` sees the schema's own keys only.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jsonschema_rs

RESERVED_PREFIX = "__"
RULE_NAME = "jupyter_telemetry_ext_reserved_keys"
_DEFS_2019 = ("2019-09", "2020-12")


def _has_reserved_key(ref: str) -> dict[str, Any]:
    """Return a schema that holds for a value with a `__` key somewhere inside it."""
    has_reserved = {"$ref": ref}
    all_clean = {
        "patternProperties": {f"^{RESERVED_PREFIX}": {"not": {}}},
        "additionalProperties": {"not": has_reserved},
    }
    return {
        "anyOf": [
            {"type": "object", "not": all_clean},
            {"type": "array", "not": {"items": {"not": has_reserved}}},
        ]
    }


def with_reserved_key_check(document: Mapping[str, Any], *, check: bool = True) -> dict[str, Any]:
    """Return a copy of a schema document that also refuses `__` keys at any depth.

    `check` False: the same copy without that rule, for events known to hold no such key (see
    `EventSchema.is_valid`); it validates everything else exactly as the checked copy does.
    """
    checked = dict(document)
    applied: list[Any] = list(checked.pop("allOf", []))
    if "$ref" in checked:  # up to draft 7 a `$ref` hides its siblings: make it one of allOf
        applied.insert(0, {"$ref": checked.pop("$ref")})
    if check:
        dialect = str(checked.get("$schema", ""))
        defs = "$defs" if any(draft in dialect for draft in _DEFS_2019) else "definitions"
        ref = f"#/{defs}/{RULE_NAME}"
        existing = checked.get(defs)
        checked[defs] = {**(existing if isinstance(existing, Mapping) else {}),
                         RULE_NAME: _has_reserved_key(ref)}  # fmt: skip
        applied.append({"not": {"$ref": ref}})
    if applied:
        checked["allOf"] = applied
    return checked


def may_hold_reserved_key(body: bytes) -> bool:
    """Return False when no key of the JSON text `body` can start with `__`: the text has no
    `__` and no escaped underscore (`\\u005f`). (A backslash is rare: one `in` of a single
    byte, a memchr, spares most bodies the search for the escape.)"""
    return b"__" in body or (b"\\" in body and b"\\u005" in body)


@functools.cache
def _locator() -> Any:
    """Return a validator whose first error is at a `__` key, its path ending with the key."""
    ref = f"#/definitions/{RULE_NAME}"
    clean = {
        "patternProperties": {f"^{RESERVED_PREFIX}": False},
        "additionalProperties": {"$ref": ref},
        "items": {"$ref": ref},
    }
    return jsonschema_rs.Draft7Validator({"definitions": {RULE_NAME: clean}, "$ref": ref})


def reserved_key_path(event: Any) -> list[object] | None:
    """Return the path of a `__` key in the event (e.g. `["blob", "__user__"]`), or None.

    Raises ValueError when the event holds a value JSON cannot (a datetime, an object).
    """
    try:
        _locator().validate(event)
    except jsonschema_rs.ValidationError as error:
        return list(error.instance_path)
    return None
