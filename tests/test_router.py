"""EventRouter: one event to several EventLogs, each with its own allow-list and handlers."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from jupyter_telemetry_ext import EventLog, EventRouter, EventValidationError, UnknownSchemaError
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


def test_register_schema_file_on_every_log(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(make_schema(SCHEMA_ID, **PROPS)))
    router = EventRouter([EventLog(), EventLog()])
    router.add_eventlog(EventLog())
    router.register_schema_file(path)
    assert all(log.get_schema(SCHEMA_ID, 1) for log in router.eventlogs)
