"""Rate limiting, duplicate detection, user identity and clock skew, each on its own."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext.core.errors import SecretFileError
from jupyter_telemetry_ext.core.recorded_user import SECRET_FILE, hashed_user, load_or_create_secret
from jupyter_telemetry_ext.core.timestamps import corrected_event_time
from jupyter_telemetry_ext.server.duplicates import Duplicates
from jupyter_telemetry_ext.server.ratelimit import RateLimiter


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
    ids = Duplicates(window=60, capacity=3, clock=clock)
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
    ids = Duplicates(window=60, capacity=10, per_principal=4, clock=Clock())
    ids.add("bob", "b1")
    for n in range(1000):
        ids.add("alice", f"a{n}")
    assert ids.seen("bob", "b1")
    assert (ids.count("alice"), len(ids)) == (4, 5)
    assert [ids.seen("alice", f"a{n}") for n in (995, 996, 999)] == [False, True, True]


def test_the_total_bound_forgets_the_longest_held_principals_oldest() -> None:
    clock = Clock()
    ids = Duplicates(window=60, capacity=4, per_principal=2, clock=clock)
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
    # (a name with letters hex lacks: "ada" itself turns up in a random hex digest now and then)
    assert "grace" not in hashed_user(secret, "grace")
    assert hashed_user(b"other", "ada") != hashed_user(secret, "ada")


def first_use_by_threads(folder: Path, count: int) -> tuple[list[bytes], list[BaseException]]:
    """Call load_or_create_secret from `count` threads at once; return keys and errors."""
    start = threading.Barrier(count)
    keys: list[bytes] = []
    errors: list[BaseException] = []

    def use() -> None:
        start.wait()
        try:
            keys.append(load_or_create_secret(folder))
        except BaseException as e:  # collected: the test names any of them
            errors.append(e)

    threads = [threading.Thread(target=use) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return keys, errors


def test_concurrent_first_use_gives_every_thread_the_same_key(tmp_path: Path) -> None:
    for trial in range(20):
        folder = tmp_path / str(trial) / "data"
        keys, errors = first_use_by_threads(folder, 16)
        assert errors == []
        assert len(set(keys)) == 1, keys
        assert keys[0]
        assert sorted(p.name for p in folder.iterdir()) == [SECRET_FILE]  # no temporary left


def _use_in_process(folder: str, start: Any, out: Any) -> None:
    start.wait()
    out.put(load_or_create_secret(Path(folder)))


@pytest.mark.skipif(os.name != "posix", reason="forks processes")
def test_concurrent_first_use_gives_every_process_the_same_key(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for trial in range(5):
        folder = str(tmp_path / str(trial))
        start, out = context.Barrier(6), context.Queue()
        processes = [
            context.Process(target=_use_in_process, args=(folder, start, out)) for _ in range(6)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(30)
        assert [p.exitcode for p in processes] == [0] * 6
        keys = {out.get(timeout=5) for _ in processes}
        assert len(keys) == 1
        assert next(iter(keys))


@pytest.mark.parametrize(
    ("content", "mode", "expected"),
    [
        pytest.param(b"", 0o600, "is empty: delete it", id="empty"),
        pytest.param(b"  \n", 0o600, "is empty: delete it", id="blank"),
        pytest.param(b"k" * 64, 0o644, "(mode 0644): run `chmod 600", id="world-readable"),
        pytest.param(b"k" * 64, 0o640, "(mode 0640): run `chmod 600", id="group-readable"),
        pytest.param(b"k" * 64, 0o602, "readable by other users", id="world-writable"),
    ],
)
@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_an_unusable_secret_file_is_refused(
    tmp_path: Path, content: bytes, mode: int, expected: str
) -> None:
    path = tmp_path / SECRET_FILE
    path.write_bytes(content)
    path.chmod(mode)
    with pytest.raises(SecretFileError, match="user-hash key") as e:
        load_or_create_secret(tmp_path)
    assert str(path) in str(e.value)
    assert expected in str(e.value)
    assert path.read_bytes() == content  # left for the admin to look at


def test_clock_skew_correction() -> None:
    received = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    sent = received + timedelta(hours=1)  # the client's clock is an hour fast
    happened = sent - timedelta(seconds=5)
    assert corrected_event_time(received, sent, happened) == received - timedelta(seconds=5)
