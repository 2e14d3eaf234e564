"""One event schema: loaded from YAML, JSON or a dict, checked, compiled once."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Union

import jsonschema_rs
import yaml

from .categories import CategoryNode, category_tree, check_labels
from .errors import EventSchemaError
from .jsonline import holds_lone_surrogate
from .nesting import too_deep
from .printable import printable
from .reserved import RESERVED_PREFIX, with_reserved_key_check
from .walk import walk

SchemaSource = Union[str, os.PathLike[str], IO[str], IO[bytes]]  # noqa: UP007 - a runtime alias

REQUIRED_STRINGS = ("$id", "title", "description")
DRAFT7 = "http://json-schema.org/draft-07/schema#"
# The dialects a schema may name in `$schema`; any other would be fetched, so it is refused.
KNOWN_DIALECTS = frozenset(
    f"{scheme}://json-schema.org/{path}{end}"
    for scheme in ("http", "https")
    for path in ("draft-04/schema", "draft-06/schema", "draft-07/schema",
                 "draft/2019-09/schema", "draft/2020-12/schema")
    for end in ("", "#")
)  # fmt: skip


def version_key(version: object) -> str:
    """Return the form used to look a version up: `1` and `"1"` are the same version."""
    return str(version)


def version_order(key: str) -> tuple[int, int, str]:
    """Return the sort key of a version: named versions first, then numbers in numeric order."""
    return (1, int(key), "") if key.isdigit() else (0, 0, key)


def schema_order(schema: EventSchema) -> tuple[str, int, int, str]:
    """Return the sort key of a schema version: its id, then its version's order."""
    return (schema.id, *version_order(schema.version_key))


def load_document(source: SchemaSource) -> tuple[Any, str]:
    """Read a YAML or JSON schema file (a path or an open file); return it and its name."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            text: str | bytes = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            msg = f"{name}: cannot read the schema file: {e}"
            raise EventSchemaError(msg) from e
    else:
        name = str(getattr(source, "name", "<schema file>"))
        text = source.read()
    return _parse(text, name), name


class _NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases: each `*name` could expand to exponentially many
    nodes (a 700-byte "billion laughs" file takes minutes), and a schema never needs one."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Refuse an alias (`*name`, `<<: *name`) where it appears; compose anything else."""
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(
                problem=f"an alias (*{event.anchor}) is not allowed in an event schema; "
                "write the value out",
                problem_mark=event.start_mark,
            )
        return super().compose_node(parent, index)


def _parse(text: str | bytes, name: str) -> Any:
    try:
        if name.endswith(".json"):
            return json.loads(text)
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader
    except (ValueError, yaml.YAMLError) as e:
        msg = f"{name}: not valid {'JSON' if name.endswith('.json') else 'YAML'}: {_problem(e)}"
        raise EventSchemaError(msg) from e


