"""A failing sink loses nothing acknowledged: a real full disk, a DiskFull handler, a raising one.

With `reply_after_write`, a 200 means every handler wrote the event, else 503; without it,
every event a handler did not write is counted (`sink_failure`) and described.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog
from tests.conftest import FRONTEND_ID, DiskFull, Sink, make_schema
from tests.test_reliability import Fetch, send

SCHEMA_ID = "test.events/example"
DISK_SIZE = "64k"
USER = "ada"  # a named user, so that a retry is the same sender's (see conftest.named_users)


class Raising(logging.Handler):
    """A handler whose emit raises (a dead socket, a bug), until told to work."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = True
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.broken:
            msg = f"cannot send {record.getMessage()}"  # a message that holds the event's values
            raise ConnectionError(msg)
        self.lines.append(record.getMessage())


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB filesystem (tmpfs), unmounted at the end; skipped where mount is refused."""
    folder = tmp_path / "disk"
    folder.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(folder)],
            check=True, capture_output=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"a small tmpfs needs mount (root, or CAP_SYS_ADMIN): {e}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, timeout=10)


@pytest.fixture
def disk_file(small_disk: Path) -> Iterator[logging.FileHandler]:
    """A real FileHandler on the small disk, with a 16 KiB file beside it to free room later."""
    (small_disk / "filler").write_bytes(b"x" * (16 << 10))
    handler = logging.FileHandler(small_disk / "events.log", encoding="utf-8")
    yield handler
    handler.close()


def file_lines(handler: logging.FileHandler) -> list[dict[str, Any]]:
    """Return the events in the handler's file; every line must be a whole event."""
    text = Path(handler.baseFilename).read_text("utf-8")
    assert text == "" or text.endswith("\n"), "a partly written event is left in the file"
    return [json.loads(line) for line in text.splitlines()]


def ids(events: list[dict[str, Any]]) -> list[str]:
    """Return the client ids of events, in order."""
    return [e["__client_id__"] for e in events]


# The library: counts that match the file exactly


@pytest.mark.parametrize("background", [True, False], ids=["background", "caller"])
def test_full_disk_counts_exactly_the_events_not_in_the_file(
    disk_file: logging.FileHandler, background: bool
) -> None:
    failed, sink = Sink(), Sink()
    log = EventLog(
        handlers=[disk_file, sink.handler], failed_handlers=[failed.handler],
        allowed_schemas=[SCHEMA_ID], background=background,
    )  # fmt: skip
    log.register_schema(make_schema(n={"type": "integer", "categories": ["unrestricted"]}))
    total = 600  # about 70 bytes each: more than the 48 KiB left
    for chunk in range(0, total, 50):
        with log.batch():  # joined writes, some of them cut short by the full disk
            for n in range(chunk, chunk + 50):
                log.record_event(SCHEMA_ID, 1, {"n": n})
    assert log.flush(10)
    written = [e["n"] for e in file_lines(disk_file)]
    lost = total - len(written)
    assert 0 < lost < total
    assert sorted(written) == written
    assert len(set(written)) == len(written)
    assert len(sink.events) == total
    assert log.outcomes()[(SCHEMA_ID, "sink_failure")] == lost
    assert log.sink_failures() == {(disk_file, SCHEMA_ID): lost}
    assert log.handler_failures == {disk_file: lost}
    descriptions = failed.events
    assert len(descriptions) == lost
    assert {(d["outcome"], d["schema_id"], d["version"], d["handler"]) for d in descriptions} == {
        ("sink_failure", SCHEMA_ID, 1, "FileHandler")
    }
    assert descriptions[0]["reason"] == "FileHandler did not write the event: OSError ENOSPC"
    log.close()


def test_room_freed_later_writes_again_without_a_partial_event(
    disk_file: logging.FileHandler, small_disk: Path
) -> None:
    log = EventLog(handlers=[disk_file], allowed_schemas=[SCHEMA_ID], background=True)
    log.register_schema(make_schema(n={"type": "integer", "categories": ["unrestricted"]}))
    n = 0
    while not log.outcomes().get((SCHEMA_ID, "sink_failure")):
        log.record_event(SCHEMA_ID, 1, {"n": n})
        n += 1
        if n % 100 == 0:
            assert log.flush(10)
    assert log.flush(10)
    (small_disk / "filler").unlink()
    log.record_event(SCHEMA_ID, 1, {"n": n})
    assert log.flush(10)
    written = [e["n"] for e in file_lines(disk_file)]
    lost = log.outcomes()[(SCHEMA_ID, "sink_failure")]
    assert written[-1] == n
    assert len(written) + lost == n + 1
    log.close()


