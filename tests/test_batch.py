"""EventLog.batch: events recorded in a block reach the handlers together, at its end."""

from __future__ import annotations

import errno
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.core.delivery import Delivery
from jupyter_telemetry_ext.core.errors import QueueFullError
from jupyter_telemetry_ext.core.records import CapsuleRecord, Queued
from tests.conftest import DiskFull, Gate, Sink, make_schema

SCHEMA_ID = "test.events/example"


class Capsules(logging.Handler):
    """A handler that reads `record.msg` (the capsule), as structured handlers do."""

    def __init__(self) -> None:
        super().__init__()
        self.capsules: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.capsules.append(dict(record.msg))  # type: ignore[call-overload]


def _log(eventlog_factory: Any, **kwargs: Any) -> EventLog:
    log: EventLog = eventlog_factory(allowed_schemas=[SCHEMA_ID], **kwargs)
    log.register_schema(make_schema(n={"type": "integer"}))
    return log


def test_handlers_get_the_block_s_events_at_its_end(eventlog_factory: Any, sink: Sink) -> None:
    """Without a writer thread, nothing is written until the block ends; listeners see each."""
    log = _log(eventlog_factory)
    seen: list[int] = []
    log.add_listener(lambda capsule: seen.append(capsule["n"]))
    with log.batch():
        for n in range(3):
            log.record_event(SCHEMA_ID, 1, {"n": n})
        assert sink.lines == []
        assert seen == [0, 1, 2]
    assert [event["n"] for event in sink.events] == [0, 1, 2]


@pytest.mark.parametrize("background", [False, True])
def test_every_handler_gets_each_event_once(
    eventlog_factory: Any, sink: Sink, background: bool
) -> None:
    """A line writer and a handler that reads the capsule get the same events, in order."""
    capsules = Capsules()
    log = _log(eventlog_factory, handlers=[sink.handler, capsules], background=background)
    with log.batch():
        for n in range(5):
            log.record_event(SCHEMA_ID, 1, {"n": n})
        log.record_event(SCHEMA_ID, 1, {"n": 5})
    assert log.flush(timeout=10)
    assert [event["n"] for event in sink.events] == list(range(6))
    assert [capsule["n"] for capsule in capsules.capsules] == list(range(6))
    assert capsules.capsules == sink.events


def test_a_nested_block_writes_with_the_outer_one(eventlog_factory: Any, sink: Sink) -> None:
    """Only the outermost block holds events back."""
    log = _log(eventlog_factory)
    with log.batch():
        with log.batch():
            log.record_event(SCHEMA_ID, 1, {"n": 1})
        assert sink.lines == []
    assert len(sink.lines) == 1


def test_another_thread_records_as_usual(eventlog_factory: Any, sink: Sink) -> None:
    """A block holds back the events of the thread that opened it, no other's."""
    log = _log(eventlog_factory)
    with log.batch():
        other = threading.Thread(target=log.record_event, args=(SCHEMA_ID, 1, {"n": 7}))
        other.start()
        other.join()
        assert [event["n"] for event in sink.events] == [7]


def test_a_block_refuses_what_the_queue_has_no_room_for(eventlog_factory: Any) -> None:
    """With a full queue, the event that does not fit raises; the others are all written."""
    gate = Gate()
    log = _log(eventlog_factory, handlers=[gate], background=True, queue_size=3)
    log.record_event(SCHEMA_ID, 1, {"n": 0})  # the writer takes it and waits at the gate
    accepted, refused = 1, 0
    with log.batch():
        for n in range(1, 6):
            try:
                log.record_event(SCHEMA_ID, 1, {"n": n})
                accepted += 1
            except QueueFullError:
                refused += 1
    gate.open.set()
    assert log.flush(timeout=10)
    assert refused >= 2
    assert gate.count == accepted


def test_an_exception_in_the_block_still_hands_over_what_was_recorded(
    eventlog_factory: Any, sink: Sink
) -> None:
    """Events recorded before an error are written all the same."""
    log = _log(eventlog_factory)

    def record_then_fail() -> None:
        with log.batch():
            log.record_event(SCHEMA_ID, 1, {"n": 1})
            raise RuntimeError

    with pytest.raises(RuntimeError):
        record_then_fail()
    assert len(sink.lines) == 1


