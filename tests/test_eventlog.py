"""EventLog: the order of recording, the capsule, handlers and their failures, config."""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog, EventValidationError, UnknownSchemaError
from jupyter_telemetry_ext.core.errors import QueueFullError
from tests.conftest import DiskFull, Gate, Sink, make_schema

SCHEMA_ID = "test.events/example"
PROPS = {
    "action": {"enum": ["open", "close"]},
    "message": {"type": "string"},
    "nested": {"type": "object", "properties": {"n": {"type": "integer"}}},
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture
def log(eventlog_factory: Any) -> EventLog:
    log = eventlog_factory(allowed_schemas=[SCHEMA_ID])
    log.register_schema(make_schema(**PROPS))
    return log


@pytest.mark.parametrize("allowed", [[], [SCHEMA_ID]])
@pytest.mark.parametrize("with_handlers", [True, False])
def test_unknown_schema_always_raises(
    eventlog_factory: Any, allowed: list[str], with_handlers: bool
) -> None:
    log = eventlog_factory(allowed_schemas=allowed, **({} if with_handlers else {"handlers": []}))
    log.register_schema(make_schema(**PROPS))
    with pytest.raises(UnknownSchemaError, match="version 9"):
        log.record_event(SCHEMA_ID, 9, {"action": "open"})
    with pytest.raises(LookupError, match="typo"):
        log.record_event("test.events/typo", 1, {"action": "open"})


@pytest.mark.parametrize("allowed", [[], [SCHEMA_ID]])
def test_invalid_event_always_raises(eventlog_factory: Any, sink: Sink, allowed: list[str]) -> None:
    log = eventlog_factory(allowed_schemas=allowed)
    log.register_schema(make_schema(**PROPS))
    with pytest.raises(jsonschema.ValidationError) as e:
        log.record_event(SCHEMA_ID, 1, {"action": "open", "nested": {"n": "secret-value"}})
    assert "nested.n" in str(e.value)
    assert "secret-value" not in str(e.value)
    assert sink.lines == []


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"action": "jump"}, "action"),
        ({"__timestamp__": "2000-01-01T00:00:00Z"}, "__timestamp__"),
        ({"__schema__": "forged"}, "__schema__"),
        ({"nested": {"__deep": 1}}, "nested.__deep"),
        ({"message": float("nan")}, "message"),
        # a key the schema does not name is shown as `*`: its name may be data
        ({"extra": datetime.now(timezone.utc)}, "*"),
        ({"extra": [1, {"x": object()}]}, "*[1].*"),
    ],
)
def test_invalid_events_name_the_field(
    log: EventLog, sink: Sink, event: dict[str, Any], field: str
) -> None:
    with pytest.raises(EventValidationError) as e:
        log.record_event(SCHEMA_ID, 1, event)
    assert e.value.field == field
    assert f": {field}: " in str(e.value)
    assert sink.lines == []


@pytest.mark.parametrize(
    ("document", "event", "field"),
    [
        ({"type": "object", "additionalProperties": {"type": "integer"}},
         {"ada@example.org": "x"}, "scores.*"),
        ({"type": "object", "patternProperties": {"@": {"type": "integer"}}},
         {"ada@example.org": "x"}, "scores.*"),
        ({"type": "object", "propertyNames": {"maxLength": 3}}, {"ada@example.org": 1}, "scores.*"),
        ({"type": "object", "properties": {"total": {"type": "integer"}}}, {"total": "x"},
         "scores.total"),
        ({"type": "object"}, {"ada@example.org": {"__x": 1}}, "scores.*.__x"),
        ({"type": "object"}, {"ada@example.org": float("nan")}, "scores.*"),
    ],
)  # fmt: skip
def test_a_key_the_schema_does_not_name_is_not_shown_in_errors(
    eventlog_factory: Any, document: dict[str, Any], event: dict[str, Any], field: str
) -> None:
    log = eventlog_factory(allowed_schemas=[SCHEMA_ID])
    log.register_schema(make_schema(scores=document))
    with pytest.raises(EventValidationError) as e:
        log.record_event(SCHEMA_ID, 1, {"scores": event})
    assert e.value.field == field
    assert "ada@example.org" not in str(e.value)


def test_non_object_event_is_invalid(log: EventLog) -> None:
    with pytest.raises(EventValidationError, match="must be of type 'object'"):
        log.record_event(SCHEMA_ID, 1, ["open"])  # type: ignore[arg-type]


