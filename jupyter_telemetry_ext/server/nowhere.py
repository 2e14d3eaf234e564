"""The start-up check that what the allow-list allows is written somewhere."""

from __future__ import annotations

from jupyter_telemetry_ext.core.eventlog import EventLog

WRITTEN_NOWHERE = (
    "c.EventLog.allowed_schemas allows events, but c.EventLog.handlers is empty, no listener "
    "takes them and they are not forwarded (TelemetryExtension.collector_url): every event it "
    'allows would be answered "recorded" and written nowhere. Add a handler, e.g. '
    'c.EventLog.handlers = [logging.FileHandler("/var/log/jupyter/telemetry.jsonl")]'
)


def written_nowhere(eventlog: EventLog) -> list[str]:
    """Return why allowed events would be written nowhere (no handler, no listener, no
    forwarder's tap); empty when they are written somewhere."""
    unheard = not eventlog.handlers and not eventlog.tapped and not eventlog.listened
    return [WRITTEN_NOWHERE] if eventlog.allowed_schemas and unheard else []
