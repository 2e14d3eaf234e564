"""Describing why an event is invalid: the failing field's path and keyword, never its value.

The description is read from the fast validator's own errors (jsonschema_rs: the instance path
and the keyword that failed): no other validator runs, so describing an invalid event costs
about what checking it did, and no schema `pattern` ever runs in Python's `re`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema
import jsonschema_rs
from jsonschema.protocols import Validator

from .categories import CategoryNode
from .jsonline import holds_lone_surrogate
from .nesting import MAX_DEPTH
from .printable import printable
from .reserved import reserved_key_path
from .walk import walk

_MAX_LISTED = 10
_SHOWN = 64
_WEAK = frozenset({"anyOf", "oneOf"})
_UNEVALUATED = frozenset({"unevaluatedItems", "unevaluatedProperties"})
_RESERVED_PREFIX = "__"
# The attributes of an error kind that hold the schema's value for its keyword (never the event's).
_EXPECTED = ("limit", "pattern", "multiple_of", "format", "schema", "content_media_type",
             "content_encoding")  # fmt: skip
_NOTHING = object()
Kind = jsonschema_rs.ValidationErrorKind


class EventValidationError(jsonschema.ValidationError):
    """An event does not match its schema; `field` is the failing path, `reason` says why."""

    def __init__(self, message: str, *, field: str, reason: str) -> None:
        """Keep the field path and the reason beside the full message."""
        super().__init__(message)
        self.field = field
        self.reason = reason


def slow_validator(document: Mapping[str, Any]) -> Validator:
    """Return a jsonschema validator (Draft 7 unless `$schema` says so), formats unchecked.

    Not used to check or describe events; tests compare its verdicts with the fast validator's.
    """
    cls = jsonschema.validators.validator_for(document, default=jsonschema.Draft7Validator)
    return cls(document)


def describing_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of a schema that refuses the same events, each with a cheap first error.

    A failed `anyOf` or `oneOf` error carries the errors of every branch, built eagerly: as many
    as the values under it (seconds for an array of thousands). Here each becomes
    `allOf: [{not: {not: {anyOf: [...]}}}]`, the same verdict, whose error carries none.
    Annotations do not cross `not`, so a document with `unevaluated*` keywords is kept as is.
    """
    described = copy.deepcopy(dict(document))
    subschemas = [sub for _, sub in walk(described)]
    if any(_UNEVALUATED & sub.keys() for sub in subschemas):
        return described
    for sub in subschemas:
        for key in _WEAK & sub.keys():
            wrapped = {"not": {"not": {key: sub.pop(key)}}}  # type: ignore[attr-defined]
            sub.setdefault("allOf", []).append(wrapped)  # type: ignore[attr-defined]
    return described


def event_error(
    validator: Any, event: Any, schema_id: str, version: object, tree: Tree = None
) -> EventValidationError:
    """Return the error for an event the fast validator refuses: field path and reason.

    The fast validator's first error is described (its `iter_errors` would build every error of
    the event first: as many as values, each a Python object). `tree`: see `named_parts`.
    """
    try:
        validator.validate(event)
    except jsonschema_rs.ValidationError as error:
        field, reason = describe(error, tree)
    else:
        field, reason = "(event)", "does not match the schema"
    message = f"invalid event for schema {schema_id!r} version {version}: {field}: {reason}"
    return EventValidationError(message, field=field, reason=reason)


def reserved_key_error(
    event: Any, schema_id: str, version: object, tree: Tree = None
) -> EventValidationError | None:
    """Return the error for an event with a `__` key at any depth, naming its path; or None."""
    path = reserved_key_path(event)
    if path is None:
        return None
    field = field_path(named_parts(path, tree))
    reason = "property names starting with '__' are reserved"
    message = f"invalid event for schema {schema_id!r} version {version}: {field}: {reason}"
    return EventValidationError(message, field=field, reason=reason)


Tree = CategoryNode | None
# Shown in a field path for a key the schema does not name.
UNNAMED = "*"


def named_parts(parts: Iterable[object], tree: Tree) -> list[object]:
    """Return a path with each key that the schema (its category tree `tree`) does not name in
    `properties` as `*`: `additionalProperties` or `patternProperties` let it in, and its name
    may itself be data. Indexes and reserved (`__`) keys are kept; `tree` None keeps all."""
    if tree is None:
        return list(parts)
    shown: list[object] = []
    node: Tree = tree
    for part in parts:
        if isinstance(part, int):
            shown.append(part)
            node = node.items if node is not None else None
            continue
        child = node.properties.get(str(part)) if node is not None else None
        named = child is not None or str(part).startswith(_RESERVED_PREFIX)
        shown.append(part if named else UNNAMED)
        node = child
    return shown


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


def describe(error: jsonschema_rs.ValidationError, tree: Tree = None) -> tuple[str, str]:
    """Return (field path, reason) for one jsonschema_rs error, without echoing event values.

    Built from the error's path and keyword only: its `message` quotes the value. `tree`: see
    `named_parts`.
    """
    path: list[object] = named_parts(error.instance_path, tree)
    kind = error.kind
    if isinstance(kind, Kind.Required):
        return field_path([*path, kind.property]), "is required but missing"
    if isinstance(kind, Kind.PropertyNames):
        return _property_name(path, kind.error, tree)
    if isinstance(kind, (Kind.AdditionalProperties, Kind.UnevaluatedProperties)):
        return _extra_keys(path, [str(key) for key in kind.unexpected])
    return field_path(path), _reason(kind, json_type(error.instance))