def test_raising_handler_counts_each_event_and_leaks_no_value() -> None:
    failed, raising = Sink(), Raising()
    log = EventLog(
        handlers=[raising], failed_handlers=[failed.handler], allowed_schemas=[SCHEMA_ID],
        background=True,
    )  # fmt: skip
    log.register_schema(make_schema(n={"type": "integer", "categories": ["unrestricted"]}))
    with log.batch():
        for n in range(7):
            log.record_event(SCHEMA_ID, 1, {"n": n})
    assert log.flush(10)
    assert log.sink_failures() == {(raising, SCHEMA_ID): 7}
    assert len(failed.events) == 7
    assert "cannot send" not in failed.stream.getvalue()
    assert failed.events[0]["reason"] == "Raising did not write the event: ConnectionError"
    log.close()


# The server


def config_with(jp_server_config: Config, handlers: list[logging.Handler], reply: bool) -> Sink:
    """Record into `handlers`, describe failures to the returned sink."""
    failed = Sink()
    jp_server_config.EventLog.handlers = handlers
    jp_server_config.EventLog.failed_handlers = [failed.handler]
    jp_server_config.EventLog.allowed_schemas = {FRONTEND_ID: {}}
    jp_server_config.TelemetryExtension.reply_after_write = reply
    jp_server_config.TelemetryExtension.rate_limit = 0.0
    return failed


def batch(start: int, size: int = 10) -> dict[str, Any]:
    """Return a batch of events with the ids e<start> ... e<start+size-1>."""
    events = [
        {"schema_id": FRONTEND_ID, "version": 1, "id": f"e{n}", "data": {"count": n}}
        for n in range(start, start + size)
    ]
    return {"events": events}


@pytest.fixture
def after_write(
    jp_server_config: Config, named_users: None, disk_file: logging.FileHandler, sink: Sink
) -> Sink:
    """The server records into the small disk's file and `sink`, answering after the write."""
    return config_with(jp_server_config, [disk_file, sink.handler], reply=True)


async def test_full_disk_a_200_is_in_the_file_and_a_retry_fills_only_the_gap(
    after_write: Sink, jp_fetch: Fetch, disk_file: logging.FileHandler, sink: Sink,
    server_eventlog: EventLog,
) -> None:  # fmt: skip
    acknowledged: list[str] = []
    refused: list[dict[str, Any]] = []
    start = 0
    while len(refused) < 3:
        assert start < 5000, "the disk never filled"
        body = batch(start)
        code, reply, headers = await send(jp_fetch, body, USER)
        if code == 200:
            assert reply["recorded"] == 10
            acknowledged += [e["id"] for e in body["events"]]
        else:
            assert (code, headers["Retry-After"]) == (503, "1")
            assert "a handler failed to write the events" in reply["message"]
            refused.append(body)
        start += 10
    in_file = ids(file_lines(disk_file))
    assert set(acknowledged) <= set(in_file)  # every 200 is in the file
    missing = {f"e{n}" for n in range(start)} - set(in_file)
    assert missing
    assert missing <= {e["id"] for body in refused for e in body["events"]}
    assert len(ids(sink.events)) == start  # the other handler wrote every event
    (Path(disk_file.baseFilename).parent / "filler").unlink()  # room again: the client retries
    for body in refused:
        code, reply, _ = await send(jp_fetch, body, USER)
        assert (code, reply["duplicate"]) == (200, 10 - reply["recorded"])
    expected = sorted(f"e{n}" for n in range(start))
    assert sorted(ids(file_lines(disk_file))) == expected  # each once, the gap filled
    assert sorted(ids(sink.events)) == expected  # not written twice where it succeeded
    lost = server_eventlog.outcomes()[(FRONTEND_ID, "sink_failure")]
    assert lost == len(missing)


@pytest.fixture
def raising(jp_server_config: Config, named_users: None, sink: Sink) -> Raising:
    """The server records into a handler that raises and into `sink`, answering after the write."""
    handler = Raising()
    config_with(jp_server_config, [handler, sink.handler], reply=True)
    return handler


