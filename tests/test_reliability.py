"""Ids, clock skew, rate limits, identity, privacy and faults, through a real server."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPResponse
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.core.recorded_user import SECRET_FILE, hashed_user
from jupyter_telemetry_ext.core.timestamps import format_timestamp, parse_timestamp
from tests.conftest import FRONTEND_ID, SERVER_ID, Gate, Sink

Fetch = Callable[..., Awaitable[HTTPResponse]]
Recorded = Callable[[], list[dict[str, Any]]]
SECRET = "Zq8-TOP-SECRET-VALUE-41"


def event(**fields: Any) -> dict[str, Any]:
    """Return a posted event of the test schema, with extra envelope fields."""
    return {"schema_id": FRONTEND_ID, "version": 1, "data": {"action": "open"}, **fields}


async def send(jp_fetch: Fetch, body: Any, user: str | None = None) -> tuple[int, Any, Any]:
    """POST a body (bytes or JSON); return status, JSON reply and headers, errors included."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"X-Test-User": user} if user else {}
    try:
        response = await jp_fetch(
            "api", "telemetry", "events", method="POST", body=raw, headers=headers
        )
    except HTTPClientError as e:
        error = e
    else:
        return response.code, json.loads(response.body), response.headers
    assert error.response is not None
    return error.code, json.loads(error.response.body), error.response.headers


def statuses(reply: dict[str, Any]) -> list[str]:
    """Return the status of each event of a batch reply."""
    return [result["status"] for result in reply["results"]]


def now() -> datetime:
    """Return the current UTC time."""
    return datetime.now(timezone.utc)


# Idempotent retries


async def test_repeated_ids_are_duplicates_per_user(
    named_users: None, jp_fetch: Fetch, recorded: Recorded, server_eventlog: EventLog
) -> None:
    batch = {"events": [event(id="a"), event(id="b"), event(id="a"), event()]}
    _, reply, _ = await send(jp_fetch, batch, "ada")
    assert statuses(reply) == ["recorded", "recorded", "duplicate", "recorded"]
    assert reply["duplicate"] == 1
    _, reply, _ = await send(jp_fetch, batch, "ada")  # a retry of the whole batch
    assert statuses(reply) == ["duplicate", "duplicate", "duplicate", "recorded"]
    assert (await send(jp_fetch, event(id="a"), "ada"))[1] == {"status": "duplicate"}
    _, reply, _ = await send(jp_fetch, batch, "grace")  # another user's ids are her own
    assert statuses(reply) == ["recorded", "recorded", "duplicate", "recorded"]
    assert [c.get("__client_id__") for c in recorded()] == [*("a", "b", None, None, "a", "b", None)]
    assert server_eventlog.outcomes()[(FRONTEND_ID, "duplicate")] == 6


async def test_a_rejected_id_is_not_remembered(jp_fetch: Fetch, recorded: Recorded) -> None:
    bad = event(id="x", data={"action": "open", "count": "three"})
    assert (await send(jp_fetch, {"events": [bad]}))[0] == 400
    assert (await send(jp_fetch, event(id="x")))[1] == {"status": "recorded"}
    assert len(recorded()) == 1


@pytest.mark.parametrize("jp_argv", [["--TelemetryExtension.duplicate_window=0"]])
async def test_duplicate_window_zero_remembers_nothing(jp_fetch: Fetch, recorded: Recorded) -> None:
    for _ in range(2):
        assert (await send(jp_fetch, event(id="a")))[1] == {"status": "recorded"}
    assert len(recorded()) == 2


# Clock skew


async def test_event_time_is_corrected_by_sent_at(jp_fetch: Fetch, recorded: Recorded) -> None:
    fast = now() + timedelta(hours=3)  # the client's clock is 3 h fast
    posted = {"events": [event(timestamp=format_timestamp(fast - timedelta(seconds=5)))]}
    before = now()
    await send(jp_fetch, {**posted, "sent_at": format_timestamp(fast)})
    await send(jp_fetch, event(timestamp=format_timestamp(fast), sent_at=format_timestamp(fast)))
    first, second = recorded()
    received = parse_timestamp(first["__timestamp__"])
    assert before <= received <= now()
    happened = parse_timestamp(first["__event_time__"])
    assert abs(happened - (received - timedelta(seconds=5))) < timedelta(seconds=1)
    assert parse_timestamp(second["__event_time__"]) - parse_timestamp(
        second["__timestamp__"]
    ) < timedelta(seconds=1)


