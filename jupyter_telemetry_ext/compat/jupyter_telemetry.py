"""jupyter-telemetry 0.1.0's `EventLog`: its schema rules and capsule, on our EventLog.

Code written for jupyter-telemetry changes one import,
`from jupyter_telemetry_ext.compat.jupyter_telemetry import EventLog`. Schemas need only `$id`,
`version` and `properties`, as jupyter-telemetry's did; everything else is ours: the
allow-list (nothing is recorded unless allowed), redaction of personal properties, sinks.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from jupyter_telemetry_ext.core.errors import UnknownSchemaError, UnregisteredSchemaError
from jupyter_telemetry_ext.core.eventlog_v1 import METADATA_VERSION_1, MetadataV1EventLog
from jupyter_telemetry_ext.core.eventlogger import Handlers
from jupyter_telemetry_ext.core.events_schema import with_defaults
from jupyter_telemetry_ext.core.registered import RegisteredSchemas
from jupyter_telemetry_ext.core.schema import EventSchema, SchemaSource, load_document

__all__ = ["TELEMETRY_METADATA_VERSION", "EventLog", "Handlers"]

# The capsule's `__metadata_version__`, as jupyter-telemetry 0.1.0 writes it.
TELEMETRY_METADATA_VERSION = METADATA_VERSION_1

DocumentKey = tuple[str, object]


class _AsRegistered(RegisteredSchemas):
    """The registered schemas, each document read as it was given (without filled defaults)."""

    def __init__(
        self, schemas: RegisteredSchemas, given: dict[DocumentKey, dict[str, Any]]
    ) -> None:
        super().__init__(schemas)
        self._given = given

    def document(self, schema: EventSchema) -> dict[str, Any]:
        """Return a copy of the document as it was registered."""
        given = self._given.get((schema.id, schema.version_key), schema.document)
        return copy.deepcopy(given)


class EventLog(MetadataV1EventLog):
    """Our EventLog with jupyter-telemetry 0.1.0's defaults: `title`, `description` optional.

    A schema without `title` gets its `$id`, without `description` its title, without `type`
    `object`. Capsules carry `__metadata_version__: 1`. Configured as `c.EventLog.*`.
    """

    def __init__(self, **kwargs: Any) -> None:
        """Create an EventLog; traits may come from keyword arguments or from config."""
        self._given: dict[DocumentKey, dict[str, Any]] = {}
        super().__init__(**kwargs)

    def register_schema(self, schema: Mapping[str, Any] | EventSchema) -> EventSchema:
        """Register a schema given as a dict; `title` and `description` may be left out."""
        if isinstance(schema, EventSchema):
            return super().register_schema(schema)
        return self._register(schema, source=None)

    def register_schema_file(self, source: SchemaSource) -> EventSchema:
        """Register a schema from a YAML or JSON file; `title` and `description` may be left out."""
        document, name = load_document(source)
        return self._register(document, source=name)

    @property
    def schemas(self) -> RegisteredSchemas:
        """Return every registered schema; as a mapping, each document as it was registered."""
        return _AsRegistered(super().schemas, self._given)

    def get_schema(self, schema_id: str, version: object) -> EventSchema:
        """Return a registered schema; raise UnregisteredSchemaError (a ValueError, as
        jupyter-telemetry's was, and an UnknownSchemaError) for an unknown one."""
        try:
            return super().get_schema(schema_id, version)
        except UnknownSchemaError:
            raise UnregisteredSchemaError(schema_id, version) from None

    def _register(self, document: Any, *, source: str | None) -> EventSchema:
        filled = with_defaults(document) if isinstance(document, Mapping) else document
        registered = super().register_schema(EventSchema(filled, source=source))
        key = (registered.id, registered.version_key)
        self._given.setdefault(key, copy.deepcopy(dict(document)))
        return registered
