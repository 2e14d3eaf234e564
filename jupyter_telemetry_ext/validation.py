"""Describing why an event is invalid: the failing field's path and type, never its value.

Imported only when an event fails the fast validator: jsonschema is slow to import.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator

from .printable import printable
from .reserved import reserved_key_path

_MAX_LISTED = 10


class EventValidationError(jsonschema.ValidationError):
    """An event does not match its schema; `field` is the failing path, `reason` says why."""

    def __init__(self, message: str, *, field: str, reason: str) -> None:
        """Keep the field path and the reason beside the full message."""
        super().__init__(message)
        self.field = field
        self.reason = reason


def slow_validator(document: Mapping[str, Any]) -> Validator:
    """Return a jsonschema validator (Draft 7 unless `$schema` says so), formats unchecked."""
    cls = jsonschema.validators.validator_for(document, default=jsonschema.Draft7Validator)
    return cls(document)


def event_error(
    validator: Validator, event: Any, schema_id: str, version: object
) -> EventValidationError:
    """Return the error for an invalid event: schema, version, field path and reason."""
    error = best_match(validator.iter_errors(event))
    field, reason = ("(event)", "does not match the schema") if error is None else describe(error)
    message = f"invalid event for schema {schema_id!r} version {version}: {field}: {reason}"
    return EventValidationError(message, field=field, reason=reason)


def reserved_key_error(event: Any, schema_id: str, version: object) -> EventValidationError | None:
    """Return the error for an event with a `__` key at any depth, naming its path; or None."""
    path = reserved_key_path(event)
    if path is None:
        return None
    field, reason = field_path(path), "property names starting with '__' are reserved"
    message = f"invalid event for schema {schema_id!r} version {version}: {field}: {reason}"
    return EventValidationError(message, field=field, reason=reason)


def field_path(parts: Iterable[object]) -> str:
    """Return a readable path such as `model.paths[2]`, or `(event)` for the event itself.

    Key names come from the event: their control characters are escaped.
    """
    text = ""
    for part in parts:
        name = str(part) if isinstance(part, int) else printable(str(part))
        text += f"[{name}]" if isinstance(part, int) else (f".{name}" if text else name)
    return text or "(event)"


def json_type(value: Any) -> str:
    """Return the JSON type name of a value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    names = {int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return next(
        (name for kind, name in names.items() if isinstance(value, kind)), type(value).__name__
    )


def describe(error: jsonschema.ValidationError) -> tuple[str, str]:
    """Return (field path, reason) for one jsonschema error, without echoing event values."""
    path = list(error.absolute_path)
    instance: Any = error.instance
    kind, got = error.validator, json_type(instance)
    expected: Any = error.validator_value
    if kind == "required":
        missing = [name for name in expected if name not in instance]
        return field_path([*path, missing[0] if missing else "?"]), "is required but missing"
    if "propertyNames" in error.relative_schema_path:  # the schema's own rule on key names
        name = str(instance)[:64]
        return field_path([*path, name]), f"the property name {_reason(str(kind), expected, got)}"
    if kind == "additionalProperties":
        return field_path(path), f"has properties the schema does not allow ({_extra_keys(error)})"
    return field_path(path), _reason(str(kind), expected, got)


def _reason(kind: str, expected: Any, got: str) -> str:
    if kind == "type":
        return f"must be of type {_listed(expected)} (got {got})"
    if kind == "enum":
        return f"must be one of {_listed(expected)} (got a {got} that is not)"
    if kind == "const":
        return f"must equal the schema's constant {expected!r}"[:200]
    if kind in ("anyOf", "oneOf"):
        return f"does not match {'exactly one' if kind == 'oneOf' else 'any'} of the allowed shapes"
    return f"fails {kind}={_listed(expected)} (got {got})"


def _listed(value: Any) -> str:
    if isinstance(value, list):
        shown = ", ".join(repr(v) for v in value[:_MAX_LISTED])
        return f"[{shown}{', ...' if len(value) > _MAX_LISTED else ''}]"
    return repr(value)[:100]


def _extra_keys(error: jsonschema.ValidationError) -> str:
    declared = (
        set(error.schema.get("properties", {})) if isinstance(error.schema, Mapping) else set()
    )
    instance: Any = error.instance
    extra = [str(k)[:64] for k in instance if k not in declared][:_MAX_LISTED]
    return ", ".join(repr(k) for k in extra)


def not_json_error(event: Any, schema_id: str, version: object) -> EventValidationError:
    """Return the error for an event holding a value JSON cannot represent, naming its path."""
    path, got = _first_non_json(event, []) or ([], "a value JSON cannot represent")
    field, reason = field_path(path), f"is not representable in JSON (got {got})"
    message = f"invalid event for schema {schema_id!r} version {version}: {field}: {reason}"
    return EventValidationError(message, field=field, reason=reason)


def non_json_error(event: Any, schema_id: str, version: object) -> EventValidationError | None:
    """Return the error for an event holding a value JSON cannot represent; None if it has none."""
    return not_json_error(event, schema_id, version) if _first_non_json(event, []) else None


def _first_non_json(value: Any, path: list[object]) -> tuple[list[object], str] | None:
    if isinstance(value, float) and not math.isfinite(value):
        return path, "a non-finite number"
    if value is None or isinstance(value, (str, int, float)):
        return None
    if isinstance(value, dict):
        children: Iterable[tuple[object, Any]] = value.items()
    elif isinstance(value, (list, tuple)):
        children = enumerate(value)
    else:
        return path, type(value).__name__
    for key, sub in children:
        found = _first_non_json(sub, [*path, key])
        if found:
            return found
    return None
