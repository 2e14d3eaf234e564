"""What the REST handlers of the extension and of the JupyterHub collector share.

`PostEvents` is the body of `POST api/telemetry/events` (streamed body, limits, rate limit,
gzip when the app accepts it, recording, the reply); each app's handler mixes it into its own
request handler and says who posted (`poster`). The schema models are the replies of
`GET api/telemetry/schemas[/<id>]`. Nothing here imports jupyter_server or jupyterhub.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timezone
from typing import Any, cast

import orjson
from tornado import web

from jupyter_telemetry_ext.core.errors import InflateError, IngestError, SlowReading
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.outcomes import RATE_LIMITED
from jupyter_telemetry_ext.core.schema import EventSchema, schema_order
from jupyter_telemetry_ext.core.tickets import Ticket

from .inflate import Inflater
from .ingest import post_event, record_batch_paced, report
from .ratelimit import RateLimiter
from .reception import Policy, Reception
from .rules import policy_model
from .wire import Limits, Posted, body_too_large, parse_body

EVENTLOG_SETTING = "telemetry_eventlog"
LIMITS_SETTING = "telemetry_limits"
POLICY_SETTING = "telemetry_policy"
RETRY_AFTER_SECONDS = 1
WRITE_TIMEOUT_SECONDS = 30.0
# The body is always parsed as JSON. Besides application/json, the types generic clients declare
# for a string body are let through rather than break them: text/plain (a browser's fetch and
# sendBeacon, JupyterLab's ServerConnection) and form-urlencoded (curl -d, tornado's client).
JSON_CONTENT_TYPES = ("", "application/json", "text/plain", "application/x-www-form-urlencoded")
# A larger body that orjson cannot vouch for is read strictly on a worker thread: reading a
# hostile megabyte that way can take a second.
INLINE_PARSE_BYTES = 16 << 10
# A refused post's body is still read (and dropped), up to this many bytes, before the refusal
# is answered: a proxy in front (configurable-http-proxy) relays an answer that comes once it
# sent the request, but turns one that cuts the request short into a 503 of its own (which a
# forwarder retries as it is, for ever). A body announced or found larger: answered at once.
DRAIN_BYTES = 16 << 20


class PostEvents(web.RequestHandler):
    """POST api/telemetry/events: one event, or a batch `{"events": [...]}`.

    The body is streamed, so that a flood (429) or a body over the limit (413) is refused
    without keeping it, whether it has a Content-Length or is chunked (the refusal is answered
    once the body is in, see DRAIN_BYTES). A subclass decorates its `post` with its
    authentication and calls `record_post`.
    """

    retry_after: int = RETRY_AFTER_SECONDS
    options_class = "TelemetryExtension"  # the configurable named in error messages
    accepts_gzip = False  # True: a `Content-Encoding: gzip` body is inflated, within the limit
    _chunks: list[bytes]
    _principal: str = ""
    _size: int = 0
    _refused: bool = False
    _refusal: web.HTTPError | None = None  # answered by `record_post`, once the body is in
    _inflater: Inflater | None = None

    # What each app says about the request

    def poster(self) -> tuple[str, str]:
        """Return the user name to record and the principal of limits and event ids."""
        raise NotImplementedError

    def open_to(self) -> Callable[[EventSchema], bool] | None:
        """Return which schemas this poster may post (None: those marked `frontend: true`)."""
        return None

    # The request

    @property
    def eventlog(self) -> EventLog:
        """Return the EventLog the app published in the settings."""
        return cast(EventLog, self.settings[EVENTLOG_SETTING])

    @property
    def limits(self) -> Limits:
        """Return the size limits of a post."""
        return cast(Limits, self.settings[LIMITS_SETTING])

    @property
    def policy(self) -> Policy:
        """Return the rate limit, duplicate window, clock window and recorded-user rules."""
        return cast(Policy, self.settings[POLICY_SETTING])

    def check_post(self) -> None:
        """Note the receive time; refuse a flood or an announced oversized body at once."""
        self._chunks = []
        self._received_at = datetime.now(timezone.utc)
        # Without a user `post` answers 401/403: nothing about the body is checked or reported.
        if self.request.method == "POST" and self.current_user is not None:
            self._principal = self.poster()[1]
            try:
                self._limit_rate()
                self._check_content_type()
                self._check_encoding()
                self._check_length()
            except web.HTTPError as e:
                length = self._announced_length()
                waits = self.request.headers.get("Expect", "").lower() == "100-continue"
                if waits or (length is not None and length > DRAIN_BYTES):
                    raise  # a client that waits to be told to send, or a body too large to read
                self._refuse_later(e)

    def _limit_rate(self) -> None:
        limiter = self.policy.limiter
        wait = limiter.acquire(self._principal)
        if wait:
            self.retry_after = RateLimiter.retry_after(wait)
            msg = (
                f"too many requests: the limit is {limiter.rate:g} a second per user, in bursts "
                f"of {limiter.burst} ({self.options_class}.rate_limit); retry after "
                f"{self.retry_after} s"
            )
            self.eventlog.record_failure(RATE_LIMITED, msg, size=self._announced_length())
            raise web.HTTPError(429, msg)

    def _check_content_type(self) -> None:
        kind, _, params = self.request.headers.get("Content-Type", "").lower().partition(";")
        kind, charset = kind.strip(), _charset(params)
        if kind not in JSON_CONTENT_TYPES or charset not in ("", "utf-8"):
            msg = (
                "Content-Type must be application/json (or text/plain) in UTF-8, or absent "
                f"(got {kind[:64]!r}{' with charset ' + repr(charset[:32]) if charset else ''})"
            )
            self._refuse(IngestError(msg, 415))

    def _check_encoding(self) -> None:
        if not self.accepts_gzip:
            return
        encoding = self.request.headers.get("Content-Encoding", "").strip().lower()
        if encoding == "gzip":
            self._inflater = Inflater(self.limits.body, f"{self.options_class}.max_body_size")
        elif encoding not in ("", "identity"):
            msg = f"Content-Encoding must be gzip or absent (got {encoding[:32]!r})"
            self._refuse(IngestError(msg, 415))

    def _refuse(self, error: IngestError) -> None:
        report(self.eventlog, error)
        raise web.HTTPError(error.status, str(error))

    def _announced_length(self) -> int | None:
        length = self.request.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else None

    def _check_length(self) -> None:
        length = self._announced_length()
        if length is not None and length > self.limits.body:
            self._refuse(body_too_large(length, self.limits))

    def _refuse_later(self, error: web.HTTPError) -> None:
        """Drop the body from now on; answer `error` once it is in (see DRAIN_BYTES)."""
        self._refused, self._chunks, self._refusal = True, [], error

    def data_received(self, chunk: bytes) -> None:
        """Keep the body's chunks (inflated); refuse the body once they pass the limit."""
        self._size += len(chunk)
        if self._refused:
            if self._refusal is not None and self._size > DRAIN_BYTES:
                refusal, self._refusal = self._refusal, None  # too much to read: answer now
                self.send_error(refusal.status_code, exc_info=(web.HTTPError, refusal, None))
            return
        if self._size > self.limits.body:
            self._fail(body_too_large(self._size, self.limits))
            return
        if self._inflater is not None:
            try:
                chunk = self._inflater.feed(chunk)
            except InflateError as e:
                self._fail(IngestError(str(e), e.status))
                return
        self._chunks.append(chunk)

    def _fail(self, error: IngestError) -> None:
        """Refuse the body while it is still arriving: drop what was read and what comes."""
        if self.current_user is not None:
            report(self.eventlog, error)
        self._refuse_later(web.HTTPError(error.status, str(error)))

    def body(self) -> bytes:
        """Return the whole body, inflated; raise HTTPError when the gzip stream is cut short."""
        if self._inflater is not None:
            try:
                self._inflater.finish()
            except InflateError as e:
                self._refuse(IngestError(str(e), e.status))
        return b"".join(self._chunks)

    async def record_post(self) -> dict[str, Any]:
        """Record the posted event(s); return the reply (the status is set on the handler)."""
        if self._refusal is not None:
            raise self._refusal
        try:
            posted = await self._parse(self.body())
        except IngestError as e:
            report(self.eventlog, e)
            raise web.HTTPError(e.status, str(e)) from None
        self.check_posted(posted)
        reception = self.policy.reception(
            self.poster()[0],
            self._principal,
            self._received_at,
            sent_at=posted.sent_at,
            open_to=self.open_to(),
        )
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
        return reply

    async def post_and_reply(self) -> None:
        """Record the posted event(s) and write the JSON reply."""
        reply = await self.record_post()
        await self.finish(orjson.dumps(reply))

    def check_posted(self, posted: Posted) -> None:
        """Refuse a parsed post before anything of it is recorded (raise HTTPError)."""

    async def _parse(self, body: bytes, inspect: Callable[[Any], None] | None = None) -> Posted:
        """Read the body; one over INLINE_PARSE_BYTES that needs the strict reading on a thread.

        `inspect`: see `strictjson.loads` (a look at the document before any other check).
        """
        if len(body) <= INLINE_PARSE_BYTES:
            return parse_body(body, self.limits, inspect)
        try:  # orjson: about 20 ms for a megabyte, holding the GIL on a thread as well
            return parse_body(body, self.limits, inspect, quick=True)
        except SlowReading:
            return await asyncio.to_thread(parse_body, body, self.limits, inspect)

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


