"""A hostile or broken collector never stops forwarding, and no credential reaches a log.

The collector here is a stand-in the test runs: a small HTTP/1.1 server on 127.0.0.1, written on
raw sockets so that it can answer what no real collector would (a reply nested 100,000 deep, a
sampling rate of 10**400, 5 MiB, garbage, a byte each half second) and close kept-alive
connections when idle, as proxies do. A real `jupyter server` forwards to it.
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from jupyter_telemetry_ext.core.errors import ReplyDeadlineError, ReplyTooLargeError
from jupyter_telemetry_ext.core.redact_url import safe_url, scrub_uri
from jupyter_telemetry_ext.server.forwarding.forwarder import Forwarder, ForwardSettings
from jupyter_telemetry_ext.server.forwarding.uplink import (
    MAX_REPLY_BYTES,
    Uplink,
    read_announced,
)
from tests.conftest import FRONTEND_ID
from tests.servers import TOKEN, Server, free_port, log_tail, wait_until, write_config

NESTED = b"[" * 100_000 + b"]" * 100_000
LARGE = 5 << 20
HUGE = 10**400

USER_CONFIG = """
import logging
c.ServerApp.jpserver_extensions = {{"jupyter_telemetry_ext": True}}
c.TelemetryExtension.schema_paths = [{schemas!r}]
c.EventLog.allowed_schemas = []
c.TelemetryExtension.rate_limit = 0
c.TelemetryExtension.forward_retry_max = 1.0
c.TelemetryExtension.forward_timeout = 2.0
"""


class Standin:
    """A collector stand-in whose answers the test switches with `mode`.

    proper: the collector's API (each posted event recorded; the schema listing, with
    `sampling`); nested, large, garbage, drip: the hostile replies, to every request.
    With `idle_close`, a kept-alive connection idle that many seconds is closed.
    """

    def __init__(self) -> None:
        self.mode = "proper"
        self.sampling: Any = 1.0
        self.idle_close: float | None = None
        self.ids: list[str] = []
        self.listings = 0  # schema listings answered
        self.idle_closed = 0  # kept-alive connections closed for idleness
        self.drips_cut = 0  # drips the client cut off
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()
        for connection in self._connections:
            connection.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self._connections.append(connection)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as reader:
            while True:
                connection.settimeout(self.idle_close or 60)
                try:
                    request = _read_request(reader)
                except TimeoutError:
                    self.idle_closed += 1
                    return
                except (OSError, ValueError):
                    return
                if request is None:
                    return
                connection.settimeout(60)
                try:
                    if not self._answer(connection, *request):
                        return
                except OSError:
                    return

    def _answer(self, connection: socket.socket, method: str, path: str, body: bytes) -> bool:
        """Answer one request; return whether the connection stays open."""
        if self.mode == "drip":
            return self._drip(connection)
        if self.mode == "garbage":
            connection.sendall(b"\x16\x03\x01 this is no HTTP \xff\xfe\r\n\r\n\x00\x01")
            return False
        if self.mode == "nested":
            return _reply(connection, NESTED)
        if self.mode == "large":
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {LARGE}\r\n\r\n".encode()
            connection.sendall(head)
            for _ in range(LARGE >> 16):
                connection.sendall(b" " * (1 << 16))
            return True
        if method == "GET" and path.endswith("api/telemetry/schemas"):
            self.listings += 1
            listing = {"schemas": [{"id": FRONTEND_ID, "version": 1, "allowed": True,
                                    "sampling": self.sampling}]}  # fmt: skip
            return _reply(connection, json.dumps(listing).encode())
        events = json.loads(body)["events"]
        self.ids.extend(e["id"] for e in events)
        results = [{"status": "recorded"} for _ in events]
        return _reply(connection, json.dumps({"results": results}).encode())

    def _drip(self, connection: socket.socket) -> bool:
        """Send a reply one byte each half second, never ending, until the client hangs up."""
        try:
            for _ in range(600):
                connection.sendall(b"H")
                time.sleep(0.5)
        except OSError:
            self.drips_cut += 1
        return False


def _read_request(reader: BinaryIO) -> tuple[str, str, bytes] | None:
    """Return a request's method, path and (inflated) body; None at the end of the stream."""
    line = reader.readline()
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers = {}
    while (header := reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", 0)))
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    return method, path, body


def _reply(connection: socket.socket, body: bytes) -> bool:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    connection.sendall(head % len(body) + body)
    return True


@pytest.fixture
def standin() -> Iterator[Standin]:
    server = Standin()
    yield server
    server.close()


def start_user(tmp_path: Path, servers: list[Any], url: str) -> Server:
    """Start a user's server that forwards every accepted event to `url`."""
    write_config(tmp_path, USER_CONFIG)
    env = {"JUPYTER_TELEMETRY_COLLECTOR_URL": url, "JUPYTERHUB_API_TOKEN": TOKEN}
    server = Server(tmp_path, env=env)
    servers.append(server)
    return server


def event(n: int) -> dict[str, Any]:
    data = {"action": "open", "count": n, "path": f"notebooks/{n}.ipynb"}
    return {"schema_id": FRONTEND_ID, "version": 1, "data": data, "id": f"ev-{n}"}


def metric(server: Server, name: str) -> float:
    """Return one value of the server's `/metrics` (0 when absent)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"token {TOKEN}"})
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def errors(server: Server, kind: str) -> float:
    return metric(server, f'jupyter_telemetry_forward_errors_total{{kind="{kind}"}}')


def log_of(server: Server) -> str:
    return server.log.read_text("utf-8", errors="replace")


def post_and_wait(server: Server, standin: Standin, n: int) -> None:
    """Post event n to the user's server and wait until the stand-in recorded it."""
    assert server.request("POST", "/api/telemetry/events", event(n))[0] == 200
    wait_until(lambda: f"ev-{n}" in standin.ids, 60, lambda: log_tail(server.log))


HOSTILE = [
    ("nested", "RecursionError"),  # killed the sender before
    ("large", "ReplyTooLargeError"),
    ("garbage", "BadStatusLine"),
    ("drip", "ReplyDeadlineError"),  # no single read times out: only the deadline cuts it
]


@pytest.mark.e2e
def test_hostile_replies_are_counted_logged_once_and_forwarding_goes_on(
    tmp_path: Path, servers: list[Any], standin: Standin
) -> None:
    standin.sampling = HUGE  # an OverflowError in float() killed the sender before
    user = start_user(tmp_path, servers, f"http://127.0.0.1:{standin.port}/")
    wait_until(lambda: standin.listings >= 1, 30, lambda: log_tail(user.log))
    _, listing = user.request("GET", "/api/telemetry/schemas")
    [example] = [s for s in listing["schemas"] if s["id"] == FRONTEND_ID]
    assert (example["allowed"], example["sampling"]) == (True, 1.0)
    post_and_wait(user, standin, 0)

    for n, (mode, kind) in enumerate(HOSTILE, start=1):
        standin.mode = mode
        assert user.request("POST", "/api/telemetry/events", event(n))[0] == 200
        wait_until(lambda kind=kind: errors(user, kind) >= 2, 60, lambda: log_tail(user.log))
        standin.mode = "proper"
        wait_until(lambda n=n: f"ev-{n}" in standin.ids, 60, lambda: log_tail(user.log))

    wait_until(lambda: standin.drips_cut >= 2, 30)  # each drip was cut off by the client
    # The recovery is logged once the reply to the event the collector took has been read.
    wait_until(lambda: log_of(user).count("answers again") >= len(HOSTILE), 30)
    log = log_of(user)
    for _, kind in HOSTILE:
        assert log.count(f"({kind}") == 1, kind  # logged once per kind, though it recurred
    assert log.count("answers again") == len(HOSTILE)
    assert metric(user, "jupyter_telemetry_forward_sender_restarts_total") == 0
    post_and_wait(user, standin, 99)  # still forwarding


@pytest.mark.e2e
def test_a_collector_closing_idle_connections_is_no_outage(
    tmp_path: Path, servers: list[Any], standin: Standin
) -> None:
    standin.idle_close = 0.3
    user = start_user(tmp_path, servers, f"http://127.0.0.1:{standin.port}/")
    for n in range(4):
        closed = standin.idle_closed
        post_and_wait(user, standin, n)
        wait_until(lambda closed=closed: standin.idle_closed > closed, 30)  # the next is reused
    log = log_of(user)
    assert "unavailable" not in log
    assert "failed" not in log
    assert metric(user, "jupyter_telemetry_forward_reconnects_total") >= 3


@pytest.mark.e2e
def test_credentials_in_the_collector_url_are_never_logged(
    tmp_path: Path, servers: list[Any], standin: Standin
) -> None:
    password, token = "hunter2-password", "abc-query-token"
    standin.mode = "garbage"  # an outage first: its warning names the collector
    url = f"http://user:{password}@127.0.0.1:{standin.port}/x/?token={token}"
    user = start_user(tmp_path, servers, url)
    assert user.request("POST", "/api/telemetry/events", event(1))[0] == 200
    wait_until(lambda: "is unavailable" in log_of(user), 30, lambda: log_tail(user.log))
    standin.mode = "proper"
    wait_until(lambda: "ev-1" in standin.ids, 60, lambda: log_tail(user.log))
    log = log_of(user)
    assert f"forwarding every accepted event to http://127.0.0.1:{standin.port}/x/" in log
    assert f"the collector at http://127.0.0.1:{standin.port}/x/" in log
    assert "carries a user:password or a query; neither is sent" in log  # said, not silent
    assert password not in log
    assert token not in log


@pytest.mark.e2e
def test_the_collectors_access_log_masks_tokens_in_query_strings(tmp_path: Path) -> None:
    port = free_port()
    env = {"JUPYTERHUB_API_URL": f"http://127.0.0.1:{free_port()}/hub/api",
           "JUPYTERHUB_API_TOKEN": "service-token", "JUPYTERHUB_SERVICE_NAME": "telemetry",
           "JUPYTERHUB_CLIENT_ID": "service-telemetry"}  # fmt: skip
    command = [sys.executable, "-m", "jupyter_telemetry_ext.cli.main", "collect", "--url",
               f"http://127.0.0.1:{port}"]  # fmt: skip
    log = tmp_path / "collector.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=out,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}/services/telemetry/"
        paths = [
            "api/telemetry/events?token=abc-secret-1&keep=visible",
            "oauth_callback?code=abc-secret-2&state=s",  # jupyterhub logs a mismatched state
            "nowhere?token=abc-4",
        ]

        def refused(path: str) -> int:
            if process.poll() is not None:
                pytest.fail(f"the collector exited: {log_tail(log)}")
            request = urllib.request.Request(base + path, data=b"{}", method="POST")  # noqa: S310
            if "oauth" in path:
                request = urllib.request.Request(base + path)  # noqa: S310
            try:
                urllib.request.urlopen(request, timeout=10)  # noqa: S310
            except urllib.error.HTTPError as e:
                return e.code
            except OSError:
                return 0
            return 200

        for path in paths:
            assert wait_until(lambda path=path: refused(path), 30, lambda: log_tail(log)) >= 400
        wait_until(lambda: "nowhere?token=[secret]" in log.read_text(), 10, lambda: log_tail(log))
    finally:
        process.terminate()
        process.wait(30)
    text = log.read_text()
    assert "abc-secret" not in text
    assert "abc-4" not in text
    assert "api/telemetry/events?token=[secret]&keep=visible" in text
    assert "oauth_callback?code=[secret]&state=[secret]" in text


# The parts, without servers


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:pw@host:8000/x/?token=a&b=2", "http://host:8000/x/?token=[secret]&b=[secret]"),
        ("https://h/p?abc#frag", "https://h/p?[secret]"),
        ("http://[::1]:9/", "http://[::1]:9/"),
        ("http://h:notaport/", "(unparsable URL)"),
        ("http://h/\x1b[2J", "http://h/\\x1b[2J"),  # no terminal control reaches a log
    ],
)  # fmt: skip
def test_safe_url_keeps_where_and_drops_credentials(url: str, shown: str) -> None:
    assert safe_url(url) == shown