@pytest.mark.parametrize(
    ("offset", "sent_at"),
    [
        pytest.param(timedelta(hours=-25), None, id="a-day-ago"),
        pytest.param(timedelta(hours=25), None, id="tomorrow"),
        pytest.param(timedelta(hours=-25), timedelta(0), id="a-day-before-sent-at"),
    ],
)
async def test_event_time_outside_the_window_is_rejected(
    jp_fetch: Fetch, recorded: Recorded, offset: timedelta, sent_at: timedelta | None
) -> None:
    posted: dict[str, Any] = {"events": [event(timestamp=format_timestamp(now() + offset))]}
    if sent_at is not None:
        posted["sent_at"] = format_timestamp(now() + sent_at)
    posted["events"].append(event())
    _, reply, _ = await send(jp_fetch, posted)
    assert statuses(reply) == ["rejected", "recorded"]
    assert "timestamp: is more than 24 h away" in reply["results"][0]["error"]
    assert "event_time_window" in reply["results"][0]["error"]
    assert len(recorded()) == 1


async def test_a_skewed_clock_within_the_window_after_correction(
    jp_fetch: Fetch, recorded: Recorded
) -> None:
    slow = now() - timedelta(days=30)  # the client's clock is a month slow
    posted = {
        "events": [event(timestamp=format_timestamp(slow))],
        "sent_at": format_timestamp(slow),
    }
    assert statuses((await send(jp_fetch, posted))[1]) == ["recorded"]
    assert len(recorded()) == 1


async def test_sent_at_belongs_to_the_batch(jp_fetch: Fetch, recorded: Recorded) -> None:
    code, reply, _ = await send(jp_fetch, {"events": [event(sent_at=format_timestamp(now()))]})
    assert (code, "events[0]: unknown field 'sent_at'" in reply["message"]) == (400, True)
    assert recorded() == []


# Rate limit


@pytest.mark.parametrize(
    "jp_argv", [["--TelemetryExtension.rate_limit=0.5", "--TelemetryExtension.rate_burst=3"]]
)
async def test_rate_limit_per_user(
    named_users: None, jp_fetch: Fetch, recorded: Recorded, server_eventlog: EventLog
) -> None:
    failed = Sink()
    server_eventlog.failed_handlers = [failed.handler]
    for _ in range(3):
        assert (await send(jp_fetch, event(), "ada"))[0] == 200
    code, reply, headers = await send(jp_fetch, event(), "ada")
    assert code == 429
    assert "TelemetryExtension.rate_limit" in reply["message"]
    assert 1 <= int(headers["Retry-After"]) <= 2
    assert (await send(jp_fetch, event(), "grace"))[0] == 200  # other users are unaffected
    assert len(recorded()) == 4
    assert server_eventlog.outcomes()[("(unknown)", "rate_limited")] == 1
    assert [f["outcome"] for f in failed.events] == ["rate_limited"]
    failed.handler.close()


# Who posted it


@pytest.fixture
def user_allowed(jp_server_config: Config) -> None:
    """Allow the `user-identifier` category (so `__user__` is kept) for the test schema."""
    allowed = {FRONTEND_ID: {"allowed_categories": ["user-identifier"]}, SERVER_ID: {}}
    jp_server_config.EventLog.allowed_schemas = allowed


