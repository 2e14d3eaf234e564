"""Forwarding: every accepted event, before the local allow-list, spooled and sent to a collector.

The Forwarder is an EventLog tap: it sees each valid event before the allow-list and redaction
(the collector applies the hub's policy) and turns it into the REST API's event
`{"schema_id", "version", "data", "timestamp", "id"}`, with the client's id or a new one, kept
with it so that a retry is deduplicated by the collector. Two threads do the rest, so nothing
waits on the event loop: the spooler appends the events taken meanwhile to the spool in one
write; the sender posts the oldest spooled events to the collector and removes them once the
collector answered for each of them. Failures are counted and logged once per episode.

The sender outlives whatever the collector answers: each exception while sending or reading a
reply is counted by kind, logged once per kind and outage, and retried with backoff; should
the thread end anyway, the next event taken starts it again (counted as a restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from jupyter_telemetry_ext.core.errors import ReplyError, SpoolFullError
from jupyter_telemetry_ext.core.outcomes import REJECTED
from jupyter_telemetry_ext.core.printable import printable
from jupyter_telemetry_ext.core.redact_url import safe_url
from jupyter_telemetry_ext.core.schema import EventSchema
from jupyter_telemetry_ext.core.timestamps import format_timestamp
from jupyter_telemetry_ext.server.rules import CollectorRules

from .spool import ForwardSpool, SpoolIdentity, Taken
from .uplink import DONE_STATUSES, Announced, Reply, Uplink, batch_body

COLLECTOR_URL_ENV = "JUPYTER_TELEMETRY_COLLECTOR_URL"
SPOOL_FOLDER = "jupyter_telemetry_ext_forward"  # in the Jupyter data dir, by default
# Room in a body for `{"events":[...],"sent_at":...}` around the events.
BODY_OVERHEAD = 128
FIRST_BACKOFF = 0.5
# How often the collector's schema listing is read again (seconds): once known, and until then.
ANNOUNCED_REFRESH = 300.0
ANNOUNCED_RETRY = 30.0
FORWARD_OUTCOMES = ("queued", "sent", "retried", "rejected", "dropped", "refused")
# What a collector that is down, unreachable or answering nonsense raises: an outage, not a bug.
UNAVAILABLE_ERRORS = (OSError, http.client.HTTPException, ReplyError)


@dataclass(frozen=True)
class ForwardSettings:
    """Where and how to forward: the collector, the token, the spool and its limits."""

    collector_url: str
    token: str
    folder: Path
    max_bytes: int
    when_full: str = "refuse"
    fsync: bool = False
    batch_events: int = 500
    batch_bytes: int = 1 << 20
    timeout: float = 30.0
    retry_max: float = 60.0
    identity: SpoolIdentity | None = None  # whose events: the process's hub user and server


class Forwarder:
    """Spools each accepted event and sends the spool to the collector in the background."""

    def __init__(self, settings: ForwardSettings, log: logging.Logger) -> None:
        """Open the spool (adopting what a stopped server of the same user left) and start
        the threads; raise SpoolFolderError when the spool folder cannot be trusted."""
        self.settings, self.log = settings, log
        self.spool = ForwardSpool(settings.folder, _segment_bytes(settings.max_bytes),
                                  fsync=settings.fsync, identity=settings.identity)  # fmt: skip
        self.uplink = Uplink(settings.collector_url, settings.token, settings.timeout)
        self.counts: Counter[str] = Counter()
        self._cond = threading.Condition()
        self._queue: list[bytes] = []  # taken, not yet in the spool
        self._queued_bytes = 0  # in memory, being written included
        self._accepted = self._spooled = 0  # events taken / events in the spool, since start
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[bool]]] = []
        self._closing = self._closed = False
        self._stopping = threading.Event()
        self._wake_sender = threading.Event()
        self._batch_events = min(settings.batch_events, 500)
        self._episodes: set[str] = set()  # what was logged and not yet over
        self._backoff = FIRST_BACKOFF
        self._outage_since: float | None = None
        self.where = safe_url(settings.collector_url)  # what logs show: no credentials
        if _unused_parts(settings.collector_url):
            log.warning("Telemetry forwarding: TelemetryExtension.collector_url carries a "
                        "user:password or a query; neither is sent to the collector (the token "
                        "is) nor logged")  # fmt: skip
        self.errors: Counter[str] = Counter()  # exceptions while sending, per kind
        self.sender_restarts = 0
        self._logged_kinds: set[str] = set()  # error kinds logged in the current outage
        self._restart_lock = threading.Lock()
        self.announced: Announced | None = None  # what the collector records, once read
        self._announced_due = 0.0
        self._log_adopted()
        self._spooler = threading.Thread(target=self._spool_loop, name="telemetry-spooler",
                                         daemon=True)  # fmt: skip
        self._sender = self._sender_thread()
        self._spooler.start()
        self._sender.start()

    def _log_adopted(self) -> None:
        spool = self.spool
        if spool.adopted:
            self.log.info("Telemetry forwarding: %d events left by a stopped server will be sent",
                          spool.adopted)  # fmt: skip
        if spool.left_alone:
            reasons = ", ".join(f"{n} {why}" for why, n in sorted(spool.left_alone.items()))
            self.log.warning("Telemetry forwarding: segments in the spool %s that this server "
                             "did not write for its user (%s) are left alone, not sent: %s",
                             spool.folder, spool.identity.key, reasons)  # fmt: skip

    # Taking events (any thread, usually the event loop's)

    def tap(
        self,
        schema: EventSchema,
        event: Mapping[str, Any],
        timestamp: datetime | None,
        context: Mapping[str, Any] | None,
    ) -> None:
        """Queue one accepted event for the spool; raise SpoolFullError when refusing it."""
        self.check_sender()
        line = forwarded_line(schema, event, timestamp, context)
        with self._cond:
            if self._closed:
                self._append_now(line)
                return
            self._check_room(len(line) + 1)
            self._queue.append(line)
            self._queued_bytes += len(line) + 1
            self._accepted += 1
            self.counts["queued"] += 1
            if len(self._queue) == 1:  # the spooler waits only on an empty queue
                self._cond.notify()

    def _check_room(self, size: int) -> None:
        """Refuse an event that does not fit (when the spool refuses rather than drops)."""
        settings = self.settings
        if settings.when_full != "refuse":
            return
        if self.spool.size + self._queued_bytes + size <= settings.max_bytes:
            self._over("full")
            return
        self.counts["refused"] += 1
        self._once("full", logging.WARNING, "the spool is full (%d bytes, "
                   "TelemetryExtension.forward_spool_bytes): new events are refused with 503 "
                   "until the collector takes some", settings.max_bytes)  # fmt: skip
        msg = "the forwarding spool is full; retry later"
        raise SpoolFullError(msg)

    def _append_now(self, line: bytes) -> None:
        """Append to the spool at once: after close, no spooler runs (events of the shutdown)."""
        self.spool.append([line])
        self.counts["queued"] += 1

    async def spooled(self, timeout: float) -> bool:
        """Wait until every event taken so far is in the spool; return False on timeout or a
        failed write."""
        loop = asyncio.get_running_loop()
        with self._cond:
            mark = self._accepted
            if self._spooled >= mark:
                return True
            future: asyncio.Future[bool] = loop.create_future()
            self._waiters.append((mark, loop, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return False

    @property
    def queued(self) -> int:
        """Return how many taken events wait for the spool."""
        return len(self._queue)

    # The spooler thread

    def _spool_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                block, self._queue = self._queue, []
                mark = self._accepted
            self._write(block, mark)

    def _write(self, block: list[bytes], mark: int) -> None:
        """Append a block to the spool (making room first when it drops the oldest)."""
        size = sum(len(line) + 1 for line in block)
        while True:
            try:
                self._make_room(size)
                self.spool.append(block)
                break
            except OSError as e:
                self._once("disk", logging.ERROR, "events cannot be written to the spool "
                           "%s (%s); retrying", self.settings.folder, type(e).__name__)  # fmt: skip
                self._wake_waiters(mark, ok=False)
                if self._stopping.wait(1.0):
                    return
        self._over("disk")
        with self._cond:
            self._queued_bytes -= size
            self._spooled = mark
        self._wake_waiters(mark, ok=True)
        self._wake_sender.set()

    def _make_room(self, size: int) -> None:
        """Drop the oldest segments until `size` more bytes fit (`forward_when_full`)."""
        limit = self.settings.max_bytes
        if self.settings.when_full != "drop_oldest" or self.spool.size + size <= limit:
            return
        while self.spool.size and self.spool.size + size > limit:
            dropped = self.spool.drop_oldest()
            self.counts["dropped"] += dropped
            self._once("dropping", logging.WARNING, "the spool is full (%d bytes, "
                       "TelemetryExtension.forward_spool_bytes): the oldest events are dropped "
                       "(%d so far)", limit, self.counts["dropped"])  # fmt: skip

    def _wake_waiters(self, mark: int, *, ok: bool) -> None:
        with self._cond:
            woken = [w for w in self._waiters if w[0] <= mark or not ok]
            self._waiters = [w for w in self._waiters if not (w[0] <= mark or not ok)]
        for _, loop, future in woken:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future, ok)

    # The sender thread

    def _sender_thread(self) -> threading.Thread:
        return threading.Thread(target=self._run_sender, name="telemetry-sender", daemon=True)

    def _run_sender(self) -> None:
        """Send until stopped; what ends the loop anyway is counted and the loop starts again."""
        while not self._stopping.is_set():
            try:
                self._send_loop()
            except BaseException as e:  # forwarding must outlive any exception
                self._restarted(e)
                self._stopping.wait(self._next_backoff())

    def _send_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                delay = self._send_next()
            except Exception as e:  # a reply no one foresaw, or a bug: retried
                delay = self._failed(e)
            if delay:
                self._stopping.wait(delay)

    def _send_next(self) -> float:
        """Send the oldest spooled batch (reading the collector's listing when due); return how
        long to wait before the next."""
        if time.monotonic() >= self._announced_due:
            self._read_announced()
        budget = self.settings.batch_bytes - BODY_OVERHEAD
        taken = self.spool.take(self._batch_events, budget)
        if taken is None:
            self._wake_sender.wait(1.0)
            self._wake_sender.clear()
            return 0.0
        return self._send(taken)

    def check_sender(self) -> None:
        """Start the sender again if its thread ended (it should not); count the restart."""
        if self._sender.is_alive() or self._stopping.is_set():
            return
        with self._restart_lock:
            if self._sender.is_alive() or self._stopping.is_set():
                return
            self._restarted(None)
            self._sender = self._sender_thread()
            self._sender.start()

    def _restarted(self, error: BaseException | None) -> None:
        self.sender_restarts += 1
        kind = type(error).__name__ if error is not None else "ended"
        self._once(f"restart {kind}", logging.ERROR, "the sender stopped (%s) and is started "
                   "again (jupyter_telemetry_forward_sender_restarts_total)", kind)  # fmt: skip

    def _read_announced(self) -> None:
        """Read which schemas the collector records (what the server announces to frontends)."""
        self._announced_due = time.monotonic() + ANNOUNCED_RETRY  # also when reading fails
        try:
            announced = self.uplink.announced()
        except UNAVAILABLE_ERRORS as e:  # the batch sent next reports the outage
            self.errors[type(e).__name__] += 1
            announced = None
        if announced is not None:
            self.announced = announced
            self._announced_due = time.monotonic() + ANNOUNCED_REFRESH

    def recorded(self, schema_id: str) -> tuple[bool, float]:
        """Return whether the collector records a schema and its sampling rate; until its
        listing was read, every schema is taken as recorded, in full."""
        announced = self.announced
        if announced is None:
            return True, 1.0
        return announced.get(schema_id, (False, 1.0))

    @property
    def rules(self) -> CollectorRules | None:
        """Return what the collector records of each schema, as its listing last said (None
        until a listing was read whole)."""
        return self.uplink.rules

    def _send(self, taken: Taken) -> float:
        """Post one batch; return how long to wait before the next attempt."""
        try:
            reply = self.uplink.post(batch_body(taken.lines))
        except UNAVAILABLE_ERRORS as e:
            self.errors[type(e).__name__] += 1
            return self._unavailable(taken, _reason(e), None)
        if reply.statuses is not None and len(reply.statuses) == len(taken.lines):
            self._answered(
                taken, reply.statuses, reply.errors or [], busy=reply.retry_after is not None
            )
            return 0.0
        return self._refused(taken, reply)

    def _answered(
        self, taken: Taken, statuses: list[str], errors: list[str | None], *, busy: bool
    ) -> None:
        """Remove the batch from the spool; spool again the events a busy collector refused
        (a reply with `Retry-After`: its rejections may be temporary)."""
        again = [line for line, status in zip(taken.lines, statuses, strict=True)
                 if status not in DONE_STATUSES or (busy and status == REJECTED)]  # fmt: skip
        if again:
            self.spool.append(again)
            self.counts["retried"] += len(again)
        self.spool.done(taken)
        self.counts["sent"] += len(taken.lines) - len(again)
        if not busy:
            self._count_rejected(statuses, errors)
        self._recovered()

    def _count_rejected(self, statuses: list[str], errors: list[str | None]) -> None:
        rejected = [e for s, e in zip(statuses, errors, strict=True) if s == REJECTED]
        if rejected:
            self.counts["rejected"] += len(rejected)
            self._once("rejected", logging.WARNING, "the collector rejected %d events (they "
                       "will never be accepted; counted as rejected), the first: %s",
                       len(rejected), rejected[0])  # fmt: skip

    def _refused(self, taken: Taken, reply: Reply) -> float:
        """Handle a reply without per-event statuses; return the wait before the next attempt."""
        status = reply.status
        if status == 413:
            return self._too_large(taken, reply)
        if status == 429 or status >= 500:
            return self._unavailable(taken, f"HTTP {status}", reply.retry_after)
        what = "refused the server's token" if status in (401, 403) else "refused the request"
        self._once("config", logging.ERROR, "the collector %s (HTTP %d: %s): check "
                   "TelemetryExtension.collector_url and the token's scopes; events wait in the "
                   "spool, retried every %g s", what, status, reply.message,
                   self.settings.retry_max)  # fmt: skip
        self.counts["retried"] += len(taken.lines)
        return max(self.settings.retry_max, reply.retry_after or 0.0)

    def _too_large(self, taken: Taken, reply: Reply) -> float:
        """Halve the batch; a single event too large is rejected (it can never be accepted)."""
        if len(taken.lines) > 1:
            self._batch_events = max(1, len(taken.lines) // 2)
            return 0.0
        self.spool.done(taken)
        self._count_rejected(["rejected"], [reply.message])
        return 0.0

    def _unavailable(self, taken: Taken, reason: str, retry_after: float | None) -> float:
        """Note a failed attempt (logged once per outage and kind of failure); return the wait
        before the next."""
        self._outage(logging.WARNING, reason, "the collector at %s is unavailable (%s); "
                     "events wait in the spool and are retried")  # fmt: skip
        self.counts["retried"] += len(taken.lines)
        if retry_after is not None:
            return retry_after
        return self._next_backoff()

    def _failed(self, error: Exception) -> float:
        """Note an exception no reply should cause (counted, logged with its traceback once per
        kind and outage); return the wait before the next attempt."""
        self.errors[type(error).__name__] += 1
        self._outage(logging.ERROR, _reason(error), "sending to the collector at %s failed "
                     "(%s); events wait in the spool and are retried", error)  # fmt: skip
        return self._next_backoff()

    def _outage(
        self, level: int, reason: str, msg: str, error: BaseException | None = None
    ) -> None:
        """Log the first failure of an outage, and each new kind of failure during it."""
        kind = reason.split(":", 1)[0]
        if self._outage_since is None:
            self._outage_since = time.monotonic()
        elif kind in self._logged_kinds:
            return
        self._logged_kinds.add(kind)
        self.log.log(level, "Telemetry forwarding: %s", msg % (self.where, reason), exc_info=error)

    def _next_backoff(self) -> float:
        """Return the next wait of the exponential backoff (with jitter), up to retry_max."""
        wait, self._backoff = self._backoff, min(self._backoff * 2, self.settings.retry_max)
        return min(wait, self.settings.retry_max) * random.uniform(0.75, 1.0)  # noqa: S311

    def _recovered(self) -> None:
        self._backoff = FIRST_BACKOFF
        self._over("config")
        self._over("rejected")
        if self._outage_since is not None:
            seconds = time.monotonic() - self._outage_since
            self._outage_since = None
            self._logged_kinds.clear()
            self.log.info("Telemetry forwarding: the collector answers again after %.0f s; "
                          "%d events wait in the spool", seconds, self.spool.pending)  # fmt: skip

    # Logging once per episode

    def _once(self, episode: str, level: int, msg: str, *args: Any) -> None:
        if episode not in self._episodes:
            self._episodes.add(episode)
            self.log.log(level, "Telemetry forwarding: %s", msg % args)

    def _over(self, episode: str) -> None:
        self._episodes.discard(episode)

    # Stopping

    def close(self, timeout: float) -> bool:
        """Write every taken event to the spool and stop sending; return False on timeout.

        What the collector did not acknowledge stays in the spool for the next start; events
        taken after this are appended to the spool at once.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._spooler.join(timeout)
        self._stopping.set()
        self._wake_sender.set()
        self._sender.join(max(0.0, min(1.0, deadline - time.monotonic())))
        with self._cond:
            self._closed = True
            left, self._queue = self._queue, []
        if left:  # the spooler did not finish in time: write the rest here
            self.spool.append(left)
        return not self._spooler.is_alive()


def forwarded_line(
    schema: EventSchema,
    event: Mapping[str, Any],
    timestamp: datetime | None,
    context: Mapping[str, Any] | None,
) -> bytes:
    """Return the REST API event for an accepted event, as one line of JSON.

    `timestamp` is the event's own time (the client's, corrected by `sent_at`, else its receive
    time); `id` is the client's, else a new one.
    """
    context = context or {}
    return orjson.dumps({
        "schema_id": schema.id,
        "version": schema.version,
        "data": event,
        "timestamp": context.get("__event_time__") or format_timestamp(timestamp),
        "id": context.get("__client_id__") or uuid.uuid4().hex,
    })  # fmt: skip


def _segment_bytes(max_bytes: int) -> int:
    """Return the size of a spool segment: what dropping the oldest drops at once."""
    return max(4096, min(1 << 20, max_bytes // 16))


def _unused_parts(url: str) -> bool:
    """Return whether a collector URL has parts the forwarder does not send (userinfo, query)."""
    parts = urlsplit(url)
    return bool(parts.username or parts.password or parts.query)


def _reason(error: BaseException) -> str:
    """Return `Kind: message` of an exception, its message cut short and made printable."""
    message = printable(str(error))[:200]
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _resolve(future: asyncio.Future[bool], ok: bool) -> None:
    if not future.done():
        future.set_result(ok)