def _problem(error: Exception) -> str:
    """Return a parse error on one line: what is wrong, and where (YAML quotes the line)."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return " ".join(str(error).split())
    mark = error.problem_mark
    problem = ", ".join(filter(None, (error.context, error.problem)))
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"


def _no_remote(uri: str) -> Any:
    msg = f"remote $ref {uri!r} is not fetched: event schemas must be self-contained"
    raise ValueError(msg)


class EventSchema:
    """A checked event schema with its compiled validator and its privacy categories."""

    def __init__(self, document: Any, *, source: str | None = None) -> None:
        """Check a schema document and compile it; raise EventSchemaError when it is not valid."""
        self.source = source
        self.document: dict[str, Any] = {}
        if not isinstance(document, Mapping):
            self._fail("(document)", f"must be a mapping, got {type(document).__name__}")
        self.document = copy.deepcopy(dict(document))
        self._check_text()
        self._check_keys()
        self.id: str = self.document["$id"]
        self.version: str | int = self.document["version"]
        self.version_key = version_key(self.version)
        # Whether the schema opts in to being posted by frontends (`frontend: true`).
        self.frontend: bool = self.document.get("frontend") is True
        self._check_metaschema()
        self._check_property_names()
        self._check_privacy_keywords()
        self._validation_document = with_reserved_key_check(self.document)
        self._fast = self._compile(self._validation_document)
        self._plain: Any = None  # without the reserved-key rule: see `is_valid`
        self._describer: Any = None
        self.categories: CategoryNode = category_tree(self.document, where=self._where())

    @classmethod
    def from_file(cls, source: SchemaSource) -> EventSchema:
        """Load and check a schema from a YAML or JSON file."""
        document, name = load_document(source)
        return cls(document, source=name)

    @property
    def title(self) -> str:
        """Return the schema's title."""
        return str(self.document["title"])

    @property
    def description(self) -> str:
        """Return the schema's description."""
        return str(self.document["description"])

    @property
    def personal_data(self) -> bool:
        """Return True when the schema is marked `personal-data: true` (fail closed)."""
        return self.document.get("personal-data") is True

    def same_as(self, other: EventSchema) -> bool:
        """Return True when two schemas are the same document (versions `1` and `"1"` alike)."""
        return bool(_comparable(self.document) == _comparable(other.document))

    def is_valid(self, event: Any, *, no_reserved_keys: bool = False, parsed: bool = False) -> bool:
        """Return True when the event is valid under this schema.

        `no_reserved_keys`: the caller knows that no key of the event starts with `__` (see
        `reserved.may_hold_reserved_key`), so the validator that also looks for one is spared.
        `parsed`: the event was read from JSON text, whose readers stop long before a depth
        the validator cannot take (the server's at 64 levels), so its depth is not checked.
        """
        validator = self._fast if not no_reserved_keys else self._without_reserved_check()
        if not parsed and too_deep(event) is not None:  # it would overflow the native stack
            return False
        try:
            return bool(validator.is_valid(event))
        except ValueError:  # a value JSON cannot hold (a datetime, an object): never valid
            return False

    def validate(self, event: Any, *, no_reserved_keys: bool = False, parsed: bool = False) -> None:
        """Raise EventValidationError (a jsonschema.ValidationError) when the event is not valid
        (`no_reserved_keys`, `parsed`: see `is_valid`)."""
        if not self.is_valid(event, no_reserved_keys=no_reserved_keys, parsed=parsed):
            raise self.validation_error(event)

    def _without_reserved_check(self) -> Any:
        """Return the validator of the schema alone (compiled at its first use)."""
        if self._plain is None:
            self._plain = self._compile(with_reserved_key_check(self.document, check=False))
        return self._plain

    def validation_error(self, event: Any) -> Exception:
        """Return the error that describes why an invalid event fails, naming the field path."""
        from .validation import (
            describing_document,
            event_error,
            not_json_error,
            reserved_key_error,
            too_deep_error,
        )

        deep = too_deep(event)
        if deep is not None:
            return too_deep_error(deep, self.id, self.version, self.categories)
        try:  # first the rule `with_reserved_key_check` added
            reserved = reserved_key_error(event, self.id, self.version, self.categories)
        except ValueError:  # a value the validators cannot read
            return not_json_error(event, self.id, self.version, self.categories)
        if reserved is not None:
            return reserved
        if self._describer is None:
            self._describer = self._compile(describing_document(self._validation_document))
        try:
            return event_error(self._describer, event, self.id, self.version, self.categories)
        except ValueError:  # a string the validator reads that is not UTF-8 (a lone surrogate)
            return not_json_error(event, self.id, self.version, self.categories)

    def _where(self) -> str:
        if self.source:
            return self.source
        schema_id = self.document.get("$id")
        return f"schema {schema_id!r}" if schema_id else "schema"

    def _fail(self, key: str, problem: str) -> None:
        msg = f"{self._where()}: {key}: {problem}"
        raise EventSchemaError(msg)

    def _check_text(self) -> None:
        """Refuse a key or string holding a lone surrogate (not UTF-8 text), naming its path."""
        path = _lone_surrogate_path(self.document, [])
        if path is not None:
            where = ".".join(printable(str(part)) for part in path)
            self._fail(where, "is not UTF-8 text (it holds a lone surrogate, U+D800-U+DFFF)")

    def _check_keys(self) -> None:
        doc = self.document
        for key in REQUIRED_STRINGS:
            if not isinstance(doc.get(key), str) or not doc[key].strip():
                self._fail(key, "is required and must be a non-empty string")
        version = doc.get("version")
        if isinstance(version, bool) or not isinstance(version, (int, str)) or version == "":
            self._fail("version", "is required and must be an integer or a non-empty string")
        if doc.get("type") != "object":
            self._fail("type", "must be 'object': an event is a JSON object")
        if not isinstance(doc.get("properties"), Mapping):
            self._fail("properties", "is required and must be a mapping of property schemas")

    def _check_metaschema(self) -> None:
        dialect = self.document.get("$schema", DRAFT7)
        if dialect not in KNOWN_DIALECTS:
            self._fail("$schema", f"unknown JSON Schema dialect {dialect!r}")
        try:
            jsonschema_rs.meta.validate({**self.document, "$schema": dialect})
        except jsonschema_rs.ValidationError as e:
            location = ".".join(str(p) for p in e.instance_path) or "(document)"
            self._fail(location, f"not valid JSON Schema: {e.message}")

    def _check_property_names(self) -> None:
        for location, sub in walk(self.document):
            for name in _property_names(sub):
                if name.startswith(RESERVED_PREFIX):
                    key = f"{location}.properties.{name}" if location else f"properties.{name}"
                    self._fail(
                        key, "property names starting with '__' are reserved for the capsule"
                    )

    def _check_privacy_keywords(self) -> None:
        """Refuse a `personal-data` that is not a boolean and `categories` not a list of names."""
        personal = self.document.get("personal-data", False)
        if not isinstance(personal, bool):
            self._fail("personal-data", f"must be true or false, got {type(personal).__name__}")
        for location, sub in walk(self.document):
            if "categories" in sub:
                check_labels(sub["categories"], f"{self._where()}: {location or '(document)'}")

    def _compile(self, document: dict[str, Any]) -> Any:
        build = (
            jsonschema_rs.validator_for if "$schema" in document else jsonschema_rs.Draft7Validator
        )
        try:
            return build(document, validate_formats=False, retriever=_no_remote)
        except (ValueError, jsonschema_rs.ValidationError) as e:
            self._fail("$ref", str(e).splitlines()[0])
        raise AssertionError  # unreachable: _fail raises


