"""Per-user rate limiting: a token bucket for each user, in bounded memory."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    """Allows each key `rate` requests a second on average, in bursts of at most `burst`."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Refill `rate` tokens a second up to `burst`; remember at most `max_keys` keys."""
        self.rate, self.burst, self.max_keys, self.clock = rate, burst, max_keys, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, key: str) -> float:
        """Take a token for `key`; return 0 when allowed, else the seconds until one is free."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._buckets[key] = (tokens - 1 if wait == 0 else tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)  # the longest idle: its bucket is full again
        return wait

    @staticmethod
    def retry_after(wait: float) -> int:
        """Return whole seconds for a `Retry-After` header (at least 1)."""
        return max(1, math.ceil(wait))
