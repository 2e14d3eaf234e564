"""Execution audit benchmark: what auditing adds to an execute_request's round trip.

Four real `jupyter server`s (see harness.py), two without the audit, one with
`c.TelemetryExtension.audit = ["execution"]` (the execution schema allowed with `user-code`,
written to a FileHandler) and one that also sets `audit_required` (each request waits until
its `requested` event is written and fsynced), each with one ipykernel. This process talks to
each kernel over the kernel websocket (the v1 protocol, as JupyterLab does) and sends
`execute_request`s of `pass`, one at a time, timing each from the send to its `execute_reply`.
The contenders take turns in short rounds (the order rotates), so that the machine's noise falls
on all; the second server without the audit measures what two identical servers differ by (the
noise); latency percentiles are over every request of every round. At the end the audited
server's sink must hold one event per request sent to it (the audit_required one two: requested,
then the outcome). Round trips of a few milliseconds on a busy machine are noisy, so the audit's
own time per request is also measured in-process: what the audited connection does for one
request and its reply, with a real session and a background EventLog.

    python benchmarks/bench_audit.py            # 2,000 requests per contender
    python benchmarks/bench_audit.py --quick    # smoke test
    python benchmarks/bench_audit.py --json     # machine-readable
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import ALLOWED_SCHEMAS, dumps_json, environment, render_table
from harness import HOST, BenchServer, count_lines, percentile
from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

EXECUTION = "https://events.jupyter.org/jupyter_telemetry_ext/execution"
SCHEMAS = Path(__file__).resolve().parent.parent / "schemas" / "execution"
V1 = "v1.kernel.websocket.jupyter.org"
GOAL = 1.05  # audit median / plain median
REQUIRED_GOAL = 1.25  # audit_required median / plain median
ALLOWED = {**ALLOWED_SCHEMAS, EXECUTION: {"allowed_categories": ["user-code"]}}
# jupyter_server does not set TCP_NODELAY on kernel websockets: its small frames then wait for
# the client's delayed ACK (~40 ms a round trip), which would hide what the audit costs. Both
# servers set it, the same way.
NODELAY_CONFIG = [
    "from jupyter_server.services.kernels.websocket import KernelWebsocketHandler as _Handler",
    "_open = _Handler.open",
    "async def _open_without_delay(self, *args, **kwargs):",
    "    self.set_nodelay(True)",
    "    return await _open(self, *args, **kwargs)",
    "_Handler.open = _open_without_delay",
]
AUDIT_CONFIG = [
    'c.TelemetryExtension.audit = ["execution"]',
    f"c.TelemetryExtension.schema_paths.append({str(SCHEMAS)!r})",
    f"c.EventLog.allowed_schemas = {ALLOWED!r}",
]
REQUIRED_CONFIG = [*AUDIT_CONFIG, "c.TelemetryExtension.audit_required = True"]


def repository_schemas(workdir: Path) -> dict[str, str]:
    """Return the environment that finds this repository's execution schema before a copy
    installed in the environment (which may be older: the data paths are searched first)."""
    folder = workdir / "jupyter-path"
    shutil.copytree(SCHEMAS, folder / "telemetry/schemas/jupyter_telemetry_ext/execution")
    return {"JUPYTER_PATH": str(folder)}


class Kernel:
    """One kernel of one server, reached over the kernel websocket (v1 protocol)."""

    def __init__(self, server: BenchServer) -> None:
        self.server = server
        self.session = uuid.uuid4().hex
        self.ws: WebSocketClientConnection | None = None

    async def open(self) -> None:
        """Start a kernel and open its websocket."""
        base = f"http://{HOST}:{self.server.port}"
        request = HTTPRequest(f"{base}/api/kernels", method="POST", body=b"{}",
                              headers=self.server.headers())  # fmt: skip
        reply = await AsyncHTTPClient().fetch(request)
        kernel_id = json.loads(reply.body)["id"]
        url = f"ws://{HOST}:{self.server.port}/api/kernels/{kernel_id}/channels"
        ws_request = HTTPRequest(f"{url}?session_id={self.session}", headers=self.server.headers())
        self.ws = await websocket_connect(ws_request, subprotocols=[V1])
        # Without it, Nagle's algorithm and delayed ACKs add ~40 ms to each small round trip.
        self.ws.protocol.stream.set_nodelay(True)

    async def execute(self, code: str) -> float:
        """Send one execute_request; return the seconds until its execute_reply."""
        assert self.ws is not None
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "session": self.session,
            "username": "bench",
            "date": "2026-01-01T00:00:00Z",
            "version": "5.4",
        }
        content = {"code": code, "silent": False, "store_history": True}
        parts = [json.dumps(part).encode() for part in (header, {}, {}, content)]
        started = time.perf_counter()
        await self.ws.write_message(serialize_msg_to_ws_v1(parts, "shell"), binary=True)
        while True:
            raw = await self.ws.read_message()
            if raw is None:
                msg = "the kernel websocket closed"
                raise RuntimeError(msg)
            assert isinstance(raw, bytes)
            channel, frames = deserialize_msg_from_ws_v1(raw)
            if channel == "shell" and json.loads(frames[1]).get("msg_id") == msg_id:
                return time.perf_counter() - started


async def run_round(kernel: Kernel, count: int) -> list[float]:
    """Return the round-trip seconds of `count` requests of `pass`, one after the other."""
    return [await kernel.execute("pass") for _ in range(count)]


async def measure(kernels: dict[str, Kernel], rounds: int, per_round: int) -> dict[str, Any]:
    """Alternate the contenders for `rounds` rounds; return every latency of each."""
    for kernel in kernels.values():
        await run_round(kernel, 50)  # warm-up: imports, caches, the first replies
    latencies: dict[str, list[float]] = {name: [] for name in kernels}
    names = list(kernels)
    for n in range(rounds):
        for name in names[n % len(names) :] + names[: n % len(names)]:  # the order rotates
            latencies[name] += await run_round(kernels[name], per_round)
    return latencies


def audit_cost(workdir: Path, requests: int) -> float:
    """Return the microseconds the audit spends on the event loop per request, in-process.

    What the audited connection adds to one request and its reply: reading both off the raw
    frames with a real session, pending, and recording the event through a background EventLog
    writing to a FileHandler (its writes are on the EventLog's thread, flushed at the end).
    """
    from jupyter_client.session import Session

    from jupyter_telemetry_ext.core.eventlog import EventLog
    from jupyter_telemetry_ext.server.audit.execution import Client, ExecutionAudit
    from jupyter_telemetry_ext.server.audit.recorder import AuditRecorder
    from jupyter_telemetry_ext.server.audit.requests import reply_from_frames, request_from_frames

    handler = logging.FileHandler(workdir / "cost.jsonl", encoding="utf-8")
    allowed = {EXECUTION: {"allowed_categories": ["user-code"]}}
    eventlog = EventLog(handlers=[handler], allowed_schemas=allowed, background=True)
    eventlog.register_schema_file(SCHEMAS / "v1.yaml")
    audit = ExecutionAudit(AuditRecorder(eventlog, logging.getLogger("bench")))
    session, client = Session(), Client("k", "python3", "s", "websocket-v1")
    frames = []
    for n in range(requests):
        request = session.msg("execute_request", {"code": "pass", "silent": False})
        request["header"]["msg_id"] = f"m{n}"
        reply = session.msg("execute_reply", {"status": "ok", "execution_count": n})
        reply["parent_header"] = request["header"]
        frames.append((session.serialize(request)[2:], session.serialize(reply)[1:]))
    started = time.perf_counter()
    for request_frames, reply_frames in frames:
        found = request_from_frames(request_frames, session.unpack)
        assert found is not None
        audit.sent(client, "shell", found)
        answer = reply_from_frames(reply_frames, session.unpack)
        assert answer is not None
        audit.replied("k", "shell", answer)
    elapsed = time.perf_counter() - started
    eventlog.close(60)
    handler.close()
    assert count_lines(workdir / "cost.jsonl") == requests
    return elapsed / requests * 1e6


def summary(samples: Sequence[float]) -> dict[str, float]:
    """Median, p99 and mean of latencies, in microseconds."""
    micros = sorted(int(s * 1e6) for s in samples)
    return {
        "requests": len(micros),
        "median_us": statistics.median(micros),
        "p99_us": percentile(micros, 0.99),
        "mean_us": statistics.fmean(micros),
    }


async def bench(workdir: Path, rounds: int, per_round: int) -> dict[str, Any]:
    """Start both servers, measure, stop them; return the report."""
    env = repository_schemas(workdir)
    servers = {
        "plain": BenchServer(workdir / "plain", extra_config=NODELAY_CONFIG),
        "plain again": BenchServer(workdir / "plain-again", extra_config=NODELAY_CONFIG),
        "audit": BenchServer(workdir / "audit", extra_env=env,
                             extra_config=NODELAY_CONFIG + AUDIT_CONFIG),
        "audit_required": BenchServer(workdir / "required", extra_env=env,
                                      extra_config=NODELAY_CONFIG + REQUIRED_CONFIG),
    }  # fmt: skip
    try:
        for server in servers.values():
            server.start()
        kernels = {name: Kernel(server) for name, server in servers.items()}
        for kernel in kernels.values():
            await kernel.open()
        latencies = await measure(kernels, rounds, per_round)
    finally:
        for server in servers.values():
            server.stop()
    audited = count_lines(servers["audit"].sink)
    required = count_lines(servers["audit_required"].sink)
    cost = audit_cost(workdir, 20_000)
    figures = {name: summary(values) for name, values in latencies.items()}
    plain = figures["plain"]
    return {
        "environment": environment(),
        "figures": figures,
        "ratio_median": figures["audit"]["median_us"] / plain["median_us"],
        "ratio_p99": figures["audit"]["p99_us"] / plain["p99_us"],
        "required_ratio_median": figures["audit_required"]["median_us"] / plain["median_us"],
        "required_ratio_p99": figures["audit_required"]["p99_us"] / plain["p99_us"],
        "noise_median": figures["plain again"]["median_us"] / plain["median_us"],
        "goal": GOAL,
        "required_goal": REQUIRED_GOAL,
        "audit_us_per_request_in_process": cost,
        "audit_events_written": audited,
        "audit_requests_sent": len(latencies["audit"]) + 50,
        "required_events_written": required,
        "required_requests_sent": len(latencies["audit_required"]) + 50,
    }


def table(report: dict[str, Any]) -> str:
    """Return the report as a table."""
    rows = [
        [name, str(f["requests"]), f"{f['median_us']:.0f}", f"{f['p99_us']:.0f}"]
        for name, f in report["figures"].items()
    ]
    text = render_table(["contender", "requests", "median µs", "p99 µs"], rows)
    verdict = "meets" if report["ratio_median"] <= report["goal"] else "MISSES"
    required = "meets" if report["required_ratio_median"] <= report["required_goal"] else "MISSES"
    return (
        f"{text}\n\naudit / plain: median {report['ratio_median']:.3f}x "
        f"({verdict} the goal <= {report['goal']}x), p99 {report['ratio_p99']:.3f}x\n"
        f"audit_required / plain: median {report['required_ratio_median']:.3f}x "
        f"({required} the goal <= {report['required_goal']}x), "
        f"p99 {report['required_ratio_p99']:.3f}x\n"
        f"plain again / plain (the same server twice: the noise): median "
        f"{report['noise_median']:.3f}x\n"
        f"the audit's own time on the event loop: {report['audit_us_per_request_in_process']:.1f}"
        f" µs per request (in-process, 20,000 requests)\n"
        f"audit events written: {report['audit_events_written']} "
        f"of {report['audit_requests_sent']} requests sent; with audit_required "
        f"{report['required_events_written']} for {report['required_requests_sent']} requests "
        f"(two each)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 50 requests")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rounds, per_round = (2, 50) if args.quick else (args.rounds, args.per_round)
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as folder:
        report = asyncio.run(bench(Path(folder), rounds, per_round))
    print(dumps_json(report) if args.json else table(report))


if __name__ == "__main__":
    main()
