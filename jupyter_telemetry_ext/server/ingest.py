"""Recording what frontends post to `api/telemetry/events`: each event's verdict, and reports.

The body is read by `wire`; here each envelope is checked against its schema, the poster's
rules (duplicate ids, clock window) and recorded, and refusals are counted and described.
Nothing here imports tornado: the handler turns an IngestError into an HTTP error.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jupyter_telemetry_ext.core.errors import (
    IngestError,
    QueueFullError,
    TimestampError,
    UnknownSchemaError,
)
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.outcomes import (
    DUPLICATE,
    ERASED,
    FILTERED,
    NO_CONSENT,
    QUEUE_FULL,
    RECORDED,
    REJECTED,
    REPLY_OUTCOMES,
    SAMPLED_OUT,
)
from jupyter_telemetry_ext.core.schema import EventSchema
from jupyter_telemetry_ext.core.studies import CONSENT_SCHEMA_ID
from jupyter_telemetry_ext.core.tickets import Handlers, Ticket
from jupyter_telemetry_ext.core.validation import EventValidationError

from .plainevents import PlainEvents, SchemaFinder
from .reception import Reception
from .wire import Envelope, Limits, parse_event

# How long a batch is recorded on the event loop before the loop serves other requests.
SLICE_SECONDS = 0.005


@dataclass
class BatchResult:
    """The verdict on each event of a batch, in order."""

    results: list[dict[str, str]] = field(default_factory=list)
    busy: bool = False

    @property
    def all_rejected(self) -> bool:
        """Return True when every event was refused, and none only because the queue was full."""
        return (
            bool(self.results)
            and not self.busy
            and all(result["status"] == REJECTED for result in self.results)
        )

    def model(self) -> dict[str, Any]:
        """Return the reply: each result, then how many events got each status."""
        counts = Counter(result["status"] for result in self.results)
        return {"results": self.results, **{status: counts[status] for status in REPLY_OUTCOMES}}


def frontend_schema(eventlog: EventLog, envelope: Envelope) -> EventSchema:
    """Return the event's schema when frontends may post it; raise IngestError (400 or 403)."""
    try:
        schema = eventlog.get_schema(envelope.schema_id, envelope.version)
    except UnknownSchemaError:
        raise _unknown(eventlog, envelope.schema_id) from None
    if not schema.frontend:
        msg = (
            f"schema_id: the schema {schema.id!r} is not open to frontends; a schema opts in "
            "with the top-level key `frontend: true`"
        )
        raise IngestError(msg, 403)
    return schema


def posted_schema(
    eventlog: EventLog, envelope: Envelope, open_to: Callable[[EventSchema], bool] | None
) -> EventSchema:
    """Return the event's schema when this poster may post it (`open_to`; None: frontends)."""
    if envelope.schema_id == CONSENT_SCHEMA_ID:  # the proof of consent: never a client's word
        msg = "schema_id: consent decisions are recorded by PUT api/telemetry/consent/<study> only"
        raise IngestError(msg, 403, field="schema_id")
    if open_to is None:
        return frontend_schema(eventlog, envelope)
    try:
        schema = eventlog.get_schema(envelope.schema_id, envelope.version)
    except UnknownSchemaError:
        raise _unknown(eventlog, envelope.schema_id) from None
    if not open_to(schema):
        msg = f"schema_id: the schema {schema.id!r} is not open to posts here"
        raise IngestError(msg, 403)
    return schema


def _unknown(eventlog: EventLog, schema_id: str) -> IngestError:
    """Name the registered versions of a known id; never echo an unknown id (it is user data)."""
    versions = sorted(str(s.version) for s in eventlog.schemas if s.id == schema_id)
    if versions:
        msg = f"version: schema {schema_id!r} has no such version (has {', '.join(versions)})"
        return IngestError(msg, field="version")
    msg = "schema_id: no schema with this id is registered; GET api/telemetry/schemas lists them"
    return IngestError(msg, field="schema_id")


# The schemas a batch's events named so far, and that the poster may post: most name one.
KnownSchemas = dict[tuple[str, str | int], EventSchema]


def record(
    eventlog: EventLog, envelope: Envelope, reception: Reception, known: KnownSchemas | None = None
) -> str:
    """Validate and record one event; return its status ("recorded", ...) or raise IngestError."""
    schema = _schema(eventlog, envelope, reception, {} if known is None else known)
    client_id = envelope.client_id
    event_time = _event_time(reception, envelope.timestamp) if envelope.timestamp else None
    if reception.erased_at is not None and reception.erased(event_time):
        eventlog.count(schema.id, ERASED)  # answered as filtered: final, and names nobody
        return FILTERED
    ticket = eventlog.ticket
    try:
        schema.validate(envelope.data, no_reserved_keys=not envelope.reserved_keys, parsed=True)
        if client_id and reception.is_duplicate(client_id):
            owed = _owed(ticket, reception, client_id)
            if owed is None or ticket is None:
                eventlog.count(schema.id, DUPLICATE)
                return DUPLICATE
            ticket.only = owed
        context = reception.context(client_id, event_time)
        try:
            capsule = eventlog.record_checked(
                schema,
                envelope.data,
                reception.received_at,
                context=context,
                parsed=True,
                key=reception.pending_key(client_id),
            )
        finally:
            if ticket is not None:
                ticket.only = None
    except EventValidationError as e:
        field_path = _data_path(e.field)
        msg = f"{field_path}: {e.reason}"
        raise IngestError(msg, field=field_path) from None
    except QueueFullError as e:
        raise IngestError(e.reply, 503) from None

    if capsule is None and eventlog.withheld(schema):
        return NO_CONSENT
    # A tapped event (forwarded to a collector) is recorded once the tap took it.
    if capsule is None and not eventlog.tapped:
        return SAMPLED_OUT if eventlog.is_allowed_event(schema, envelope.data) else FILTERED
    if client_id:
        # With a ticket, the id is journaled once every handler wrote its event.
        reception.remember(client_id, durable=ticket is None)
        if ticket is not None and capsule is not None:
            ticket.keyed(capsule, reception.id_key(client_id))
    return RECORDED


