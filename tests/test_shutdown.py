"""`jupyter server` as a subprocess: every accepted event is in the file after SIGTERM or SIGINT."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import frontend_schema

TOKEN = "shutdown-test-token"
EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "jupyter_server_config.py"
NOTEBOOK_ID = "https://events.jupyter.org/jupyter_telemetry_ext/notebook"
EXAMPLE = {"schema_id": "test.frontend/example", "version": 1}

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


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A `jupyter server` subprocess with its own config, data and runtime folders."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        """Start the server in `tmp_path` and wait until it answers."""
        self.port = free_port()
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
            "JUPYTER_DATA_DIR": str(tmp_path / "data"),
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        }
        command = [sys.executable, "-m", "jupyter_server", "--ip=127.0.0.1", f"--port={self.port}",
                   "--ServerApp.port_retries=0", "--no-browser", "--allow-root",
                   f"--IdentityProvider.token={TOKEN}", *args]  # fmt: skip
        self.log = (tmp_path / "server.log").open("w")
        self.process = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
        )
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if self.request("GET", "/api/telemetry/schemas")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"jupyter server did not start: {self.process.poll()}")

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send a token-authenticated request; return its status and its JSON reply."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            payload = None if body is None else json.dumps(body)
            connection.request(method, path, payload, {"Authorization": f"token {TOKEN}"})
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()

    def stop(self, sig: signal.Signals) -> int:
        """Send a signal and return the exit code."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(30)
        finally:
            self.log.close()

    def kill(self) -> None:
        """Kill the server if a test left it running."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.log.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers started by a test, killed at its end if still running."""
    started: list[Server] = []
    yield started
    for server in started:
        server.kill()


def lines(path: Path) -> list[dict[str, Any]]:
    """Return the JSON lines of an events file."""
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_writes_every_accepted_event(
    tmp_path: Path, servers: list[Server], sig: signal.Signals
) -> None:
    schemas, events = tmp_path / "schemas", tmp_path / "events.jsonl"
    schemas.mkdir()
    (schemas / "example.json").write_text(json.dumps(frontend_schema()), "utf-8")
    (tmp_path / "config").mkdir()
    config = SLOW_CONFIG.format(schemas=str(schemas), events=str(events))
    (tmp_path / "config" / "jupyter_server_config.py").write_text(config, "utf-8")
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
    assert sorted(capsule["count"] for capsule in lines(events)) == accepted


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
    [capsule] = lines(tmp_path / "telemetry-events.jsonl")
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
    schemas, events = tmp_path / "schemas", tmp_path / "events.jsonl"
    schemas.mkdir()
    (schemas / "example.json").write_text(json.dumps(frontend_schema()), "utf-8")
    (tmp_path / "config").mkdir()
    config = LOAD_CONFIG.format(
        schemas=str(schemas), events=str(events), delay=delay, reply_after_write=reply_after_write
    )
    (tmp_path / "config" / "jupyter_server_config.py").write_text(config, "utf-8")
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
    written = [capsule["count"] for capsule in lines(tmp_path / "events.jsonl")]
    assert len(accepted) > 100
    assert accepted <= set(written)  # 0 lost
    assert len(written) == len(set(written))


@pytest.mark.parametrize("reply_after_write", [True, False], ids=["reply-after-write", "default"])
def test_sigkill_loses_at_most_what_was_not_written(
    tmp_path: Path, servers: list[Server], reply_after_write: bool
) -> None:
    server = start_loaded_server(tmp_path, delay=0.001, reply_after_write=reply_after_write)
    servers.append(server)
    posters = load(server, 1.0)
    server.process.kill()
    server.process.wait(10)
    accepted = accepted_by(posters)
    written = {capsule["count"] for capsule in lines(tmp_path / "events.jsonl")}
    assert len(accepted) > 50
    if reply_after_write:
        assert accepted <= written  # every 2xx was written before it was sent
    else:
        assert accepted - written  # what the slow sink had not written yet is lost
