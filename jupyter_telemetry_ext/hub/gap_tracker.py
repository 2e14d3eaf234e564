"""Following audit streams: each (poster, stream)'s last number, and the numbers it skipped.

A stream's events arrive in order from a server's forwarding spool, but a retry may repeat one
(a number already seen: no gap) and an event answered "busy" comes again after later ones. A
skipped range is therefore held for `grace` seconds, and reported only if it is still missing
then. State is in memory and bounded: the least recently active streams are forgotten first,
each poster's own beyond `per_user` (so one poster cannot push out another's), and a stream
seen again after being forgotten, or after a restart, starts over at the number it arrives with.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

Key = tuple[str, str]  # (poster, stream): a stream id replayed by another poster is theirs
# Skipped ranges held per stream within the grace: beyond it the oldest is reported at once, so
# a poster skipping every other number cannot make the collector hold an unbounded list.
MAX_HELD = 256


@dataclass(frozen=True)
class Gap:
    """Numbers of one stream that did not arrive."""

    user: str
    stream: str
    first: int
    last: int
    schema: str | None  # of the event that arrived after them
    recorded_user: str | None  # the poster as the store records users (record_user)


@dataclass
class _Missing:
    first: int
    last: int
    noticed: float
    schema: str | None


@dataclass
class _Stream:
    last: int
    recorded_user: str | None
    missing: list[_Missing] = field(default_factory=list)
    stopped: bool = False


class GapTracker:
    """Notices skipped numbers in audit streams; `seen` and `due` return the gaps to report."""

    def __init__(
        self,
        grace: float = 60.0,
        max_streams: int = 100_000,
        per_user: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Hold a skipped range `grace` seconds; follow at most `max_streams`, `per_user` each."""
        self.grace, self.max_streams, self.per_user, self.clock = (
            grace, max_streams, per_user, clock
        )  # fmt: skip
        self._streams: OrderedDict[Key, _Stream] = OrderedDict()
        self._by_user: dict[str, OrderedDict[str, None]] = {}
        self._waiting: set[Key] = set()  # streams with missing ranges

    def __len__(self) -> int:
        """Return how many streams are followed."""
        return len(self._streams)

    def seen(
        self,
        user: str,
        stream: str,
        seq: int,
        schema: str | None = None,
        *,
        stop: bool = False,
        recorded_user: str | None = None,
    ) -> list[Gap]:
        """Note event `seq` of `user`'s `stream`; return the gaps due (this stream's, evicted)."""
        key = (user, stream)
        state = self._streams.get(key)
        gaps: list[Gap] = []
        if state is None:
            gaps += self._make_room(user)
            state = self._add(key, seq, recorded_user)
        else:
            self._touch(key)
            self._advance(key, state, seq, schema)
        state.stopped = state.stopped or stop
        gaps += self._due(key, state, self.clock())
        return gaps

    def due(self) -> list[Gap]:
        """Return the gaps held longer than `grace` in every stream."""
        now, gaps = self.clock(), []
        for key in list(self._waiting):
            gaps += self._due(key, self._streams[key], now)
        return gaps

    def flush(self) -> list[Gap]:
        """Return every gap held, due or not (the collector stops)."""
        gaps = []
        for key in list(self._waiting):
            gaps += self._due(key, self._streams[key], float("inf"))
        return gaps

    def _advance(self, key: Key, state: _Stream, seq: int, schema: str | None) -> None:
        if seq > state.last + 1:
            if len(state.missing) >= MAX_HELD:
                state.missing[0].noticed = -math.inf  # due now
            state.missing.append(_Missing(state.last + 1, seq - 1, self.clock(), schema))
            self._waiting.add(key)
        if seq > state.last:
            state.last = seq
        elif state.missing:  # a late arrival fills its place; a repeat changes nothing
            state.missing = _without(state.missing, seq)

    def _due(self, key: Key, state: _Stream, now: float) -> list[Gap]:
        ripe = [m for m in state.missing if now - m.noticed >= self.grace]
        if ripe:
            state.missing = [m for m in state.missing if now - m.noticed < self.grace]
        if not state.missing:
            self._waiting.discard(key)
            if state.stopped:
                self._forget(key)
        user, stream = key
        return [Gap(user, stream, m.first, m.last, m.schema, state.recorded_user) for m in ripe]

    def _add(self, key: Key, seq: int, recorded_user: str | None) -> _Stream:
        state = self._streams[key] = _Stream(seq, recorded_user)
        self._by_user.setdefault(key[0], OrderedDict())[key[1]] = None
        return state

    def _touch(self, key: Key) -> None:
        self._streams.move_to_end(key)
        self._by_user[key[0]].move_to_end(key[1])

    def _make_room(self, user: str) -> list[Gap]:
        """Forget the least recently active streams, the user's own first; report their gaps."""
        gaps: list[Gap] = []
        own = self._by_user.get(user)
        if own is not None and len(own) >= self.per_user:
            gaps += self._evict((user, next(iter(own))))
        while len(self._streams) >= self.max_streams:
            gaps += self._evict(next(iter(self._streams)))
        return gaps

    def _evict(self, key: Key) -> list[Gap]:
        state = self._streams[key]
        gaps = self._due(key, state, float("inf")) if state.missing else []
        if key in self._streams:
            self._forget(key)
        return gaps

    def _forget(self, key: Key) -> None:
        del self._streams[key]
        self._waiting.discard(key)
        own = self._by_user[key[0]]
        del own[key[1]]
        if not own:
            del self._by_user[key[0]]


def _without(missing: list[_Missing], seq: int) -> list[_Missing]:
    """Return the missing ranges with `seq` taken out (a range may split in two)."""
    kept: list[_Missing] = []
    for m in missing:
        if not m.first <= seq <= m.last:
            kept.append(m)
            continue
        if m.first < seq:
            kept.append(_Missing(m.first, seq - 1, m.noticed, m.schema))
        if seq < m.last:
            kept.append(_Missing(seq + 1, m.last, m.noticed, m.schema))
    return kept
