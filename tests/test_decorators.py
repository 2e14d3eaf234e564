"""`record` and `instrument`: events recorded after a method returns normally."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_telemetry_ext import EventLog, instrument, record
from tests.conftest import Sink, make_schema

SCHEMA_ID = "test.events/calls"


@pytest.fixture
def log(sink: Sink) -> EventLog:
    log = EventLog(handlers=[sink.handler], allowed_schemas=[SCHEMA_ID])
    log.register_schema(
        make_schema(SCHEMA_ID, version=1, action={"type": "string"}, name={"type": "string"})
    )
    log.register_schema(
        make_schema(
            SCHEMA_ID,
            version=2,
            action={"type": "string"},
            name={"type": "string"},
            loud={"type": "boolean"},
        )
    )
    return log


def actions(sink: Sink) -> list[tuple[Any, ...]]:
    return [(e["action"], e.get("name"), e["__schema_version__"]) for e in sink.events]


def test_record_with_and_without_action(log: EventLog, sink: Sink) -> None:
    class Greeter:
        eventlog, eventschema, eventkeys = log, SCHEMA_ID, ["name"]

        @record("say-hello")
        def hello(self, name: str, loud: bool = False) -> str:
            return f"hello {name}"

        @record
        def goodbye(self, name: str = "you") -> str:
            return f"bye {name}"

    greeter = Greeter()
    assert greeter.hello("ada") == "hello ada"
    assert greeter.goodbye() == "bye you"
    assert greeter.goodbye.__name__ == "goodbye"
    assert actions(sink) == [("say-hello", "ada", 2), ("goodbye", "you", 2)]


def test_explicit_version_and_keyword_arguments(log: EventLog, sink: Sink) -> None:
    class Greeter:
        eventlog, eventschema, eventschema_version, eventkeys = log, SCHEMA_ID, 1, ["name"]

        @record("hi")
        def hi(self, *, name: str) -> None:
            return None

    Greeter().hi(name="grace")
    assert actions(sink) == [("hi", "grace", 1)]


def test_nothing_recorded_when_the_method_raises(log: EventLog, sink: Sink) -> None:
    class Failing:
        eventlog, eventschema = log, SCHEMA_ID

        @record
        def fail(self) -> None:
            msg = "nope"
            raise ValueError(msg)

    with pytest.raises(ValueError, match="nope"):
        Failing().fail()
    assert sink.lines == []


def test_instrument_records_every_public_method(log: EventLog, sink: Sink) -> None:
    @instrument
    class Service:
        eventlog, eventschema, eventkeys = log, SCHEMA_ID, ["name"]

        def start(self, name: str) -> str:
            return name

        def stop(self) -> None:
            return None

        def _private(self) -> None:
            return None

    service = Service()
    assert service.start("k1") == "k1"
    service.stop()
    service._private()
    assert actions(sink) == [("start", "k1", 2), ("stop", None, 2)]
