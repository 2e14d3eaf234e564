"""EventRouter: one event to several EventLogs, each with its own allow-list and handlers."""

from __future__ import annotations

import sys
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

    def register_schema(self, schema: Mapping[str, Any] | EventSchema) -> EventSchema:
        """Register a schema with every EventLog, or with none (see `_register`)."""
        return self._register(schema if isinstance(schema, EventSchema) else EventSchema(schema))

    def register_schema_file(self, source: SchemaSource) -> EventSchema:
        """Register a schema file with every EventLog, or with none (see `_register`)."""
        return self._register(EventSchema.from_file(source))

    def _register(self, schema: EventSchema) -> EventSchema:
        """Register a checked schema with every EventLog, or with none.

        Every EventLog checks it first (`EventLog.check_schema`): one that would refuse it
        (another schema under the same `$id` and version) raises before any registers it.
        Should a registration still fail, those made before it are undone.
        """
        fresh = [eventlog.check_schema(schema) is schema for eventlog in self.eventlogs]
        added: list[EventLog] = []
        try:
            for eventlog, new in zip(self.eventlogs, fresh, strict=True):
                eventlog.register_schema(schema)
                if new:
                    added.append(eventlog)
        except BaseException:
            for eventlog in added:
                eventlog._forget_schema(schema)
            raise
        return schema

    def record_event(
        self,
        schema_id: str,
        version: object,
        event: Mapping[str, Any],
        timestamp_override: datetime | None = None,
    ) -> list[dict[str, Any] | None]:
        """Record an event in every EventLog; return each one's capsule (None where filtered).

        The event is checked by every EventLog first, so an unknown schema or an invalid
        event raises before anything is written anywhere. An EventLog's state can still refuse
        it (a full background queue, a tap's refusal): that error is raised, with a note saying
        how many EventLogs before it recorded the event.
        """
        schemas = [log.check_event(schema_id, version, event) for log in self.eventlogs]
        results: list[dict[str, Any] | None] = []
        for log, schema in zip(self.eventlogs, schemas, strict=True):
            try:
                results.append(log.record_checked(schema, event, timestamp_override))
            except Exception as e:
                if sys.version_info >= (3, 11):  # notes are Python 3.11's
                    e.add_note(f"recorded by the first {len(results)} EventLogs of the router "
                               f"(router.eventlogs[:{len(results)}])")  # fmt: skip
                raise
        return results