def test_scrub_uri_masks_credential_arguments_only() -> None:
    scrubbed = "/a?token=[secret]&TOKEN=[secret]&n=1&_xsrf=[secret]&[secret]"
    assert scrub_uri("/a?token=x&TOKEN=y&n=1&_xsrf=z&code") == scrubbed
    assert scrub_uri("/a/b") == "/a/b"


@pytest.mark.parametrize(
    "sampling",
    [pytest.param(HUGE, id="10**400"), pytest.param(-HUGE, id="-10**400"), "0.5", None, True,
     float("nan"), 1e308 * 10],
)  # fmt: skip
def test_a_listing_with_any_sampling_is_read(sampling: Any) -> None:
    payload = json.dumps({"schemas": [{"id": "s", "allowed": True, "sampling": sampling}]})
    assert read_announced(payload.encode()) in ({"s": (True, 1.0)}, {"s": (True, 0.0)})
    assert read_announced(NESTED) is None


def test_a_reply_larger_than_the_limit_is_an_error(standin: Standin) -> None:
    standin.mode = "large"
    uplink = Uplink(f"http://127.0.0.1:{standin.port}/", "t", timeout=10)
    with pytest.raises(ReplyTooLargeError, match=str(MAX_REPLY_BYTES)):
        uplink.post(b"{}")
    uplink.close()


