"""OpenTelemetry export: events arrive at a real OTLP/HTTP receiver, field by field."""

from __future__ import annotations

import signal
from datetime import datetime, timezone
from pathlib import Path

import pytest

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.sinks.otel import OTLPEventHandler
from tests.conftest import make_schema
from tests.otlp_receiver import Receiver
from tests.servers import EXAMPLE, Server, write_config

SCHEMA_ID = "https://events.example.org/notebook/v1"
PROPS = {
    "action": {"enum": ["open", "save"]},
    "path": {"type": "string", "categories": ["user-identifiable-information"]},
    "cells": {
        "type": "object",
        "properties": {"count": {"type": "integer"}, "kinds": {"type": "array"}},
    },
}


def test_events_arrive_as_structured_log_records() -> None:
    with Receiver() as receiver:
        handler = OTLPEventHandler(receiver.endpoint, service_name="hub-user-server")
        log = EventLog(handlers=[handler], allowed_schemas=[SCHEMA_ID])
        log.register_schema(make_schema(SCHEMA_ID, "1", **PROPS))
        when = datetime(2026, 11, 27, 10, 0, 0, 250000, tzinfo=timezone.utc)
        log.record_event(SCHEMA_ID, "1", {"action": "open", "path": "/home/a.ipynb"}, when)
        log.record_event(
            SCHEMA_ID, "1", {"action": "save", "cells": {"count": 3, "kinds": ["code", "markdown"]}}
        )
        log.flush()
        handler.close()
    first, second = receiver.records
    assert first["body"] == {"action": "open", "path": None}
    assert second["body"] == {
        "action": "save",
        "cells": {"count": 3, "kinds": ["code", "markdown"]},
    }
    assert first["attributes"] == {
        "jupyter.event.schema": SCHEMA_ID,
        "jupyter.event.schema_version": "1",
        "jupyter.event.metadata_version": 2,
    }
    assert first["time_unix_nano"] == int(when.timestamp()) * 10**9 + 250_000_000
    assert (first["event_name"], first["severity_text"], first["scope"]) == (
        SCHEMA_ID,
        "INFO",
        "jupyter_telemetry_ext",
    )
    assert first["resource"]["service.name"] == "hub-user-server"
    assert first["path"] == "/v1/logs"


def test_flush_sends_before_returning() -> None:
    with Receiver() as receiver:
        handler = OTLPEventHandler(receiver.endpoint)
        log = EventLog(handlers=[handler], allowed_schemas=[SCHEMA_ID])
        log.register_schema(make_schema(SCHEMA_ID, "1", **PROPS))
        for _ in range(5):
            log.record_event(SCHEMA_ID, "1", {"action": "open"})
        log.flush()
        assert len(receiver.records) == 5
        handler.close()


def test_unreachable_collector_never_reaches_the_caller() -> None:
    with Receiver() as receiver:
        endpoint = receiver.endpoint
    handler = OTLPEventHandler(endpoint, timeout=0.5, flush_timeout_ms=1000)
    log = EventLog(handlers=[handler], allowed_schemas=[SCHEMA_ID])
    log.register_schema(make_schema(SCHEMA_ID, "1", **PROPS))
    assert log.record_event(SCHEMA_ID, "1", {"action": "open"}) is not None
    log.flush()
    handler.close()


OTEL_CONFIG = """
from jupyter_telemetry_ext.sinks.otel import OTLPEventHandler

c.ServerApp.jpserver_extensions = {{"jupyter_telemetry_ext": True}}
c.TelemetryExtension.schema_paths = [{schemas!r}]
c.EventLog.handlers = [OTLPEventHandler({endpoint!r}, service_name="otel-test")]
c.EventLog.allowed_schemas = ["test.frontend/example"]
"""


@pytest.mark.e2e
def test_server_flushes_otlp_records_at_shutdown(
    tmp_path: Path,
    servers: list[Server],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Batches would wait a minute: what arrives before the server exits was flushed at stop.
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "60000")
    with Receiver() as receiver:
        write_config(tmp_path, OTEL_CONFIG, endpoint=receiver.endpoint)
        server = Server(tmp_path)
        servers.append(server)
        posted = [{**EXAMPLE, "data": {"action": "open", "count": n}} for n in range(20)]
        status, reply = server.request("POST", "/api/telemetry/events", {"events": posted})
        assert (status, reply["recorded"]) == (200, 20)
        assert receiver.records == []
        assert server.stop(signal.SIGTERM) == 0
    assert sorted(r["body"]["count"] for r in receiver.records) == list(range(20))
    assert {r["resource"]["service.name"] for r in receiver.records} == {"otel-test"}
