"""Schemas as jupyter_events takes them: a dict, a `Path`, or YAML/JSON text, with its defaults."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs

from .errors import (
    EventSchemaError,
    EventSchemaFileAbsent,
    EventSchemaLoadingError,
    EventSchemaUnrecognized,
)
from .reserved import RESERVED_PREFIX
from .schema import EventSchema as CoreSchema
from .schema import load_document

PATH_HINT = "Paths to schema files must be explicitly wrapped in a Pathlib object."


def load_schema(schema: Any) -> dict[str, Any]:
    """Return a schema document from a dict, an EventSchema, a `Path` or YAML/JSON text."""
    if isinstance(schema, EventSchema):
        return dict(schema.raw_schema)
    if isinstance(schema, Mapping):
        return dict(schema)
    if isinstance(schema, PurePath):
        return _from_file(Path(schema))
    if isinstance(schema, str):
        return _from_text(schema)
    msg = f"Expected a dict, a pathlib.Path or a YAML/JSON string, got {type(schema).__name__}"
    raise EventSchemaUnrecognized(msg)


def _from_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        msg = f"Schema file not present at path: {path}"
        raise EventSchemaFileAbsent(msg)
    try:
        document, _ = load_document(path)
    except EventSchemaError as e:
        raise EventSchemaLoadingError(str(e)) from e
    return _mapping(document, str(path))


def _from_text(text: str) -> dict[str, Any]:
    try:
        document, _ = load_document(io.StringIO(text))
    except EventSchemaError as e:
        msg = f"{e}. {PATH_HINT}"
        raise EventSchemaLoadingError(msg) from e
    return _mapping(document, "the string given", hint=True)


def _mapping(document: Any, where: str, *, hint: bool = False) -> dict[str, Any]:
    if not isinstance(document, Mapping):
        msg = f"{where} is not a schema (a mapping), but {type(document).__name__}."
        raise EventSchemaLoadingError(f"{msg} {PATH_HINT}" if hint else msg)
    return dict(document)


def with_defaults(document: Mapping[str, Any]) -> dict[str, Any]:
    """Return the document with jupyter_events' defaults: `title` (the `$id`), `description`
    (the title) and `type: object`, each only when absent."""
    filled = dict(document)
    schema_id = filled.get("$id")
    if isinstance(schema_id, str) and schema_id:
        filled.setdefault("title", schema_id)
        filled.setdefault("description", filled["title"])
        filled.setdefault("type", "object")
    return filled


def check_schema(document: Mapping[str, Any]) -> CoreSchema:
    """Return the checked schema; raise `jsonschema.ValidationError` when it is not valid.

    Beyond EventLog's checks, the `$id` must be a URI, as jupyter_events requires.
    """
    from jsonschema import ValidationError

    filled = with_defaults(document)
    reserved = _dunder_property(filled.get("properties"), "properties")
    if reserved is not None:
        msg = (
            f"{reserved} is an invalid property name because it starts with `__`. Properties "
            "starting with 'dunder' are reserved for the capsule's fields."
        )
        raise ValidationError(msg)
    schema_id = filled.get("$id")
    if isinstance(schema_id, str) and not urlsplit(schema_id).scheme:
        msg = f"$id: {schema_id!r} is not a 'uri' (e.g. https://example.org/my-event)"
        raise ValidationError(msg)
    try:
        return CoreSchema(filled)
    except EventSchemaError as e:
        raise ValidationError(str(e)) from e


def _dunder_property(properties: Any, path: str) -> str | None:
    """Return the path of a property named `__...`, nested ones included, or None."""
    if not isinstance(properties, Mapping):
        return None
    for name, subschema in properties.items():
        if str(name).startswith(RESERVED_PREFIX):
            return f"{path}.{name}"
        for key in ("properties", "items"):
            nested = subschema.get(key) if isinstance(subschema, Mapping) else None
            if key == "items" and isinstance(nested, Mapping):
                found = _dunder_property(nested.get("properties"), f"{path}.{name}.items")
            else:
                found = _dunder_property(nested, f"{path}.{name}")
            if found is not None:
                return found
    return None


def validate_schema(schema: Mapping[str, Any]) -> None:
    """Raise `jsonschema.ValidationError` when a schema cannot be registered (jupyter_events')."""
    check_schema(schema)


class EventSchema:
    """A schema as jupyter_events' `EventSchema`: loaded from any source, checked, validating."""

    def __init__(self, schema: Any, **_ignored: Any) -> None:
        """Load and check a schema (dict, `Path` or YAML/JSON text); jupyter_events' validator,
        format-checker and registry arguments are accepted and not used."""
        self.raw_schema = with_defaults(load_schema(schema))
        self.checked = check_schema(self.raw_schema)
        self._formats = _format_validator(self.raw_schema)

    @property
    def id(self) -> str:
        """Return the schema's `$id`."""
        return self.checked.id

    @property
    def version(self) -> str | int:
        """Return the schema's version."""
        return self.checked.version

    @property
    def properties(self) -> dict[str, Any]:
        """Return the schema's top-level property schemas."""
        return dict(self.raw_schema["properties"])

    @property
    def title(self) -> str:
        """Return the schema's title."""
        return self.checked.title

    def validate(self, data: Any) -> None:
        """Raise a `jsonschema.ValidationError` when the event is not valid (`format` included)."""
        self.checked.validate(data)
        if self._formats is not None and not self._formats.is_valid(data):
            raise self._format_error(data)

    def _format_error(self, data: Any) -> Exception:
        from jsonschema import ValidationError

        error = next(iter(self._formats.iter_errors(data)))
        field = ".".join(str(part) for part in error.instance_path) or "(event)"
        fmt = getattr(error.kind, "format", "format")
        msg = (
            f"invalid event for schema {self.id!r} version {self.version}: {field}: "
            f"is not a {fmt!r}"
        )  # the value is not quoted: it may be personal
        return ValidationError(msg, path=list(error.instance_path))


def _format_validator(document: dict[str, Any]) -> Any:
    """Return a validator that checks `format` (EventLog's does not), or None if none is used."""
    if '"format"' not in json.dumps(document, default=str):
        return None
    build = jsonschema_rs.validator_for if "$schema" in document else jsonschema_rs.Draft7Validator
    return build(document, validate_formats=True)
