"""Tamper evidence of the audit: a stream's start and clean stop recorded by a real server, the
collector's gap tracking, and `jupyter telemetry audit check` on a log and on PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.hub.audit_gaps import SCHEMA_ID as GAP
from jupyter_telemetry_ext.hub.audit_gaps import AuditGaps
from jupyter_telemetry_ext.hub.collector import open_to_users
from jupyter_telemetry_ext.hub.gap_tracker import MAX_HELD, GapTracker
from jupyter_telemetry_ext.server.audit.install import stop_audit
from jupyter_telemetry_ext.server.audit.stream import SCHEMA_ID as STREAM
from tests import test_audit_execution as audited_server
from tests.conftest import SHIPPED_SCHEMAS, Sink
from tests.pgserver import PostgresServer, server_for_tests
from tests.test_audit_execution import EXECUTION, Connect, audited

WITH_USER = {"allowed_categories": ["unrestricted", "user-identifier"]}
AUDIT_ALLOWED = {EXECUTION: WITH_USER, STREAM: WITH_USER, GAP: WITH_USER}
# The code kept too, so that the check can hold it against its hash
WITH_CODE = {**AUDIT_ALLOWED, EXECUTION: {"allowed_categories": ["user-identifier", "user-code"]}}
S1, S2 = "a" * 32, "b" * 32
# The fixtures of a real audited server (a kernel, a websocket client, its log file)
audit, allowed = audited_server.audit, audited_server.allowed
record_user, connection_class = audited_server.record_user, audited_server.connection_class
connect, file_handler = audited_server.connect, audited_server.file_handler


@pytest.fixture
def jp_server_config(  # type: ignore[no-redef]
    jp_server_config: Config, *, sink: Sink, file_handler: logging.FileHandler
) -> Config:
    """An audited server whose EventLog knows the execution and audit-stream schemas."""
    config = Config(jp_server_config)
    for name in ("execution", "audit-stream"):
        config.TelemetryExtension.schema_paths.append(str(SHIPPED_SCHEMAS / name))
    config.TelemetryExtension.audit = ["execution"]
    config.EventLog.allowed_schemas = AUDIT_ALLOWED
    config.EventLog.handlers = [sink.handler, file_handler]
    return config


# The server: a stream opens with `start` and closes with `stop`


async def test_a_stream_opens_with_start_and_ends_with_a_clean_stop(
    jp_serverapp: Any, connect: Connect, server_eventlog: EventLog, sink: Sink
) -> None:
    await (await connect()).execute("x = 1")
    await audited(server_eventlog, sink, 1)
    stop_audit(jp_serverapp.web_app.settings)  # what the extension's stop does
    stop_audit(jp_serverapp.web_app.settings)  # and again at exit: one stop all the same
    assert server_eventlog.flush(5)
    events = [e for e in sink.events if "audit_seq" in e]
    assert [(e["__schema__"], e.get("action")) for e in events] == [
        (STREAM, "start"), (EXECUTION, None), (STREAM, "stop")
    ]  # fmt: skip
    assert [e["audit_seq"] for e in events] == [1, 2, 3]
    assert len({e["audit_stream"] for e in events}) == 1
    assert events[0]["audited"] == ["execution"]


# The collector's tracker


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_skipped_number_is_a_gap_and_a_repeat_is_not() -> None:
    tracker = GapTracker(grace=0)
    assert tracker.seen("alice", S1, 1) == []
    assert tracker.seen("alice", S1, 2) == []
    assert tracker.seen("alice", S1, 2) == []  # a retry
    assert tracker.seen("alice", S1, 1) == []
    [gap] = tracker.seen("alice", S1, 6, EXECUTION)
    assert (gap.user, gap.stream, gap.first, gap.last, gap.schema) == ("alice", S1, 3, 5, EXECUTION)
    assert tracker.seen("alice", S1, 7) == []


def test_a_late_arrival_within_the_grace_fills_its_place() -> None:
    clock = Clock()
    tracker = GapTracker(grace=60, clock=clock)
    for seq in (1, 2, 5, 6):  # 3 and 4 answered busy: they come again after 6
        assert tracker.seen("alice", S1, seq) == []
    assert tracker.seen("alice", S1, 3) == []
    clock.now = 61
    [gap] = tracker.due()
    assert (gap.first, gap.last) == (4, 4)  # 3 came late; 4 never did
    assert tracker.due() == []


def test_a_stream_is_keyed_with_its_poster() -> None:
    """Bob replaying alice's stream id writes his own stream: it neither fills nor opens hers."""
    tracker = GapTracker(grace=0)
    tracker.seen("alice", S1, 1)
    assert tracker.seen("bob", S1, 5) == []  # his first sight of it: no gap of alice's
    [gap] = tracker.seen("alice", S1, 3)
    assert (gap.user, gap.first, gap.last) == ("alice", 2, 2)


