"""The start and clean stop of an audit stream, numbered like every audit event."""

from __future__ import annotations

from collections.abc import Sequence

from jupyter_telemetry_ext.core.errors import UnknownSchemaError

from .recorder import AuditRecorder

SCHEMA_ID = "https://events.jupyter.org/jupyter_telemetry_ext/audit-stream"
VERSION = 1
START, STOP = "start", "stop"


def record_stream(recorder: AuditRecorder, action: str, audited: Sequence[str] = ()) -> None:
    """Record the stream's `action` (start or stop); say so when the schema is missing.

    Without the schema no number is taken, so an older install leaves no false gap.
    """
    if action == STOP and recorder.stopped:  # the stop is the stream's last event, once
        return
    try:
        recorder.eventlog.get_schema(SCHEMA_ID, VERSION)
    except UnknownSchemaError:
        recorder.log.error("Audit: the schema %s is not registered: the stream's %s is NOT "
                           "recorded", SCHEMA_ID, action)  # fmt: skip
        recorder.stopped = recorder.stopped or action == STOP
        return
    event: dict[str, object] = {"action": action}
    if audited:
        event["audited"] = sorted(set(audited))
    recorder.record(SCHEMA_ID, VERSION, event)
    if action == STOP:
        recorder.stopped = True
