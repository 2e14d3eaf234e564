"""HTTP benchmark: POST api/telemetry/events against jupyter_server's own POST /api/events.

One real `jupyter server` (see harness.py) on 127.0.0.1 with the extension enabled and the same
schema registered with both our EventLog and the server's jupyter_events EventLogger, each
writing to a FileHandler. This process loads it over keep-alive HTTP/1.1 connections (raw
asyncio streams), at each number of connections in turn; within a round the contenders take
turns (the order rotates), each for a bounded number of requests and seconds. A run ends once
the last reply arrived and the sink holds every event the run got accepted (our EventLog writes
on a background thread: its backlog counts in our time, not in the next contender's). The
figures are medians over rounds, with the interquartile range and min-max; latency percentiles
are over every request of every round.

    python benchmarks/bench_http.py            # table
    python benchmarks/bench_http.py --quick    # smoke test
    python benchmarks/bench_http.py --json     # machine-readable
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    EVENT,
    REDACTED_PROPERTY,
    SCHEMA_ID,
    SCHEMA_VERSION,
    Stats,
    dumps_json,
    environment,
    render_table,
)
from harness import (
    EVENTS_PATH,
    OURS_PATH,
    STATUS_PATH,
    BenchServer,
    Judge,
    LoadResult,
    SinkCounter,
    cpu_seconds,
    get_request,
    load,
    percentile,
    post_request,
)

OURS_ONE = "ours: POST one event"
OURS_BATCH = "ours: POST batch of 100"
JUPYTER_EVENTS = "jupyter_server POST /api/events"
STATUS = "jupyter_server GET /api/status"
BATCH_SIZE = 100
TARGET_SINGLE = 1.2
TARGET_BATCH = 25.0
WARM_UP_SECONDS = 0.3
NO_FORWARDING = "c.TelemetryExtension.server_events = False"

POSTED: dict[str, Any] = {"schema_id": SCHEMA_ID, "version": SCHEMA_VERSION, "data": EVENT}


# Verdicts on a reply: (events accepted, events refused)


def judge_ours_one(status: int, body: bytes) -> tuple[int, int]:
    """200 {"status": "recorded"} records the event; anything else refuses it."""
    if status == 200 and json.loads(body).get("status") == "recorded":
        return 1, 0
    return 0, 1


def judge_ours_batch(status: int, body: bytes) -> tuple[int, int]:
    """200 with per-event results: `recorded` accepted, the rest of the batch refused."""
    if status != 200:
        return 0, BATCH_SIZE
    recorded = int(json.loads(body).get("recorded", 0))
    return recorded, BATCH_SIZE - recorded


def judge_events(status: int, body: bytes) -> tuple[int, int]:
    """jupyter_server answers 204 No Content to an emitted event."""
    return (1, 0) if status == 204 else (0, 1)


def judge_status(status: int, body: bytes) -> tuple[int, int]:
    """GET /api/status carries no event: only the status counts."""
    return 0, 0 if status == 200 else 1


@dataclass
class Contender:
    """One kind of request, its verdict, and what it did over the rounds at one concurrency."""

    name: str
    request: bytes
    judge: Judge
    events_per_request: int
    max_requests: int
    sink: str | None  # "ours" or "events": the sink its accepted events go to
    rps: list[float] = field(default_factory=list)
    eps: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    drain_ms: list[float] = field(default_factory=list)
    latencies_ns: list[int] = field(default_factory=list)
    requests: int = 0
    accepted: int = 0
    refused: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    first_error: str = ""

    def add(
        self, result: LoadResult, drain: float, server_cpu: float, client_cpu: float, count: bool
    ) -> None:
        """Add one run; `count=False` (a warm-up) only counts the events it accepted."""
        self.accepted += result.accepted
        self.refused += result.refused
        self.errors += result.errors
        for status, number in result.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + number
        self.first_error = self.first_error or result.first_error
        if not count:
            return
        self.requests += result.requests
        self.rps.append(result.requests_per_second)
        self.eps.append(result.events_per_second)
        self.drain_ms.append(drain * 1000)
        self.server_cpu.append(server_cpu / result.seconds)
        self.client_cpu.append(client_cpu / result.seconds)
        self.latencies_ns.extend(result.latencies_ns)


@dataclass(frozen=True)
class RatioSpec:
    """A ratio of two contenders' medians (requests/s or events/s), with its floor if any."""

    numerator: str
    denominator: str
    metric: str  # "rps" or "eps"
    target: float | None = None


