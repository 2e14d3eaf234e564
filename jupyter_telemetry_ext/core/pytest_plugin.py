"""Pytest fixtures for extensions that emit through `EventLogger` (jupyter_events' fixtures).

Enable with `pytest_plugins = ["jupyter_telemetry_ext.core.pytest_plugin"]`.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from .eventlogger import EventLogger


@pytest.fixture
def jp_event_sink() -> io.StringIO:
    """Return the stream the emitted events are written to."""
    return io.StringIO()


@pytest.fixture
def jp_event_handler(jp_event_sink: io.StringIO) -> logging.Handler:
    """Return a handler writing the emitted events to `jp_event_sink`."""
    return logging.StreamHandler(jp_event_sink)


@pytest.fixture
def jp_read_emitted_events(
    jp_event_handler: logging.Handler, jp_event_sink: io.StringIO
) -> Callable[[], list[Any] | None]:
    """Return a function reading the events emitted since it was last called (None: none)."""

    def read() -> list[Any] | None:
        jp_event_handler.flush()
        text = jp_event_sink.getvalue().strip()
        jp_event_sink.truncate(0)
        jp_event_sink.seek(0)
        return [json.loads(line) for line in text.split("\n")] if text else None

    return read


@pytest.fixture
def jp_event_schemas() -> list[Any]:
    """Return the schemas `jp_event_logger` registers (dicts, Paths or YAML/JSON text)."""
    return []


@pytest.fixture
def jp_event_logger(jp_event_handler: logging.Handler, jp_event_schemas: list[Any]) -> EventLogger:
    """Return an EventLogger with `jp_event_schemas` registered, writing to `jp_event_handler`."""
    logger = EventLogger()
    for schema in jp_event_schemas:
        logger.register_event_schema(schema)
    logger.register_handler(jp_event_handler)
    return logger
