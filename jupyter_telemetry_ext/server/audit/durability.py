"""Audit events made durable before what they describe may happen (`audit_required`).

`await Durability.record(...)` returns once the event is durable, or raises
AuditUnavailableError saying why. Durable means: every EventLog handler wrote it, a file
handler also synced it to disk (fsync), a handler that buffers (PostgreSQL) flushed it
(committed), and when forwarding, the forwarder's spool holds it (fsynced); with at least one
of those durable places among them. A plain stream or OpenTelemetry handler must write the event
too, but does not count as durable.

Durability is group-committed: the events recorded in one turn of the event loop share one
ticket, so the writer threads write and sync them once; the loop never waits for a disk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import jsonschema

from jupyter_telemetry_ext.core.errors import (
    AuditUnavailableError,
    ForwardingRefusedError,
    QueueFullError,
    SpoolFullError,
)
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.tickets import Ticket

from .recorder import AuditRecorder

# Seconds an event may take to become durable; past it, what waits for it is refused.
WAIT_SECONDS = 30.0
ENAME = "AuditUnavailable"  # the error name a refused client sees


class Spool(Protocol):
    """Where forwarded events wait: `spooled` says whether all taken so far are on disk."""

    async def spooled(self, timeout: float) -> bool:
        """Wait until every event taken so far is in the spool; return False if not."""


@dataclass
class _Batch:
    """The events of one loop turn: one ticket, and who waits for it."""

    ticket: Ticket
    waiting: list[asyncio.Future[None]] = field(default_factory=list)


class Durability:
    """Records audit events and tells, per loop turn, whether they are durable."""

    def __init__(
        self,
        recorder: AuditRecorder,
        spool: Spool | None = None,
        timeout: float = WAIT_SECONDS,
    ) -> None:
        """Record through `recorder`; `spool`: the forwarder, when forwarding."""
        self.recorder, self.spool, self.timeout = recorder, spool, timeout
        self._batch: _Batch | None = None
        self._settling: set[asyncio.Task[None]] = set()

    @property
    def eventlog(self) -> EventLog:
        """Return the EventLog the events are recorded through."""
        return self.recorder.eventlog

    def durable_sinks(self) -> list[str]:
        """Return the places that keep an audit event durably (empty: none, so no event is)."""
        places = [type(h).__name__ for h in self.eventlog.handlers if is_durable(h)]
        return places + (["the forwarding spool"] if self.spool is not None else [])

    async def record(
        self,
        schema_id: str,
        version: int,
        event: Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Number and record an audit event; return once durable, else raise
        AuditUnavailableError."""
        await self.submit(schema_id, version, event, context)

    def submit(
        self,
        schema_id: str,
        version: int,
        event: Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
    ) -> asyncio.Future[None]:
        """Record an audit event now (on the event loop); return a future done once it is
        durable, or failed with AuditUnavailableError."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        batch = self._batch if self._batch is not None else self._open(loop)
        try:
            with self.eventlog.tracking(batch.ticket, seal=False):
                capsule = self.recorder.record(schema_id, version, event, context, strict=True)
        except Exception as e:  # recorded as a failure (and a gap) by the recorder
            future.set_exception(AuditUnavailableError(refused_because(e)))
            return future
        if capsule is None and self.spool is None:
            msg = "the EventLog's allow-list or sampling does not keep the audit event"
            future.set_exception(AuditUnavailableError(msg))
            return future
        batch.waiting.append(future)
        return future

    def _open(self, loop: asyncio.AbstractEventLoop) -> _Batch:
        """Start the batch of this loop turn; it is committed once the turn's callbacks ran."""
        batch = self._batch = _Batch(Ticket(sync=True))
        loop.call_soon(self._commit, batch)
        return batch

    def _commit(self, batch: _Batch) -> None:
        """Let the writers write and sync the batch; settle who waits for it off the loop."""
        self._batch = None
        self.eventlog.seal(batch.ticket)
        task = asyncio.ensure_future(self._settle(batch))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, batch: _Batch) -> None:
        reason = await self._why_not_durable(batch.ticket)
        for future in batch.waiting:
            if future.done():
                continue
            if reason is None:
                future.set_result(None)
            else:
                future.set_exception(AuditUnavailableError(reason))

    async def _why_not_durable(self, ticket: Ticket) -> str | None:
        """Return why the ticket's events are not durable (None: they are)."""
        if not self.durable_sinks():
            return "no sink keeps audit events on disk (a file, PostgreSQL or forwarding)"
        if not await ticket.wait(self.timeout):
            return f"the sinks did not write the audit event within {self.timeout:g} s"
        if not ticket.ok:
            return "a sink failed to write the audit event to disk (see the server's log)"
        if self.spool is not None and not await self.spool.spooled(self.timeout):
            return "the forwarding spool could not write the audit event to disk"
        return None


def is_durable(handler: logging.Handler) -> bool:
    """Return True when a handler can say an event is on disk: a file (synced), or a handler
    whose `flush` returns only once its events are stored (`durable_flush`, e.g. PostgreSQL)."""
    return isinstance(handler, logging.FileHandler) or bool(
        getattr(handler, "durable_flush", False)
    )


def refused_because(error: BaseException) -> str:
    """Return why an audit event was not accepted, in words a user may read (no values)."""
    if isinstance(error, SpoolFullError):
        return "the forwarding spool is full (the collector takes no events)"
    if isinstance(error, ForwardingRefusedError):
        return "forwarding to the collector did not start (see the server's log)"
    if isinstance(error, QueueFullError):
        return "the server's event queue is full"
    if isinstance(error, jsonschema.ValidationError):
        return "the audit event is not valid for its schema (see the server's log)"
    return f"recording the audit event failed ({type(error).__name__})"