@pytest.mark.parametrize(
    "jp_argv",
    [
        pytest.param([], id="default-none"),
        pytest.param(["--TelemetryExtension.record_user=username"], id="username"),
        pytest.param(["--TelemetryExtension.record_user=hashed"], id="hashed"),
        pytest.param(
            [
                "--TelemetryExtension.record_user=hashed",
                "--TelemetryExtension.user_hash_secret=k-of-sixteen-chars",
            ],
            id="hashed-configured",
        ),
    ],
)
async def test_record_user(
    *,
    user_allowed: None,
    named_users: None,
    jp_fetch: Fetch,
    recorded: Recorded,
    jp_argv: list[str],
    jp_data_dir: Path,
) -> None:
    await send(jp_fetch, event(), "ada")
    code, reply, _ = await send(jp_fetch, event(data={"action": "open", "__user__": "eve"}), "ada")
    assert (code, "reserved" in reply["message"]) == (400, True)  # never from the client
    assert (await send(jp_fetch, {**event(), "user": "eve"}, "ada"))[0] == 400
    [capsule] = recorded()
    secret_file = jp_data_dir / SECRET_FILE
    mode = " ".join(jp_argv)
    if "username" in mode:
        assert capsule["__user__"] == "ada"
    elif "secret=k" in mode:
        assert capsule["__user__"] == hashed_user(b"k-of-sixteen-chars", "ada")
    elif "hashed" in mode:
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert capsule["__user__"] == hashed_user(secret_file.read_bytes().strip(), "ada")
    else:
        assert "__user__" not in capsule
    assert secret_file.exists() == ("secret=" not in mode)  # it keys event keys too


@pytest.fixture
def shared_secret_file(jp_data_dir: Path) -> Path:
    """A user-hash key file that other users can read, there before the server starts."""
    path = jp_data_dir / SECRET_FILE
    path.write_bytes(b"k" * 64)
    path.chmod(0o644)
    return path


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("jp_argv", [["--TelemetryExtension.record_user=hashed"]])
async def test_a_readable_secret_file_stops_the_extension_with_a_clear_error(
    capsys: pytest.CaptureFixture[str], shared_secret_file: Path, jp_fetch: Fetch
) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("api", "telemetry", "events", method="POST", body=json.dumps(event()))
    assert e.value.code == 404  # not loaded: nothing is recorded with a key others can read
    # jupyter_server logs why the extension did not load (on stderr: its own logger)
    assert f"run `chmod 600 {shared_secret_file}`" in capsys.readouterr().err


@pytest.mark.parametrize("jp_argv", [["--TelemetryExtension.record_user=username"]])
async def test_user_is_redacted_unless_its_category_is_allowed(
    named_users: None, jp_fetch: Fetch, recorded: Recorded
) -> None:
    await send(jp_fetch, event(), "ada")
    assert recorded()[0]["__user__"] is None


# One switch: unrestricted properties only


@pytest.fixture
def everything_allowed(jp_server_config: Config) -> None:
    """Allow every personal category of the test schema."""
    categories = ["user-identifier", "user-identifiable-information"]
    jp_server_config.EventLog.allowed_schemas = {FRONTEND_ID: {"allowed_categories": categories}}


@pytest.mark.parametrize(
    ("jp_argv", "kept"),
    [
        pytest.param(["--TelemetryExtension.record_user=username"], True, id="allow-list"),
        pytest.param(
            ["--TelemetryExtension.record_user=username", "--EventLog.unrestricted_only=True"],
            False,
            id="unrestricted-only",
        ),
    ],
)
async def test_unrestricted_only_through_the_server(
    everything_allowed: None, jp_fetch: Fetch, recorded: Recorded, kept: bool
) -> None:
    data = {"action": "open", "count": 2, "path": "home/ada/secret.ipynb"}
    await send(jp_fetch, event(data=data, id="e1", timestamp=format_timestamp(now())))
    [capsule] = recorded()
    assert (capsule["action"], capsule["count"], capsule["__client_id__"]) == ("open", 2, "e1")
    assert capsule["__event_time__"]
    assert (capsule["path"] is not None, capsule["__user__"] is not None) == (kept, kept)


# Errors and logs never carry event values