async def test_handler_that_raises_gets_a_503_and_its_retry_alone(
    raising: Raising, jp_fetch: Fetch, sink: Sink
) -> None:
    one = {"schema_id": FRONTEND_ID, "version": 1, "id": "r1", "data": {"action": "open"}}
    for _ in range(2):  # still failing: 503 again, and the sink that wrote it is not sent it
        code, _, headers = await send(jp_fetch, one, USER)
        assert (code, headers["Retry-After"]) == (503, "1")
    raising.broken = False
    assert (await send(jp_fetch, one, USER))[:2] == (200, {"status": "recorded"})
    assert (await send(jp_fetch, one, USER))[:2] == (200, {"status": "duplicate"})
    assert [json.loads(line)["__client_id__"] for line in raising.lines] == ["r1"]
    assert ids(sink.events) == ["r1"]


@pytest.fixture
def disk_full(jp_server_config: Config, tmp_path: Path, sink: Sink) -> Iterator[DiskFull]:
    """The server records into a full-disk handler and `sink`, answering after the write."""
    handler = DiskFull(tmp_path / "full.log")
    config_with(jp_server_config, [handler, sink.handler], reply=True)
    yield handler
    handler.close()


async def test_disk_full_handler_gets_503_with_reply_after_write(
    disk_full: DiskFull, jp_fetch: Fetch, sink: Sink, server_eventlog: EventLog
) -> None:
    code, reply, headers = await send(jp_fetch, batch(0, 3))
    assert (code, headers["Retry-After"]) == (503, "1")
    assert "a handler failed to write the events" in reply["message"]
    assert len(sink.events) == 3
    assert server_eventlog.sink_failures() == {(disk_full, FRONTEND_ID): 3}


@pytest.fixture
def queued(jp_server_config: Config, disk_file: logging.FileHandler, sink: Sink) -> Sink:
    """The server records into the small disk's file and `sink`, answering once queued."""
    return config_with(jp_server_config, [disk_file, sink.handler], reply=False)


async def test_without_reply_after_write_every_loss_is_counted_and_described(
    queued: Sink, disk_file: logging.FileHandler, sink: Sink, jp_fetch: Fetch,
    server_eventlog: EventLog,
) -> None:  # fmt: skip
    failed = queued
    total = 0
    while not server_eventlog.outcomes().get((FRONTEND_ID, "sink_failure")) or total < 600:
        assert total < 5000, "the disk never filled"
        code, reply, _ = await send(jp_fetch, batch(total, 50))
        assert (code, reply["recorded"]) == (200, 50)  # queued, not yet written
        total += 50
        if total % 200 == 0:
            assert server_eventlog.flush(10)
    assert server_eventlog.flush(10)
    lost = total - len(file_lines(disk_file))
    assert lost > 0
    assert len(sink.events) == total
    metrics = (await jp_fetch("metrics")).body.decode()
    events_line = f'jupyter_telemetry_events_total{{outcome="sink_failure",schema="{FRONTEND_ID}"}}'
    assert f"{events_line} {float(lost)}" in metrics
    labels = f'handler="FileHandler-0",schema="{FRONTEND_ID}"'
    sink_line = f"jupyter_telemetry_sink_failures_total{{{labels}}}"
    assert f"{sink_line} {float(lost)}" in metrics
    described = [d for d in failed.events if d["outcome"] == "sink_failure"]
    assert len(described) == lost
    assert all(d["schema_id"] == FRONTEND_ID and d["handler"] == "FileHandler" for d in described)
    assert "__client_id__" not in failed.stream.getvalue()


@pytest.fixture
def torn_log(jp_server_config: Config, named_users: None, tmp_path: Path) -> Iterator[Path]:
    """The server records into a log whose last event a crash left cut short, after the write."""
    path = tmp_path / "events.jsonl"
    whole = json.dumps({"__client_id__": "before", "n": 1}) + "\n"
    path.write_text(whole + whole[:20], "utf-8")  # a write cut short: no line end
    handler = logging.FileHandler(path, encoding="utf-8")
    config_with(jp_server_config, [handler], reply=True)
    yield path
    handler.close()


async def test_a_log_left_with_a_torn_last_line_keeps_the_next_event_readable(
    torn_log: Path, jp_fetch: Fetch, caplog: pytest.LogCaptureFixture
) -> None:
    one = {"schema_id": FRONTEND_ID, "version": 1, "id": "after", "data": {"action": "open"}}
    assert (await send(jp_fetch, one, USER))[:2] == (200, {"status": "recorded"})
    text = torn_log.read_text("utf-8")
    assert text.endswith("\n")
    assert [json.loads(line)["__client_id__"] for line in text.splitlines()] == ["before", "after"]
    assert "cut 20 bytes of an event partly written at the end of" in caplog.text
