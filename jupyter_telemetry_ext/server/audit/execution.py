"""The execution audit: one event per execute_request sent to a kernel, completed by its reply."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .durability import Durability
from .pending import Pending, Waiting
from .recorder import AuditRecorder
from .requests import ExecuteReply, ExecuteRequest

SCHEMA_ID = "https://events.jupyter.org/jupyter_telemetry_ext/execution"
VERSION = 1
NO_REPLY = "no_reply"
REQUESTED = "requested"  # the event recorded before the kernel gets the request (audit_required)


@dataclass(frozen=True)
class Client:
    """What the audit knows of one kernel websocket connection."""

    kernel_id: str
    kernel_name: str | None
    session_id: str | None
    kind: str  # websocket-v1 or websocket-json
    context: Mapping[str, Any] | None = None  # capsule fields such as `__user__`


class ExecutionAudit:
    """Matches execute requests to their replies and records one event for each request."""

    def __init__(
        self,
        recorder: AuditRecorder,
        pending: Pending | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Record through `recorder`; `clock` times requests (seconds, monotonic)."""
        self.recorder, self.clock = recorder, clock
        self.pending = pending if pending is not None else Pending()
        self.durability: Durability | None = None  # set by `audit_required`
        self.refusals: Counter[str] = Counter()  # requests refused, by reason

    def requested(
        self, durability: Durability, client: Client, channel: str, request: ExecuteRequest
    ) -> asyncio.Future[None]:
        """Record a request before it is sent (status `requested`); return a future done once
        its event is durable, failed with AuditUnavailableError when it cannot be."""
        event = {**request_fields(client, channel, request), "status": REQUESTED}
        return durability.submit(SCHEMA_ID, VERSION, event, client.context)

    def sent(self, client: Client, channel: str, request: ExecuteRequest) -> None:
        """Note a request sent to a kernel; it is recorded when its reply comes (or none)."""
        fields = request_fields(client, channel, request)
        key = f"{channel}\x00{request.key}"  # a kernel replies on the channel it was asked on
        waiting = Waiting(client.kernel_id, key, fields, self.clock(), client.context)
        given_up = self.pending.add(waiting)
        if given_up is not None:
            self._record(given_up, {"status": NO_REPLY})

    def refused(self, reason: str) -> None:
        """Count a request that was not passed on; log the first of each reason (no values)."""
        self.refusals[reason] += 1
        if self.refusals[reason] == 1:
            self.recorder.log.error(
                "Audit: a request was NOT passed to its kernel (audit_required): %s "
                "(logged once per reason, counted)",
                reason,
            )

    def replied(self, kernel_id: str, channel: str, reply: ExecuteReply) -> None:
        """Record the request that `reply` (on `channel`) answers, if this server sent it."""
        waiting = self.pending.take(kernel_id, f"{channel}\x00{reply.key}")
        if waiting is None:
            return
        outcome: dict[str, Any] = {"status": reply.status}
        if reply.status == "error":
            outcome["ename"] = reply.ename
        outcome["execution_count"] = reply.execution_count
        outcome["duration_ms"] = round(max(0.0, self.clock() - waiting.sent) * 1000, 3)
        self._record(waiting, outcome)

    def kernel_gone(self, kernel_id: str) -> None:
        """Record as no_reply the requests of a kernel that was restarted or shut down."""
        for waiting in self.pending.take_kernel(kernel_id, self.clock()):
            self._record(waiting, {"status": NO_REPLY})

    def close(self) -> None:
        """Record as no_reply every request still waiting (the server stops)."""
        for waiting in self.pending.take_all():
            self._record(waiting, {"status": NO_REPLY})

    def _record(self, waiting: Waiting, outcome: dict[str, Any]) -> None:
        event = {**waiting.fields, **outcome}
        self.recorder.record(SCHEMA_ID, VERSION, event, waiting.context)


def request_fields(client: Client, channel: str, request: ExecuteRequest) -> dict[str, Any]:
    """Return the event fields known when a request is sent."""
    code = request.code
    fields: dict[str, Any] = {
        "kernel_id": client.kernel_id,
        "kernel_name": client.kernel_name,
        "session_id": client.session_id,
        "msg_id": request.msg_id,
        "cell_id": request.cell_id,
        "channel": channel,
        "client": client.kind,
        "code": code.text,
        "code_sha256": code.sha256,
        "code_length": code.length,
        "code_truncated": code.truncated or request.expressions_cut,
        "silent": request.silent,
        "store_history": request.store_history,
    }
    if request.user_expressions is not None:
        fields["user_expressions"] = request.user_expressions
    return fields
