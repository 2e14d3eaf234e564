"""A real `jupyter server` for the HTTP, start-up and memory benchmarks, and a load client.

`BenchServer` starts `python -m jupyter_server` on 127.0.0.1 (a free port, token auth) with its
own temporary root, config, data and runtime folders (`JUPYTER_CONFIG_DIR`, `JUPYTER_DATA_DIR`,
`JUPYTER_RUNTIME_DIR`), and a `jupyter_server_config.py` written there that:

- enables `jupyter_telemetry_ext` (or disables it) and disables every other server extension
  installed in the environment (JupyterLab and co.), so that the server is the same bare server
  whatever is installed;
- points `c.TelemetryExtension.schema_paths` at the benchmark schema (common.SCHEMA with
  `frontend: true`), allows it with common.ALLOWED_SCHEMAS and writes our events to a
  `logging.FileHandler` (`c.EventLog.handlers`);
- writes jupyter_server's own events (`/api/events`) to another FileHandler
  (`c.EventLogger.handlers`).

jupyter_server's `/api/events` only takes events of schemas registered with the server's
`event_logger`, which has no config option for schemas: the documented way is a server
extension calling `serverapp.event_logger.register_event_schema(...)`. With `events_schema=True`
the harness writes such a five-line extension (`bench_server_events.py`, next to the same schema
file) into the temporary folder, puts that folder on `PYTHONPATH` and enables it. jupyter_events
accepts the schema as it is (it ignores `categories` and `frontend`). The extension records the
server's own events too by default (`c.TelemetryExtension.server_events`): bench_http.py turns
that off, so that `/api/events` is jupyter_server's alone.

`load` drives the server from this process (not the server's) with keep-alive HTTP/1.1
connections on raw asyncio streams: a fixed request per contender, a bounded request count and
duration, per-request latency, and a verdict on each reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import ALLOWED_SCHEMAS, SCHEMA

HOST = "127.0.0.1"
EXTENSION = "jupyter_telemetry_ext"
HELPER_MODULE = "bench_server_events"
HTTP_SCHEMA: dict[str, Any] = {**SCHEMA, "frontend": True}
OURS_PATH = "/api/telemetry/events"
EVENTS_PATH = "/api/events"
STATUS_PATH = "/api/status"

HELPER_SOURCE = '''"""Registers the benchmark schema for jupyter_server's /api/events."""

from pathlib import Path

SCHEMA_FILE = Path(__file__).with_name("bench-schema.json")


def _jupyter_server_extension_points():
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp):
    serverapp.event_logger.register_event_schema(SCHEMA_FILE)