def schema_summary(
    eventlog: EventLog, schema: EventSchema, record_user: str = "none"
) -> dict[str, Any]:
    """Return one schema version in short, as GET api/telemetry/schemas lists it: with its
    `policy`, what is recorded of it (`record_user`: how the user is recorded where kept)."""
    plan = eventlog.plan(schema)
    return {
        "id": schema.id,
        "version": schema.version,
        "title": schema.title,
        "description": schema.description,
        "frontend": schema.frontend,
        "allowed": eventlog.is_allowed(schema.id),
        "sampling": eventlog.sampling_rate(schema.id),
        "policy": policy_model(plan, record_user, eventlog.redaction),
    }


def schemas_model(eventlog: EventLog, record_user: str = "none") -> dict[str, Any]:
    """Return the reply of GET api/telemetry/schemas: every registered schema version."""
    schemas = sorted(eventlog.schemas, key=schema_order)
    return {"schemas": [schema_summary(eventlog, s, record_user) for s in schemas]}


def schema_model(eventlog: EventLog, schema_id: str) -> dict[str, Any]:
    """Return the reply of GET api/telemetry/schemas/<id>; raise HTTPError 404 if unknown."""
    versions = sorted((s for s in eventlog.schemas if s.id == schema_id), key=schema_order)
    if not versions:
        msg = "no schema with this id is registered; GET api/telemetry/schemas lists them"
        raise web.HTTPError(404, msg)  # the id is not echoed: it may be anything
    return {
        "id": schema_id,
        "allowed": eventlog.is_allowed(schema_id),
        "versions": [schema.document for schema in versions],
    }


def _charset(params: str) -> str:
    """Return the `charset` of a Content-Type's parameters, unquoted (`"utf-8"` is utf-8)."""
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip() == "charset":
            value = value.strip()
            return value[1:-1] if len(value) > 1 and value[0] == value[-1] == '"' else value
    return ""
