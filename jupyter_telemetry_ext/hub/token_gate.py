"""Asking the hub who owns a token, so that unknown tokens cannot flood it nor the collector.

A token the hub refused is remembered for a while (by a keyed hash, never the token itself, and
at most so many: the oldest go first), so sending it again costs no request to the hub. Requests
with the same token share one question to the hub. At most a few questions are asked at once,
and a request whose question cannot start within a few seconds is answered 503 with Retry-After:
a flood of unknown tokens then waits on its own, while the tokens the hub accepted before have
their own turn, and tokens whose answer is cached ask nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from tornado import web

Model = dict[str, Any] | None  # the hub's user (or service) model, None: an unknown token
BUSY = ("the collector is asking the hub about too many tokens at once: retry later "
        "(see TelemetryCollector.hub_lookup_timeout)")  # fmt: skip


class Remembered:
    """Keyed hashes of tokens, each for `max_age` seconds, at most `size` (the oldest go first)."""

    def __init__(self, max_age: float, size: int) -> None:
        """Remember nothing yet."""
        self.max_age, self.size = max_age, size
        self._until: OrderedDict[bytes, float] = OrderedDict()  # oldest first

    def __contains__(self, digest: bytes) -> bool:
        """Return True when `digest` was added less than `max_age` seconds ago."""
        until = self._until.get(digest)
        return until is not None and until > time.monotonic()

    def __len__(self) -> int:
        """Return how many hashes are held (some may be out of date)."""
        return len(self._until)

    def add(self, digest: bytes) -> None:
        """Remember `digest` from now; forget what is out of date, and the oldest beyond size."""
        now = time.monotonic()
        self._until.pop(digest, None)
        self._until[digest] = now + self.max_age
        while self._until and (len(self._until) > self.size or next(iter(self._until.values()))
                               <= now):  # fmt: skip
            self._until.popitem(last=False)


class TokenGate:
    """Who owns a token: refused tokens remembered, one question per token, few at once."""

    def __init__(self, max_age: float, size: int, concurrency: int, timeout: float) -> None:
        """Remember refused tokens `max_age` seconds (at most `size`); ask the hub at most
        `concurrency` questions at once, each waiting at most `timeout` seconds to start."""
        self._key = os.urandom(32)  # the hashes mean nothing outside this process
        self.refused = Remembered(max_age, size)
        self.accepted = Remembered(24 * 3600.0, size)  # tokens of users: a turn of their own
        self.timeout = timeout
        self._lanes = {True: asyncio.Semaphore(concurrency), False: asyncio.Semaphore(concurrency)}
        self._asking: dict[bytes, asyncio.Task[Model]] = {}
        self.lookups = 0  # questions asked of the hub
        self.busy = 0  # requests answered 503: no question could start in time

    def digest(self, token: str) -> bytes:
        """Return the keyed hash of a token."""
        data = token.encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, key=self._key, digest_size=32).digest()

    async def ask(self, token: str, lookup: Callable[[], Awaitable[Model]]) -> Model:
        """Return the hub's answer about `token`, from `lookup()` unless it was refused lately
        or the same question is already asked; raise HTTPError 503 when it cannot start in time.
        """
        digest = self.digest(token)
        if digest in self.refused:
            return None
        task = self._asking.get(digest)
        if task is None:
            task = asyncio.ensure_future(self._lookup(digest, lookup))
            self._asking[digest] = task
            task.add_done_callback(lambda _: self._asking.pop(digest, None))
        return await asyncio.shield(task)  # a request gone does not stop the others' question

    async def _lookup(self, digest: bytes, lookup: Callable[[], Awaitable[Model]]) -> Model:
        """Ask the hub in the token's lane; remember the answer."""
        lane = self._lanes[digest in self.accepted]
        if lane.locked():  # else acquired at once, whatever the timeout (even 0)
            try:
                await asyncio.wait_for(lane.acquire(), self.timeout)
            except asyncio.TimeoutError:
                self.busy += 1
                raise web.HTTPError(503, BUSY) from None
        else:
            await lane.acquire()
        try:
            self.lookups += 1
            model = await lookup()
        finally:
            lane.release()
        (self.refused if model is None else self.accepted).add(digest)
        return model
