"""Shared fixtures: a real Jupyter server with the extension (pytest-jupyter) and event sinks."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_telemetry_ext import EventLog

pytest_plugins = ["pytest_jupyter.jupyter_server"]


class Sink:
    """A real logging handler writing to memory, read back as JSON lines."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stream.getvalue().splitlines() if line]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A fresh in-memory JSON-lines sink."""
    s = Sink()
    yield s
    s.handler.close()


def make_schema(
    schema_id: str = "test.events/example", version: Any = 1, **props: Any
) -> dict[str, Any]:
    """Return a minimal valid schema with the given properties."""
    return {
        "$id": schema_id,
        "version": version,
        "title": "Example",
        "description": "An example event schema.",
        "type": "object",
        "properties": props or {"action": {"type": "string"}},
    }


@pytest.fixture
def eventlog_factory(sink: Sink) -> Iterator[Any]:
    """Build EventLogs that write to `sink` and are closed after the test."""
    logs: list[EventLog] = []

    def make(**kwargs: Any) -> EventLog:
        kwargs.setdefault("handlers", [sink.handler])
        log = EventLog(**kwargs)
        logs.append(log)
        return log

    yield make
    for log in logs:
        log.close()
