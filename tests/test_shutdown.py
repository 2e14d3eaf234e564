"""`jupyter server` as a subprocess: every accepted event is in the file after SIGTERM or SIGINT."""

from __future__ import annotations

import http.client
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.servers import EXAMPLE, Server, read_events, write_config

pytestmark = pytest.mark.e2e  # starts `jupyter server` subprocesses

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "jupyter_server_config.py"
NOTEBOOK_ID = "https://events.jupyter.org/jupyter_telemetry_ext/notebook"

SLOW_CONFIG = """
import logging, time

class SlowFileHandler(logging.FileHandler):
    # A sink that takes 5 ms an event: at SIGTERM, hundreds of events still wait for it.
    def emit(self, record):
        time.sleep(0.005)
        super().emit(record)

c.ServerApp.jpserver_extensions = {{"jupyter_telemetry_ext": True}}
c.TelemetryExtension.schema_paths = [{schemas!r}]
c.EventLog.handlers = [SlowFileHandler({events!r})]
c.EventLog.allowed_schemas = ["test.frontend/example"]
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_writes_every_accepted_event(
    tmp_path: Path, servers: list[Server], sig: signal.Signals
) -> None:
    events = tmp_path / "events.jsonl"
    write_config(tmp_path, SLOW_CONFIG, events=str(events))
    server = Server(tmp_path)
    servers.append(server)
    accepted = []
    for batch in range(4):
        counts = range(batch * 100, batch * 100 + 100)
        posted = [{**EXAMPLE, "data": {"action": "open", "count": count}} for count in counts]
        status, reply = server.request("POST", "/api/telemetry/events?cache=1", {"events": posted})
        assert (status, reply["recorded"]) == (200, 100)
        accepted += [event["data"]["count"] for event in posted]
    assert server.stop(sig) == 0
    assert sorted(capsule["count"] for capsule in read_events(events)) == accepted


def test_quickstart_config_records_and_sigint_flushes(
    tmp_path: Path, servers: list[Server]
) -> None:
    server = Server(tmp_path, f"--config={EXAMPLE_CONFIG}")
    servers.append(server)
    data = {"action": "opened", "path": "me/secret.ipynb", "kernel_name": "python3"}
    event = {"schema_id": NOTEBOOK_ID, "version": 1, "data": data}
    assert server.request("POST", "/api/telemetry/events", event) == (200, {"status": "recorded"})
    _, listing = server.request("GET", "/api/telemetry/schemas")
    assert {s["id"] for s in listing["schemas"] if s["allowed"] and s["frontend"]} >= {NOTEBOOK_ID}
    server.stop(signal.SIGINT)
    [capsule] = read_events(tmp_path / "telemetry-events.jsonl")
    assert capsule["__schema__"] == NOTEBOOK_ID
    assert (capsule["action"], capsule["path"]) == ("opened", None)  # the path is personal


LOAD_CONFIG = (
    SLOW_CONFIG.replace("time.sleep(0.005)", "time.sleep({delay!r})")
    + """
c.TelemetryExtension.rate_limit = 0  # one token is one user: the load would be rate limited
c.TelemetryExtension.reply_after_write = {reply_after_write!r}
"""
)


def start_loaded_server(
    tmp_path: Path, *, delay: float = 0.0, reply_after_write: bool = False
) -> Server:
    """Start a server whose sink takes `delay` s an event, without rate limit."""
    events = str(tmp_path / "events.jsonl")
    write_config(
        tmp_path, LOAD_CONFIG, events=events, delay=delay, reply_after_write=reply_after_write
    )
    return Server(tmp_path)


class Poster(threading.Thread):
    """Posts batches of 10 events with distinct counts until the server stops answering."""

    def __init__(self, server: Server, first: int) -> None:
        super().__init__(daemon=True)
        self.server, self.next, self.accepted = server, first, list[int]()

    def run(self) -> None:
        while True:
            counts = range(self.next, self.next + 10)
            self.next += 10
            posted = [{**EXAMPLE, "data": {"action": "open", "count": n}} for n in counts]
            try:
                status, reply = self.server.request(
                    "POST", "/api/telemetry/events", {"events": posted}
                )
            except (OSError, http.client.HTTPException, ValueError):
                return
            if status != 200:
                return
            self.accepted += [
                n
                for n, r in zip(counts, reply["results"], strict=True)
                if r["status"] == "recorded"
            ]


def load(server: Server, seconds: float) -> list[Poster]:
    """Start 6 concurrent posters; return them after `seconds`."""
    posters = [Poster(server, first=i * 1_000_000) for i in range(6)]
    for poster in posters:
        poster.start()
    time.sleep(seconds)
    return posters


def accepted_by(posters: list[Poster]) -> set[int]:
    """Wait for the posters to stop; return every count that got a 2xx."""
    for poster in posters:
        poster.join(30)
    return {n for poster in posters for n in poster.accepted}


def test_sigterm_under_concurrent_load_loses_nothing(tmp_path: Path, servers: list[Server]) -> None:
    server = start_loaded_server(tmp_path)
    servers.append(server)
    posters = load(server, 1.0)
    assert server.stop(signal.SIGTERM) == 0  # mid-stream: the posters are still sending
    accepted = accepted_by(posters)
    written = [capsule["count"] for capsule in read_events(tmp_path / "events.jsonl")]
    assert len(accepted) > 100
    assert accepted <= set(written)  # 0 lost
    assert len(written) == len(set(written))


@pytest.mark.parametrize("reply_after_write", [True, False], ids=["reply-after-write", "default"])
def test_sigkill_loses_at_most_what_was_not_written(
    tmp_path: Path, servers: list[Server], reply_after_write: bool
) -> None:
    # A sink of 250 events/s: six posters outrun it, so a backlog is never written at the kill.
    server = start_loaded_server(tmp_path, delay=0.004, reply_after_write=reply_after_write)
    servers.append(server)
    posters = load(server, 1.0)
    server.process.kill()
    server.process.wait(10)
    accepted = accepted_by(posters)
    written = {capsule["count"] for capsule in read_events(tmp_path / "events.jsonl")}
    assert len(accepted) > 50
    if reply_after_write:
        assert accepted <= written  # every 2xx was written before it was sent
    else:
        assert accepted - written  # what the slow sink had not written yet is lost
