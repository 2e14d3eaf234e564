"""Telemetry for Jupyter applications and extensions."""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .decorators import instrument, record
from .errors import EventSchemaError, QueueFullError, UnknownSchemaError
from .eventlog import EventLog
from .router import EventRouter
from .schema import EventSchema

__all__ = [
    "EventLog",
    "EventRouter",
    "EventSchema",
    "EventSchemaError",
    "EventValidationError",
    "PostgresEventHandler",
    "QueueFullError",
    "UnknownSchemaError",
    "__version__",
    "instrument",
    "record",
]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Return the server extension's entry point (imported only by jupyter_server)."""
    from .app import TelemetryExtension

    return [{"module": "jupyter_telemetry_ext.app", "app": TelemetryExtension}]


def __getattr__(name: str) -> Any:
    """Import the validation error class and the PostgreSQL handler on first use."""
    if name == "EventValidationError":
        from .validation import EventValidationError

        return EventValidationError
    if name == "PostgresEventHandler":  # psycopg is an optional extra, imported only when used
        from .postgres import PostgresEventHandler

        return PostgresEventHandler
    raise AttributeError(name)
