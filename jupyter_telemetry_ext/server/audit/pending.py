"""The execute requests sent to kernels whose reply has not come yet."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# Requests waiting for a reply, over all kernels; past it the oldest is given up (no_reply), so
# a client flooding a stuck kernel cannot grow the server's memory without bound.
MAX_PENDING = 10_000


@dataclass
class Waiting:
    """One request on its way: its event's fields so far, when it was sent (monotonic) and the
    capsule fields of its client (such as `__user__`)."""

    kernel_id: str
    key: str
    fields: dict[str, Any]
    sent: float
    context: Mapping[str, Any] | None = None


class Pending:
    """Requests by kernel and msg_id, oldest first: a kernel replies in the order it was asked."""

    def __init__(self, limit: int = MAX_PENDING) -> None:
        """Keep at most `limit` requests."""
        self.limit = limit
        self._by_key: dict[tuple[str, str], deque[Waiting]] = {}
        self._count = 0

    def __len__(self) -> int:
        """Return how many requests wait."""
        return self._count

    def add(self, waiting: Waiting) -> Waiting | None:
        """Add a request; return the oldest one given up to stay within the limit, if any."""
        queue = self._by_key.setdefault((waiting.kernel_id, waiting.key), deque())
        queue.append(waiting)
        self._count += 1
        return self._pop_oldest() if self._count > self.limit else None

    def take(self, kernel_id: str, key: str) -> Waiting | None:
        """Remove and return the oldest request of `kernel_id` with this msg_id, if one waits."""
        queue = self._by_key.get((kernel_id, key))
        if not queue:
            return None
        waiting = queue.popleft()
        if not queue:
            del self._by_key[(kernel_id, key)]
        self._count -= 1
        return waiting

    def take_kernel(self, kernel_id: str, before: float) -> list[Waiting]:
        """Remove and return the requests of `kernel_id` sent before `before`."""
        taken = []
        for key in [key for key in self._by_key if key[0] == kernel_id]:
            queue = self._by_key[key]
            while queue and queue[0].sent < before:
                taken.append(queue.popleft())
            if not queue:
                del self._by_key[key]
        self._count -= len(taken)
        return sorted(taken, key=lambda waiting: waiting.sent)

    def take_all(self) -> list[Waiting]:
        """Remove and return every request, oldest first."""
        taken = sorted(self._all(), key=lambda waiting: waiting.sent)
        self._by_key.clear()
        self._count = 0
        return taken

    def _all(self) -> Iterator[Waiting]:
        for queue in self._by_key.values():
            yield from queue

    def _pop_oldest(self) -> Waiting:
        waiting = min((q[0] for q in self._by_key.values()), key=lambda w: w.sent)
        key = (waiting.kernel_id, waiting.key)
        queue = self._by_key[key]
        queue.popleft()
        if not queue:
            del self._by_key[key]
        self._count -= 1
        return waiting
