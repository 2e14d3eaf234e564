"""Reading what frontends post to `api/telemetry/events`: its shape, its limits, each verdict.

Nothing here imports tornado: the handler turns an IngestError into an HTTP error.
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from . import strictjson
from .errors import IngestError, JSONBodyError, QueueFullError, TimestampError, UnknownSchemaError
from .eventlog import EventLog
from .reception import Reception
from .schema import EventSchema
from .tickets import Handlers, Ticket
from .timestamps import parse_timestamp
from .validation import EventValidationError, json_type

EVENT_KEYS = ("schema_id", "version", "data", "timestamp", "id")
_EVENT_KEY_SET = frozenset(EVENT_KEYS)
BATCH_KEYS = ("events", "sent_at")
STATUSES = ("recorded", "filtered", "sampled_out", "duplicate", "rejected")
MAX_ID_LENGTH = 64
# A client id is an opaque token (a UUID fits), so that it cannot carry data into the capsule.
CLIENT_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}}")
_SHOWN = 64
# How long a batch is recorded on the event loop before the loop serves other requests.
SLICE_SECONDS = 0.005


@dataclass(frozen=True)
class Limits:
    """Size limits of a POST: the body and one event in bytes, and events per batch."""

    body: int = 1 << 20
    batch: int = 500
    event: int = 32 << 10
    # Whether each event must be measured: not when the whole body is within the event limit.
    measure: bool = True

    @functools.cached_property
    def unmeasured(self) -> Limits:
        """Return these limits for a body that holds no event over the limit: no measuring."""
        return replace(self, measure=False)


@dataclass(slots=True)
class Envelope:
    """One posted event: which schema, which version, its data and its optional timestamp."""

    schema_id: str
    version: str | int
    data: dict[str, Any]
    timestamp: datetime | None = None
    client_id: str | None = None


@dataclass(slots=True)
class Posted:
    """A parsed body: its events, the client's `sent_at`, and whether it was a single event."""

    events: list[Any]
    sent_at: datetime | None = None
    single: bool = False
    limits: Limits = field(default_factory=Limits)


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
            and all(result["status"] == "rejected" for result in self.results)
        )

    def model(self) -> dict[str, Any]:
        """Return the reply: each result, then how many events got each status."""
        counts = Counter(result["status"] for result in self.results)
        return {"results": self.results, **{status: counts[status] for status in STATUSES}}


def body_too_large(size: int, limits: Limits) -> IngestError:
    """Return the 413 error for a body of `size` bytes (or more) over the limit."""
    msg = f"the request body is {size} bytes or more; the limit is {limits.body} bytes"
    return IngestError(msg + " (TelemetryExtension.max_body_size)", 413)


def parse_body(body: bytes, limits: Limits, inspect: Callable[[Any], None] | None = None) -> Posted:
    """Return the posted event or batch, with its `sent_at`; raise IngestError.

    `inspect`: see `strictjson.loads` (it may refuse the document before any other check).
    """
    if len(body) > limits.body:
        raise body_too_large(len(body), limits)
    document = _loads(body, inspect)
    if not isinstance(document, dict):
        msg = 'the body must be a JSON object: an event or {"events": [...]}'
        raise IngestError(msg + f" (got {json_type(document)})")
    # No event can be larger than the body it came in: measure events only in a larger body.
    if len(body) <= limits.event:
        limits = limits.unmeasured
    if "events" in document:
        return Posted(_batch(document, limits), _sent_at(document), limits=limits)
    if "sent_at" not in document:
        return Posted([document], single=True, limits=limits)
    event = {key: value for key, value in document.items() if key != "sent_at"}
    return Posted([event], _sent_at(document), single=True, limits=limits)


def _sent_at(document: dict[str, Any]) -> datetime | None:
    return _time_field(document, "sent_at", field="sent_at")


def _time_field(item: dict[str, Any], key: str, field: str | None = None) -> datetime | None:
    """Return the RFC 3339 time under `key` (None when absent); raise IngestError naming it."""
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        msg = f"{key}: must be a string (got {json_type(value)})"
        raise IngestError(msg, field=field)
    try:
        return parse_timestamp(value)
    except TimestampError as e:
        msg = f"{key}: {e}"
        raise IngestError(msg, field=field) from None


def _loads(body: bytes, inspect: Callable[[Any], None] | None = None) -> Any:
    try:
        return strictjson.loads(body, inspect)
    except JSONBodyError as e:
        raise IngestError(str(e)) from None


def _batch(document: dict[str, Any], limits: Limits) -> list[Any]:
    _refuse_unknown(document, BATCH_KEYS, 'a batch is {"events": [<event>, ...], "sent_at": ...}')
    events = document["events"]
    if not isinstance(events, list):
        msg = f"events: must be an array of events (got {json_type(events)})"
        raise IngestError(msg)
    if not events:
        msg = "events: the batch is empty"
        raise IngestError(msg)
    if len(events) > limits.batch:
        msg = f"events: the batch has {len(events)} events; the limit is {limits.batch}"
        raise IngestError(msg + " (TelemetryExtension.max_batch_events)", 413)
    return events


