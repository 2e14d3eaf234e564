"""The collector's watch over audit streams: a skipped audit_seq is recorded as `audit-gap`.

Each posted event carrying `audit_stream` and `audit_seq` that the collector took (recorded,
or answered filtered, sampled out or duplicate) is noted under its poster, the hub user whose
token posted it; numbers that never came are recorded as an `audit-gap` event of that user.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jupyter_telemetry_ext.core.errors import QueueFullError, UnknownSchemaError
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.outcomes import DUPLICATE, FILTERED, RECORDED, SAMPLED_OUT

from .gap_tracker import Gap, GapTracker

SCHEMA_ID = "https://events.jupyter.org/jupyter_telemetry_ext/audit-gap"
VERSION = 1
STREAM_SCHEMA = "https://events.jupyter.org/jupyter_telemetry_ext/audit-stream"
# What the collector took: an event rejected (invalid, busy) is not there, and may come again.
TAKEN = frozenset({RECORDED, FILTERED, SAMPLED_OUT, DUPLICATE})
log = logging.getLogger("jupyter_telemetry_ext.hub.audit_gaps")


class AuditGaps:
    """Notes the audit events each hub user posts; records `audit-gap` for what never came."""

    def __init__(self, eventlog: EventLog, tracker: GapTracker) -> None:
        """Record gaps through `eventlog`; follow the streams with `tracker`."""
        self.eventlog, self.tracker = eventlog, tracker
        self._unrecorded_said = False

    def observe(
        self,
        user: str,
        recorded_user: str | None,
        events: Sequence[Any],
        statuses: Sequence[str | None],
    ) -> None:
        """Note the audit events of one post (its items as posted, and their reply statuses)."""
        for item, status in zip(events, statuses, strict=False):
            if status not in TAKEN or not isinstance(item, dict):
                continue  # a taken event was read and validated: its data is an object
            data, schema = item.get("data"), item.get("schema_id")
            numbered = _numbered(data) if isinstance(data, dict) else None
            if numbered is None:
                continue
            stream, seq = numbered
            stop = schema == STREAM_SCHEMA and data.get("action") == "stop"  # type: ignore[union-attr]
            gaps = self.tracker.seen(user, stream, seq, str(schema), stop=stop,
                                     recorded_user=recorded_user)  # fmt: skip
            self.record(gaps)

    def sweep(self) -> None:
        """Record the gaps held past the grace period."""
        self.record(self.tracker.due())

    def close(self) -> None:
        """Record every gap held, due or not (the collector stops)."""
        self.record(self.tracker.flush())

    def record(self, gaps: Iterable[Gap]) -> None:
        """Record each gap as an `audit-gap` event of the stream's poster; log it."""
        for gap in gaps:
            log.warning("Audit gap: stream %s skipped audit_seq %d to %d (%d events)",
                        gap.stream, gap.first, gap.last, gap.last - gap.first + 1)  # fmt: skip
            event = {"stream": gap.stream, "first_missing": gap.first, "last_missing": gap.last,
                     "missing": gap.last - gap.first + 1, "schema": gap.schema}  # fmt: skip
            context = {} if gap.recorded_user is None else {"__user__": gap.recorded_user}
            try:
                capsule = self.eventlog.record_event(SCHEMA_ID, VERSION, event, context=context)
            except (UnknownSchemaError, QueueFullError) as e:
                log.error("Audit gap of stream %s NOT recorded: %s", gap.stream, e)
                continue
            if capsule is None and not self._unrecorded_said:
                self._unrecorded_said = True
                log.error("Audit gaps are NOT stored: %s is not allowed by c.EventLog."
                          "allowed_schemas (only this log shows them)", SCHEMA_ID)  # fmt: skip


def statuses(reply: Mapping[str, Any], count: int) -> list[str | None]:
    """Return each posted event's status from a POST reply (single or batch)."""
    if "results" in reply:
        return [r.get("status") for r in reply["results"]]
    return [reply.get("status")] * min(count, 1)


def _numbered(data: Mapping[str, Any]) -> tuple[str, int] | None:
    """Return an event's (audit_stream, audit_seq) when it carries both."""
    if "audit_seq" not in data:
        return None
    stream, seq = data.get("audit_stream"), data.get("audit_seq")
    if isinstance(stream, str) and type(seq) is int:
        return stream, seq
    return None