def secret_bodies() -> list[Any]:
    """Return bad bodies that each carry SECRET somewhere a careless message would echo."""
    return [
        event(data={"action": SECRET}),
        event(data={"action": "open", "count": SECRET}),
        event(data={"action": "open", "other": SECRET}),
        event(data={"action": "open", "model": {"paths": [SECRET, 3]}}),
        event(data={"action": "open", "model": {"paths": SECRET}}),
        event(data=SECRET),
        event(data={"action": "open", "__x__": SECRET}),
        event(schema_id=SECRET),
        event(version=SECRET),
        event(schema_id=SERVER_ID, data={"action": SECRET}),
        event(timestamp=SECRET),
        event(sent_at=SECRET),
        event(id=SECRET * 10),
        event(data={"action": "open", "path": SECRET * 2000}),
        {"events": SECRET},
        {"events": [SECRET]},
        {"events": [event(data={"count": SECRET})], "sent_at": SECRET},
        SECRET,
        [SECRET],
        ('{"schema_id": "' + SECRET).encode(),
        b'{"data": {"action": "' + SECRET.encode() + b'\xff"}}',
        b'{"data": {"n": NaN, "s": "' + SECRET.encode() + b'"}}',
    ]


async def test_secrets_never_reach_replies_or_logs(
    jp_fetch: Fetch, recorded: Recorded, server_eventlog: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    failed = Sink()
    server_eventlog.failed_handlers = [failed.handler]
    replies, posts = [], 0
    for body in secret_bodies():
        for wrapped in (body,) if isinstance(body, bytes) else (body, {"events": [body]}):
            posts += 1
            code, reply, _ = await send(jp_fetch, wrapped)
            replies.append(json.dumps(reply))
            assert code >= 400 or "recorded" not in statuses(reply), wrapped
    assert server_eventlog.flush(5)
    assert recorded() == []
    assert all(SECRET[:12] not in text for text in replies), replies
    assert SECRET[:12] not in caplog.text
    assert SECRET[:12] not in failed.stream.getvalue()
    assert len(failed.events) == posts
    failed.handler.close()


# Faults in handlers


class FullDisk(io.StringIO):
    """A file on a full disk: every write fails with ENOSPC."""

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FullDiskFileHandler(logging.FileHandler):
    """A FileHandler whose disk is full."""

    def _open(self) -> Any:
        return FullDisk()


class RaisingHandler(logging.Handler):
    """A handler with a bug."""

    def emit(self, record: logging.LogRecord) -> None:
        msg = "handler bug"
        raise RuntimeError(msg)


@pytest.fixture
def faulty(jp_server_config: Config, sink: Sink, tmp_path: Path) -> dict[str, logging.Handler]:
    """Configure a raising, a full-disk and a blocking handler beside the sink."""
    handlers = {
        "raising": RaisingHandler(),
        "full": FullDiskFileHandler(tmp_path / "full.log"),
        "blocking": Gate(),
    }
    jp_server_config.EventLog.handlers = [*handlers.values(), sink.handler]
    return handlers


async def test_faulty_handlers_harm_nothing_else(
    faulty: dict[str, Any],
    jp_fetch: Fetch,
    sink: Sink,
    server_eventlog: EventLog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocking = faulty["blocking"]
    try:
        for count in range(20):  # the server keeps answering while a handler blocks
            code, reply, _ = await send(jp_fetch, event(data={"action": "open", "count": count}))
            assert (code, reply) == (200, {"status": "recorded"})
        await wait_for(lambda: len(sink.events) == 20)  # the other handlers keep receiving
        assert blocking.count == 0
    finally:
        blocking.open.set()
    assert server_eventlog.flush(10)
    assert blocking.count == 20
    failures = server_eventlog.handler_failures
    assert (failures[faulty["raising"]], failures[faulty["full"]]) == (20, 20)
    logged = [r for r in caplog.records if "failed; its later failures are counted" in r.message]
    assert len(logged) == 2  # once per failing handler
    assert server_eventlog.outcomes()[(FRONTEND_ID, "sink_failure")] == 40
    metrics = (await jp_fetch("metrics")).body.decode()
    line = f'jupyter_telemetry_events_total{{outcome="sink_failure",schema="{FRONTEND_ID}"}} 40.0'
    assert line in metrics


async def wait_for(condition: Callable[[], bool], timeout: float = 5) -> None:
    """Wait on the event loop until `condition()` holds."""
    import asyncio

    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    msg = "timed out"
    raise AssertionError(msg)
