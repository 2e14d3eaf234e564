"""Telemetry for Jupyter applications and extensions."""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .core.decorators import instrument, record
from .core.errors import EventSchemaError, QueueFullError, UnknownSchemaError
from .core.eventlog import EventLog
from .core.eventlogger import EventLogger
from .core.router import EventRouter
from .core.schema import EventSchema

__all__ = [
    "EventLog",
    "EventLogger",
    "EventRouter",
    "EventSchema",
    "EventSchemaError",
    "EventValidationError",
    "HubAuditHandler",
    "HubEventHandler",
    "PostgresEventHandler",
    "QueueFullError",
    "UnknownSchemaError",
    "__version__",
    "instrument",
    "record",
    "server_eventlog",
]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Return the server extension's entry point (imported only by jupyter_server)."""
    from .server.app import TelemetryExtension

    return [{"module": "jupyter_telemetry_ext.server.app", "app": TelemetryExtension}]


def __getattr__(name: str) -> Any:
    """Import the validation error class, the hub's and PostgreSQL's handlers and
    `server_eventlog` on first use."""
    if name == "EventValidationError":
        from .core.validation import EventValidationError

        return EventValidationError
    if name == "PostgresEventHandler":  # psycopg is an optional extra, imported only when used
        from .sinks.postgres import PostgresEventHandler

        return PostgresEventHandler
    if name == "server_eventlog":  # imports jupyter_server: only for server extensions
        from .server.shared_eventlog import server_eventlog

        return server_eventlog
    if name == "HubAuditHandler":  # for jupyterhub_config.py: the hub's own actions
        from .hub.actions import HubAuditHandler

        return HubAuditHandler
    if name == "HubEventHandler":  # for jupyterhub_config.py: the hub's events into our sinks
        from .hub.events import HubEventHandler

        return HubEventHandler
    raise AttributeError(name)