def test_a_record_without_its_capsule_reads_it_back_from_the_line() -> None:
    """A record queued without the capsule gives the same `msg` when a handler asks."""
    capsule = {"__schema__": SCHEMA_ID, "n": 1, "nested": {"a": [1, None]}}
    record = CapsuleRecord("events", None, json.dumps(capsule))
    assert "msg" not in record.__dict__
    assert record.msg == capsule
    assert record.schema_id == SCHEMA_ID
    assert record.getMessage() == json.dumps(capsule)
    with pytest.raises(AttributeError):
        _ = record.no_such_field


def test_a_handler_that_reads_msg_gets_records_queued_without_capsules() -> None:
    """Records queued for line writers still serve a handler whose formatter reads `msg`."""

    class MsgFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"n={record.msg['n']}"  # type: ignore[index]

    sink = Sink()
    sink.handler.setFormatter(MsgFormatter())
    lines = [json.dumps({"__schema__": SCHEMA_ID, "n": n}) for n in range(3)]
    queued: list[Queued] = [lines[0], CapsuleRecord("events", None, lines[1]), lines[2]]
    Delivery(logging.getLogger("test")).deliver_many(sink.handler, queued)
    assert sink.lines == ["n=0", "n=1", "n=2"]


def test_failures_of_lines_only_writes_are_counted_by_schema(
    eventlog_factory: Any, tmp_path: Path
) -> None:
    """Events queued as bare lines still count, per schema, when their write fails."""
    full = DiskFull(tmp_path / "full.log")
    log = _log(eventlog_factory, handlers=[full], background=True)
    with log.batch():
        for n in range(4):
            log.record_event(SCHEMA_ID, 1, {"n": n})
    log.record_event(SCHEMA_ID, 1, {"n": 4})
    assert log.flush(timeout=10)
    assert log.handler_failures[full] == 5
    assert log.outcomes()[(SCHEMA_ID, "sink_failure")] == 5
    full.close()


class Batches(logging.Handler):
    """A handler that takes batches (`handle_batch`), as PostgresEventHandler does; it refuses
    to be handed one record at a time."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.calls: list[list[Any]] = []

    def handle_batch(self, events: list[Any]) -> None:
        if self.fail:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.calls.append(list(events))

    def emit(self, record: logging.LogRecord) -> None:
        msg = "an event was handed over on its own"
        raise AssertionError(msg)


@pytest.mark.parametrize("background", [False, True])
@pytest.mark.parametrize("parsed", [False, True])
@pytest.mark.parametrize("with_lines", [False, True])
def test_a_handler_that_takes_batches_gets_one_call_for_the_block(
    eventlog_factory: Any, sink: Sink, background: bool, parsed: bool, with_lines: bool
) -> None:
    """Its events come in one call, each with its capsule, line (made when asked for, when no
    handler writes lines) and store key; a line writer beside it gets every event as a line."""
    batches = Batches()
    handlers = [sink.handler, batches] if with_lines else [batches]
    log = _log(eventlog_factory, handlers=handlers, background=background)
    schema = log.get_schema(SCHEMA_ID, 1)
    with log.batch():
        for n in range(5):
            log.record_checked(schema, {"n": n}, key=bytes([n]) * 16, parsed=parsed)
    assert log.flush(10)
    [events] = batches.calls
    assert [event.msg["n"] for event in events] == [0, 1, 2, 3, 4]
    assert [json.loads(event.line) for event in events] == [event.msg for event in events]
    assert [event.key for event in events] == [bytes([n]) * 16 for n in range(5)]
    assert [event["n"] for event in sink.events] == ([0, 1, 2, 3, 4] if with_lines else [])
    assert log.outcomes()[(SCHEMA_ID, "recorded")] == 5


@pytest.mark.parametrize("background", [False, True])
def test_a_failed_batch_counts_and_describes_each_of_its_events(
    eventlog_factory: Any, sink: Sink, background: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A handle_batch that raises loses every event it was given: each counted a sink failure
    and described to failed_handlers (never its values); the failure is logged once."""
    log = _log(eventlog_factory, handlers=[Batches(fail=True)], failed_handlers=[sink.handler],
               background=background)  # fmt: skip
    for _ in range(2):
        with log.batch():
            for n in range(3):
                log.record_event(SCHEMA_ID, 1, {"n": 1000 + n})
    assert log.flush(10)
    assert log.outcomes()[(SCHEMA_ID, "sink_failure")] == 6
    assert [e["outcome"] for e in sink.events] == ["sink_failure"] * 6
    reason = "Batches did not write the event: OSError ENOSPC"
    assert all(e["reason"] == reason for e in sink.events)
    assert "1000" not in sink.stream.getvalue()
    assert caplog.text.count("Event handler") == 1