def _lone_surrogate_path(value: Any, path: list[object]) -> list[object] | None:
    """Return the path of the first key or string holding a lone surrogate, or None."""
    if isinstance(value, str):
        return path if holds_lone_surrogate(value) else None
    children: Any = ()
    if isinstance(value, Mapping):
        children = value.items()
    elif isinstance(value, list):
        children = enumerate(value)
    for key, sub in children:
        if isinstance(key, str) and holds_lone_surrogate(key):
            return [*path, key]
        found = _lone_surrogate_path(sub, [*path, key])
        if found is not None:
            return found
    return None


def _property_names(schema: Mapping[str, Any]) -> list[str]:
    properties = schema.get("properties")
    required = schema.get("required")
    names = list(properties) if isinstance(properties, Mapping) else []
    return [str(name) for name in names + (required if isinstance(required, list) else [])]


def _comparable(document: dict[str, Any]) -> Any:
    return _typed({**document, "version": version_key(document.get("version"))})


def _typed(value: Any) -> Any:
    """Return a value whose booleans no longer equal the numbers Python says they equal
    (`"const": true` and `"const": 1` are different schemas); 1 and 1.0 stay equal, as JSON
    Schema has them."""
    if isinstance(value, bool):
        return (bool, value)
    if isinstance(value, Mapping):
        return {key: _typed(sub) for key, sub in value.items()}
    if isinstance(value, list):
        return [_typed(sub) for sub in value]
    return value
