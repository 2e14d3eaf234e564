"""Idempotent retries: remembering recent client event ids, for a window, in bounded memory."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class RecentIds:
    """The ids seen within the last `window` seconds, at most `capacity` of them."""

    def __init__(
        self, window: float, capacity: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Remember ids for `window` seconds, at most `capacity` at once."""
        self.window, self.capacity, self.clock = window, capacity, clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        """Return how many ids are remembered."""
        return len(self._seen)

    def seen(self, key: str) -> bool:
        """Return True when `key` was added within the window."""
        self._expire()
        return key in self._seen

    def add(self, key: str) -> None:
        """Remember `key` from now on."""
        self._seen[key] = self.clock()
        self._seen.move_to_end(key)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def _expire(self) -> None:
        horizon = self.clock() - self.window
        while self._seen:
            oldest, added = next(iter(self._seen.items()))
            if added >= horizon:
                return
            del self._seen[oldest]
