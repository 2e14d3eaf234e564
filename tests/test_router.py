"""EventRouter: one event to several EventLogs, each with its own allow-list and handlers."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext import (
    EventLog,
    EventRouter,
    EventSchema,
    EventSchemaError,
    EventValidationError,
    UnknownSchemaError,
)
from tests.conftest import Sink, make_schema

SCHEMA_ID = "test.events/router"
PROPS = {
    "action": {"type": "string"},
    "user": {"type": "string", "categories": ["user-identifier"]},
}


def two_logs() -> tuple[EventRouter, Sink, Sink]:
    a, b = Sink(), Sink()
    router = EventRouter(
        [
            EventLog(
                handlers=[a.handler],
                allowed_schemas={SCHEMA_ID: {"allowed_categories": ["user-identifier"]}},
            ),
            EventLog(handlers=[b.handler], allowed_schemas=[SCHEMA_ID]),
        ]
    )
    router.register_schema(make_schema(SCHEMA_ID, **PROPS))
    return router, a, b


def test_each_log_applies_its_own_allow_list() -> None:
    router, a, b = two_logs()
    results = router.record_event(SCHEMA_ID, 1, {"action": "go", "user": "ada"})
    assert [r["user"] if r else "filtered" for r in results] == ["ada", None]
    assert a.events[0]["user"] == "ada"
    assert b.events[0]["user"] is None


def test_filtered_in_one_log_is_none_in_results() -> None:
    a = Sink()
    router = EventRouter([EventLog(handlers=[a.handler], allowed_schemas=[SCHEMA_ID]), EventLog()])
    router.register_schema(make_schema(SCHEMA_ID, **PROPS))
    results = router.record_event(SCHEMA_ID, 1, {"action": "go"})
    assert results[0] is not None
    assert results[1] is None


def test_failing_handler_in_one_log_does_not_stop_the_others(tmp_path: Path) -> None:
    class Broken(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = "sink is down"
            raise OSError(msg)

        def handle(self, record: logging.LogRecord) -> bool:
            self.emit(record)
            return True

    good = Sink()
    router = EventRouter(
        [
            EventLog(handlers=[Broken()], allowed_schemas=[SCHEMA_ID]),
            EventLog(handlers=[good.handler], allowed_schemas=[SCHEMA_ID]),
        ]
    )
    router.register_schema(make_schema(SCHEMA_ID, **PROPS))
    results = router.record_event(SCHEMA_ID, 1, {"action": "go"})
    assert all(r is not None for r in results)
    assert len(good.events) == 1


def test_invalid_or_unknown_raises_before_anything_is_written() -> None:
    router, a, b = two_logs()
    with pytest.raises(EventValidationError):
        router.record_event(SCHEMA_ID, 1, {"action": 3})
    with pytest.raises(UnknownSchemaError):
        router.record_event(SCHEMA_ID, 2, {"action": "go"})
    assert a.lines == []
    assert b.lines == []


def test_schema_known_to_one_log_only_raises_before_writing() -> None:
    a = Sink()
    first = EventLog(handlers=[a.handler], allowed_schemas=[SCHEMA_ID])
    first.register_schema(make_schema(SCHEMA_ID, **PROPS))
    router = EventRouter([first, EventLog(allowed_schemas=[SCHEMA_ID])])
    with pytest.raises(UnknownSchemaError):
        router.record_event(SCHEMA_ID, 1, {"action": "go"})
    assert a.lines == []


def test_a_log_refusing_a_checked_event_says_how_many_logs_recorded_it() -> None:
    """A tap (a forwarder whose spool is full) refuses after every log checked the event."""
    router, a, b = two_logs()

    def full(*args: Any) -> None:
        msg = "the spool is full"
        raise OSError(msg)

    router.eventlogs[1].add_tap(full)
    with pytest.raises(OSError, match="the spool is full") as refused:
        router.record_event(SCHEMA_ID, 1, {"action": "go"})
    assert refused.value.__notes__ == [
        "recorded by the first 1 EventLogs of the router (router.eventlogs[:1])"
    ]
    assert len(a.lines) == 1
    assert b.lines == []


def test_register_schema_file_on_every_log(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(make_schema(SCHEMA_ID, **PROPS)))
    router = EventRouter([EventLog(), EventLog()])
    router.add_eventlog(EventLog())
    router.register_schema_file(path)
    assert all(log.get_schema(SCHEMA_ID, 1) for log in router.eventlogs)


# Registering: with every EventLog, or with none

OTHER_PROPS = {"action": {"type": "integer"}}


class Picky(EventLog):
    """An EventLog whose registration refuses what the others take (a stricter subclass)."""

    def register_schema(self, schema: Any) -> EventSchema:
        msg = "this log takes no schemas"
        raise EventSchemaError(msg)


def registered_in(router: EventRouter, version: object = 1) -> list[bool]:
    """Return, for each EventLog, whether the test schema's version is registered with it."""
    return [(SCHEMA_ID, version) in log.schemas for log in router.eventlogs]


