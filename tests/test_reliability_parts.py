"""Rate limiting, duplicate detection, user identity and clock skew, each on its own."""

from __future__ import annotations

import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

from jupyter_telemetry_ext.dedupe import RecentIds
from jupyter_telemetry_ext.identity import hashed_user, load_or_create_secret
from jupyter_telemetry_ext.ratelimit import RateLimiter
from jupyter_telemetry_ext.timestamps import corrected_event_time


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_bursts_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.acquire("ada") for _ in range(3)] == [0, 0, 0]
    wait = limiter.acquire("ada")
    assert 0 < wait <= 0.5
    assert RateLimiter.retry_after(wait) == 1
    assert limiter.acquire("grace") == 0  # other users are unaffected
    clock.now += 0.5
    assert limiter.acquire("ada") == 0
    assert limiter.acquire("ada") > 0


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter(rate=1, burst=1, max_keys=100, clock=Clock())
    for i in range(1000):
        limiter.acquire(f"user{i}")
    assert len(limiter._buckets) == 100


def test_rate_zero_disables_limiting() -> None:
    limiter = RateLimiter(rate=0, burst=1, clock=Clock())
    assert all(limiter.acquire("ada") == 0 for _ in range(100))


def test_recent_ids_window_and_capacity() -> None:
    clock = Clock()
    ids = RecentIds(window=60, capacity=3, clock=clock)
    ids.add("ada", "a")
    assert ids.seen("ada", "a")
    assert not ids.seen("ada", "b")
    assert not ids.seen("grace", "a")  # ids are per principal
    clock.now += 61
    assert not ids.seen("ada", "a")
    for key in "bcde":
        ids.add("ada", key)
    assert len(ids) == 3
    assert not ids.seen("ada", "b")
    assert ids.seen("ada", "e")


def test_one_principal_forgets_only_its_own_ids() -> None:
    ids = RecentIds(window=60, capacity=10, per_principal=4, clock=Clock())
    ids.add("bob", "b1")
    for n in range(1000):
        ids.add("alice", f"a{n}")
    assert ids.seen("bob", "b1")
    assert (ids.count("alice"), len(ids)) == (4, 5)
    assert [ids.seen("alice", f"a{n}") for n in (995, 996, 999)] == [False, True, True]


def test_the_total_bound_forgets_the_longest_held_principals_oldest() -> None:
    clock = Clock()
    ids = RecentIds(window=60, capacity=4, per_principal=2, clock=clock)
    for name in ("ada", "bob", "cy"):
        ids.add(name, "1")
        clock.now += 1
        ids.add(name, "2")
        clock.now += 1
    assert len(ids) == 4
    assert not ids.seen("ada", "1")
    assert not ids.seen("ada", "2")
    assert ids.seen("cy", "2")
    assert (ids.count("ada"), ids.count("bob"), ids.count("cy")) == (0, 2, 2)
    clock.now += 59
    assert (ids.seen("bob", "1"), ids.seen("bob", "2"), ids.seen("cy", "2")) == (False, False, True)
    ids.add("bob", "1")  # a repeat after its window is remembered again, as the newest
    assert ids.seen("bob", "1")
    assert len(ids) == 4


def test_secret_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    secret = load_or_create_secret(tmp_path / "runtime")
    assert load_or_create_secret(tmp_path / "runtime") == secret
    mode = (tmp_path / "runtime" / "jupyter_telemetry_ext_user_secret").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert hashed_user(secret, "ada") == hashed_user(secret, "ada")
    assert hashed_user(secret, "ada") != hashed_user(secret, "grace")
    assert "ada" not in hashed_user(secret, "ada")
    assert hashed_user(b"other", "ada") != hashed_user(secret, "ada")


def test_clock_skew_correction() -> None:
    received = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    sent = received + timedelta(hours=1)  # the client's clock is an hour fast
    happened = sent - timedelta(seconds=5)
    assert corrected_event_time(received, sent, happened) == received - timedelta(seconds=5)