def test_filtered_returns_none_and_writes_nothing(eventlog_factory: Any, sink: Sink) -> None:
    log = eventlog_factory(allowed_schemas=["some.other/schema"])
    log.register_schema(make_schema(**PROPS))
    assert log.record_event(SCHEMA_ID, 1, {"action": "open"}) is None
    assert sink.lines == []


def test_capsule_is_returned_and_written(log: EventLog, sink: Sink) -> None:
    capsule = log.record_event(SCHEMA_ID, "1", {"action": "open", "message": "kept"})
    assert capsule is not None
    assert list(capsule)[:4] == [
        "__timestamp__",
        "__schema__",
        "__schema_version__",
        "__metadata_version__",
    ]
    assert TIMESTAMP.match(capsule["__timestamp__"])
    assert capsule["__schema__"] == SCHEMA_ID
    assert capsule["__schema_version__"] == 1
    assert capsule["__metadata_version__"] == 2
    assert capsule["message"] == "kept"
    assert sink.events == [capsule]


def test_caller_dict_is_not_changed(log: EventLog) -> None:
    event = {"action": "open", "nested": {"n": 1}}
    before = copy.deepcopy(event)
    capsule = log.record_event(SCHEMA_ID, 1, event)
    assert event == before
    assert capsule is not event


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc), "2026-01-02T03:04:05.123456Z"),
        (datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05.000000Z"),  # noqa: DTZ001 - naive is UTC
        (
            datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))),
            "2026-01-02T03:04:05.000000Z",
        ),
    ],
)
def test_timestamp_override(log: EventLog, override: datetime, expected: str) -> None:
    capsule = log.record_event(SCHEMA_ID, 1, {"action": "open"}, timestamp_override=override)
    assert capsule is not None
    assert capsule["__timestamp__"] == expected


