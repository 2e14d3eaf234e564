"""The start-up check that what the allow-list allows is written somewhere."""

from __future__ import annotations

import logging

from jupyter_telemetry_ext.core.eventlog import EventLog

WRITTEN_NOWHERE = (
    "Telemetry: c.EventLog.allowed_schemas allows events, but c.EventLog.handlers is empty and "
    "they are not forwarded (TelemetryExtension.collector_url): the events it allows are "
    'answered "recorded" and written nowhere. Add a handler, e.g. '
    'c.EventLog.handlers = [logging.FileHandler("/var/log/jupyter/telemetry.jsonl")]'
)


def warn_written_nowhere(log: logging.Logger, eventlog: EventLog) -> None:
    """Warn when allowed events would be written nowhere: no handler, no forwarder's tap."""
    if eventlog.allowed_schemas and not eventlog.handlers and not eventlog.tapped:
        log.warning(WRITTEN_NOWHERE)
