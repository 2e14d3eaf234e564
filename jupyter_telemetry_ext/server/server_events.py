"""The server's own events (jupyter_events' EventLogger) recorded through our allow-list.

jupyter_server emits kernel, contents and gateway events through `serverapp.event_logger`,
unfiltered. `record_server_events` registers those schemas in our EventLog and records each of
those events through it, so that one allow-list (and its redaction) governs everything a
deployment records.
What a client posts to jupyter_server's `POST api/events` is emitted on the same event logger;
it is never recorded (see `posted_by_client`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jupyter_telemetry_ext.core.errors import EventSchemaError, UnknownSchemaError
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.printable import printable
from jupyter_telemetry_ext.core.schema import EventSchema

# jupyter_events runs each listener as a task, which copies the context of the emit.
_POSTED_BY_CLIENT: ContextVar[bool] = ContextVar("posted_by_client", default=False)


@contextmanager
def posted_by_client() -> Iterator[None]:
    """Mark the events emitted inside as a client's: they are never recorded as server events."""
    token = _POSTED_BY_CLIENT.set(True)
    try:
        yield
    finally:
        _POSTED_BY_CLIENT.reset(token)


class ServerEventRecorder:
    """A jupyter_events listener that records each event of one schema in our EventLog."""

    def __init__(self, eventlog: EventLog, schema: EventSchema, log: logging.Logger) -> None:
        """Record events of `schema` in `eventlog`; report failures on `log`."""
        self.eventlog, self.schema, self.log = eventlog, schema, log

    async def __call__(self, logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        """Record one server event; a failure is logged, never raised into the server."""
        if _POSTED_BY_CLIENT.get():
            self.log.debug("Event %s posted by a client to api/events: not recorded", schema_id)
            return
        try:
            self.eventlog.record_event(self.schema.id, self.schema.version, data)
        except (UnknownSchemaError, ValueError, RuntimeError) as e:
            self.log.warning(
                "Server event %s not recorded: %s", printable(schema_id), printable(str(e))
            )


def server_schemas(event_logger: Any) -> list[dict[str, Any]]:
    """Return the schema documents registered in a jupyter_events EventLogger."""
    registry = event_logger.schemas
    return [json.loads(repr(registry.get(schema_id))) for schema_id in registry.schema_ids]


def record_server_events(event_logger: Any, eventlog: EventLog, log: logging.Logger) -> list[str]:
    """Record the server's events through `eventlog`; return the schema ids recorded."""
    recorded = []
    for document in server_schemas(event_logger):
        try:
            schema = eventlog.register_schema(document)
        except EventSchemaError as e:
            log.warning("Server event schema not recorded: %s", e)
            continue
        recorder = ServerEventRecorder(eventlog, schema, log)
        event_logger.add_listener(schema_id=schema.id, listener=recorder)
        recorded.append(schema.id)
    return recorded


def warn_unredacted_handlers(event_logger: Any, log: logging.Logger) -> None:
    """Warn when jupyter_server's event logger writes its events itself, to handlers of its own
    (`c.EventLogger.handlers`, also read by it): those get every event, unredacted, unless
    they record through an EventLog (as `HubEventHandler` does)."""
    raw = [
        type(handler).__name__
        for handler in event_logger.handlers or ()
        if not isinstance(getattr(handler, "eventlog", None), EventLog)
    ]
    if raw:
        log.warning(
            "Telemetry: jupyter_server's own event logger also writes its events to %s "
            "(c.EventLogger.handlers), unredacted and whatever c.EventLog.allowed_schemas says; "
            "remove them to have only c.EventLog.handlers record them",
            ", ".join(raw),
        )
