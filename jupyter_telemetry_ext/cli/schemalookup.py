"""The schemas a server with a command's config would find, to read stored events back."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jupyter_telemetry_ext.core.discovery import register_discovered, schema_folders
from jupyter_telemetry_ext.core.errors import UnknownSchemaError
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.schema import EventSchema

SchemaLookup = Callable[[str, str], EventSchema | None]


def schema_lookup(config: Any, log: logging.Logger) -> SchemaLookup:
    """Return a lookup of the schemas found in the data paths and the config's schema_paths."""
    eventlog = EventLog()
    section = config.get("TelemetryExtension", {})
    paths = section.get("schema_paths", []) if hasattr(section, "get") else []
    register_discovered(eventlog, schema_folders([str(p) for p in paths]), log)

    def lookup(schema_id: str, version: str) -> EventSchema | None:
        try:
            return eventlog.get_schema(schema_id, version)
        except UnknownSchemaError:
            return None

    return lookup


def typed_versions(
    capsules: Iterable[dict[str, Any]], lookup: SchemaLookup
) -> Iterator[dict[str, Any]]:
    """Yield the capsules with `__schema_version__` as their schema writes it: the integer 1 of
    a schema whose version is 1, where the store keeps text ("1"); a schema found nowhere, or
    whose version is text (as jupyter_events' may be), keeps the text."""
    for capsule in capsules:
        version = capsule.get("__schema_version__")
        schema_id = capsule.get("__schema__")
        if isinstance(version, str) and isinstance(schema_id, str):
            schema = lookup(schema_id, version)
            if schema is not None and isinstance(schema.version, int):
                capsule["__schema_version__"] = schema.version
        yield capsule
