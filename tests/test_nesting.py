"""An event nested deeper than the validator's stack allows is invalid, never a crash."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.core.nesting import MAX_DEPTH
from jupyter_telemetry_ext.core.validation import EventValidationError
from tests.conftest import Sink, make_schema

SCHEMA = make_schema("test.events/nested", blob={"type": "object"})


def nested(levels: int) -> dict[str, Any]:
    """Return `levels` dicts, each inside the one before."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.fixture
def eventlog(sink: Sink) -> EventLog:
    el = EventLog(handlers=[sink.handler], allowed_schemas=["test.events/nested"])
    el.register_schema(SCHEMA)
    return el


def test_an_event_nested_as_deep_as_the_limit_is_recorded(eventlog: EventLog, sink: Sink) -> None:
    assert eventlog.record_event("test.events/nested", 1, {"blob": nested(MAX_DEPTH - 1)})
    assert eventlog.flush(5)
    assert len(sink.events) == 1


@pytest.mark.parametrize("levels", [MAX_DEPTH, 20_000])
def test_an_event_nested_deeper_than_the_limit_is_invalid_naming_the_field(
    eventlog: EventLog, sink: Sink, levels: int
) -> None:
    event = {"blob": nested(levels)}
    with pytest.raises(EventValidationError, match=rf"blob: nests deeper than {MAX_DEPTH} levels"):
        eventlog.record_event("test.events/nested", 1, event)
    assert eventlog.flush(5)
    assert not sink.lines


def test_a_deeply_nested_event_does_not_crash_the_process() -> None:
    # Run apart: before the limit, the validator overflowed the native stack (SIGSEGV).
    code = textwrap.dedent(
        """
        from jupyter_telemetry_ext import EventLog, EventLogger
        from jupyter_telemetry_ext.core.validation import EventValidationError
        from tests.test_nesting import SCHEMA, nested

        el = EventLog(allowed_schemas=["test.events/nested"])
        el.register_schema(SCHEMA)
        logger = EventLogger()
        logger.register_event_schema({**SCHEMA, "$id": "https://example.org/nested"})
        logger.add_listener(schema_id="https://example.org/nested", listener=print)
        for record in (
            lambda event: el.record_event("test.events/nested", 1, event),
            lambda event: logger.emit(schema_id="https://example.org/nested", data=event),
        ):
            try:
                record({"blob": nested(200_000)})
            except EventValidationError as e:
                print(e.field, e.reason)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parents[1],  # `-c` imports from the working directory: tests.*
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [f"blob nests deeper than {MAX_DEPTH} levels"] * 2