def _schema(
    eventlog: EventLog, envelope: Envelope, reception: Reception, known: KnownSchemas
) -> EventSchema:
    """Return the event's schema (see `posted_schema`), looked up once for a batch."""
    key = (envelope.schema_id, envelope.version)
    schema = known.get(key)
    if schema is None:
        schema = known[key] = posted_schema(eventlog, envelope, reception.open_to)
    return schema


def _owed(ticket: Ticket | None, reception: Reception, client_id: str) -> Handlers | None:
    """Return the handlers that still owe a duplicate's event (None: a plain duplicate).

    With `reply_after_write`, an event answered 503 because some handlers did not write it is
    owed to those handlers: its retry goes to them only. Raise IngestError (503) while the
    first attempt is still being written.
    """
    if ticket is None or ticket.owed is None:
        return None
    key = reception.id_key(client_id)
    if key not in ticket.owed:
        return None
    handlers = ticket.owed.get(key)
    if handlers is None:
        msg = "id: an event with this id is still being written; retry later"
        raise IngestError(msg, 503, field="id")
    return handlers


def _event_time(reception: Reception, timestamp: datetime | None) -> datetime | None:
    try:
        return reception.event_time(timestamp)
    except TimestampError as e:
        msg = f"timestamp: {e}"
        raise IngestError(msg, field="timestamp") from None


def _data_path(field_path: str) -> str:
    if field_path == "(event)":
        return "data"
    return f"data{field_path}" if field_path.startswith("[") else f"data.{field_path}"


def post_event(
    eventlog: EventLog,
    item: Any,
    limits: Limits,
    reception: Reception,
    known: KnownSchemas | None = None,
) -> str:
    """Check and record one posted event; report a refusal to the failed-events channel.

    `known`: the schemas earlier events of the same batch named (see `record`).
    """
    try:
        return record(eventlog, parse_event(item, limits), reception, known)
    except IngestError as e:
        report(eventlog, e, item)
        raise


def report(eventlog: EventLog, error: IngestError, item: Any = None) -> None:
    """Count a refused post and describe it to `EventLog.failed_handlers`, without its values."""
    schema = _registered(eventlog, item)
    eventlog.record_failure(
        QUEUE_FULL if error.status == 503 else REJECTED,
        str(error),
        schema_id=schema.id if schema else None,
        version=schema.version if schema else None,
        field=error.field,
    )


def _registered(eventlog: EventLog, item: Any) -> EventSchema | None:
    """Return the registered schema a posted item names (unknown ids are not counted by name)."""
    if not isinstance(item, dict) or not isinstance(item.get("schema_id"), str):
        return None
    try:
        return eventlog.get_schema(item["schema_id"], item.get("version"))
    except UnknownSchemaError:
        return None


def record_batch(
    eventlog: EventLog,
    items: list[Any],
    limits: Limits,
    reception: Reception,
    batch: BatchResult | None = None,
    *,
    until: float = math.inf,
) -> BatchResult:
    """Record each event of a batch on its own; one bad event does not reject the others.

    Resumes after the events `batch` already holds; stops once `time.perf_counter()` has
    passed `until`, so that a caller can give the event loop back and call again for the rest.
    """
    batch = BatchResult() if batch is None else batch
    known: KnownSchemas = {}
    # The ids are journaled as the block ends, before the events go to the handlers.
    with eventlog.batch(), reception.journaling():
        plain = PlainEvents(eventlog, limits, reception, _finder(eventlog, reception, known))
        for item in items[len(batch.results) :]:
            try:
                status = (plain.usable and plain.record(item)) or post_event(
                    eventlog, item, limits, reception, known
                )
                batch.results.append({"status": status})
            except IngestError as e:
                batch.results.append({"status": REJECTED, "error": str(e)})
                batch.busy = batch.busy or e.status == 503
            if time.perf_counter() > until:
                break
    return batch


def _finder(eventlog: EventLog, reception: Reception, known: KnownSchemas) -> SchemaFinder:
    """Return how PlainEvents finds a schema the poster may post (see `_schema`)."""

    def find(schema_id: str, version: str | int, data: dict[str, Any]) -> EventSchema | None:
        try:
            return _schema(eventlog, Envelope(schema_id, version, data), reception, known)
        except IngestError:  # post_event says why, event by event
            return None

    return find


async def record_batch_paced(
    eventlog: EventLog,
    items: list[Any],
    limits: Limits,
    reception: Reception,
    each_slice: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> BatchResult:
    """Record a batch in slices of at most SLICE_SECONDS, giving the event loop back between.

    Each slice runs inside `each_slice()` (what belongs to the thread, as a ticket's tracking,
    must never be held across an await: other requests run in between).
    """
    batch: BatchResult | None = None
    while batch is None or len(batch.results) < len(items):
        if batch is not None:
            await asyncio.sleep(0)
        with each_slice():
            batch = record_batch(eventlog, items, limits, reception, batch, until=_slice_end())
    return batch


def _slice_end() -> float:
    return time.perf_counter() + SLICE_SECONDS
