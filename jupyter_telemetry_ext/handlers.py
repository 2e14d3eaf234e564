"""The REST API and the websocket of the telemetry server extension."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timezone
from typing import Any, cast

import orjson
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web, websocket

from .compat import ws_authenticated
from .content_encoding import check_encoding, parse_encoded
from .eventlog import EventLog
from .forwarding import Forwarder
from .ingest import (
    IngestError,
    Limits,
    Posted,
    body_too_large,
    parse_body,
    post_event,
    record_batch_paced,
    report,
)
from .principal import principal
from .ratelimit import RateLimiter
from .reception import Policy, Reception
from .schema import EventSchema, schema_order
from .subscribe import Subscription
from .subscribers import SubscriberLimitError, Subscribers
from .tickets import Ticket

AUTH_RESOURCE = "telemetry"
EVENTLOG_SETTING = "telemetry_eventlog"
LIMITS_SETTING = "telemetry_limits"
BUFFER_SETTING = "telemetry_subscriber_buffer"
POLICY_SETTING = "telemetry_policy"
SUBSCRIBERS_SETTING = "telemetry_subscribers"
FORWARDER_SETTING = "telemetry_forwarder"  # a Forwarder, when events go to a collector
RETRY_AFTER_SECONDS = 1
WRITE_TIMEOUT_SECONDS = 30.0
# The body is always parsed as JSON. Besides application/json, the types generic clients declare
# for a string body are let through rather than break them: text/plain (a browser's fetch and
# sendBeacon, JupyterLab's ServerConnection) and form-urlencoded (curl -d, tornado's client).
JSON_CONTENT_TYPES = ("", "application/json", "text/plain", "application/x-www-form-urlencoded")
# A larger body is parsed on a worker thread: reading a hostile megabyte can take a second.
INLINE_PARSE_BYTES = 16 << 10


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


class TelemetryHandler(TelemetryMixin, APIHandler):
    """Base handler of the REST routes: JSON errors, `Retry-After` on 429 and 503."""

    retry_after: int = RETRY_AFTER_SECONDS

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
class EventsHandler(TelemetryHandler):
    """POST api/telemetry/events: one event, or a batch `{"events": [...]}`.

    The body is streamed, so that a flood (429) or a body over the limit (413) is refused
    before it is read, whether it has a Content-Length or is chunked.
    """

    _chunks: list[bytes]
    _principal: str = ""
    _size: int = 0
    _refused: bool = False

    @property
    def limits(self) -> Limits:
        """Return the size limits of a post."""
        return cast(Limits, self.settings[LIMITS_SETTING])

    @property
    def policy(self) -> Policy:
        """Return the rate limit, duplicate window, clock window and identity rules."""
        return cast(Policy, self.settings[POLICY_SETTING])

    async def prepare(self) -> None:  # type: ignore[override]  # APIHandler's is untyped
        """Note the receive time; refuse a flood or an announced oversized body at once."""
        await super().prepare()
        self._chunks = []
        self._received_at = datetime.now(timezone.utc)
        # Without a user `post` answers 401/403: nothing about the body is checked or reported.
        if self.request.method == "POST" and self.current_user is not None:
            self._principal = principal(self)
            self._limit_rate()
            self._check_content_type()
            self._check_length()

    def _limit_rate(self) -> None:
        limiter = self.policy.limiter
        wait = limiter.acquire(self._principal)
        if wait:
            self.retry_after = RateLimiter.retry_after(wait)
            msg = (
                f"too many requests: the limit is {limiter.rate:g} a second per user, in bursts "
                f"of {limiter.burst} (TelemetryExtension.rate_limit); retry after "
                f"{self.retry_after} s"
            )
            self.eventlog.record_failure("rate_limited", msg, size=self._announced_length())
            raise web.HTTPError(429, msg)

    def _check_content_type(self) -> None:
        kind, _, params = self.request.headers.get("Content-Type", "").lower().partition(";")
        kind, charset = kind.strip(), params.replace(" ", "").partition("charset=")[2]
        if kind not in JSON_CONTENT_TYPES or charset.split(";")[0] not in ("", "utf-8"):
            msg = (
                "Content-Type must be application/json (or text/plain) in UTF-8, or absent "
                f"(got {kind[:64]!r}{' with charset ' + repr(charset[:32]) if charset else ''})"
            )
            error = IngestError(msg, 415)
            report(self.eventlog, error)
            raise web.HTTPError(error.status, msg)
        try:
            check_encoding(self._encoding)
        except IngestError as e:
            report(self.eventlog, e)
            raise web.HTTPError(e.status, str(e)) from None

    @property
    def _encoding(self) -> str:
        return self.request.headers.get("Content-Encoding", "").strip().lower()

    def _announced_length(self) -> int | None:
        length = self.request.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else None

    def _check_length(self) -> None:
        length = self._announced_length()
        if length is not None and length > self.limits.body:
            error = body_too_large(length, self.limits)
            report(self.eventlog, error)
            raise web.HTTPError(error.status, str(error))

    def data_received(self, chunk: bytes) -> None:
        """Keep the body's chunks; answer 413 as soon as they pass the limit."""
        if self._refused:
            return
        self._size += len(chunk)
        if self._size <= self.limits.body:
            self._chunks.append(chunk)
            return
        self._refused, self._chunks = True, []
        error = body_too_large(self._size, self.limits)
        if self.current_user is not None:
            report(self.eventlog, error)
        http_error = web.HTTPError(error.status, str(error))
        self.send_error(error.status, exc_info=(web.HTTPError, http_error, None))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Record the posted event(s); query arguments are ignored (clients add cache-busters)."""
        username = self.current_user.username
        reception = self.policy.reception(username, self._principal, self._received_at)
        try:
            posted = await self._parse(b"".join(self._chunks))
        except IngestError as e:
            report(self.eventlog, e)
            raise web.HTTPError(e.status, str(e)) from None
        reception.sent_at = posted.sent_at
        ticket = Ticket(self.policy.owed) if self.policy.reply_after_write else None
        try:
            reply = await self._reply(posted, reception, self._tracker(ticket))
        except IngestError as e:
            raise web.HTTPError(e.status, str(e)) from None
        finally:
            if ticket is not None:
                self.eventlog.seal(ticket)
        if ticket is not None:
            await self._written(ticket)
            await self._spooled()
        await self.finish(orjson.dumps(reply))

    async def _parse(self, body: bytes) -> Posted:
        """Read the body: a small one on the event loop, a larger or gzipped one on a thread."""
        encoding = self._encoding
        if len(body) <= INLINE_PARSE_BYTES and encoding != "gzip":
            return parse_body(body, self.limits)
        return await asyncio.to_thread(parse_encoded, body, encoding, self.limits)

    def _tracker(self, ticket: Ticket | None) -> Callable[[], AbstractContextManager[Any]]:
        """Return what each synchronous slice of recording runs in: the ticket's tracking.

        A batch is recorded in slices with the event loop given back between them, so the
        tracking (which belongs to the thread) is entered for each slice, never across an await.
        """
        if ticket is None:
            return nullcontext
        return lambda: self.eventlog.tracking(ticket, seal=False)

    async def _reply(
        self,
        posted: Posted,
        reception: Reception,
        tracker: Callable[[], AbstractContextManager[Any]],
    ) -> dict[str, Any]:
        if posted.single:
            with tracker():
                status = post_event(self.eventlog, posted.events[0], posted.limits, reception)
            return {"status": status}
        batch = await record_batch_paced(
            self.eventlog, posted.events, posted.limits, reception, tracker
        )
        if batch.all_rejected:  # 400, with each event's reason as in any batch reply
            self.set_status(400)
            first = batch.results[0]["error"]
            return {"message": f"every event of the batch was rejected; events[0]: {first}",
                    **batch.model()}  # fmt: skip
        if batch.busy:
            self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
        return batch.model()

    async def _written(self, ticket: Ticket) -> None:
        """Wait until every handler wrote what this request recorded (`reply_after_write`)."""
        if not await ticket.wait(WRITE_TIMEOUT_SECONDS):
            msg = "the events are queued but the handlers did not write them in time; retry"
            raise web.HTTPError(503, msg)
        if not ticket.ok:
            msg = (
                "a handler failed to write the events; retry (an event with an id is then "
                "written only where it is missing)"
            )
            raise web.HTTPError(503, msg)

    async def _spooled(self) -> None:
        """Wait until the forwarding spool holds what this request recorded (when forwarding)."""
        forwarder = self.forwarder
        if forwarder is not None and not await forwarder.spooled(WRITE_TIMEOUT_SECONDS):
            msg = "the events are not in the forwarding spool yet; retry"
            raise web.HTTPError(503, msg)


class SchemasHandler(TelemetryHandler):
    """GET api/telemetry/schemas: every registered schema version, in short."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """List each schema version: id, version, title, description, frontend, allowed, rate."""
        schemas = sorted(self.eventlog.schemas, key=schema_order)
        await self.finish(json.dumps({"schemas": [self._summary(s) for s in schemas]}))

    def _summary(self, schema: EventSchema) -> dict[str, Any]:
        allowed, sampling = self._recorded(schema.id)
        return {
            "id": schema.id,
            "version": schema.version,
            "title": schema.title,
            "description": schema.description,
            "frontend": schema.frontend,
            "allowed": allowed,
            "sampling": sampling,
        }

    def _recorded(self, schema_id: str) -> tuple[bool, float]:
        """Return whether a schema's events are recorded, and their sampling rate: by the
        collector's policy when forwarding (as it announces it), else by this server's."""
        if self.forwarder is not None:
            return self.forwarder.recorded(schema_id)
        return self.eventlog.is_allowed(schema_id), self.eventlog.sampling_rate(schema_id)


class SchemaHandler(TelemetryHandler):
    """GET api/telemetry/schemas/<id>: every version's full schema document."""

    @web.authenticated
    @authorized
    async def get(self, schema_id: str) -> None:
        """Reply with the documents of every version of a schema id (URL-decoded); 404 if none."""
        versions = sorted((s for s in self.eventlog.schemas if s.id == schema_id), key=schema_order)
        if not versions:
            msg = "no schema with this id is registered; GET api/telemetry/schemas lists them"
            raise web.HTTPError(404, msg)  # the id is not echoed: it may be anything
        forwarder = self.forwarder
        allowed = forwarder.recorded(schema_id)[0] if forwarder else None
        model = {
            "id": schema_id,
            "allowed": self.eventlog.is_allowed(schema_id) if allowed is None else allowed,
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