def build_contenders(server: BenchServer, max_requests: int) -> list[Contender]:
    """The four requests, each a fixed byte string sent over and over."""
    batch = {"events": [POSTED] * BATCH_SIZE}
    return [
        Contender(
            OURS_ONE, post_request(server, OURS_PATH, POSTED), judge_ours_one, 1, max_requests,
            "ours",
        ),
        Contender(
            OURS_BATCH, post_request(server, OURS_PATH, batch), judge_ours_batch, BATCH_SIZE,
            max(1, max_requests // 10), "ours",
        ),
        Contender(
            JUPYTER_EVENTS, post_request(server, EVENTS_PATH, POSTED), judge_events, 1,
            max_requests, "events",
        ),
        Contender(
            STATUS, get_request(server, STATUS_PATH), judge_status, 0, max_requests, None
        ),
    ]  # fmt: skip


RATIOS = [
    RatioSpec(OURS_ONE, JUPYTER_EVENTS, "rps", TARGET_SINGLE),
    RatioSpec(OURS_BATCH, JUPYTER_EVENTS, "eps", TARGET_BATCH),
    RatioSpec(OURS_ONE, STATUS, "rps"),
    RatioSpec(JUPYTER_EVENTS, STATUS, "rps"),
]


@dataclass
class Sinks:
    """The two sink files, and how many events each must hold so far."""

    counters: dict[str, SinkCounter]
    expected: dict[str, int] = field(default_factory=lambda: {"ours": 0, "events": 0})

    def drain(self, name: str | None, accepted: int) -> float:
        """Wait until the sink holds every event accepted so far; return the seconds waited."""
        if name is None:
            return 0.0
        self.expected[name] += accepted
        return self.counters[name].wait_for(self.expected[name])


def run_one(
    server: BenchServer,
    sinks: Sinks,
    contender: Contender,
    connections: int,
    seconds: float,
    *,
    count: bool,
) -> None:
    """Load the server with one contender's request until the sink holds what it accepted.

    The run lasts until the last reply *and* until the server wrote every event it accepted:
    our EventLog writes on a background thread, and its backlog must not be drained during the
    next contender's run, nor left out of our throughput.
    """
    server_before, client_before = cpu_seconds(server.pid), time.process_time()
    result = load(
        server, contender.request, judge=contender.judge, connections=connections,
        max_requests=contender.max_requests, max_seconds=seconds,
    )  # fmt: skip
    drain = sinks.drain(contender.sink, result.accepted)
    result.seconds += drain
    server_cpu = cpu_seconds(server.pid) - server_before
    contender.add(result, drain, server_cpu, time.process_time() - client_before, count)


def measure(
    server: BenchServer, levels: Sequence[int], rounds: int, seconds: float, max_requests: int
) -> dict[int, list[Contender]]:
    """At each number of connections: warm every contender up, then alternate them over rounds."""
    measured: dict[int, list[Contender]] = {}
    sinks = Sinks({"ours": SinkCounter(server.sink), "events": SinkCounter(server.events_sink)})
    for connections in levels:
        contenders = build_contenders(server, max_requests)
        for contender in contenders:
            run_one(server, sinks, contender, connections, WARM_UP_SECONDS, count=False)
        for number in range(rounds):
            shift = number % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                run_one(server, sinks, contender, connections, seconds, count=True)
        measured[connections] = contenders
    return measured


# What the sinks must hold


def expected_ours() -> dict[str, Any]:
    """Our line without its timestamp: the event with `user` redacted, in the capsule."""
    return {
        "__schema__": SCHEMA_ID,
        "__schema_version__": SCHEMA_VERSION,
        **EVENT,
        REDACTED_PROPERTY: None,
    }


def expected_events() -> dict[str, Any]:
    """jupyter_events' line without its timestamp and metadata version: the event as posted."""
    return {"__schema__": SCHEMA_ID, "__schema_version__": SCHEMA_VERSION, **EVENT}


def check_sink(name: str, path: Path, accepted: int, expected: dict[str, Any]) -> list[str]:
    """Return the problems: a line count other than `accepted`, or a line other than expected."""
    problems = []
    lines = 0
    with path.open(encoding="utf-8") as f:
        for text in f:
            lines += 1
            line = json.loads(text)
            if not isinstance(line.pop("__timestamp__", None), str):
                problems.append(f"{name}: line {lines} has no __timestamp__")
                break
            line.pop("__metadata_version__", None)
            if line != expected:
                problems.append(f"{name}: line {lines} differs: {line!r}")
                break
    if lines != accepted:
        problems.append(f"{name}: {path.name} holds {lines} lines, {accepted} events were accepted")
    return problems


# Reporting


def contender_report(contender: Contender) -> dict[str, Any]:
    """One contender's figures at one concurrency, as JSON values."""
    latencies = sorted(contender.latencies_ns)
    return {
        "requests_per_second": Stats.of(contender.rps).as_dict(),
        "events_per_second": Stats.of(contender.eps).as_dict(),
        "latency_ms": {
            "p50": percentile(latencies, 0.50) / 1e6,
            "p99": percentile(latencies, 0.99) / 1e6,
            "max": (latencies[-1] if latencies else 0) / 1e6,
        },
        "drain_ms": Stats.of(contender.drain_ms).as_dict(),
        "server_cpu": Stats.of(contender.server_cpu).median,
        "client_cpu": Stats.of(contender.client_cpu).median,
        "requests": contender.requests,
        "events_accepted": contender.accepted,
        "events_refused": contender.refused,
        "errors": contender.errors,
        "statuses": {str(k): v for k, v in sorted(contender.statuses.items())},
        "first_error": contender.first_error or None,
    }


def ratio_report(contenders: list[Contender], spec: RatioSpec) -> dict[str, Any]:
    """The ratio of the medians and its spread within rounds, with the verdict."""
    by_name = {c.name: c for c in contenders}
    top = getattr(by_name[spec.numerator], spec.metric)
    bottom = getattr(by_name[spec.denominator], spec.metric)
    per_round = [a / b for a, b in zip(top, bottom, strict=True) if b]
    value = Stats.of(top).median / Stats.of(bottom).median
    unit = "requests/s" if spec.metric == "rps" else "events/s"
    return {
        "ratio": f"{spec.numerator} / {spec.denominator} ({unit})",
        "value": value,
        "per_round_min": min(per_round),
        "per_round_max": max(per_round),
        "target": None if spec.target is None else f">= {spec.target:g}",
        "met": None if spec.target is None else value >= spec.target,
    }


def render_level(connections: int, level: dict[str, Any]) -> str:
    """The table and the ratios at one number of connections."""
    rows = []
    for name, f in level["contenders"].items():
        rps, eps, lat = f["requests_per_second"], f["events_per_second"], f["latency_ms"]
        rows.append([
            name, f"{rps['median']:.0f}", f"{rps['q1']:.0f}-{rps['q3']:.0f}",
            f"{rps['min']:.0f}-{rps['max']:.0f}", f"{eps['median']:.0f}",
            f"{lat['p50']:.2f}", f"{lat['p99']:.2f}", f"{f['drain_ms']['median']:.0f}",
            f"{f['server_cpu']:.0%}",
            f"{f['client_cpu']:.0%}", str(f["requests"]), str(f["errors"]),
        ])  # fmt: skip
    headers = [
        "contender", "req/s", "IQR", "min-max", "events/s", "p50 ms", "p99 ms", "drain ms",
        "server CPU", "client CPU", "requests", "errors",
    ]  # fmt: skip
    plural = "s" if connections != 1 else ""
    lines = [f"{connections} connection{plural}", render_table(headers, rows), ""]
    for r in level["ratios"]:
        verdict = "" if r["met"] is None else ("  met" if r["met"] else "  MISSED")
        target = f"  (target {r['target']})" if r["target"] else ""
        spread = f"[rounds {r['per_round_min']:.2f}-{r['per_round_max']:.2f}]"
        lines.append(f"  {r['ratio']}: {r['value']:.2f}x {spread}{target}{verdict}")
    for name, f in level["contenders"].items():
        if f["first_error"]:
            lines.append(f"  first error of {name}: {f['first_error']}")
    return "\n".join(lines)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Start the server, measure, stop it (it flushes), check the sinks; return the report."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        # The extension would also record /api/events' events (TelemetryExtension.server_events):
        # the baseline must be jupyter_server's /api/events alone, writing to its own sink.
        server = BenchServer(
            Path(tmp), telemetry=True, events_schema=True, extra_config=[NO_FORWARDING]
        )
        try:
            server.start()
            measured = measure(
                server, args.connections, args.rounds, args.round_seconds, args.requests
            )
        finally:
            exit_status = server.stop()
        problems = [] if exit_status == 0 else [f"the server exited with status {exit_status}"]
        ours = sum(c.accepted for cs in measured.values() for c in cs if c.name.startswith("ours"))
        theirs = sum(c.accepted for cs in measured.values() for c in cs if c.name == JUPYTER_EVENTS)
        problems += check_sink("ours", server.sink, ours, expected_ours())
        problems += check_sink("/api/events", server.events_sink, theirs, expected_events())
        problems += [
            f"{c.name} at {n} connections: {c.errors} errors (first: {c.first_error})"
            for n, cs in measured.items()
            for c in cs
            if c.errors
        ]
        sink_lines = {"ours": ours, "/api/events": theirs}
    levels = {
        str(connections): {
            "contenders": {c.name: contender_report(c) for c in contenders},
            "ratios": [ratio_report(contenders, spec) for spec in RATIOS],
        }
        for connections, contenders in measured.items()
    }
    return {
        "benchmark": "http",
        "environment": environment(),
        "rounds": args.rounds,
        "round_seconds": args.round_seconds,
        "max_requests": args.requests,
        "batch_size": BATCH_SIZE,
        "levels": levels,
        "events_in_sinks": sink_lines,
        "load_average": [load_before, os.getloadavg()[0]],
        "problems": problems,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per level (default 5)")
    parser.add_argument(
        "--round-seconds", type=float, default=2.0,
        help="how long one contender's run lasts at most (default 2)",
    )  # fmt: skip
    parser.add_argument(
        "--requests", type=int, default=20_000,
        help="most requests in one run (default 20000; a tenth of it for batches)",
    )  # fmt: skip
    parser.add_argument(
        "--connections", type=int, nargs="+", default=[1, 16],
        help="numbers of keep-alive connections to measure (default 1 16)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="3 rounds of 0.5 s: a smoke test")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.round_seconds = 3, 0.5
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return 1 on an error reply or a sink not holding the accepted events."""
    args = parse_args(argv)
    report = run_benchmark(args)
    if args.json:
        print(dumps_json(report))
    else:
        env = report["environment"]
        print(f"HTTP benchmark: Python {env['python']} on {env['machine']}, one jupyter server, "
              f"{args.rounds} rounds of <= {args.round_seconds:g} s "
              f"(<= {args.requests} requests) per contender\n")  # fmt: skip
        levels = report["levels"]
        print("\n\n".join(render_level(int(n), level) for n, level in levels.items()))
        print()
        for name, count in report["events_in_sinks"].items():
            print(f"  sink {name}: {count} accepted events expected")
        before, after = report["load_average"]
        print(f"  machine load average (1 min) before / after: {before:.2f} / {after:.2f}")
        for problem in report["problems"]:
            print(f"  PROBLEM: {problem}")
        print(f"  sinks checked after SIGTERM: {'ok' if not report['problems'] else 'FAILED'}")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
