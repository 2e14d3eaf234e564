"""The background writer: one queue and one thread per handler, so a slow one blocks nothing."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Union

from .errors import QueueFullError
from .records import CapsuleRecord, HeldEvent, Queued
from .tickets import Ticket

if TYPE_CHECKING:
    from .delivery import Delivery

_Item = Union[Queued, threading.Event, Ticket, None]  # noqa: UP007 - a runtime alias
_MARKS = (threading.Event, Ticket)  # a flush mark, or a ticket to settle
_EVENT_TYPES = frozenset((HeldEvent, CapsuleRecord, str))  # most queued items: no mark
WRITE_CHUNK = 1000  # records joined into one write, at most
# Seconds a woken writer waits before writing, so that records arriving together share a write
# (and the request thread is interrupted less often). A flush or a stop cuts it short.
LINGER = 0.01


class _Lane:
    """One handler's queue and thread: a handler that blocks holds up no other handler.

    The thread writes whatever queued up since it last looked: for a plain stream handler
    (a file, stderr) that is one write and one flush for all of it.
    """

    def __init__(self, delivery: Delivery, handler: logging.Handler, size: int) -> None:
        self.delivery, self.handler, self.size = delivery, handler, size
        self.items: deque[_Item] = deque()
        self.wake = threading.Event()
        self.hurry = threading.Event()  # set by a flush mark or a stop: no lingering
        self.thread = threading.Thread(target=self._run, name="telemetry-writer", daemon=True)
        self.thread.start()

    def put(self, item: _Item) -> None:
        """Queue an event (or a flush mark, or None to stop) and wake the thread."""
        self.items.append(item)
        if item is None or isinstance(item, (threading.Event, Ticket)):
            self.hurry.set()
        if not self.wake.is_set():
            self.wake.set()

    def put_many(self, records: list[Queued]) -> None:
        """Queue records and wake the thread once."""
        self.items.extend(records)
        if not self.wake.is_set():
            self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.hurry.wait(LINGER)  # let a few more records come: fewer, larger writes
            self.hurry.clear()
            self.wake.clear()  # before draining: a record queued from now on wakes us again
            if not self._drain():
                return

    def _drain(self) -> bool:
        """Write everything queued when the pass began, then settle its tickets together (one
        flush of the handler for them all: a store commits the events of several requests at
        once); return False when told to stop."""
        items = self.items
        events: list[Any] = []  # of Queued items, told apart from marks by their type
        tickets: list[Ticket] = []
        for _ in range(len(items)):  # what came in meanwhile waits for the next pass
            item = items.popleft()
            if type(item) not in _EVENT_TYPES and (item is None or isinstance(item, _MARKS)):
                self._write(events)
                events = []
                if isinstance(item, Ticket):
                    tickets.append(item)
                    continue
                self.delivery.settle(self.handler, tickets)  # a mark or a stop: first these
                tickets = []
                if item is None:
                    return False
                item.set()  # every event queued before the mark is written
                continue
            events.append(item)
            if len(events) >= WRITE_CHUNK:
                self._write(events)
                events = []
        self._write(events)
        self.delivery.settle(self.handler, tickets)
        return True

    def _write(self, events: list[Queued]) -> None:
        if events:
            self.delivery.deliver_many(self.handler, events)


class BackgroundWriter:
    """Delivers records on threads of their own, one per handler, never on the caller's."""

    def __init__(self, delivery: Delivery, size: int) -> None:
        """Deliver through `delivery`, queueing at most `size` records for each handler."""
        self._delivery = delivery
        self._size = size
        self._lanes: dict[logging.Handler, _Lane] = {}
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Return how many records wait to be written (by the slowest handler)."""
        return max((len(lane.items) for lane in list(self._lanes.values())), default=0)

    def submit(self, handlers: list[logging.Handler], record: Queued) -> None:
        """Queue a record for each of `handlers`; raise QueueFullError if any queue is full."""
        with self._lock:
            lanes = [self._lanes.get(handler) or self._lane(handler) for handler in handlers]
            for lane in lanes:
                if len(lane.items) >= self._size:
                    msg = (
                        f"the event queue is full ({self._size} events waiting for a slow handler)"
                    )
                    raise QueueFullError(msg)
            for lane in lanes:
                lane.put(record)

    def room(self, handlers: list[logging.Handler]) -> int:
        """Return how many more records the fullest queue of `handlers` takes now."""
        with self._lock:
            lanes = [self._lanes.get(handler) for handler in handlers]
            return min((self._size - len(lane.items) if lane else self._size for lane in lanes),
                       default=self._size)  # fmt: skip

    def submit_many(self, handlers: list[logging.Handler], records: list[Queued]) -> None:
        """Queue records for each of `handlers`; their room was taken earlier (HeldRecords)."""
        with self._lock:
            lanes = [self._lane(handler) for handler in handlers]
            for lane in lanes:
                lane.put_many(records)

    def _lane(self, handler: logging.Handler) -> _Lane:
        lane = self._lanes.get(handler)
        if lane is None:
            lane = self._lanes[handler] = _Lane(self._delivery, handler, self._size)
        return lane

    def settle(self, ticket: Ticket, handlers: list[logging.Handler]) -> None:
        """Have each of `handlers` tell `ticket` once it got past every record queued so far."""
        with self._lock:
            lanes = [self._lane(handler) for handler in handlers]
        ticket.seal(len(lanes))
        for lane in lanes:
            lane.put(ticket)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record queued so far is written; return False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        marks = []
        for lane in list(self._lanes.values()):
            if not lane.thread.is_alive():
                if lane.items:
                    return False
                continue
            done = threading.Event()
            lane.put(done)
            marks.append(done)
        return all(done.wait(_left(deadline)) for done in marks)

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued, then stop the threads."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for lane in list(self._lanes.values()):
            if lane.thread.is_alive():
                lane.put(None)
                lane.thread.join(_left(deadline))


def _left(deadline: float | None) -> float | None:
    """Return the seconds left until `deadline` (None: no deadline)."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())
