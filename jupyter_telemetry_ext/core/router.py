"""EventRouter: one event to several EventLogs, each with its own allow-list and handlers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from .eventlog import EventLog
from .schema import EventSchema, SchemaSource


class EventRouter:
    """Sends each event to every EventLog; each applies its own allow-list and handlers."""

    def __init__(self, eventlogs: Iterable[EventLog] = ()) -> None:
        """Route to the given EventLogs."""
        self.eventlogs = list(eventlogs)

    def add_eventlog(self, eventlog: EventLog) -> None:
        """Route to one more EventLog."""
        self.eventlogs.append(eventlog)

    def register_schema(self, schema: Mapping[str, Any]) -> EventSchema:
        """Register a schema with every EventLog."""
        checked = EventSchema(schema)
        for eventlog in self.eventlogs:
            eventlog.register_schema(checked)
        return checked

    def register_schema_file(self, source: SchemaSource) -> EventSchema:
        """Register a schema file with every EventLog."""
        checked = EventSchema.from_file(source)
        for eventlog in self.eventlogs:
            eventlog.register_schema(checked)
        return checked

    def record_event(
        self,
        schema_id: str,
        version: object,
        event: Mapping[str, Any],
        timestamp_override: datetime | None = None,
    ) -> list[dict[str, Any] | None]:
        """Record an event in every EventLog; return each one's capsule (None where filtered).

        The event is checked by every EventLog first, so an unknown schema or an invalid
        event raises before anything is written anywhere.
        """
        schemas = [log.check_event(schema_id, version, event) for log in self.eventlogs]
        return [
            log.record_checked(schema, event, timestamp_override)
            for log, schema in zip(self.eventlogs, schemas, strict=True)
        ]
