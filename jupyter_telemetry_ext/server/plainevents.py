"""A posted batch's plain events, recorded in few steps.

Most events of a batch are plain: an object of `schema_id`, `version`, `data` and an `id` of
letters and digits (or none), of a schema the poster may post, valid, not a duplicate, no
`timestamp`. For those, what `ingest.record` decides event by event (the erasure of the
recorded user, the write tracking of `reply_after_write`, the size measuring of a large body)
is decided once for the batch, and the EventLog's `BatchRecorder` records them. Every other
event, and every event of a batch where those decisions differ, goes through `post_event`,
which says why it was refused or how else it was answered.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from jupyter_telemetry_ext.core.batchrecorder import BatchRecorder
from jupyter_telemetry_ext.core.errors import QueueFullError
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.outcomes import RECORDED
from jupyter_telemetry_ext.core.schema import EventSchema

from .reception import Reception
from .wire import MAX_ID_LENGTH, Limits

# The fields of a plain event (`timestamp` needs reading, and the clock window's check).
PLAIN_KEYS = frozenset(("schema_id", "version", "data", "id"))
# Finds the schema a poster may post by id and version; None when it may not (or none is).
SchemaFinder = Callable[[str, str | int, dict[str, Any]], EventSchema | None]


class PlainEvents:
    """Records the plain events of one batch (within one `batch` block of the EventLog)."""

    def __init__(
        self, eventlog: EventLog, limits: Limits, reception: Reception, find: SchemaFinder
    ) -> None:
        """Record into `eventlog` what `reception` received under `limits`; `find` the schemas."""
        self._eventlog, self._reception, self._find = eventlog, reception, find
        self._no_reserved_keys = not limits.reserved_keys
        self._recorders: dict[tuple[str, str | int], BatchRecorder | None] = {}
        self.usable = not limits.measure and reception.erased_at is None and eventlog.ticket is None

    def record(self, item: Any) -> str | None:
        """Record a plain event and return RECORDED; None when the event is not plain (nothing
        was recorded, counted or remembered: `post_event` takes it)."""
        read = self._read(item)
        if read is None:
            return None
        recorder, data, client_id = read
        reception = self._reception
        valid = recorder.schema.is_valid(data, no_reserved_keys=self._no_reserved_keys, parsed=True)
        if not valid or (client_id is not None and reception.is_duplicate(client_id)):
            return None
        context = reception.context(client_id, None)
        try:
            capsule = recorder.record(data, context, reception.pending_key(client_id))
        except QueueFullError:
            return None
        if capsule is None:
            return None
        if client_id is not None:
            reception.remember(client_id)
        return RECORDED

    def _read(self, item: Any) -> tuple[BatchRecorder, dict[str, Any], str | None] | None:
        """Return a plain event's recorder, data and client id; None when it is not plain."""
        if type(item) is not dict or not item.keys() <= PLAIN_KEYS:
            return None
        get = item.get
        schema_id, version, data = get("schema_id"), get("version"), get("data")
        client_id = get("id")
        if (
            type(schema_id) is not str
            or (type(version) is not str and type(version) is not int)
            or type(data) is not dict
            or (client_id is not None and not _plain_id(client_id))
        ):
            return None
        recorder = self._recorder(schema_id, version, data)
        return None if recorder is None else (recorder, data, client_id)

    def _recorder(
        self, schema_id: str, version: str | int, data: dict[str, Any]
    ) -> BatchRecorder | None:
        """Return the recorder of a schema version (None: its events are not plain here)."""
        key = (schema_id, version)
        try:
            return self._recorders[key]
        except KeyError:
            pass
        schema = self._find(schema_id, version, data)
        received: datetime = self._reception.received_at
        recorder = None if schema is None else self._eventlog.batch_recorder(schema, received)
        self._recorders[key] = recorder
        return recorder


def _plain_id(client_id: Any) -> bool:
    """Return True for an id `wire.parse_event` takes as it is: letters and digits, not long."""
    return (
        type(client_id) is str
        and 0 < len(client_id) <= MAX_ID_LENGTH
        and client_id.isascii()
        and client_id.isalnum()
    )
