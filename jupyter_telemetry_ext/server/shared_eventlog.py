"""The server's EventLog for other server extensions, whatever order the extensions load in."""

from __future__ import annotations

from typing import Any

from jupyter_telemetry_ext.core.eventlog import EventLog

from .app import TelemetryExtension


def server_eventlog(serverapp: Any) -> EventLog:
    """Return the server's EventLog, created on the first call, the one the extension uses.

    An extension that loads before ours (names load in alphabetical order) may call it from its
    load function to register its schemas. Raises RuntimeError when jupyter_telemetry_ext is not
    an enabled server extension of `serverapp` (its events would be recorded nowhere).
    """
    points = getattr(getattr(serverapp, "extension_manager", None), "extension_points", {})
    point = points.get(TelemetryExtension.name)
    app = getattr(point, "app", None)
    if not isinstance(app, TelemetryExtension):
        msg = (
            "jupyter_telemetry_ext is not enabled in this Jupyter server: enable it "
            "(jpserver_extensions) before recording events through it"
        )
        raise RuntimeError(msg)
    return app.server_eventlog()
