"""A subscriber's bounded buffer of recorded capsules, filled by an EventLog listener.

The listener only appends to the buffer, from whatever thread records the event, and wakes
the consumer once; serializing and sending happen on the consumer's side. When the buffer is
full the oldest capsule is dropped and counted, so a slow or dead subscriber never slows
recording down nor holds more than `size` capsules.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

DROPPED_KEY = "__dropped__"


class Subscription:
    """An EventLog listener that keeps the latest `size` capsules of the wanted schemas."""

    def __init__(self, schema_ids: Iterable[str], size: int, wake: Callable[[], None]) -> None:
        """Keep capsules of `schema_ids` (empty: all); call `wake()` when the buffer gets work."""
        self.schema_ids = frozenset(schema_ids)
        self.size = size
        self.dropped = 0
        self._wake = wake
        self._buffer: deque[dict[str, Any]] = deque()
        self._unreported = 0
        self._waiting = False
        self._lock = threading.Lock()

    def __call__(self, capsule: dict[str, Any]) -> None:
        """Buffer a capsule (the EventLog listener); drop the oldest one when full."""
        if self.schema_ids and capsule.get("__schema__") not in self.schema_ids:
            return
        with self._lock:
            if len(self._buffer) >= self.size:
                self._buffer.popleft()
                self.dropped += 1
                self._unreported += 1
            self._buffer.append(capsule)
            wake, self._waiting = not self._waiting, True
        if wake:
            self._wake()

    def next_frame(self) -> str | None:
        """Return the next frame to send, or None (and wait for `wake`) when nothing is left.

        After drops, the next frame is `{"__dropped__": n}`: n capsules were lost before it.
        """
        with self._lock:
            if self._unreported:
                frame: Any = {DROPPED_KEY: self._unreported}
                self._unreported = 0
            elif self._buffer:
                frame = self._buffer.popleft()
            else:
                self._waiting = False
                return None
        return json.dumps(frame)
