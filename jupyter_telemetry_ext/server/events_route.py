"""jupyter_server's own `POST api/events`, taken over so that clients cannot forge server events.

jupyter_server emits what a client posts there on the event logger whose events this extension
records as the server's. This handler applies our frontend rules first (a schema registered in
our EventLog but not open to frontends is refused, 403, as on api/telemetry/events), then answers
as jupyter_server does, marking the emit so that it is never recorded as a server event.
"""

from __future__ import annotations

from typing import Any, cast

from jupyter_server.auth.decorator import authorized
from jupyter_server.services.events.handlers import EventHandler
from tornado import web

from jupyter_telemetry_ext.core.eventlog import EventLog

from .restapi import EVENTLOG_SETTING
from .server_events import posted_by_client


class ServerEventsHandler(EventHandler):
    """POST api/events: our frontend rules, then jupyter_server's own answer (204, 400)."""

    # auth_resource stays jupyter_server's "events": the permission is the one it always was.

    @property
    def eventlog(self) -> EventLog:
        """Return the EventLog that TelemetryExtension published in the settings."""
        return cast(EventLog, self.settings[EVENTLOG_SETTING])

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Refuse our schemas that are not open to frontends; emit the rest as a client's."""
        payload = self.get_json_body()
        if isinstance(payload, dict):
            self._check_frontend(payload)
        with posted_by_client():
            emitted = super().post()  # authenticated and authorized again: cheap, and harmless
            if emitted is not None:
                await emitted

    def _check_frontend(self, payload: dict[str, Any]) -> None:
        """Raise 403 when our EventLog knows the schema id but not as open to frontends."""
        schema_id, version = payload.get("schema_id"), str(payload.get("version"))
        known = [s for s in self.eventlog.schemas if s.id == schema_id]
        if known and not any(s.frontend and str(s.version) == version for s in known):
            msg = (
                f"schema_id: the schema {schema_id!r} is not open to frontends; a schema opts in "
                "with the top-level key `frontend: true`"
            )
            raise web.HTTPError(403, msg)


server_events_handlers = [(r"/api/events", ServerEventsHandler)]
