"""Forwarding throughput: events/s from a user's server to a collector, and gzip's size ratio.

Two real `jupyter server` processes on 127.0.0.1: a stand-in collector (the extension with
`accept_all_schemas`, writing to a JSON-lines file) and a user's server forwarding to it (its own
allow-list records nothing). Each round posts the same batches of events, with ids, either to
the user's server (`forwarded`: accepted, spooled, sent on in batches) or straight to the
collector (`direct`, the baseline), and times from the first post until the collector's file
holds them all. Then the size of one forwarded batch raw and gzipped (levels 1 and 6).

python benchmarks/bench_forward.py [--events 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import EVENT, SCHEMA, SCHEMA_ID

TOKEN = secrets.token_hex(16)
BATCH = 500
COLLECTOR_CONFIG = """
import logging
c.ServerApp.jpserver_extensions = {{"jupyter_telemetry_ext": True}}
c.TelemetryExtension.schema_paths = [{schemas!r}]
c.EventLog.handlers = [logging.FileHandler({sink!r})]
c.EventLog.allowed_schemas = {{{schema_id!r}: {{}}}}
c.TelemetryExtension.accept_all_schemas = True
c.TelemetryExtension.rate_limit = 0
"""
USER_CONFIG = """
c.ServerApp.jpserver_extensions = {{"jupyter_telemetry_ext": True}}
c.TelemetryExtension.schema_paths = [{schemas!r}]
c.EventLog.allowed_schemas = []
c.TelemetryExtension.rate_limit = 0
c.TelemetryExtension.collector_url = {url!r}
"""


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(folder: Path, config: str, port: int) -> subprocess.Popen[bytes]:
    """Start `jupyter server` in `folder` with `config` on `port`; wait until it answers."""
    for name in ("config", "data", "runtime"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    (folder / "config" / "jupyter_server_config.py").write_text(config, "utf-8")
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(folder / "config"),
           "JUPYTER_DATA_DIR": str(folder / "data"), "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
           "JUPYTERHUB_API_TOKEN": TOKEN}  # fmt: skip
    command = [sys.executable, "-m", "jupyter_server", "--ip=127.0.0.1", f"--port={port}",
               "--no-browser", "--allow-root", f"--IdentityProvider.token={TOKEN}",
               "--ServerApp.port_retries=0", "--ServerApp.log_level=WARN"]  # fmt: skip
    with (folder / "server.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            request(port, "GET", "/api/telemetry/schemas", None)
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    msg = f"{folder} did not start: {(folder / 'server.log').read_text()[-2000:]}"
    raise SystemExit(msg)


def request(port: int, method: str, path: str, body: bytes | None) -> Any:
    """Send one token-authenticated request; return the JSON reply."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body, {"Authorization": f"token {TOKEN}"})
        return json.loads(connection.getresponse().read() or b"null")
    finally:
        connection.close()


def batches(events: int) -> list[bytes]:
    """Return the bodies of `events` events with new ids, BATCH a body."""
    bodies = []
    for start_at in range(0, events, BATCH):
        items = [{"schema_id": SCHEMA_ID, "version": 1, "data": EVENT, "id": uuid.uuid4().hex}
                 for _ in range(min(BATCH, events - start_at))]  # fmt: skip
        bodies.append(json.dumps({"events": items}).encode())
    return bodies


def lines(sink: Path) -> int:
    """Return how many events the collector wrote."""
    if not sink.exists():
        return 0
    with sink.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def timed(port: int, bodies: list[bytes], sink: Path, expected: int) -> float:
    """Post the bodies to `port`; return the seconds until the sink holds `expected` lines."""
    started = time.perf_counter()
    for body in bodies:
        reply = request(port, "POST", "/api/telemetry/events", body)
        assert reply["recorded"] == BATCH or reply["recorded"] == len(json.loads(body)["events"])
    while lines(sink) < expected:
        time.sleep(0.01)
    return time.perf_counter() - started


def gzip_figures() -> None:
    """Print one forwarded batch's size raw and gzipped, and the time to gzip it."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from jupyter_telemetry_ext.server.forwarding.uplink import batch_body

    event = {"schema_id": SCHEMA_ID, "version": 1, "data": EVENT,
             "timestamp": "2026-11-30T01:00:00.000000Z"}  # fmt: skip
    body = batch_body([json.dumps({**event, "id": uuid.uuid4().hex}).encode()
                       for _ in range(BATCH)])  # fmt: skip
    print(f"one batch of {BATCH} events: {len(body)} bytes raw")
    for level in (1, 6):
        started = time.perf_counter()
        for _ in range(20):
            packed = gzip.compress(body, compresslevel=level, mtime=0)
        ms = (time.perf_counter() - started) / 20 * 1000
        print(f"  gzip level {level}: {len(packed)} bytes, ratio {len(packed) / len(body):.3f}, "
              f"{ms:.2f} ms")  # fmt: skip


def main() -> None:
    """Run the rounds and print events/s of each contender and their ratio."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        schemas = root / "schemas"
        schemas.mkdir()
        (schemas / "bench.json").write_text(json.dumps({**SCHEMA, "frontend": True}), "utf-8")
        sink = root / "collector.jsonl"
        collector_port, user_port = free_port(), free_port()
        collector = start(root / "collector", COLLECTOR_CONFIG.format(
            schemas=str(schemas), sink=str(sink), schema_id=SCHEMA_ID), collector_port)  # fmt: skip
        url = f"http://127.0.0.1:{collector_port}/"
        user = start(root / "user", USER_CONFIG.format(schemas=str(schemas), url=url), user_port)
        try:
            run(args.events, args.rounds, {"direct": collector_port, "forwarded": user_port}, sink)
        finally:
            for process in (user, collector):
                process.terminate()
                process.wait(30)
    gzip_figures()


def run(events: int, rounds: int, ports: dict[str, int], sink: Path) -> None:
    """Alternate the contenders; print the median events/s of each, and the ratio."""
    rates: dict[str, list[float]] = {name: [] for name in ports}
    expected = 0
    for _ in range(rounds):
        for name, port in ports.items():
            expected += events
            rates[name].append(events / timed(port, batches(events), sink, expected))
    medians = {name: sorted(values)[len(values) // 2] for name, values in rates.items()}
    for name, value in medians.items():
        print(f"{name:>10}: {value:,.0f} events/s (median of {rounds}; "
              f"all: {', '.join(f'{v:,.0f}' for v in rates[name])})")  # fmt: skip
    print(f"direct / forwarded time ratio: {medians['direct'] / medians['forwarded']:.2f}")


if __name__ == "__main__":
    main()