def parse_event(item: Any, limits: Limits) -> Envelope:
    """Return the checked envelope of one posted event; raise IngestError."""
    if not isinstance(item, dict):
        msg = f"the event must be a JSON object (got {json_type(item)})"
        raise IngestError(msg)
    if limits.measure:
        _check_size(item, limits)
    if not item.keys() <= _EVENT_KEY_SET:
        _refuse_unknown(item, EVENT_KEYS, "an event has schema_id, version, data, timestamp and id")
    schema_id: Any = item.get("schema_id")
    version: Any = item.get("version")
    data: Any = item.get("data")
    if not (_plain_id(schema_id) and _plain_version(version) and type(data) is dict):
        schema_id, version, data = _schema_id(item), _version(item), _data(item)  # say why
    timestamp = _timestamp(item) if "timestamp" in item else None
    client_id = _client_id(item) if "id" in item else None
    return Envelope(schema_id, version, data, timestamp, client_id)


def _plain_id(value: Any) -> bool:
    return type(value) is str and value != ""


def _plain_version(value: Any) -> bool:
    return (type(value) is str and value != "") or type(value) is int


def _check_size(item: dict[str, Any], limits: Limits) -> None:
    size = strictjson.size(item)
    if size > limits.event:
        msg = f"the event is {size} bytes serialized; the limit is {limits.event} bytes"
        raise IngestError(msg + " (TelemetryExtension.max_event_size)", 413)


def _refuse_unknown(item: dict[str, Any], known: tuple[str, ...], hint: str) -> None:
    unknown = [key for key in item if key not in known]
    if unknown:
        names = ", ".join(repr(key[:_SHOWN]) for key in unknown[:5])
        msg = f"unknown field {names}: {hint}"
        raise IngestError(msg)


def _required(item: dict[str, Any], key: str) -> Any:
    if key not in item:
        msg = f"{key}: is required"
        raise IngestError(msg)
    return item[key]


def _schema_id(item: dict[str, Any]) -> str:
    value = _required(item, "schema_id")
    if not isinstance(value, str) or not value:
        msg = f"schema_id: must be a non-empty string (got {json_type(value)})"
        raise IngestError(msg)
    return value


def _version(item: dict[str, Any]) -> str | int:
    value = _required(item, "version")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        msg = f"version: must be a non-empty string or an integer (got {json_type(value)})"
        raise IngestError(msg)
    return value


def _data(item: dict[str, Any]) -> dict[str, Any]:
    value = _required(item, "data")
    if not isinstance(value, dict):
        msg = f"data: must be an object (got {json_type(value)})"
        raise IngestError(msg)
    return value


def _timestamp(item: dict[str, Any]) -> datetime | None:
    return _time_field(item, "timestamp")


def _client_id(item: dict[str, Any]) -> str | None:
    value = item.get("id")
    if value is None:
        return None
    if not isinstance(value, str) or not CLIENT_ID.fullmatch(value):
        got = "a string that is not" if isinstance(value, str) else json_type(value)
        msg = (
            f"id: must be an opaque token of 1 to {MAX_ID_LENGTH} letters, digits, '-' or '_', "
            f"such as a UUID (got {got})"
        )
        raise IngestError(msg, field="id")
    return value


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


def record(eventlog: EventLog, envelope: Envelope, reception: Reception) -> str:
    """Validate and record one event; return its status ("recorded", ...) or raise IngestError."""
    schema = posted_schema(eventlog, envelope, reception.open_to)
    client_id = envelope.client_id
    event_time = _event_time(reception, envelope.timestamp) if envelope.timestamp else None
    ticket = eventlog.ticket
    try:
        schema.validate(envelope.data)
        if client_id and reception.is_duplicate(client_id):
            owed = _owed(ticket, reception, client_id)
            if owed is None or ticket is None:
                eventlog.count(schema.id, "duplicate")
                return "duplicate"
            ticket.only = owed
        context = reception.context(client_id, event_time)
        try:
            capsule = eventlog.record_checked(
                schema, envelope.data, reception.received_at, context=context, parsed=True
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

    # A tapped event (forwarded to a collector) is recorded once the tap took it.
    if capsule is None and not eventlog.tapped:
        return "sampled_out" if eventlog.is_allowed_event(schema, envelope.data) else "filtered"
    if client_id:
        reception.remember(client_id)
        if ticket is not None and capsule is not None:
            ticket.keyed(capsule, reception.id_key(client_id))
    return "recorded"


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


def post_event(eventlog: EventLog, item: Any, limits: Limits, reception: Reception) -> str:
    """Check and record one posted event; report a refusal to the failed-events channel."""
    try:
        return record(eventlog, parse_event(item, limits), reception)
    except IngestError as e:
        report(eventlog, e, item)
        raise


def report(eventlog: EventLog, error: IngestError, item: Any = None) -> None:
    """Count a refused post and describe it to `EventLog.failed_handlers`, without its values."""
    schema = _registered(eventlog, item)
    eventlog.record_failure(
        "queue_full" if error.status == 503 else "rejected",
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
    with eventlog.batch():
        for item in items[len(batch.results) :]:
            try:
                batch.results.append({"status": post_event(eventlog, item, limits, reception)})
            except IngestError as e:
                batch.results.append({"status": "rejected", "error": str(e)})
                batch.busy = batch.busy or e.status == 503
            if time.perf_counter() > until:
                break
    return batch


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
