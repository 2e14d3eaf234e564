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

The terminal part does the same for terminals: four servers with jupyter_server_terminals
and bash, the third with `c.TelemetryExtension.audit = ["terminal"]`, the fourth also with
`audit_required` (Enter reaches bash only once the line's event is written and fsynced); this
process types a short command (`echo hi`) into each terminal over its websocket, one keystroke
at a time, timing each keystroke until its echo comes back, and Enter until the command's output
and the next prompt do. Each audited server's sink must hold one event per command typed.

    python benchmarks/bench_audit.py            # 2,000 requests, 2,800 keystrokes per contender
    python benchmarks/bench_audit.py --part terminal   # the terminal part only
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
TERMINAL = "https://events.jupyter.org/jupyter_telemetry_ext/terminal"
SCHEMAS = Path(__file__).resolve().parent.parent / "schemas" / "execution"
TERMINAL_SCHEMAS = SCHEMAS.parent / "terminal"
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


# Terminals: jupyter_server_terminals on (the harness turns every other extension off), bash
# without start-up files and with a prompt the client waits for, TCP_NODELAY as for kernels.
PROMPT = "bench> "
COMMAND = "echo hi"
TERMINAL_CONFIG = [
    'c.ServerApp.jpserver_extensions["jupyter_server_terminals"] = True',
    'c.ServerApp.terminado_settings = {"shell_command": ["/bin/bash", "--norc", "--noprofile"]}',
    "from jupyter_server_terminals.handlers import TermSocket as _TermSocket",
    "_term_open = _TermSocket.open",
    "def _term_open_without_delay(self, *args, **kwargs):",
    "    self.set_nodelay(True)",
    "    return _term_open(self, *args, **kwargs)",
    "_TermSocket.open = _term_open_without_delay",
]
TERMINAL_ALLOWED = {**ALLOWED_SCHEMAS, TERMINAL: {"allowed_categories": ["user-code"]}}
TERMINAL_AUDIT_CONFIG = [
    'c.TelemetryExtension.audit = ["terminal"]',
    f"c.TelemetryExtension.schema_paths.append({str(TERMINAL_SCHEMAS)!r})",
    f"c.EventLog.allowed_schemas = {TERMINAL_ALLOWED!r}",
]
TERMINAL_REQUIRED_CONFIG = [*TERMINAL_AUDIT_CONFIG, "c.TelemetryExtension.audit_required = True"]


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


class Terminal:
    """One terminal of one server, reached over the terminal websocket, typed into as xterm.js."""

    def __init__(self, server: BenchServer) -> None:
        self.server = server
        self.ws: WebSocketClientConnection | None = None
        self.output = ""

    async def open(self) -> None:
        """Create a terminal, open its websocket and wait for the shell's first prompt."""
        base = f"http://{HOST}:{self.server.port}"
        request = HTTPRequest(f"{base}/api/terminals", method="POST", body=b"{}",
                              headers=self.server.headers())  # fmt: skip
        name = json.loads((await AsyncHTTPClient().fetch(request)).body)["name"]
        url = f"ws://{HOST}:{self.server.port}/terminals/websocket/{name}"
        self.ws = await websocket_connect(HTTPRequest(url, headers=self.server.headers()))
        self.ws.protocol.stream.set_nodelay(True)
        await self.key("PS1='be''nch> '\r", PROMPT)  # its echo is not the prompt

    async def key(self, key: str, shown: str) -> float:
        """Send one keystroke; return the seconds until the terminal shows `shown` after it."""
        assert self.ws is not None
        self.output = ""
        started = time.perf_counter()
        await self.ws.write_message(json.dumps(["stdin", key]))
        while shown not in self.output:
            raw = await asyncio.wait_for(self.ws.read_message(), 60)
            if raw is None:
                msg = "the terminal websocket closed"
                raise RuntimeError(msg)
            kind, *data = json.loads(raw)
            if kind == "stdout":
                self.output += data[0]
        return time.perf_counter() - started

    async def command(self) -> tuple[list[float], float]:
        """Type COMMAND and Enter; return each keystroke's echo time and Enter's (to the prompt)."""
        keys = [await self.key(char, char) for char in COMMAND]
        return keys, await self.key("\r", PROMPT)


async def measure_terminals(
    terminals: dict[str, Terminal], rounds: int, per_round: int
) -> dict[str, dict[str, list[float]]]:
    """Alternate the contenders for `rounds` rounds of `per_round` commands; return every
    keystroke's echo time and every Enter's, of each."""
    for terminal in terminals.values():
        for _ in range(5):  # warm-up
            await terminal.command()
    latencies: dict[str, dict[str, list[float]]] = {
        name: {"keys": [], "enter": []} for name in terminals
    }
    names = list(terminals)
    for n in range(rounds):
        for name in names[n % len(names) :] + names[: n % len(names)]:  # the order rotates
            for _ in range(per_round):
                keys, enter = await terminals[name].command()
                latencies[name]["keys"] += keys
                latencies[name]["enter"].append(enter)
    return latencies


def terminal_cost(workdir: Path, commands: int) -> dict[str, float]:
    """Return the microseconds the terminal audit spends on the event loop, in-process: per
    keystroke (reading a stdin message into the line) and per Enter (the line recorded through
    a background EventLog writing to a FileHandler)."""
    from jupyter_telemetry_ext.core.eventlog import EventLog
    from jupyter_telemetry_ext.server.audit.recorder import AuditRecorder
    from jupyter_telemetry_ext.server.audit.terminal import TerminalAudit
    from jupyter_telemetry_ext.server.audit.terminal_lines import LineReader

    handler = logging.FileHandler(workdir / "terminal-cost.jsonl", encoding="utf-8")
    allowed = {TERMINAL: {"allowed_categories": ["user-code"]}}
    eventlog = EventLog(handlers=[handler], allowed_schemas=allowed, background=True)
    eventlog.register_schema_file(TERMINAL_SCHEMAS / "v1.yaml")
    audit = TerminalAudit(AuditRecorder(eventlog, logging.getLogger("bench")))
    reader, keys = LineReader(), [json.dumps(["stdin", char]) for char in COMMAND]
    enter = json.dumps(["stdin", "\r"])
    key_time = enter_time = 0.0
    for _ in range(commands):
        started = time.perf_counter()
        for key in keys:
            reader.feed(json.loads(key)[1])
        typed = time.perf_counter()
        for line in reader.feed(json.loads(enter)[1]):
            audit.line("1", line, hidden=False)
        key_time += typed - started
        enter_time += time.perf_counter() - typed
    eventlog.close(60)
    handler.close()
    assert count_lines(workdir / "terminal-cost.jsonl") == commands
    return {"keystroke_us": key_time / commands / len(keys) * 1e6,
            "enter_us": enter_time / commands * 1e6}  # fmt: skip


async def bench_terminals(workdir: Path, rounds: int, per_round: int) -> dict[str, Any]:
    """Start four servers with a terminal each, measure, stop them; return the report."""
    servers = {
        "plain": BenchServer(workdir / "term-plain", extra_config=TERMINAL_CONFIG),
        "plain again": BenchServer(workdir / "term-plain-again", extra_config=TERMINAL_CONFIG),
        "audit": BenchServer(
            workdir / "term-audit", extra_config=TERMINAL_CONFIG + TERMINAL_AUDIT_CONFIG
        ),
        "audit_required": BenchServer(
            workdir / "term-required", extra_config=TERMINAL_CONFIG + TERMINAL_REQUIRED_CONFIG
        ),
    }
    try:
        for server in servers.values():
            server.start()
        terminals = {name: Terminal(server) for name, server in servers.items()}
        for terminal in terminals.values():
            await terminal.open()
        latencies = await measure_terminals(terminals, rounds, per_round)
    finally:
        for server in servers.values():
            server.stop()
    keys = {name: summary(values["keys"]) for name, values in latencies.items()}
    enters = {name: summary(values["enter"]) for name, values in latencies.items()}
    return {
        "keystrokes": keys,
        "enter": enters,
        "ratio_median": keys["audit"]["median_us"] / keys["plain"]["median_us"],
        "ratio_p99": keys["audit"]["p99_us"] / keys["plain"]["p99_us"],
        "noise_median": keys["plain again"]["median_us"] / keys["plain"]["median_us"],
        "enter_ratio_median": enters["audit"]["median_us"] / enters["plain"]["median_us"],
        "required_ratio_median": (keys["audit_required"]["median_us"]
                                  / keys["plain"]["median_us"]),
        "required_enter_ratio_median": (enters["audit_required"]["median_us"]
                                        / enters["plain"]["median_us"]),
        "required_enter_ratio_p99": (enters["audit_required"]["p99_us"]
                                     / enters["plain"]["p99_us"]),
        "goal": GOAL,
        "in_process": terminal_cost(workdir, 20_000),
        "audit_lines_written": typed_lines(servers["audit"].sink),
        "required_lines_written": typed_lines(servers["audit_required"].sink),
        "audit_commands_typed": len(latencies["audit"]["enter"]) + 5,
        "required_commands_typed": len(latencies["audit_required"]["enter"]) + 5,
    }  # fmt: skip


def typed_lines(sink: Path) -> int:
    """Return how many line events of COMMAND a server's sink holds."""
    events = [json.loads(line) for line in sink.read_text(encoding="utf-8").splitlines()]
    return sum(e.get("action") == "line" and e.get("text") == COMMAND for e in events)


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


def terminal_table(report: dict[str, Any]) -> str:
    """Return the terminal report as a table."""
    rows = [
        [name, str(f["requests"]), f"{f['median_us']:.0f}", f"{f['p99_us']:.0f}",
         f"{report['enter'][name]['median_us']:.0f}", f"{report['enter'][name]['p99_us']:.0f}"]
        for name, f in report["keystrokes"].items()
    ]  # fmt: skip
    text = render_table(["contender", "keystrokes", "echo median µs", "echo p99 µs",
                         "Enter median µs", "Enter p99 µs"], rows)  # fmt: skip
    verdict = "meets" if report["ratio_median"] <= report["goal"] else "MISSES"
    cost = report["in_process"]
    return (
        f"{text}\n\naudit / plain, keystroke echo: median {report['ratio_median']:.3f}x "
        f"({verdict} the goal <= {report['goal']}x), p99 {report['ratio_p99']:.3f}x; "
        f"Enter to prompt: median {report['enter_ratio_median']:.3f}x\n"
        f"audit_required / plain: keystroke echo median {report['required_ratio_median']:.3f}x, "
        f"Enter to prompt median {report['required_enter_ratio_median']:.3f}x, "
        f"p99 {report['required_enter_ratio_p99']:.3f}x\n"
        f"plain again / plain (the noise): median {report['noise_median']:.3f}x\n"
        f"the audit's own time on the event loop: {cost['keystroke_us']:.2f} µs per keystroke, "
        f"{cost['enter_us']:.1f} µs per line recorded (in-process, 20,000 commands)\n"
        f"audit line events written: {report['audit_lines_written']} "
        f"of {report['audit_commands_typed']} commands typed; with audit_required "
        f"{report['required_lines_written']} of {report['required_commands_typed']}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the tables (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["all", "execution", "terminal"], default="all")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--per-round", type=int, default=20)
    parser.add_argument("--terminal-rounds", type=int, default=80)
    parser.add_argument("--terminal-per-round", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 50 requests")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rounds, per_round = (2, 50) if args.quick else (args.rounds, args.per_round)
    term_rounds, term_per_round = (2, 5) if args.quick else (
        args.terminal_rounds, args.terminal_per_round)  # fmt: skip
    reports: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as folder:
        if args.part in ("all", "execution"):
            reports["execution"] = asyncio.run(bench(Path(folder), rounds, per_round))
        if args.part in ("all", "terminal"):
            terminal = bench_terminals(Path(folder), term_rounds, term_per_round)
            reports["terminal"] = asyncio.run(terminal)
    if args.json:
        print(dumps_json(reports))
        return
    if "execution" in reports:
        print(table(reports["execution"]))
    if "terminal" in reports:
        print(terminal_table(reports["terminal"]))


if __name__ == "__main__":
    main()