def _property_name(
    path: list[object], error: jsonschema_rs.ValidationError, tree: Tree
) -> tuple[str, str]:
    name = str(error.instance)[:_SHOWN]
    if name.startswith(_RESERVED_PREFIX):
        return _reserved(path, name)
    shown = name if tree is None else UNNAMED  # a name that fails propertyNames is data
    return field_path([*path, shown]), f"the property name fails {error.kind.name}"


def _reserved(path: list[object], name: str) -> tuple[str, str]:
    return field_path([*path, name[:_SHOWN]]), "property names starting with '__' are reserved"


def _extra_keys(path: list[object], keys: list[str]) -> tuple[str, str]:
    """Describe keys the schema does not allow: a reserved one by name, else all (in short)."""
    reserved = next((key for key in keys if key.startswith(_RESERVED_PREFIX)), None)
    if reserved is not None:
        return _reserved(path, reserved)
    shown = ", ".join(repr(key[:_SHOWN]) for key in keys[:_MAX_LISTED])
    return field_path(path), f"has properties the schema does not allow ({shown})"


def _reason(kind: Kind, got: str) -> str:
    if isinstance(kind, Kind.Type):
        types = kind.types[0] if len(kind.types) == 1 else sorted(kind.types)
        return f"must be of type {_listed(types)} (got {got})"
    if isinstance(kind, Kind.Enum):
        return f"must be one of {_listed(kind.options)} (got a {got} that is not)"
    if isinstance(kind, Kind.Constant):
        return f"must equal the schema's constant {kind.expected_value!r}"[:200]
    return _reason_shape(kind) or _reason_keyword(kind, got)


def _reason_shape(kind: Kind) -> str | None:
    """Say why for anyOf, oneOf (or their rewriting by describing_document) and `false`."""
    weak = kind.name if kind.name in _WEAK else None
    if isinstance(kind, Kind.Not):
        weak = _wrapped(kind.schema)
    if weak:
        return _reason_weak(weak)
    return "is not allowed by the schema" if isinstance(kind, Kind.FalseSchema) else None


def _reason_keyword(kind: Kind, got: str) -> str:
    expected = next((getattr(kind, a) for a in _EXPECTED if hasattr(kind, a)), _NOTHING)
    shown = "" if expected is _NOTHING else "=" + _listed(expected)
    return f"fails {kind.name}{shown} (got {got})"


def _reason_weak(keyword: str) -> str:
    return f"does not match {'exactly one' if keyword == 'oneOf' else 'any'} of the allowed shapes"


def _wrapped(schema: Any) -> str | None:
    """Return `anyOf` or `oneOf` for a `{not: {anyOf|oneOf: ...}}` of describing_document."""
    inner = schema.get("not") if isinstance(schema, dict) and len(schema) == 1 else None
    keys = list(inner) if isinstance(inner, dict) else []
    return keys[0] if len(keys) == 1 and keys[0] in _WEAK else None


def _listed(value: Any) -> str:
    if isinstance(value, list):
        shown = ", ".join(repr(v) for v in value[:_MAX_LISTED])
        return f"[{shown}{', ...' if len(value) > _MAX_LISTED else ''}]"
    return repr(value)[:100]


def too_deep_error(
    field: str, schema_id: str, version: object, tree: Tree = None
) -> EventValidationError:
    """Return the error for an event nested deeper than MAX_DEPTH under the top-level key
    `field` (`""`: the event itself)."""
    field = field_path(named_parts([field] if field else [], tree))
    reason = f"nests deeper than {MAX_DEPTH} levels"
    message = f"invalid event for schema {schema_id!r} version {version}: {field}: {reason}"
    return EventValidationError(message, field=field, reason=reason)


def not_json_error(
    event: Any, schema_id: str, version: object, tree: Tree = None
) -> EventValidationError:
    """Return the error for an event holding a value JSON cannot represent, naming its path:
    a non-finite number, a type JSON has not, or a string or key with a lone surrogate."""
    path, reason = _first_non_json(event, []) or (
        [],
        _NOT_JSON.format("a value JSON cannot represent"),
    )
    field = field_path(named_parts(path, tree))
    message = f"invalid event for schema {schema_id!r} version {version}: {field}: {reason}"
    return EventValidationError(message, field=field, reason=reason)


_NOT_JSON = "is not representable in JSON (got {})"
# As the REST API says of a body with one: a lone surrogate is not text (it is not UTF-8).
_NOT_TEXT = "is not UTF-8 text (got a {} holding a lone surrogate, U+D800-U+DFFF)"


def _first_non_json(value: Any, path: list[object]) -> tuple[list[object], str] | None:
    if isinstance(value, dict):
        children: Iterable[tuple[object, Any]] = value.items()
    elif isinstance(value, (list, tuple)):
        children = enumerate(value)
    else:
        reason = _scalar_problem(value)
        return None if reason is None else (path, reason)
    for key, sub in children:
        if isinstance(key, str) and holds_lone_surrogate(key):
            return [*path, key], _NOT_TEXT.format("key")
        found = _first_non_json(sub, [*path, key])
        if found:
            return found
    return None


def _scalar_problem(value: Any) -> str | None:
    """Return why a value that is not a container cannot be written, or None when it can."""
    if isinstance(value, str):
        return _NOT_TEXT.format("string") if holds_lone_surrogate(value) else None
    if isinstance(value, float):
        return None if math.isfinite(value) else _NOT_JSON.format("a non-finite number")
    if value is None or isinstance(value, int):
        return None
    return _NOT_JSON.format(type(value).__name__)
