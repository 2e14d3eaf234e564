"""The wire format of `POST api/telemetry/events`: reading a body into checked envelopes.

The limits, the body's shape (an event or a batch, its `sent_at`), strict JSON, and each
event's envelope. Nothing here records anything: see `ingest` (nor imports tornado).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson

from jupyter_telemetry_ext.core.errors import IngestError, JSONBodyError, TimestampError
from jupyter_telemetry_ext.core.reserved import may_hold_reserved_key
from jupyter_telemetry_ext.core.timestamps import parse_timestamp
from jupyter_telemetry_ext.core.validation import json_type

from . import strictjson

EVENT_KEYS = ("schema_id", "version", "data", "timestamp", "id")
_EVENT_KEY_SET = frozenset(EVENT_KEYS)
BATCH_KEYS = ("events", "sent_at")
MAX_ID_LENGTH = 64
# A client id is an opaque token (a UUID fits), so that it cannot carry data into the capsule.
CLIENT_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}}")
_SHOWN = 64


@dataclass(frozen=True)
class Limits:
    """Size limits of a POST: the body and one event in bytes, and events per batch."""

    body: int = 1 << 20
    batch: int = 500
    event: int = 32 << 10
    # Whether each event must be measured: not when the whole body is within the event limit.
    measure: bool = True
    # Whether an event may hold a key starting with `__`: not when the body's text has none.
    reserved_keys: bool = True
    # The configurable whose options set these limits, named in the errors.
    options: str = "TelemetryExtension"

    @functools.cached_property
    def unmeasured(self) -> Limits:
        """Return these limits for a body that holds no event over the limit: no measuring."""
        return replace(self, measure=False)

    @functools.cached_property
    def no_reserved_keys(self) -> Limits:
        """Return these limits for a body in which no key can start with `__`."""
        return replace(self, reserved_keys=False)


@dataclass(slots=True)
class Envelope:
    """One posted event: which schema, which version, its data and its optional timestamp."""

    schema_id: str
    version: str | int
    data: dict[str, Any]
    timestamp: datetime | None = None
    client_id: str | None = None
    # False when no key of `data` can start with `__` (see `Limits.reserved_keys`).
    reserved_keys: bool = True


@dataclass(slots=True)
class Posted:
    """A parsed body: its events, the client's `sent_at`, and whether it was a single event."""

    events: list[Any]
    sent_at: datetime | None = None
    single: bool = False
    limits: Limits = field(default_factory=Limits)


def body_too_large(size: int, limits: Limits) -> IngestError:
    """Return the 413 error for a body of `size` bytes (or more) over the limit."""
    msg = f"the request body is {size} bytes or more; the limit is {limits.body} bytes"
    return IngestError(msg + f" ({limits.options}.max_body_size)", 413)


def parse_body(
    body: bytes,
    limits: Limits,
    inspect: Callable[[Any], None] | None = None,
    *,
    quick: bool = False,
) -> Posted:
    """Return the posted event or batch, with its `sent_at`; raise IngestError.

    `inspect` and `quick` (raise SlowReading): see `strictjson.loads`.
    """
    if len(body) > limits.body:
        raise body_too_large(len(body), limits)
    document = _loads(body, inspect, quick)
    if not isinstance(document, dict):
        msg = 'the body must be a JSON object: an event or {"events": [...]}'
        raise IngestError(msg + f" (got {json_type(document)})")
    # No event can be larger than the body it came in: measure events only in a larger body.
    if len(body) <= limits.event:
        limits = limits.unmeasured
    if not may_hold_reserved_key(body):
        limits = limits.no_reserved_keys
    if "events" in document:
        events = _batch(document, limits)
        if limits.measure and _all_within(events, len(body), limits.event):
            limits = limits.unmeasured
        return Posted(events, _sent_at(document), limits=limits)
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


def _loads(body: bytes, inspect: Callable[[Any], None] | None, quick: bool) -> Any:
    try:
        return strictjson.loads(body, inspect, quick=quick)
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
        raise IngestError(msg + f" ({limits.options}.max_batch_events)", 413)
    return events


def _all_within(events: list[Any], size: int, limit: int) -> bool:
    """Return True when no event of a batch (a body of `size` bytes) is over `limit` bytes
    serialized, measured a run of events at a time: a run's JSON holds each of its events'.

    Runs hold about half the limit by the body's mean event size. False when a run is over
    the limit (or not JSON orjson writes): then each event is measured on its own.
    """
    run = max(1, limit * len(events) // (2 * max(size, 1)))
    try:
        return all(len(orjson.dumps(events[i : i + run])) <= limit
                   for i in range(0, len(events), run))  # fmt: skip
    except orjson.JSONEncodeError:
        return False


def parse_event(item: Any, limits: Limits) -> Envelope:
    """Return the checked envelope of one posted event; raise IngestError."""
    if not isinstance(item, dict):
        msg = f"the event must be a JSON object (got {json_type(item)})"
        raise IngestError(msg)
    if limits.measure:
        _check_size(item, limits)
    if not item.keys() <= _EVENT_KEY_SET:
        _refuse_unknown(item, EVENT_KEYS, "an event has schema_id, version, data, timestamp and id")
    get = item.get
    schema_id: Any = get("schema_id")
    version: Any = get("version")
    data: Any = get("data")
    # The common case checked inline (a batch reads hundreds): a non-empty string id, a
    # non-empty string or integer version, an object; anything else is read again to say why.
    if not (
        type(schema_id) is str
        and schema_id
        and (type(version) is int or (type(version) is str and version))
        and type(data) is dict
    ):
        schema_id, version, data = _schema_id(item), _version(item), _data(item)  # say why
    timestamp = _timestamp(item) if "timestamp" in item else None
    client_id: Any = get("id")
    if client_id is not None and not (
        type(client_id) is str
        and len(client_id) <= MAX_ID_LENGTH
        and client_id.isascii()
        and client_id.isalnum()
    ):
        client_id = _client_id(item)  # not only letters and digits: the full check
    return Envelope(schema_id, version, data, timestamp, client_id, limits.reserved_keys)


def _check_size(item: dict[str, Any], limits: Limits) -> None:
    size = len(orjson.dumps(item))  # strictjson.size, one call less for each event of a batch
    if size > limits.event:
        msg = f"the event is {size} bytes serialized; the limit is {limits.event} bytes"
        raise IngestError(msg + f" ({limits.options}.max_event_size)", 413)


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