def test_a_drip_is_cut_off_at_the_deadline(standin: Standin) -> None:
    standin.mode = "drip"
    uplink = Uplink(f"http://127.0.0.1:{standin.port}/", "t", timeout=1.5)
    with pytest.raises(ReplyDeadlineError, match=r"within 1\.5 s"):
        uplink.post(b"{}")
    wait_until(lambda: standin.drips_cut == 1, 10)
    uplink.close()


def test_a_sender_stopped_by_any_exception_is_started_again(
    tmp_path: Path, standin: Standin
) -> None:
    """Fault injection: the spool raises SystemExit once (no `except Exception` catches it)."""
    settings = ForwardSettings(collector_url=f"http://127.0.0.1:{standin.port}/", token="t",
                               folder=tmp_path / "spool", max_bytes=1 << 20,
                               retry_max=0.2)  # fmt: skip
    stream = logging.getLogger("test.forwarding")
    forwarder = Forwarder(settings, stream)
    try:
        take, raised = forwarder.spool.take, []

        def take_once_failing(max_lines: int, max_bytes: int) -> Any:
            if not raised:
                raised.append(True)
                raise SystemExit(0)
            return take(max_lines, max_bytes)

        forwarder.spool.take = take_once_failing  # type: ignore[method-assign]
        forwarder.spool.append([json.dumps(event(1)).encode()])
        wait_until(lambda: "ev-1" in standin.ids, 30)
        assert forwarder.sender_restarts == 1
    finally:
        forwarder.close(5)
        forwarder.spool.close()


