"""Stall benchmark: how long one client's batches keep the server from answering anyone else.

One real `jupyter server` (see harness.py) with the extension, the benchmark schema and a second
schema an admin registered through `schema_paths`, whose `name` property has the pattern
`^(a+)+$` (a regular expression that backtracks exponentially in Python's `re`). A prober in
another process asks GET /api/status every few milliseconds and keeps each reply's latency,
while one client posts batches to POST api/telemetry/events, one after the other:

- valid: ~0.9 MB batches of valid events (recorded);
- hostile: ~0.9 MB batches of invalid events: the first has a 28-character `name` that the
  pattern backtracks on, the others an array of numbers where strings are expected, so that
  each event has hundreds of errors to describe.

The scenarios alternate within each round. The worst /api/status latency is how long the event
loop was blocked (plus one request's own time); the ratio hostile / valid says what invalid input
costs the other users beyond what the same amount of valid input does.

    python benchmarks/bench_stall.py             # table
    python benchmarks/bench_stall.py --quick     # smoke test
    python benchmarks/bench_stall.py --json      # machine-readable
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from common import EVENT, SCHEMA_ID, SCHEMA_VERSION, dumps_json, environment, render_table
from harness import (
    HOST,
    OURS_PATH,
    STATUS_PATH,
    BenchServer,
    LoadResult,
    load,
    percentile,
    post_request,
)

PATTERN_ID = "https://events.example.org/bench/pattern"
PATTERN = "^(a+)+$"
PATTERN_SCHEMA: dict[str, Any] = {
    "$id": PATTERN_ID,
    "version": 1,
    "title": "A name with a pattern",
    "description": "An admin's schema whose pattern backtracks in Python's re.",
    "type": "object",
    "frontend": True,
    "properties": {
        "name": {"type": "string", "pattern": PATTERN, "categories": ["unrestricted"]},
    },
}
BATCH_BYTES = 900_000
BATCH_EVENTS = 500
PROBE_SECONDS = 0.005
TARGET_MS = 50.0  # no request may block the event loop longer
RATIO_TARGET = 2.0
SCENARIOS = ("valid", "hostile")


def envelope(data: dict[str, Any], schema_id: str = SCHEMA_ID) -> dict[str, Any]:
    """Return a posted event of a schema's version 1 (the benchmark schema's "1")."""
    version = SCHEMA_VERSION if schema_id == SCHEMA_ID else 1
    return {"schema_id": schema_id, "version": version, "data": data}


def valid_batch() -> dict[str, Any]:
    """Return a batch of BATCH_EVENTS valid events, about BATCH_BYTES of JSON."""
    pad = BATCH_BYTES // BATCH_EVENTS - len(json.dumps(envelope(EVENT)))
    data = {**EVENT, "session_id": EVENT["session_id"] + "x" * max(0, pad)}
    return {"events": [envelope(data) for _ in range(BATCH_EVENTS)]}


def hostile_batch(pattern_length: int) -> dict[str, Any]:
    """Return a batch of BATCH_EVENTS invalid events, about BATCH_BYTES of JSON."""
    # Each number takes 3 bytes (`0, `) in the body harness.post_request writes.
    numbers = (BATCH_BYTES // BATCH_EVENTS - len(json.dumps(envelope(EVENT)))) // 3
    invalid = envelope({**EVENT, "tags": [0] * max(1, numbers)})
    events = [invalid] * BATCH_EVENTS
    if pattern_length:
        name = "a" * (pattern_length - 1) + "!"
        events[0] = envelope({"name": name}, PATTERN_ID)
    return {"events": events}


def probe(port: int, token: str, stop: Any, results: Connection) -> None:
    """GET /api/status every PROBE_SECONDS until `stop` is set; send back each latency (ns)."""
    latencies: list[int] = []
    connection = http.client.HTTPConnection(HOST, port, timeout=120)
    headers = {"Authorization": f"token {token}"}
    while not stop.is_set():
        sent = time.perf_counter_ns()
        connection.request("GET", STATUS_PATH, headers=headers)
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter_ns() - sent)
        if response.status != 200:
            latencies[-1] = -response.status
        time.sleep(PROBE_SECONDS)
    connection.close()
    results.send(latencies)


def judge_for(scenario: str, events: int) -> Any:
    """Return the verdict on a reply: valid batches are recorded, hostile ones refused."""

    def judge(status: int, body: bytes) -> tuple[int, int]:
        reply = json.loads(body)
        if scenario == "valid":
            ok = status == 200 and reply.get("recorded") == events
        else:
            ok = status == 400 and reply.get("rejected") == events
        return (1, 0) if ok else (0, 1)

    return judge


def run_scenario(
    server: BenchServer, scenario: str, request: bytes, events: int, posts: int
) -> tuple[LoadResult, list[int]]:
    """Post `posts` batches one after the other while the prober runs; return both results."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    receiver, sender = context.Pipe(duplex=False)
    prober = context.Process(target=probe, args=(server.port, server.token, stop, sender))
    prober.start()
    time.sleep(0.5)  # the prober's interpreter starts and sends its first requests
    try:
        result = load(
            server, request, judge=judge_for(scenario, events),
            connections=1, max_requests=posts, max_seconds=600,
        )  # fmt: skip
        time.sleep(0.1)
    finally:
        stop.set()
        latencies = receiver.recv() if receiver.poll(150) else []
        prober.join(30)
    return result, latencies


