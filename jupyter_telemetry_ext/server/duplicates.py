"""Duplicates: the client event ids recorded recently, so that a retry is not recorded twice."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .idjournal import IdJournal


class Duplicates:
    """The ids each principal had recorded within the last `window` seconds, in bounded memory:
    an event whose id is among them is a duplicate.

    At most `per_principal` ids of each principal: a principal over it forgets its own oldest
    ids, so one principal's flood cannot evict another's. At most `capacity` ids in all: over
    it, the principal that has held ids the longest forgets its oldest. An id past the window
    is not seen, and its memory is reused by these bounds. Every operation is O(1).

    With a `journal`, ids are also kept on disk (by wall-clock time) and read back at start, so
    that a resend after a restart of the process is still seen; principals are then held under
    the journal's pseudonyms, in memory as on disk.
    """

    def __init__(
        self,
        window: float,
        capacity: int,
        per_principal: int | None = None,
        *,
        clock: Callable[[], float] | None = None,
        journal: IdJournal | None = None,
    ) -> None:
        """Remember ids for `window` seconds, at most `capacity` in all, `per_principal` each;
        with a `journal`, also those it kept from before (the clock is then the wall clock)."""
        self.window, self.capacity = window, capacity
        self.clock = clock or (time.time if journal is not None else time.monotonic)
        self.per_principal = min(per_principal or capacity, capacity)
        self._ids: dict[str, OrderedDict[str, float]] = {}  # oldest principal and id first
        self._count = 0
        self.journal = journal
        self._held: list[tuple[float, str, str]] | None = None  # ids of a `journaling` block
        self._name: Callable[[str], str] = str
        if journal is not None:
            self._name = journal.pseudonym
            for when, principal, client_id in journal.load(self.clock()):
                self._add(principal, client_id, when)

    def __len__(self) -> int:
        """Return how many ids are held (those past the window included, until reused)."""
        return self._count

    def count(self, principal: str) -> int:
        """Return how many ids of `principal` are held."""
        return len(self._ids.get(self._name(principal), ()))

    def seen(self, principal: str, client_id: str) -> bool:
        """Return True when `principal` added `client_id` within the window."""
        ids = self._ids.get(self._name(principal))
        added = ids.get(client_id) if ids is not None else None
        return added is not None and self.clock() - added <= self.window

    def add(self, principal: str, client_id: str, *, durable: bool = True) -> None:
        """Remember `client_id` of `principal` from now on (`durable`: in the journal too, at
        the end of the `journaling` block if in one; else `journal_written` keeps it once its
        event is written)."""
        now, principal = self.clock(), self._name(principal)
        self._add(principal, client_id, now)
        if durable and self.journal is not None:
            if self._held is not None:
                self._held.append((now, principal, client_id))
            else:
                self.journal.append(now, principal, client_id)

    @contextmanager
    def journaling(self) -> Iterator[None]:
        """Journal the ids added in the block in one write as it ends (inside an EventLog
        `batch` block, as `record_batch` has it, before the batch's events reach the handlers).
        """
        if self.journal is None or self._held is not None:  # nested: the outer block writes
            yield
            return
        held: list[tuple[float, str, str]] = []
        self._held = held
        try:
            yield
        finally:
            self._held = None
            self.journal.append_many(held)

    def journal_written(self, keys: list[tuple[str, str]]) -> None:
        """Keep in the journal the (principal, id) of events every handler wrote."""
        if self.journal is not None:
            now = self.clock()
            name = self._name
            self.journal.append_many(
                [(now, name(principal), client_id) for principal, client_id in keys]
            )

    def _add(self, principal: str, client_id: str, when: float) -> None:
        ids = self._ids.get(principal)
        if ids is None:
            ids = self._ids[principal] = OrderedDict()
        elif client_id in ids:  # added again after its window: now the newest
            del ids[client_id]
            self._count -= 1
        ids[client_id] = when
        self._count += 1
        if len(ids) > self.per_principal:
            self._forget_oldest(principal)
        if self._count > self.capacity:
            self._forget_oldest(next(iter(self._ids)))

    def _forget_oldest(self, principal: str) -> None:
        ids = self._ids[principal]
        ids.popitem(last=False)
        self._count -= 1
        if not ids:
            del self._ids[principal]