def test_timestamp_is_now_in_utc(log: EventLog) -> None:
    before = datetime.now(timezone.utc)
    capsule = log.record_event(SCHEMA_ID, 1, {})
    assert capsule is not None
    stamp = datetime.strptime(capsule["__timestamp__"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc
    )
    assert before <= stamp <= datetime.now(timezone.utc)


def test_handlers_set_after_construction(sink: Sink) -> None:
    log = EventLog(allowed_schemas=[SCHEMA_ID])
    log.register_schema(make_schema(**PROPS))
    log.handlers = [sink.handler]
    log.record_event(SCHEMA_ID, 1, {"action": "open"})
    assert len(sink.events) == 1


def test_add_and_remove_handler(log: EventLog) -> None:
    extra = Sink()
    log.add_handler(extra.handler)
    log.add_handler(extra.handler)
    log.record_event(SCHEMA_ID, 1, {"action": "open"})
    log.remove_handler(extra.handler)
    log.record_event(SCHEMA_ID, 1, {"action": "close"})
    assert [e["action"] for e in extra.events] == ["open"]


def test_two_eventlogs_never_share_output() -> None:
    a, b = Sink(), Sink()
    log_a = EventLog(handlers=[a.handler], allowed_schemas=[SCHEMA_ID])
    log_b = EventLog(handlers=[b.handler], allowed_schemas=[SCHEMA_ID])
    for log in (log_a, log_b):
        log.register_schema(make_schema(**PROPS))
    log_a.record_event(SCHEMA_ID, 1, {"action": "open"})
    assert len(a.events) == 1
    assert b.events == []
    del log_a
    fresh = EventLog(allowed_schemas=[SCHEMA_ID])
    assert fresh.handlers == []


class Exploding(logging.Handler):
    """A handler whose emit raises outright."""

    def emit(self, record: logging.LogRecord) -> None:
        msg = "boom"
        raise RuntimeError(msg)

    def handle(self, record: logging.LogRecord) -> bool:
        self.emit(record)
        return True


@pytest.mark.parametrize("bad_kind", [Exploding, DiskFull])
def test_failing_handler_harms_nothing_else(
    eventlog_factory: Any,
    sink: Sink,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    bad_kind: type,
) -> None:
    bad = bad_kind() if bad_kind is Exploding else bad_kind(tmp_path / "full.log")
    log = eventlog_factory(handlers=[bad, sink.handler], allowed_schemas=[SCHEMA_ID])
    log.register_schema(make_schema(**PROPS))
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            assert log.record_event(SCHEMA_ID, 1, {"action": "open"}) is not None
    assert len(sink.events) == 3
    assert log.handler_failures[bad] == 3
    assert len([r for r in caplog.records if "failed" in r.getMessage()]) == 1
    bad.close()


def test_handler_level_is_honoured(log: EventLog) -> None:
    quiet = Sink()
    quiet.handler.setLevel(logging.WARNING)
    log.add_handler(quiet.handler)
    log.record_event(SCHEMA_ID, 1, {"action": "open"})
    assert quiet.lines == []


def test_formatter_applies_to_the_json_line(log: EventLog) -> None:
    framed = Sink()
    framed.handler.setFormatter(logging.Formatter("EVENT %(message)s"))
    log.add_handler(framed.handler)
    log.record_event(SCHEMA_ID, 1, {"action": "open"})
    assert framed.lines[0].startswith('EVENT {"__timestamp__":"')


def test_handler_reading_msg_gets_the_capsule(log: EventLog) -> None:
    seen: list[Any] = []

    class Structured(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.msg)

    log.add_handler(Structured())
    capsule = log.record_event(SCHEMA_ID, 1, {"action": "open"})
    assert seen == [capsule]


def test_config_file_handlers_survive_deepcopy(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    handler = logging.FileHandler(path)
    config = Config()
    config.EventLog.handlers = [handler]
    config.EventLog.allowed_schemas = [SCHEMA_ID]
    log = EventLog(config=config)
    log.register_schema(make_schema(**PROPS))
    log.record_event(SCHEMA_ID, 1, {"action": "open"})
    assert log.handlers == [handler]
    second = EventLog(config=config)
    assert second.handlers == [handler]
    handler.close()
    assert '"action":"open"' in path.read_text()


def test_config_file_loaded_like_jupyter(tmp_path: Path) -> None:
    from traitlets.config.loader import PyFileConfigLoader

    (tmp_path / "jupyter_config.py").write_text(
        "import logging\n"
        f"c.EventLog.handlers = [logging.FileHandler({str(tmp_path / 'out.log')!r})]\n"
        f"c.EventLog.allowed_schemas = [{SCHEMA_ID!r}]\n"
    )
    config = PyFileConfigLoader("jupyter_config.py", path=str(tmp_path)).load_config()
    log = EventLog(config=config)
    log.register_schema(make_schema(**PROPS))
    log.record_event(SCHEMA_ID, 1, {"action": "close"})
    log.handlers[0].close()
    assert '"action":"close"' in (tmp_path / "out.log").read_text()


def test_listener_gets_redacted_capsule_and_its_failure_is_contained(log: EventLog) -> None:
    seen: list[dict[str, Any]] = []

    def broken(capsule: dict[str, Any]) -> None:
        msg = "listener bug"
        raise RuntimeError(msg)

    log.add_listener(broken)
    log.add_listener(seen.append)
    capsule = log.record_event(SCHEMA_ID, 1, {"action": "open"})
    assert seen == [capsule]
    log.remove_listener(seen.append)
    log.record_event(SCHEMA_ID, 1, {"action": "open"})
    assert len(seen) == 1


class Slow(logging.Handler):
    """A handler that takes its time."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        time.sleep(0.005)
        self.count += 1


def test_background_writer_does_not_block_and_flush_waits(eventlog_factory: Any) -> None:
    slow = Slow()
    log = eventlog_factory(handlers=[slow], allowed_schemas=[SCHEMA_ID], background=True)
    log.register_schema(make_schema(**PROPS))
    for _ in range(40):
        log.record_event(SCHEMA_ID, 1, {"action": "open"})
    assert slow.count < 40
    assert log.flush(timeout=10)
    assert slow.count == 40
    assert log.pending == 0


def test_background_queue_full_refuses_instead_of_growing(eventlog_factory: Any) -> None:
    slow = Slow()
    log = eventlog_factory(
        handlers=[slow], allowed_schemas=[SCHEMA_ID], background=True, queue_size=2
    )
    log.register_schema(make_schema(**PROPS))
    accepted, refused = 0, 0
    for _ in range(50):
        try:
            log.record_event(SCHEMA_ID, 1, {"action": "open"})
            accepted += 1
        except QueueFullError:
            refused += 1
    log.close(timeout=10)
    assert refused > 0
    assert slow.count == accepted


def test_stream_handlers_without_formatter_get_the_line_and_get_it_back(log: EventLog) -> None:
    plain = Sink()
    log.add_handler(plain.handler)
    log.record_event(SCHEMA_ID, 1, {"action": "open"})
    assert plain.handler.formatter is not None
    log.remove_handler(plain.handler)
    assert plain.handler.formatter is None
    assert plain.events[0]["action"] == "open"


NEW_YEAR_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z


def test_timestamps_increase_within_and_across_seconds(eventlog_factory: Any) -> None:
    ticks = iter([
        NEW_YEAR_NS - 600_000_000, NEW_YEAR_NS - 1_000, NEW_YEAR_NS + 1_000,
        NEW_YEAR_NS + 2 * 10**9,
    ])  # fmt: skip
    log = eventlog_factory(allowed_schemas=[SCHEMA_ID], clock=lambda: next(ticks))
    log.register_schema(make_schema(**PROPS))
    stamps = []
    for _ in range(4):
        capsule = log.record_event(SCHEMA_ID, 1, {})
        assert capsule is not None
        stamps.append(capsule["__timestamp__"])
    assert stamps == [
        "2025-12-31T23:59:59.400000Z",
        "2025-12-31T23:59:59.999999Z",
        "2026-01-01T00:00:00.000001Z",
        "2026-01-01T00:00:02.000000Z",
    ]
    assert stamps == sorted(stamps)
    assert all(TIMESTAMP.match(s) for s in stamps)


def test_failure_descriptions_are_timed_by_the_clock(eventlog_factory: Any) -> None:
    failed = Sink()
    log = eventlog_factory(failed_handlers=[failed.handler], clock=lambda: NEW_YEAR_NS)
    log.record_failure("rejected", "data: is required", schema_id=SCHEMA_ID, version=1)
    assert failed.events[0]["__timestamp__"] == "2026-01-01T00:00:00.000000Z"


def test_the_clock_is_read_for_the_current_time_only(eventlog_factory: Any) -> None:
    log = eventlog_factory(allowed_schemas=[SCHEMA_ID], clock=lambda: NEW_YEAR_NS)
    log.register_schema(make_schema(**PROPS))
    given = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)
    capsule = log.record_event(SCHEMA_ID, 1, {}, given)
    assert capsule is not None
    assert capsule["__timestamp__"] == "2024-05-01T12:30:00.000000Z"


def test_outcomes_are_counted_per_schema(eventlog_factory: Any, tmp_path: Path) -> None:
    disk_full = DiskFull(tmp_path / "full.log")
    log = eventlog_factory(handlers=[disk_full], allowed_schemas=[(SCHEMA_ID, ["open"], [])])
    log.register_schema(make_schema(**PROPS))
    log.record_event(SCHEMA_ID, 1, {"action": "open"})
    log.record_event(SCHEMA_ID, 1, {"action": "close"})
    log.count(SCHEMA_ID, "rejected", 3)
    assert log.outcomes() == {
        (SCHEMA_ID, "recorded"): 1,
        (SCHEMA_ID, "filtered"): 1,
        (SCHEMA_ID, "rejected"): 3,
        (SCHEMA_ID, "sink_failure"): 1,
    }
    disk_full.close()


@pytest.mark.parametrize(("redaction", "absent"), [("null", None), ("drop", "missing")])
def test_context_fields_follow_their_category(
    eventlog_factory: Any, redaction: str, absent: str | None
) -> None:
    context = {
        "__user__": "ada",
        "__event_time__": "2026-01-01T00:00:00.000000Z",
        "__client_id__": "c1",
    }
    log = eventlog_factory(allowed_schemas=[SCHEMA_ID], redaction=redaction)
    log.register_schema(make_schema(**PROPS))
    capsule = log.record_event(SCHEMA_ID, 1, {"action": "open"}, context=context)
    assert capsule["__event_time__"] == context["__event_time__"]
    assert capsule["__client_id__"] == "c1"
    assert capsule.get("__user__", "missing") == absent
    log.allowed_schemas = {SCHEMA_ID: {"allowed_categories": ["user-identifier"]}}
    assert log.record_event(SCHEMA_ID, 1, {}, context=context)["__user__"] == "ada"


def test_unknown_context_field_is_refused(log: EventLog) -> None:
    with pytest.raises(ValueError, match="unknown capsule field '__x__'"):
        log.record_event(SCHEMA_ID, 1, {}, context={"__x__": 1})


def test_unrestricted_only_overrides_the_allow_list(eventlog_factory: Any) -> None:
    props = {**PROPS, "user": {"type": "string", "categories": ["user-identifier"]}}
    log = eventlog_factory(
        allowed_schemas={
            SCHEMA_ID: {"allowed_categories": ["user-identifier"], "allowed_properties": ["user"]}
        }
    )
    log.register_schema(make_schema(**props))
    assert (
        log.record_event(SCHEMA_ID, 1, {"user": "ada"}, context={"__user__": "ada"})["user"]
        == "ada"
    )
    log.unrestricted_only = True
    capsule = log.record_event(
        SCHEMA_ID, 1, {"action": "open", "user": "ada"}, context={"__user__": "ada"}
    )
    assert (capsule["action"], capsule["user"], capsule["__user__"]) == ("open", None, None)


@pytest.mark.parametrize("background", [False, True])
def test_failures_go_to_failed_handlers_without_values(
    eventlog_factory: Any, background: bool
) -> None:
    failed = Sink()
    log = eventlog_factory(failed_handlers=[failed.handler], background=background)
    log.record_failure(
        "rejected", "invalid", schema_id=SCHEMA_ID, version="1", size=120, field="action"
    )
    log.record_failure("rate_limited", "over the rate limit")
    log.flush(timeout=5)
    first, second = failed.events
    assert {k: v for k, v in first.items() if k != "__timestamp__"} == {
        "outcome": "rejected", "reason": "invalid", "schema_id": SCHEMA_ID, "version": "1",
        "size": 120, "field": "action",
    }  # fmt: skip
    assert TIMESTAMP.match(first["__timestamp__"])
    assert (second["outcome"], second["schema_id"]) == ("rate_limited", None)
    assert log.outcomes() == {(SCHEMA_ID, "rejected"): 1, ("(unknown)", "rate_limited"): 1}


def test_background_writes_queued_lines_in_order_as_one_write(
    eventlog_factory: Any, tmp_path: Path
) -> None:
    path, writes, gate = tmp_path / "events.log", [], threading.Event()

    class HeldFileHandler(logging.FileHandler):
        def emit(self, record: logging.LogRecord) -> None:
            gate.wait(10)  # the first write waits: the next records queue up behind it
            writes.append(record.getMessage().count("\n") + 1)
            super().emit(record)

    handler = HeldFileHandler(path)
    log = eventlog_factory(handlers=[handler], allowed_schemas=[SCHEMA_ID], background=True)
    log.register_schema(make_schema(**PROPS))
    for n in range(301):
        log.record_event(SCHEMA_ID, 1, {"action": "open", "message": str(n)})
    gate.set()
    assert log.flush(10)
    lines = [json.loads(line)["message"] for line in path.read_text().splitlines()]
    assert lines == [str(n) for n in range(301)]
    assert len(writes) < 10  # what queued behind the held write went out in a few writes
    handler.close()


def test_filtered_handler_gets_each_record_on_its_own(eventlog_factory: Any) -> None:
    picky = Sink()
    picky.handler.addFilter(lambda record: "keep" in record.getMessage())
    log = eventlog_factory(handlers=[picky.handler], allowed_schemas=[SCHEMA_ID], background=True)
    log.register_schema(make_schema(**PROPS))
    for message in ("keep-1", "drop", "keep-2"):
        log.record_event(SCHEMA_ID, 1, {"message": message})
    assert log.flush(10)
    assert [e["message"] for e in picky.events] == ["keep-1", "keep-2"]


def test_failed_joint_write_counts_every_event(eventlog_factory: Any, tmp_path: Path) -> None:
    full, gate = DiskFull(tmp_path / "full.log"), Gate()
    log = eventlog_factory(handlers=[gate, full], allowed_schemas=[SCHEMA_ID], background=True)
    log.register_schema(make_schema(**PROPS))
    for _ in range(50):
        log.record_event(SCHEMA_ID, 1, {"action": "open"})
    gate.open.set()
    assert log.flush(10)
    assert log.handler_failures[full] == 50
    assert log.outcomes()[(SCHEMA_ID, "sink_failure")] == 50
    full.close()


def test_format_timestamp_repeats_and_changes_correctly() -> None:
    from jupyter_telemetry_ext.core.timestamps import format_timestamp

    first = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    same_instant = first.astimezone(timezone(timedelta(hours=5)))
    assert (
        format_timestamp(first) == format_timestamp(same_instant) == "2026-01-02T03:04:05.000006Z"
    )
    assert format_timestamp(first + timedelta(microseconds=1)) == "2026-01-02T03:04:05.000007Z"
    assert format_timestamp(first.replace(tzinfo=None)) == "2026-01-02T03:04:05.000006Z"


def test_writer_survives_a_wake_with_nothing_left(eventlog_factory: Any) -> None:
    log = eventlog_factory(allowed_schemas=[SCHEMA_ID], background=True)
    log.register_schema(make_schema(**PROPS))
    for _ in range(3):
        for _ in range(50):
            log.record_event(SCHEMA_ID, 1, {"action": "open"})
        assert log.flush(5)
    assert log.flush(5)
