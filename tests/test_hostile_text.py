"""Posted text that tries to forge log lines, drive a terminal or bend an error reply."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import FRONTEND_ID
from tests.servers import Server, read_events, write_config

pytestmark = pytest.mark.e2e  # starts a `jupyter server` subprocess

CONFIG = """
import logging
c.ServerApp.jpserver_extensions = {{"jupyter_telemetry_ext": True}}
c.TelemetryExtension.schema_paths = [{schemas!r}]
c.TelemetryExtension.rate_limit = 0
c.TelemetryExtension.reply_after_write = True
c.EventLog.handlers = [logging.FileHandler({events!r})]
c.EventLog.allowed_schemas = [{schema_id!r}]
"""
FORGED = "\n[I 2026-01-01 00:00:00.000 ServerApp] forged line"
TERMINAL = "\x1b]0;owned\x07\x1b[2J\x9b31m"
EVENTS = "/api/telemetry/events"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `jupyter server` for the module, its log in `server.log`."""
    tmp_path = tmp_path_factory.mktemp("hostile")
    write_config(tmp_path, CONFIG, events=str(tmp_path / "events.jsonl"), schema_id=FRONTEND_ID)
    started = Server(tmp_path)
    yield started
    assert started.stop(signal.SIGTERM) == 0


def event(**data: object) -> dict[str, object]:
    return {"schema_id": FRONTEND_ID, "version": 1, "data": {"action": "open", **data}}


def log_text(server: Server) -> str:
    return server.log.read_text("utf-8", errors="replace")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(event(**{"__x" + FORGED: 1}), id="reserved-key"),
        pytest.param(event(model={"__y" + TERMINAL: 1}), id="nested-reserved-key"),
        pytest.param({"events": [event(**{"__z" + FORGED: 1})] * 2}, id="batch"),
        pytest.param({**event(), "extra" + FORGED: 1}, id="unknown-field"),
        pytest.param({**event(), "schema_id": "a" + FORGED}, id="unknown-schema"),
        pytest.param({**event(), "id": "e" + FORGED}, id="client-id"),
    ],
)
def test_posted_control_characters_never_reach_the_log_raw(
    server: Server, body: dict[str, object]
) -> None:
    code, reply = server.request("POST", EVENTS, body)
    assert code == 400
    assert "\n" not in reply["message"]
    assert "\x1b" not in reply["message"]
    log = log_text(server)
    assert not any(line.startswith("[I 2026-01-01") for line in log.splitlines())
    assert not any(char in log for char in "\x1b\x07\x9b")


def test_escaped_key_is_still_named_in_the_log(server: Server) -> None:
    code, reply = server.request("POST", EVENTS, event(**{"__k" + FORGED: 1}))
    assert code == 400
    assert reply["message"].startswith("data.__k\\n[I 2026-01-01")
    assert "data.__k\\n[I 2026-01-01" in log_text(server)


def test_unknown_schema_id_is_not_echoed(server: Server) -> None:
    unknown = "no.such/schema-" + FORGED
    code, reply = server.request("GET", "/api/telemetry/schemas/" + quote(unknown, safe=""))
    assert code == 404
    assert "no schema with this id" in reply["message"]
    assert "no.such" not in reply["message"]
    assert "no.such/schema" not in log_text(server)  # the access log has it URL-encoded only


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(event(**{"__100%": 1}), "data.__100%: ", id="reserved-key"),
        pytest.param({**event(), "a%sb": 1}, "unknown field 'a%sb'", id="unknown-field"),
    ],
)
def test_error_replies_keep_percent_signs(
    server: Server, body: dict[str, object], expected: str
) -> None:
    code, reply = server.request("POST", EVENTS, body)
    assert code == 400
    assert expected in reply["message"]
    assert "%%" not in reply["message"]


def test_nothing_hostile_was_recorded(server: Server) -> None:
    assert read_events(Path(server.log.parent / "events.jsonl")) == []
