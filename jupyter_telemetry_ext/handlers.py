"""The REST API and the websocket of the telemetry server extension."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web, websocket

from .eventlog import EventLog
from .ingest import IngestError, Limits, parse_body, post_event, record_batch, report
from .schema import EventSchema
from .subscribe import Subscription

AUTH_RESOURCE = "telemetry"
EVENTLOG_SETTING = "telemetry_eventlog"
LIMITS_SETTING = "telemetry_limits"
BUFFER_SETTING = "telemetry_subscriber_buffer"
RETRY_AFTER_SECONDS = 1


def _order(schema: EventSchema) -> tuple[str, int, int, str]:
    """Sort schemas by id, then numeric versions after named ones, in numeric order."""
    key = schema.version_key
    return (schema.id, 1, int(key), "") if key.isdigit() else (schema.id, 0, 0, key)


class TelemetryMixin:
    """What every telemetry handler shares: the auth resource and the server's EventLog."""

    auth_resource = AUTH_RESOURCE
    settings: dict[str, Any]

    @property
    def eventlog(self) -> EventLog:
        """Return the EventLog that TelemetryExtension published in the settings."""
        return cast(EventLog, self.settings[EVENTLOG_SETTING])


class TelemetryHandler(TelemetryMixin, APIHandler):
    """Base handler of the REST routes: JSON errors, `Retry-After` on 503."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Write the JSON error; tell clients when to retry a 503 (a full event queue)."""
        if status_code == 503:
            self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
        super().write_error(status_code, **kwargs)


class EventsHandler(TelemetryHandler):
    """POST api/telemetry/events: one event, or a batch `{"events": [...]}`."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Record the posted event(s); query arguments are ignored (clients add cache-busters)."""
        limits = cast(Limits, self.settings[LIMITS_SETTING])
        try:
            posted = parse_body(self.request.body, limits)
        except IngestError as e:
            report(self.eventlog, e)
            raise web.HTTPError(e.status, str(e)) from None
        try:
            if isinstance(posted, list):
                reply = self._batch(posted, limits)
            else:
                reply = self._one(posted, limits)
        except IngestError as e:
            raise web.HTTPError(e.status, str(e)) from None
        await self.finish(json.dumps(reply))

    def _one(self, posted: dict[str, Any], limits: Limits) -> dict[str, Any]:
        return {"status": post_event(self.eventlog, posted, limits)}

    def _batch(self, posted: list[Any], limits: Limits) -> dict[str, Any]:
        batch = record_batch(self.eventlog, posted, limits)
        if batch.busy:
            self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
        return batch.model()


class SchemasHandler(TelemetryHandler):
    """GET api/telemetry/schemas: every registered schema version, in short."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """List each schema version: id, version, title, description, frontend, allowed."""
        schemas = sorted(self.eventlog.schemas, key=_order)
        await self.finish(json.dumps({"schemas": [self._summary(s) for s in schemas]}))

    def _summary(self, schema: EventSchema) -> dict[str, Any]:
        return {
            "id": schema.id,
            "version": schema.version,
            "title": schema.title,
            "description": schema.description,
            "frontend": schema.frontend,
            "allowed": self.eventlog.is_allowed(schema.id),
        }


class SchemaHandler(TelemetryHandler):
    """GET api/telemetry/schemas/<id>: every version's full schema document."""

    @web.authenticated
    @authorized
    async def get(self, schema_id: str) -> None:
        """Reply with the documents of every version of a schema id (URL-decoded); 404 if none."""
        versions = sorted((s for s in self.eventlog.schemas if s.id == schema_id), key=_order)
        if not versions:
            raise web.HTTPError(404, f"unknown schema id {schema_id[:200]!r}")
        model = {
            "id": schema_id,
            "allowed": self.eventlog.is_allowed(schema_id),
            "versions": [schema.document for schema in versions],
        }
        await self.finish(json.dumps(model))


class SubscribeHandler(TelemetryMixin, WebSocketMixin, JupyterHandler, websocket.WebSocketHandler):
    """WS api/telemetry/subscribe[?schema_id=...]: each recorded capsule as a JSON text frame."""

    subscription: Subscription | None = None
    _drainer: asyncio.Task[None] | None = None

    @ws_authenticated
    @authorized
    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Upgrade to a websocket; needs read permission on `telemetry`."""
        await super().get(*args, **kwargs)

    def open(self, *args: Any, **kwargs: Any) -> None:
        """Start listening to the EventLog, filtered by the `schema_id` query arguments."""
        loop = asyncio.get_running_loop()
        self.subscription = Subscription(
            self.get_query_arguments("schema_id"),
            cast(int, self.settings[BUFFER_SETTING]),
            lambda: self._wake(loop),
        )
        self.eventlog.add_listener(self.subscription)
        super().open(*args, **kwargs)

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start draining on the event loop (the listener may run on any thread)."""
        loop.call_soon_threadsafe(self._start_draining)

    def _start_draining(self) -> None:
        self._drainer = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        """Send buffered frames one at a time, so tornado never buffers more than one."""
        while self.subscription and (frame := self.subscription.next_frame()) is not None:
            try:
                await self.write_message(frame)
            except websocket.WebSocketClosedError:
                self._unsubscribe()
                return

    def on_message(self, message: str | bytes) -> None:
        """Ignore messages: the socket only sends."""

    def on_close(self) -> None:
        """Stop listening; log how many capsules this subscriber dropped."""
        self._unsubscribe()

    def _unsubscribe(self) -> None:
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            self.eventlog.remove_listener(subscription)
            if subscription.dropped:
                self.log.info("Telemetry subscriber dropped %d capsules", subscription.dropped)


default_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (r"/api/telemetry/events", EventsHandler),
    (r"/api/telemetry/schemas", SchemasHandler),
    (r"/api/telemetry/schemas/(?P<schema_id>.+)", SchemaHandler),
    (r"/api/telemetry/subscribe", SubscribeHandler),
]