def test_memory_is_bounded_and_one_poster_cannot_push_out_anothers_streams() -> None:
    tracker = GapTracker(grace=3600, max_streams=100, per_user=4)
    tracker.seen("alice", S1, 1)
    tracker.seen("alice", S1, 3)  # a gap held within its grace
    for n in range(1000):
        tracker.seen("bob", f"{n:032x}", 1)
    assert len(tracker) <= 100
    [gap] = tracker.flush()
    assert (gap.user, gap.first) == ("alice", 2)


def test_a_gap_held_when_its_stream_is_forgotten_is_reported_then() -> None:
    tracker = GapTracker(grace=3600, max_streams=2, per_user=2)
    tracker.seen("alice", S1, 1)
    tracker.seen("alice", S1, 4)
    tracker.seen("bob", S2, 1)
    [gap] = tracker.seen("carol", S2, 1)  # alice's stream is the least recently active
    assert (gap.user, gap.first, gap.last) == ("alice", 2, 3)


def test_the_ranges_held_in_a_stream_are_bounded() -> None:
    """A poster skipping every other number gets its gaps reported early, not held forever."""
    tracker = GapTracker(grace=3600)
    skips = MAX_HELD + 9
    reported = []
    for seq in range(1, 2 * skips + 2, 2):  # 1, 3, 5, ...: every even number skipped
        reported += tracker.seen("bob", S1, seq)
    assert [g.first for g in reported] == [2 * n for n in range(1, 10)]  # the 9 oldest
    assert len(tracker.flush()) == MAX_HELD


def test_a_stopped_stream_is_forgotten() -> None:
    tracker = GapTracker(grace=0)
    tracker.seen("alice", S1, 1)
    tracker.seen("alice", S1, 2, STREAM, stop=True)
    assert len(tracker) == 0


# The collector's gap events


def execution(stream: str, seq: int, **extra: Any) -> dict[str, Any]:
    """Return the data of an execution event of `stream`."""
    return {"audit_seq": seq, "audit_stream": stream, "kernel_id": "k1", "channel": "shell",
            "client": "websocket-json", "code_sha256": hashlib.sha256(b"").hexdigest(),
            "code_length": 0, "code_truncated": False, "silent": False, "store_history": True,
            "status": "ok", **extra}  # fmt: skip


def stream_event(stream: str, seq: int, action: str) -> dict[str, Any]:
    """Return the data of an audit-stream event."""
    return {"audit_seq": seq, "audit_stream": stream, "action": action}


def audit_log(*handlers: logging.Handler, allow: Any = AUDIT_ALLOWED) -> EventLog:
    """Return an EventLog with the shipped audit schemas, writing to `handlers`."""
    eventlog = EventLog(handlers=list(handlers), allowed_schemas=allow)
    for name in ("execution", "audit-stream", "audit-gap"):
        eventlog.register_schema_file(SHIPPED_SCHEMAS / name / "v1.yaml")
    return eventlog


def posted(*data: dict[str, Any], schema: str = EXECUTION) -> list[dict[str, Any]]:
    """Return items as a batch posts them."""
    return [{"schema_id": schema, "version": 1, "data": d} for d in data]


def test_the_collector_records_a_gap_as_the_posters_event(sink: Sink) -> None:
    gaps = AuditGaps(audit_log(sink.handler), GapTracker(grace=0))
    items = posted(*(execution(S1, n) for n in (1, 2, 3, 4)))
    # 2 was rejected (invalid, or the queue was full): it is not there, whatever it said
    gaps.observe("alice", "alice-hash", items, ["recorded", "rejected", "recorded", "duplicate"])
    [event] = [e for e in sink.events if e["__schema__"] == GAP]
    assert event["__user__"] == "alice-hash"
    assert (event["stream"], event["first_missing"], event["last_missing"]) == (S1, 2, 2)
    assert (event["missing"], event["schema"]) == (1, EXECUTION)


