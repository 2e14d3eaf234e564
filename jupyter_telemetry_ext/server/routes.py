"""The REST API and the websocket of the telemetry server extension."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, cast

import orjson
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web, websocket

from jupyter_telemetry_ext.core.errors import SubscriberLimitError
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.schema import EventSchema
from jupyter_telemetry_ext.server.forwarding.forwarder import Forwarder

from .compat import ws_authenticated
from .consent import mark_withheld
from .principal import person, principal
from .restapi import (
    EVENTLOG_SETTING,
    POLICY_SETTING,
    RETRY_AFTER_SECONDS,
    WRITE_TIMEOUT_SECONDS,
    PostEvents,
    schema_model,
    schemas_model,
)
from .rules import collector_policy
from .subscribe import Subscription
from .subscribers import Subscribers

AUTH_RESOURCE = "telemetry"
BUFFER_SETTING = "telemetry_subscriber_buffer"
SUBSCRIBERS_SETTING = "telemetry_subscribers"
FORWARDER_SETTING = "telemetry_forwarder"  # a Forwarder, when events go to a collector
CONSENT_MARKS_SETTING = "telemetry_consent_marks"  # the collector's, when forwarding
ALL_SCHEMAS_SETTING = "telemetry_accept_all_schemas"  # TelemetryExtension.accept_all_schemas
# The 403 of a request without a user: jupyter_server says "Forbidden", or, for a POST or a PUT,
# that its `_xsrf` argument is missing, which sends a script with a mistyped token astray.
NOT_AUTHENTICATED = (
    "not authenticated: send the server's token (`Authorization: token <token>`), "
    "or log in and send the `_xsrf` cookie's value as `X-XSRFToken`"
)


class TelemetryMixin:
    """What every telemetry handler shares: the auth resource and the server's EventLog."""

    auth_resource = AUTH_RESOURCE
    settings: dict[str, Any]

    @property
    def eventlog(self) -> EventLog:
        """Return the EventLog that TelemetryExtension published in the settings."""
        return cast(EventLog, self.settings[EVENTLOG_SETTING])

    @property
    def forwarder(self) -> Forwarder | None:
        """Return the Forwarder when events are forwarded to a collector, else None."""
        return cast("Forwarder | None", self.settings.get(FORWARDER_SETTING))

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        """Decode a path or query argument; one that is not UTF-8 is 400 naming it, not
        quoting it (tornado's message quotes its bytes)."""
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise web.HTTPError(400, f"{name or 'the URL'}: not UTF-8 text") from None


