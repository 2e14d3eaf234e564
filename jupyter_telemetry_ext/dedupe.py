"""Idempotent retries: remembering recent client event ids, for a window, in bounded memory."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class RecentIds:
    """The ids each principal had recorded within the last `window` seconds, in bounded memory.

    At most `capacity` ids in all and `per_principal` ids of each principal: a principal over
    its share forgets its own oldest ids, so one principal's flood cannot evict another's.
    Every operation is O(1) (expiry amortized).
    """

    def __init__(
        self,
        window: float,
        capacity: int,
        per_principal: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Remember ids for `window` seconds, at most `capacity` in all, `per_principal` each."""
        self.window, self.capacity, self.clock = window, capacity, clock
        self.per_principal = min(per_principal or capacity, capacity)
        self._added: OrderedDict[tuple[str, str], float] = OrderedDict()  # oldest first
        self._by_principal: dict[str, OrderedDict[str, None]] = {}

    def __len__(self) -> int:
        """Return how many ids are remembered."""
        return len(self._added)

    def count(self, principal: str) -> int:
        """Return how many ids of `principal` are remembered."""
        return len(self._by_principal.get(principal, ()))

    def seen(self, principal: str, client_id: str) -> bool:
        """Return True when `principal` added `client_id` within the window."""
        self._expire()
        return (principal, client_id) in self._added

    def add(self, principal: str, client_id: str) -> None:
        """Remember `client_id` of `principal` from now on."""
        key = (principal, client_id)
        self._added[key] = self.clock()
        self._added.move_to_end(key)
        ids = self._by_principal.get(principal)
        if ids is None:
            ids = self._by_principal[principal] = OrderedDict()
        ids[client_id] = None
        ids.move_to_end(client_id)
        if len(ids) > self.per_principal:
            self._forget(principal, next(iter(ids)))
        if len(self._added) > self.capacity:
            self._forget(*next(iter(self._added)))

    def _forget(self, principal: str, client_id: str) -> None:
        del self._added[(principal, client_id)]
        ids = self._by_principal[principal]
        del ids[client_id]
        if not ids:
            del self._by_principal[principal]

    def _expire(self) -> None:
        horizon = self.clock() - self.window
        while self._added:
            oldest, added = next(iter(self._added.items()))
            if added >= horizon:
                return
            self._forget(*oldest)