'''

CONFIG_TEMPLATE = """# Written by benchmarks/harness.py
import logging

c = get_config()  # noqa: F821
c.ServerApp.jpserver_extensions = {extensions!r}
c.ServerApp.ip = {host!r}
c.ServerApp.port = {port!r}
c.ServerApp.port_retries = 0
c.ServerApp.open_browser = False
c.ServerApp.allow_root = True
c.ServerApp.root_dir = {root!r}
c.IdentityProvider.token = {token!r}
c.TelemetryExtension.schema_paths = [{schema_dir!r}]
c.EventLog.allowed_schemas = {allowed!r}
c.EventLog.handlers = [logging.FileHandler({sink!r}, encoding="utf-8")]
c.EventLogger.handlers = [logging.FileHandler({events_sink!r}, encoding="utf-8")]
# The client is one user (its token): the limiter runs on every post but never refuses one.
c.TelemetryExtension.rate_limit = 1e9
"""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def installed_server_extensions() -> list[str]:
    """Return the server extensions that the environment's config enables or mentions."""
    from jupyter_core.paths import jupyter_config_path
    from jupyter_server.extension.config import ExtensionConfigManager

    manager = ExtensionConfigManager(read_config_path=jupyter_config_path())
    return sorted(manager.get_jpserver_extensions())


def count_lines(path: Path) -> int:
    """Return the number of newline characters in a file (0 when it does not exist)."""
    if not path.exists():
        return 0
    lines = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
    return lines


def rss_bytes(pid: int) -> dict[str, int]:
    """Return VmRSS and VmHWM (peak RSS) of a process, in bytes, from /proc/<pid>/status."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            figures[key] = int(value.split()[0]) * 1024
    return figures


@dataclass
class BenchServer:
    """A `jupyter server` subprocess in its own temporary folders."""

    workdir: Path
    telemetry: bool = True
    events_schema: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_config: list[str] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    def __post_init__(self) -> None:
        """Create the folders, the schema, the helper extension and the config file."""
        for name in ("root", "config", "data", "runtime", "schemas", "helper"):
            (self.workdir / name).mkdir(parents=True, exist_ok=True)
        schema_text = json.dumps(HTTP_SCHEMA, indent=2)
        (self.workdir / "schemas" / "bench-schema.json").write_text(schema_text, encoding="utf-8")
        (self.workdir / "helper" / "bench-schema.json").write_text(schema_text, encoding="utf-8")
        (self.workdir / "helper" / f"{HELPER_MODULE}.py").write_text(HELPER_SOURCE, "utf-8")

    @property
    def sink(self) -> Path:
        """Our EventLog's FileHandler file."""
        return self.workdir / "telemetry-events.jsonl"

    @property
    def events_sink(self) -> Path:
        """jupyter_server's EventLogger's FileHandler file (`/api/events`)."""
        return self.workdir / "server-events.jsonl"

    @property
    def log_path(self) -> Path:
        """The server's stdout and stderr."""
        return self.workdir / "server.log"

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.process is not None
        return self.process.pid

    def write_config(self) -> None:
        """Write jupyter_server_config.py into the temporary JUPYTER_CONFIG_DIR."""
        extensions = dict.fromkeys(installed_server_extensions(), False)
        extensions[EXTENSION] = self.telemetry
        if self.events_schema:
            extensions[HELPER_MODULE] = True
        text = CONFIG_TEMPLATE.format(
            extensions=extensions,
            host=HOST,
            port=self.port,
            root=str(self.workdir / "root"),
            token=self.token,
            schema_dir=str(self.workdir / "schemas"),
            allowed=ALLOWED_SCHEMAS,
            sink=str(self.sink),
            events_sink=str(self.events_sink),
        )
        text += "".join(f"{line}\n" for line in self.extra_config)
        (self.workdir / "config" / "jupyter_server_config.py").write_text(text, encoding="utf-8")

    def environment(self) -> dict[str, str]:
        """The server's environment: the temporary Jupyter folders, the helper on the path."""
        env = dict(os.environ)
        env.update({
            "JUPYTER_CONFIG_DIR": str(self.workdir / "config"),
            "JUPYTER_DATA_DIR": str(self.workdir / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.workdir / "runtime"),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(self.workdir / "helper"), env.get("PYTHONPATH")) if p
            ),
            "PYTHONUNBUFFERED": "1",
        })  # fmt: skip
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60.0) -> float:
        """Start the server; return the seconds from the process start until /api/status answers."""
        self.port = free_port()
        self.write_config()
        env = self.environment()
        command = [sys.executable, "-m", "jupyter_server"]
        with self.log_path.open("ab") as log:
            self.started_at = time.perf_counter()
            self.process = subprocess.Popen(
                command, cwd=self.workdir / "root", env=env, stdout=log, stderr=subprocess.STDOUT
            )
        return self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> float:
        """Poll /api/status every 5 ms; return the seconds since the start when it answers 200."""
        deadline = self.started_at + timeout
        while time.perf_counter() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                msg = f"the server exited at start-up:\n{self.log_tail()}"
                raise RuntimeError(msg)
            try:
                connection = http.client.HTTPConnection(HOST, self.port, timeout=5)
                connection.request("GET", STATUS_PATH, headers=self.headers())
                status = connection.getresponse().status
                connection.close()
                if status == 200:
                    return time.perf_counter() - self.started_at
            except OSError:
                pass
            time.sleep(0.005)
        self.stop()
        msg = f"the server did not answer within {timeout} s:\n{self.log_tail()}"
        raise RuntimeError(msg)

    def headers(self) -> dict[str, str]:
        """The token header."""
        return {"Authorization": f"token {self.token}"}

    def stop(self, timeout: float = 120.0) -> int | None:
        """SIGTERM the server and wait until it exits (it flushes its sinks); return its status."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def rss(self) -> dict[str, int]:
        """The server's VmRSS and VmHWM in bytes."""
        return rss_bytes(self.pid)


@dataclass
class SinkCounter:
    """Counts the lines of a growing file, reading only what was added since the last count."""

    path: Path
    offset: int = 0
    lines: int = 0

    def update(self) -> int:
        """Count the lines added since the last call; return the total."""
        if not self.path.exists():
            return 0
        with self.path.open("rb") as f:
            f.seek(self.offset)
            while chunk := f.read(1 << 20):
                self.lines += chunk.count(b"\n")
                self.offset += len(chunk)
        return self.lines

    def wait_for(self, lines: int, timeout: float = 300.0) -> float:
        """Wait until the file holds `lines` lines; return the seconds waited."""
        start = time.perf_counter()
        while self.update() < lines:
            if time.perf_counter() - start > timeout:
                msg = f"the sink holds {self.lines} lines after {timeout} s, expected {lines}"
                raise RuntimeError(msg)
            time.sleep(0.05)
        return time.perf_counter() - start


# The load client


def post_request(server: BenchServer, path: str, body: Any) -> bytes:
    """Return the raw bytes of a keep-alive POST of a JSON body with the token."""
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{server.port}\r\n"
        f"Authorization: token {server.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def get_request(server: BenchServer, path: str) -> bytes:
    """Return the raw bytes of a keep-alive GET with the token."""
    head = (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{server.port}\r\n"
        f"Authorization: token {server.token}\r\n\r\n"
    )
    return head.encode()


# A verdict on one reply: (events accepted, events refused); a request with refused events or a
# status the contender does not expect counts as an error.
Judge = Callable[[int, bytes], tuple[int, int]]


@dataclass
class LoadResult:
    """What one load run did."""

    requests: int = 0
    seconds: float = 0.0
    accepted: int = 0
    refused: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ns: list[int] = field(default_factory=list)
    first_error: str = ""

    @property
    def requests_per_second(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def events_per_second(self) -> float:
        """Accepted events per second."""
        return self.accepted / self.seconds if self.seconds else 0.0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        lowered = name.lower()
        if lowered == "content-length":
            length = int(value)
        elif lowered == "transfer-encoding":
            msg = f"unsupported Transfer-Encoding: {value.strip()}"
            raise ValueError(msg)
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _load(
    port: int,
    request: bytes,
    *,
    judge: Judge,
    connections: int,
    max_requests: int,
    max_seconds: float,
) -> LoadResult:
    result = LoadResult()
    streams = [await asyncio.open_connection(HOST, port) for _ in range(connections)]
    tickets = max_requests
    start = time.perf_counter()
    deadline = start + max_seconds

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal tickets
        latencies = result.latencies_ns
        clock = time.perf_counter_ns
        while tickets > 0 and time.perf_counter() < deadline:
            tickets -= 1
            sent = clock()
            writer.write(request)
            status, body = await _read_response(reader)
            latencies.append(clock() - sent)
            result.requests += 1
            result.statuses[status] = result.statuses.get(status, 0) + 1
            accepted, refused = judge(status, body)
            result.accepted += accepted
            result.refused += refused
            if refused or (accepted == 0 and status >= 300):
                result.errors += 1
                if not result.first_error:
                    result.first_error = f"{status} {body[:300]!r}"

    try:
        await asyncio.gather(*(worker(r, w) for r, w in streams))
    finally:
        result.seconds = time.perf_counter() - start
        for _, writer in streams:
            writer.close()
        for _, writer in streams:
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    return result


def load(
    server: BenchServer,
    request: bytes,
    *,
    judge: Judge,
    connections: int,
    max_requests: int,
    max_seconds: float,
) -> LoadResult:
    """Send `request` over `connections` keep-alive connections, at most `max_requests` times
    and for at most `max_seconds` (each connection finishes its request in flight)."""
    return asyncio.run(
        _load(
            server.port,
            request,
            judge=judge,
            connections=connections,
            max_requests=max_requests,
            max_seconds=max_seconds,
        )
    )


def percentile(sorted_values: list[int], fraction: float) -> float:
    """Return the nearest-rank percentile of sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return float(sorted_values[index])


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds a process (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