def test_a_gap_the_allow_list_drops_is_said(sink: Sink, caplog: pytest.LogCaptureFixture) -> None:
    gaps = AuditGaps(audit_log(sink.handler, allow={EXECUTION: {}}), GapTracker(grace=0))
    gaps.observe("alice", None, posted(execution(S1, 1), execution(S1, 3)), ["recorded"] * 2)
    assert "Audit gaps are NOT stored" in caplog.text
    assert "skipped audit_seq 2 to 2" in caplog.text


def test_clients_cannot_post_the_collectors_gap_event() -> None:
    eventlog = audit_log()
    assert not open_to_users(eventlog.get_schema(GAP, 1))
    assert open_to_users(eventlog.get_schema(STREAM, 1))  # a server posts its own stream


# `jupyter telemetry audit check`


def check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the check; return what it printed and its exit status."""
    command = [sys.executable, "-m", "jupyter_telemetry_ext.cli.main", "audit", "check", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **(env or {})})  # fmt: skip


def reports(result: subprocess.CompletedProcess[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """Return the --json reports by (user, stream)."""
    return {(r["user"], r["stream"]): r for r in map(json.loads, result.stdout.splitlines())}


S3, S4, S5, S6, S7 = "c" * 32, "d" * 32, "e" * 32, "f" * 32, "0" * 32


def coded(stream: str, seq: int, code: str, *, ran: str | None = None) -> dict[str, Any]:
    """Return an execution event whose code is `code`, hashed as `ran` (default: `code`)."""
    digest = hashlib.sha256((code if ran is None else ran).encode()).hexdigest()
    return execution(stream, seq, code=code, code_sha256=digest, code_length=len(code))


def write_streams(eventlog: EventLog, now: datetime) -> None:
    """alice: S1 stopped with 4 and 5 missing, and bob's copy of its 7; S2 silent two days, no
    stop; bob: S3 running; carol: S4 without its start (1) and with 2 stored twice; S5 a
    server's own, its start and stop without a user, its executions under two made-up names;
    dan: S6 with an event numbered after its stop; erin: S7 stopped, its code edited in the
    store in one event (3), kept whole and matching in another (with a U+0000, which PostgreSQL
    keeps as its escape), cut in a third."""
    old = now - timedelta(days=2)
    entries = [
        ("alice", stream_event(S1, 1, "start"), now), ("alice", execution(S1, 2), now),
        ("alice", execution(S1, 3), now), ("alice", stream_event(S1, 6, "stop"), now),
        ("bob", execution(S1, 7), now),
        ("alice", stream_event(S2, 1, "start"), old), ("alice", execution(S2, 2), old),
        ("bob", stream_event(S3, 1, "start"), now),
        ("carol", execution(S4, 2), now), ("carol", execution(S4, 2), now),
        (None, stream_event(S5, 1, "start"), now), ("u1", execution(S5, 2), now),
        ("u2", execution(S5, 3), now), (None, stream_event(S5, 4, "stop"), now),
        ("dan", stream_event(S6, 1, "start"), now), ("dan", stream_event(S6, 2, "stop"), now),
        ("dan", execution(S6, 3), now),
        ("erin", stream_event(S7, 1, "start"), now), ("erin", coded(S7, 2, "x = '\x00'"), now),
        ("erin", coded(S7, 3, "x = 0", ran="x = 1"), now),
        ("erin", coded(S7, 4, "x", ran="x = 1") | {"code_truncated": True}, now),
        ("erin", stream_event(S7, 5, "stop"), now),
    ]  # fmt: skip
    for user, data, when in entries:
        schema = STREAM if "action" in data else EXECUTION
        context = {} if user is None else {"__user__": user}
        eventlog.record_event(schema, 1, data, when, context=context)
    gap = {"stream": S1, "first_missing": 4, "last_missing": 5, "missing": 2, "schema": STREAM}
    eventlog.record_event(GAP, 1, gap, now, context={"__user__": "alice"})
    assert eventlog.flush(10)


def assert_reported(result: subprocess.CompletedProcess[str]) -> None:
    """The streams of `write_streams`, as the check must report them."""
    assert result.returncode == 1, result.stderr
    found = reports(result)
    alice = found["alice", S1]
    assert (alice["missing"], alice["repeated"], alice["end"]) == ("4-5", 0, "stopped")
    assert (alice["first_seq"], alice["last_seq"], alice["collector_gaps"]) == (1, 6, 1)
    assert (found["bob", S1]["missing"], found["bob", S1]["end"]) == ("1-6", "running")
    assert (found["alice", S2]["missing"], found["alice", S2]["end"]) == ("", "ended without stop")
    assert found["bob", S3]["end"] == "running"
    assert (found["carol", S4]["missing"], found["carol", S4]["repeated"]) == ("1", 1)
    server = found["u1, u2", S5]
    assert (server["missing"], server["end"], server["events"]) == ("", "stopped", 4)
    assert (server["after_stop"], server["altered"]) == (0, 0)
    assert (found["dan", S6]["after_stop"], found["dan", S6]["end"]) == (1, "stopped")
    erin = found["erin", S7]
    assert (erin["altered"], erin["missing"], erin["after_stop"], erin["end"]) == (
        1, "", 0, "stopped"
    )  # fmt: skip
    assert len(found) == 8
    summary = "8 audit streams: 3 with gaps, 1 with repeated numbers, 1 ended without stop"
    assert summary in result.stderr
    assert "1 with events numbered after their stop, 1 with code that does not" in result.stderr


def test_check_a_log(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    try:
        write_streams(audit_log(handler, allow=WITH_CODE), datetime.now(timezone.utc))
    finally:
        handler.close()
    assert_reported(check(str(path), "--json"))
    table = check(str(path))
    assert "ended without stop" in table.stdout
    assert table.returncode == 1


def test_a_clean_log_passes_and_a_log_without_audit_data_fails(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    try:
        eventlog = audit_log(handler)
        for seq, data in enumerate([stream_event(S1, 1, "start"), execution(S1, 2)], 1):
            eventlog.record_event(STREAM if seq == 1 else EXECUTION, 1, data)
        eventlog.record_event(STREAM, 1, stream_event(S1, 3, "stop"))
        assert eventlog.flush(5)
    finally:
        handler.close()
    result = check(str(path))
    assert result.returncode == 0, result.stderr
    assert "1 audit streams: 0 with gaps" in result.stderr
    empty = tmp_path / "empty.log"
    empty.write_text(json.dumps({"__schema__": "x", "__timestamp__": "2026-01-01T00:00:00Z"}))
    result = check(str(empty))
    assert result.returncode == 1
    assert "no audit events in" in result.stderr


def test_a_log_whose_code_was_edited_or_that_goes_on_after_its_stop_fails(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    try:
        eventlog = audit_log(handler, allow=WITH_CODE)
        eventlog.record_event(STREAM, 1, stream_event(S1, 1, "start"))
        eventlog.record_event(EXECUTION, 1, coded(S1, 2, "print('harmless')"))
        eventlog.record_event(STREAM, 1, stream_event(S1, 3, "stop"))
        assert eventlog.flush(5)
    finally:
        handler.close()
    assert check(str(path)).returncode == 0
    lines = path.read_text("utf-8").splitlines(keepends=True)
    edited = tmp_path / "edited.log"
    edited.write_text("".join(lines).replace("harmless", "innocent"), "utf-8")
    result = check(str(edited), "--json")
    assert result.returncode == 1
    assert reports(result)[None, S1]["altered"] == 1
    appended = json.loads(lines[1]) | {"audit_seq": 4}
    longer = tmp_path / "longer.log"
    longer.write_text("".join(lines) + json.dumps(appended) + "\n", "utf-8")
    result = check(str(longer), "--json")
    assert result.returncode == 1
    assert reports(result)[None, S1]["after_stop"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [(("--idle", "soon"), "soon"), (("--nope", "1"), "unknown option --nope")],
)
def test_bad_options_are_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    path = tmp_path / "events.log"
    path.write_text("")
    result = check(str(path), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the module."""
    yield from server_for_tests()


@pytest.mark.e2e  # starts PostgreSQL
def test_check_the_postgresql_store(pg: PostgresServer, tmp_path: Path) -> None:
    pytest.importorskip("psycopg", reason="the [postgres] extra (psycopg) is not installed")
    from jupyter_telemetry_ext.sinks.postgres import PostgresEventHandler

    url = pg.url(pg.create_database())
    handler = PostgresEventHandler(url, spool_dir=tmp_path / "spool", max_backoff=0.5)
    try:
        write_streams(audit_log(handler, allow=WITH_CODE), datetime.now(timezone.utc))
    finally:
        handler.close()
    assert_reported(check("--db", url, "--json"))
    assert_reported(check("--db", "env:AUDIT_DB", "--json", env={"AUDIT_DB": url}))