class FailingOnceLog(logging.Logger):
    """A logger that fails once, on the sender's restart message: the thread then ends."""

    failed = False

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self.failed and "is started again" in str(msg % args if args else msg):
            self.failed = True
            raise MemoryError
        super().log(level, msg, *args, **kwargs)


# The thread's end is the point of the test: its unhandled exception is expected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_sender_thread_that_ended_is_started_again(tmp_path: Path, standin: Standin) -> None:
    """Fault injection: SystemExit from the spool, then a failure while logging it."""
    settings = ForwardSettings(collector_url=f"http://127.0.0.1:{standin.port}/", token="t",
                               folder=tmp_path / "spool", max_bytes=1 << 20,
                               retry_max=0.2)  # fmt: skip
    log = FailingOnceLog("test.forwarding.failing")
    forwarder = Forwarder(settings, log)
    try:
        take, raised = forwarder.spool.take, []

        def take_once_failing(max_lines: int, max_bytes: int) -> Any:
            if not raised:
                raised.append(True)
                raise SystemExit(0)
            return take(max_lines, max_bytes)

        forwarder.spool.take = take_once_failing  # type: ignore[method-assign]
        wait_until(lambda: log.failed, 30)

        def restarted() -> bool:
            forwarder.check_sender()  # as each event taken, and each scrape of /metrics, does
            return forwarder.sender_restarts == 2

        wait_until(restarted, 30)
        forwarder.spool.append([json.dumps(event(2)).encode()])
        wait_until(lambda: "ev-2" in standin.ids, 30)
    finally:
        forwarder.close(5)
        forwarder.spool.close()