@pytest.mark.parametrize("refusing", [0, 1, 2])
def test_a_schema_one_log_refuses_is_registered_with_none(refusing: int) -> None:
    """A log that holds another schema under the same `$id` and version refuses it: the logs
    before it do not keep it, and the refusing log keeps its own."""
    logs = [EventLog(allowed_schemas=[SCHEMA_ID]) for _ in range(3)]
    own = logs[refusing].register_schema(make_schema(SCHEMA_ID, **OTHER_PROPS))
    router = EventRouter(logs)
    with pytest.raises(EventSchemaError, match="already registered with a different schema"):
        router.register_schema(make_schema(SCHEMA_ID, **PROPS))
    assert registered_in(router) == [i == refusing for i in range(3)]
    assert logs[refusing].get_schema(SCHEMA_ID, 1) is own
    for i, log in enumerate(logs):
        if i != refusing:
            with pytest.raises(UnknownSchemaError):
                log.record_event(SCHEMA_ID, 1, {"action": "go"})


def test_a_schema_file_one_log_refuses_is_registered_with_none(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(make_schema(SCHEMA_ID, **PROPS)))
    second = EventLog()
    second.register_schema(make_schema(SCHEMA_ID, **OTHER_PROPS))
    router = EventRouter([EventLog(), second])
    with pytest.raises(EventSchemaError, match=r"s\.json: .* already registered"):
        router.register_schema_file(path)
    assert registered_in(router) == [False, True]


def test_a_registration_failing_part_way_is_undone() -> None:
    """A log that refuses only when asked to register (not when checked first) still leaves
    the schema registered with none; a log that had the identical schema keeps it."""
    had_it = EventLog()
    kept = had_it.register_schema(make_schema(SCHEMA_ID, **PROPS))
    router = EventRouter([EventLog(), had_it, Picky(), EventLog()])
    with pytest.raises(EventSchemaError, match="takes no schemas"):
        router.register_schema(make_schema(SCHEMA_ID, **PROPS))
    assert registered_in(router) == [False, True, False, False]
    assert had_it.get_schema(SCHEMA_ID, 1) is kept
    router.eventlogs.remove(router.eventlogs[2])
    router.register_schema(make_schema(SCHEMA_ID, **PROPS))  # nothing was left half-done
    assert registered_in(router) == [True, True, True]


def test_the_identical_schema_again_is_a_noop_in_every_log() -> None:
    router = two_logs()[0]
    again = router.register_schema(make_schema(SCHEMA_ID, version="1", **PROPS))
    assert again.same_as(router.eventlogs[0].get_schema(SCHEMA_ID, 1))
    assert [len(log.schemas) for log in router.eventlogs] == [1, 1]


def test_a_different_schema_under_a_registered_version_is_refused_by_every_log() -> None:
    router = two_logs()[0]
    before = [log.get_schema(SCHEMA_ID, 1) for log in router.eventlogs]
    with pytest.raises(EventSchemaError, match="already registered with a different schema"):
        router.register_schema(make_schema(SCHEMA_ID, **{**PROPS, "extra": {"type": "string"}}))
    assert [log.get_schema(SCHEMA_ID, 1) for log in router.eventlogs] == before


# Recording: an event one log refuses is written by none

OPEN_PROPS = {
    "action": {"type": "string", "categories": ["unrestricted"]},
    "note": {"categories": ["user-identifiable-information"]},  # any value: not looked into
}


@pytest.mark.parametrize(
    "note",
    [float("nan"), {"when": datetime.now(timezone.utc)}, "x\ud800"],
    ids=["nan", "datetime", "lone-surrogate"],
)
def test_an_event_one_log_would_redact_and_another_cannot_write_is_written_by_none(
    note: Any,
) -> None:
    """The first log redacts `note` (it would record `null`), the second keeps it and could not
    write it: the event is invalid for both, so neither writes it."""
    a, b = Sink(), Sink()
    router = EventRouter([
        EventLog(handlers=[a.handler], allowed_schemas=[SCHEMA_ID]),
        EventLog(handlers=[b.handler],
                 allowed_schemas={SCHEMA_ID: {"allowed_properties": ["note"]}}),
    ])  # fmt: skip
    router.register_schema(make_schema(SCHEMA_ID, **OPEN_PROPS))
    with pytest.raises(EventValidationError) as e:
        router.record_event(SCHEMA_ID, 1, {"action": "go", "note": note})
    assert e.value.field.startswith("note")
    assert (a.lines, b.lines) == ([], [])
    assert router.record_event(SCHEMA_ID, 1, {"action": "go", "note": "ok"})[1]["note"] == "ok"
    assert [len(a.lines), len(b.lines)] == [1, 1]