def summary(results: list[LoadResult], latencies: list[int]) -> dict[str, Any]:
    """Return the figures of one scenario over every round, in milliseconds."""
    probes = sorted(x for x in latencies if x >= 0)
    posts = sorted(x for r in results for x in r.latencies_ns)
    return {
        "posts": sum(r.requests for r in results),
        "errors": sum(r.errors for r in results),
        "first_error": next((r.first_error for r in results if r.first_error), ""),
        "probes": len(probes),
        "probe_failures": len(latencies) - len(probes),
        "status_worst_ms": (probes[-1] if probes else 0) / 1e6,
        "status_p99_ms": percentile(probes, 0.99) / 1e6,
        "status_median_ms": percentile(probes, 0.5) / 1e6,
        "post_median_ms": percentile(posts, 0.5) / 1e6,
    }


def measure(server: BenchServer, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Alternate the scenarios for `args.rounds` rounds; return each scenario's summary."""
    bodies = {"valid": valid_batch(), "hostile": hostile_batch(args.pattern_length)}
    requests = {name: post_request(server, OURS_PATH, body) for name, body in bodies.items()}
    results: dict[str, list[LoadResult]] = {name: [] for name in SCENARIOS}
    latencies: dict[str, list[int]] = {name: [] for name in SCENARIOS}
    for round_index in range(args.rounds):
        order = SCENARIOS if round_index % 2 == 0 else SCENARIOS[::-1]
        for name in order:
            events = len(bodies[name]["events"])
            result, probes = run_scenario(server, name, requests[name], events, args.posts)
            results[name].append(result)
            latencies[name] += probes
    return {name: summary(results[name], latencies[name]) for name in SCENARIOS}


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Start the server, measure, stop it; return the report."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-stall-") as tmp:
        server = BenchServer(Path(tmp), extra_config=["c.TelemetryExtension.rate_limit = 0"])
        schema_file = server.workdir / "schemas" / "pattern-schema.json"
        schema_file.write_text(json.dumps(PATTERN_SCHEMA), encoding="utf-8")
        try:
            server.start()
            scenarios = measure(server, args)
        finally:
            exit_status = server.stop()
    valid, hostile = scenarios["valid"], scenarios["hostile"]
    problems = [] if exit_status == 0 else [f"the server exited with status {exit_status}"]
    problems += [
        f"{name}: {s['errors']} unexpected replies (first: {s['first_error']})"
        for name, s in scenarios.items()
        if s["errors"]
    ]
    problems += [
        f"{name}: {s['probe_failures']} /api/status probes failed"
        for name, s in scenarios.items()
        if s["probe_failures"]
    ]
    return {
        "benchmark": "stall",
        "environment": environment(),
        "rounds": args.rounds,
        "posts_per_round": args.posts,
        "pattern_length": args.pattern_length,
        "scenarios": scenarios,
        "ratios": {
            "worst hostile / valid": _ratio(hostile["status_worst_ms"], valid["status_worst_ms"]),
            "p99 hostile / valid": _ratio(hostile["status_p99_ms"], valid["status_p99_ms"]),
        },
        "load_average": [load_before, os.getloadavg()[0]],
        "problems": problems,
    }


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("inf")


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def render(report: dict[str, Any]) -> str:
    """Return the report as a table, the ratios and the targets."""
    headers = ["scenario", "posts", "post median ms", "status probes",
               "status median ms", "status p99 ms", "status worst ms"]  # fmt: skip
    rows = [
        [name, str(s["posts"]), f"{s['post_median_ms']:.1f}", str(s["probes"]),
         f"{s['status_median_ms']:.1f}", f"{s['status_p99_ms']:.1f}",
         f"{s['status_worst_ms']:.1f}"]
        for name, s in report["scenarios"].items()
    ]  # fmt: skip
    worst = report["scenarios"]["hostile"]["status_worst_ms"]
    ratio = report["ratios"]["worst hostile / valid"]
    lines = [render_table(headers, rows), ""]
    lines.append(
        f"  worst /api/status latency during hostile batches: {worst:.1f} ms "
        f"(target <= {TARGET_MS:g} ms)  {_verdict(worst <= TARGET_MS)}"
    )
    lines.append(
        f"  worst hostile / valid: {ratio:.2f}x (target <= {RATIO_TARGET:g})  "
        f"{_verdict(ratio <= RATIO_TARGET)}"
    )
    lines.append(f"  p99 hostile / valid: {report['ratios']['p99 hostile / valid']:.2f}x")
    before, after = report["load_average"]
    lines.append(f"  load average: {before:.2f} before, {after:.2f} after")
    lines += [f"PROBLEM: {problem}" for problem in report["problems"]]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument(
        "--posts", type=int, default=5, help="batches posted per scenario and round (default 5)"
    )
    parser.add_argument(
        "--pattern-length", type=int, default=28,
        help="length of the value the pattern backtracks on (default 28; 0: none)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 posts: a smoke test")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.posts = 2, 2
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return 1 on an unexpected reply or a failed probe."""
    args = parse_args(argv)
    report = run_benchmark(args)
    if args.json:
        print(dumps_json(report))
    else:
        env = report["environment"]
        print(f"Stall benchmark: Python {env['python']} on {env['machine']}, one jupyter server, "
              f"{args.rounds} rounds of {args.posts} batches per scenario, /api/status probed "
              f"every {PROBE_SECONDS * 1000:g} ms\n")  # fmt: skip
        print(render(report))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
