"""The collector's TokenGate on its own: what it remembers, for how long, how much, and who
waits. The hub's answer is a coroutine that answers as the hub does (a user's model, or None for
a token it does not know); tests/test_hub_tokens.py runs the gate against a real hub."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from tornado import web

from jupyter_telemetry_ext.hub.token_gate import Remembered, TokenGate

ALICE = {"kind": "user", "name": "alice"}


class Hub:
    """Knows the tokens in `tokens`; counts the questions; each answer takes `delay` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.tokens: set[str] = set()
        self.asked = 0
        self.delay = delay

    def lookup(self, token: str) -> Any:
        """Return a coroutine function asking about `token`."""

        async def ask() -> dict[str, Any] | None:
            self.asked += 1
            await asyncio.sleep(self.delay)
            return ALICE if token in self.tokens else None

        return ask


def test_a_token_created_after_it_was_refused_works_after_max_age() -> None:
    async def run() -> None:
        hub, gate, token = Hub(), TokenGate(0.3, 100, 4, 5.0), secrets.token_hex(16)
        assert await gate.ask(token, hub.lookup(token)) is None
        hub.tokens.add(token)  # created on the hub now
        assert await gate.ask(token, hub.lookup(token)) is None  # remembered as refused
        assert hub.asked == 1
        await asyncio.sleep(0.35)
        assert await gate.ask(token, hub.lookup(token)) == ALICE
        assert hub.asked == 2

    asyncio.run(run())


def test_refused_tokens_are_bounded_and_kept_as_keyed_hashes() -> None:
    async def run() -> None:
        hub, gate = Hub(), TokenGate(60.0, 100, 4, 5.0)
        tokens = [secrets.token_hex(16) for _ in range(1000)]
        for token in tokens:
            await gate.ask(token, hub.lookup(token))
        assert len(gate.refused) == 100
        assert gate.digest(tokens[-1]) in gate.refused  # the newest stay
        assert gate.digest(tokens[0]) not in gate.refused
        held = b"".join(gate.refused._until)
        assert not [t for t in tokens if t.encode() in held]
        assert gate.digest(tokens[0]) != TokenGate(60.0, 100, 4, 5.0).digest(tokens[0])

    asyncio.run(run())


def test_remembered_forgets_what_is_out_of_date_as_it_adds() -> None:
    async def run() -> None:
        remembered = Remembered(0.1, 1000)
        for n in range(10):
            remembered.add(bytes([n]))
        await asyncio.sleep(0.15)
        assert bytes([0]) not in remembered
        remembered.add(b"new")
        assert len(remembered) == 1

    asyncio.run(run())


def test_requests_with_one_token_share_one_question() -> None:
    async def run() -> None:
        hub, gate, token = Hub(delay=0.1), TokenGate(60.0, 100, 1, 0.0), secrets.token_hex(16)
        answers = await asyncio.gather(*(gate.ask(token, hub.lookup(token)) for _ in range(50)))
        assert answers == [None] * 50
        assert hub.asked == 1

    asyncio.run(run())


def test_a_flood_waits_on_its_own_and_known_tokens_keep_their_turn() -> None:
    """One question at a time for unknown tokens: a second one waiting past the timeout is
    503; a token the hub accepted before asks in its own lane meanwhile."""

    async def run() -> None:
        hub, gate = Hub(delay=0.3), TokenGate(60.0, 100, 1, 0.05)
        known = secrets.token_hex(16)
        hub.tokens.add(known)
        assert await gate.ask(known, hub.lookup(known)) == ALICE
        slow = asyncio.ensure_future(gate.ask("unknown-1", hub.lookup("unknown-1")))
        await asyncio.sleep(0.01)
        with pytest.raises(web.HTTPError) as busy:
            await gate.ask("unknown-2", hub.lookup("unknown-2"))
        assert busy.value.status_code == 503
        assert gate.busy == 1
        assert await gate.ask(known, hub.lookup(known)) == ALICE  # asked again: not cached here
        assert await slow is None

    asyncio.run(run())
