"""Kernel messages held until the audit events before them are durable (`audit_required`).

Each channel keeps its order: a message sent after a held request waits behind it, even one
that needs no audit of its own; the other channels of the connection go on. Holding is a
future's callback: the event loop never waits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from jupyter_telemetry_ext.core.errors import AuditUnavailableError

OnError = Callable[[str, BaseException], None]


@dataclass
class Held:
    """One message on its way to the kernel, and what to do once its audit event is settled."""

    send: Callable[[], object]  # passes the message on to the kernel
    durable: asyncio.Future[None] | None = None  # its audit event (None: nothing to wait for)
    refuse: Callable[[AuditUnavailableError], None] | None = None  # answers a refused request


class Outbox:
    """The held messages of one connection, a queue per channel."""

    def __init__(self, on_error: OnError) -> None:
        """Report a failure to pass a message on (a closed channel, say) to `on_error`."""
        self.on_error = on_error
        self._queues: dict[str, deque[Held]] = {}

    def __len__(self) -> int:
        """Return how many messages are held."""
        return sum(len(queue) for queue in self._queues.values())

    def put(self, channel: str, held: Held) -> None:
        """Pass a message on now, or once every message before it on its channel was."""
        if channel not in self._queues and _settled(held):
            self._release(held)
            return
        self._queues.setdefault(channel, deque()).append(held)
        if held.durable is not None and not held.durable.done():
            held.durable.add_done_callback(lambda _: self._drain(channel))
        else:
            self._drain(channel)

    def _drain(self, channel: str) -> None:
        queue = self._queues.get(channel)
        while queue and _settled(queue[0]):
            self._release(queue.popleft())
        if queue is not None and not queue:
            del self._queues[channel]

    def _release(self, held: Held) -> None:
        """Send a message whose audit event is durable; refuse one whose event is not."""
        error = _refusal(held.durable)
        try:
            if error is None:
                held.send()
            elif held.refuse is not None:
                held.refuse(error)
        except Exception as e:  # one message's failure must not hold up the next ones
            self.on_error("passing a held message on", e)


def _settled(held: Held) -> bool:
    return held.durable is None or held.durable.done()


def _refusal(durable: asyncio.Future[None] | None) -> AuditUnavailableError | None:
    """Return why a settled audit event is not durable (None: it is, or none was needed)."""
    if durable is None:
        return None
    if durable.cancelled():
        return AuditUnavailableError("the audit was stopped")
    error = durable.exception()
    if error is None:
        return None
    if isinstance(error, AuditUnavailableError):
        return error
    return AuditUnavailableError(f"the audit failed ({type(error).__name__})")
