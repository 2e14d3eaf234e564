"""Knowing whether one request's events were written by every handler, and what a retry owes.

A Ticket goes with the events of one request (`c.TelemetryExtension.reply_after_write`): each
handler's writer reports the events it failed to write and then that it got past them all; the
request is answered once every writer did. An event with a client id that some handlers did not
write is owed to those handlers (Owed): its retry is written to them only, so the handlers that
did write it do not get it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

Handlers = frozenset[logging.Handler]
OWED_CAPACITY = 100_000


class Owed:
    """Id keys whose event some handlers still owe; None while the first write is under way."""

    def __init__(
        self,
        capacity: int = OWED_CAPACITY,
        written: Callable[[list[str]], None] | None = None,
    ) -> None:
        """Keep at most `capacity` keys (the oldest are forgotten first); tell `written` the
        keys every handler wrote, once settled."""
        self.capacity = capacity
        self.written = written
        self._keys: OrderedDict[str, Handlers | None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        """Return True when the key's event is being written or owed to some handlers."""
        return key in self._keys

    def get(self, key: str) -> Handlers | None:
        """Return the handlers that owe the key's event (None: its write is under way)."""
        return self._keys.get(key)

    def pending(self, key: str) -> None:
        """Note that the key's event is being written."""
        with self._lock:
            self._keys[key] = None
            self._keys.move_to_end(key)
            while len(self._keys) > self.capacity:
                self._keys.popitem(last=False)

    def settle(self, keys: Iterable[str], failed: dict[str, set[logging.Handler]]) -> None:
        """Forget the keys every handler wrote; keep the others with the handlers that failed."""
        done: list[str] = []
        with self._lock:
            for key in keys:
                if failed.get(key):
                    self._keys[key] = frozenset(failed[key])
                else:
                    self._keys.pop(key, None)
                    done.append(key)
        if done and self.written is not None:
            self.written(done)


class Ticket:
    """One request's events on their way to the handlers: `ok` once settled, when none failed.

    A `sync` ticket settles only once each file handler also synced its file to disk (fsync):
    its events then survive a crash of the machine, not only of the process.
    """

    def __init__(self, owed: Owed | None = None, *, sync: bool = False) -> None:
        """Start a ticket; `owed` learns which ids some handlers owe; `sync`: see the class."""
        self.owed = owed
        self.sync = sync
        self.ok = True
        self.only: Handlers | None = None  # set while recording a retry owed to some handlers
        self._keys: list[tuple[object, str]] = []  # (capsule, id key) of the events with ids
        self._lost: list[tuple[logging.Handler, Any]] = []
        self._failed_handlers: set[logging.Handler] = set()
        self._waiting: int | None = None  # writers still to get past the events (None: unsealed)
        self._settled = False
        self._on_settled: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @property
    def settled(self) -> bool:
        """Return True once every writer got past the ticket's events."""
        return self._settled

    def handlers(self, handlers: list[logging.Handler]) -> list[logging.Handler]:
        """Return which of `handlers` the next event goes to."""
        only = self.only
        return handlers if only is None else [h for h in handlers if h in only]

    def keyed(self, capsule: object, key: str) -> None:
        """Note the id key of a recorded event (its capsule is how a writer names it)."""
        self._keys.append((capsule, key))
        if self.owed is not None:
            self.owed.pending(key)

    def lost(self, handler: logging.Handler, record: Any) -> None:
        """Note that `handler` did not write one of the ticket's events."""
        with self._lock:
            self.ok = False
            self._lost.append((handler, record))

    def failed(self, handler: logging.Handler) -> None:
        """Note that `handler` may have lost any of the ticket's events (its flush failed)."""
        with self._lock:
            self.ok = False
            self._failed_handlers.add(handler)

    def seal(self, writers: int) -> None:
        """Expect `writers` writers to report `done`; no more events join the ticket."""
        with self._lock:
            self._waiting = writers
        if writers == 0:
            self._settle()

    def done(self) -> None:
        """Note that one writer got past the ticket's events."""
        with self._lock:
            assert self._waiting, "done() before seal() or after the last writer"  # noqa: S101
            self._waiting -= 1
            last = self._waiting == 0
        if last:
            self._settle()

    def _settle(self) -> None:
        if self.owed is not None:
            self.owed.settle((key for _, key in self._keys), self._failed_keys())
        with self._lock:
            self._settled = True
            callbacks, self._on_settled = self._on_settled, []
        for callback in callbacks:
            callback()

    def _failed_keys(self) -> dict[str, set[logging.Handler]]:
        """Return, for each id key, the handlers that did not write its event."""
        failed: dict[str, set[logging.Handler]] = {}
        by_capsule = {id(capsule): key for capsule, key in self._keys}
        for handler, record in self._lost:
            key = by_capsule.get(id(getattr(record, "msg", None)))
            if key is not None:
                failed.setdefault(key, set()).add(handler)
        for _, key in self._keys:
            failed.setdefault(key, set()).update(self._failed_handlers)
        return failed

    async def wait(self, timeout: float) -> bool:
        """Wait, off the event loop's thread, until settled; return False on timeout."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future)

        with self._lock:
            if self.settled:
                return True
            self._on_settled.append(wake)
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return False
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