class TelemetryHandler(TelemetryMixin, APIHandler):
    """Base handler of the REST routes: JSON errors, `Retry-After` on 429 and 503."""

    retry_after: int = RETRY_AFTER_SECONDS

    def check_xsrf_cookie(self) -> None:
        """Tell a request without a user (no token, a wrong one, no login) to authenticate."""
        if hasattr(self, "_jupyter_current_user") and not self.current_user:
            raise web.HTTPError(403, NOT_AUTHENTICATED)
        super().check_xsrf_cookie()

    def get_login_url(self) -> str:
        """Refuse a request without a user with 403, saying how to authenticate."""
        if not self.current_user:
            raise web.HTTPError(403, NOT_AUTHENTICATED)
        return super().get_login_url()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Write the JSON error; tell clients when to retry a 429 (a flood) or a 503 (busy)."""
        if status_code in (429, 503):
            self.set_header("Retry-After", str(self.retry_after))
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        if isinstance(error, web.HTTPError) and error.log_message:
            # APIHandler replies `log_message`, which tornado writes with every `%` doubled
            # when it has no arguments; formatting it with its arguments gives the message as
            # meant (`get_message()` does the same, from tornado 6.3 on).
            self._write_message(error.log_message % error.args, error.reason)
            return
        super().write_error(status_code, **kwargs)

    def _write_message(self, message: str, reason: str | None) -> None:
        """Reply `{"message", "reason"}` as APIHandler does, with the message exactly as meant."""
        self.set_header("Content-Type", "application/json")
        self.log.warning("wrote error: %r", message)
        self.finish(json.dumps({"message": message, "reason": reason}))


@web.stream_request_body
class EventsHandler(PostEvents, TelemetryHandler):
    """POST api/telemetry/events: one event, or a batch `{"events": [...]}` (see PostEvents)."""

    accepts_gzip = True  # forwarding servers gzip their batches to a collector like this one

    async def prepare(self) -> None:  # type: ignore[override]  # APIHandler's is untyped
        """Authenticate; then refuse a flood or an announced oversized body at once."""
        await super().prepare()
        self.check_post()

    def poster(self) -> tuple[str, str]:
        """Return the request's person (the name recorded for it) and its principal."""
        return person(self), principal(self)

    def open_to(self) -> Callable[[EventSchema], bool] | None:
        """Return every schema with `accept_all_schemas` (a collector), else None (frontends)."""
        return _every_schema if self.settings.get(ALL_SCHEMAS_SETTING) else None

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Record the posted event(s); query arguments are ignored (clients add cache-busters)."""
        reply = await self.record_post()
        if self.policy.reply_after_write:
            await self._spooled()
        await self.finish(orjson.dumps(reply))

    async def _spooled(self) -> None:
        """Wait until the forwarding spool holds what this request recorded (when forwarding)."""
        forwarder = self.forwarder
        if forwarder is not None and not await forwarder.spooled(WRITE_TIMEOUT_SECONDS):
            msg = "the events are not in the forwarding spool yet; retry"
            raise web.HTTPError(503, msg)


def _every_schema(schema: EventSchema) -> bool:
    return True


class SchemasHandler(TelemetryHandler):
    """GET api/telemetry/schemas: every registered schema version, in short."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """List each schema version: id, version, title, description, frontend, allowed, rate
        and policy."""
        model = schemas_model(self.eventlog, self.settings[POLICY_SETTING].record_user)
        forwarder = self.forwarder
        if forwarder is not None:  # the collector's policy records forwarded events, not ours
            for summary in model["schemas"]:
                summary["allowed"], summary["sampling"] = forwarder.recorded(summary["id"])
                summary["policy"] = collector_policy(forwarder.rules, summary)
        marks = self.settings.get(CONSENT_MARKS_SETTING)
        if marks is not None:  # the collector's studies and this user's decisions
            await marks.mark(model)
        mark_withheld(self.eventlog, model)
        self.finish(json.dumps(model))


class SchemaHandler(TelemetryHandler):
    """GET api/telemetry/schemas/<id>: every version's full schema document."""

    @web.authenticated
    @authorized
    async def get(self, schema_id: str) -> None:
        """Reply with the documents of every version of a schema id (URL-decoded); 404 if none."""
        model = schema_model(self.eventlog, schema_id)
        if self.forwarder is not None:
            model["allowed"] = self.forwarder.recorded(schema_id)[0]
        self.finish(json.dumps(model))


class SubscribeHandler(TelemetryMixin, WebSocketMixin, JupyterHandler, websocket.WebSocketHandler):
    """WS api/telemetry/subscribe[?schema_id=...]: each recorded capsule as a JSON text frame."""

    subscription: Subscription | None = None
    _drainer: asyncio.Task[None] | None = None

    @ws_authenticated
    @authorized
    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Upgrade to a websocket; needs read permission on `telemetry`; 429/503 over the caps."""
        subscribers = cast(Subscribers, self.settings[SUBSCRIBERS_SETTING])
        who = principal(self)
        try:
            subscribers.join(who)
        except SubscriberLimitError as e:
            self._refuse(e)
            return
        try:  # the upgraded socket is served within this call, until it closes
            await super().get(*args, **kwargs)
        finally:
            subscribers.leave(who)

    def _refuse(self, error: SubscriberLimitError) -> None:
        """Answer the upgrade request with the JSON error, before any socket is opened."""
        self.log.info("Telemetry: websocket subscriber refused: %s", error)
        self.set_status(error.status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
        self.finish(json.dumps({"message": str(error), "reason": None}))

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
