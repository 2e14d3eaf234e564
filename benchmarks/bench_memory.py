"""Memory benchmark: the server's RSS after the first 1,000 events and after 1,000,000.

One real `jupyter server` with the extension (see harness.py), recording to a FileHandler on a
temporary file. This process posts batches (500 events by default) over several keep-alive
connections until the server has accepted the total, and reads the server's VmRSS from
/proc/<pid>/status: at idle, once the first 1,000 events are written, at ten checkpoints during
the load, and once every accepted event is written (the background writer has drained its
queue). The server is then stopped with SIGTERM; the sink must hold exactly the accepted events.
The temporary folder, sink included, is deleted at the end.

    python benchmarks/bench_memory.py                  # 1,000,000 events
    python benchmarks/bench_memory.py --quick          # 100,000 events
    python benchmarks/bench_memory.py --total 300000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import EVENT, SCHEMA_ID, SCHEMA_VERSION, dumps_json, environment, render_table
from harness import OURS_PATH, BenchServer, SinkCounter, load, post_request

FIRST = 1_000
CHECKPOINTS = 10
TARGET_MIB = 20.0
MIB = 1024 * 1024

POSTED: dict[str, Any] = {"schema_id": SCHEMA_ID, "version": SCHEMA_VERSION, "data": EVENT}


def judge_batch(status: int, body: bytes) -> tuple[int, int]:
    """A batch reply: `recorded` events accepted, every other one refused."""
    if status != 200:
        return 0, 0
    reply = json.loads(body)
    return int(reply["recorded"]), int(reply["rejected"]) + int(reply["filtered"])


@dataclass
class Loader:
    """Posts batches until the server has accepted a number of events."""

    server: BenchServer
    batch: int
    connections: int
    accepted: int = 0
    refused: int = 0
    requests: int = 0
    failed_requests: int = 0
    seconds: float = 0.0

    def post_until(self, total: int) -> None:
        """Post batches until `total` events were accepted in all (the last batch may be short)."""
        while self.accepted < total:
            size = min(self.batch, total - self.accepted)
            request = post_request(self.server, OURS_PATH, {"events": [POSTED] * size})
            batches = max(1, (total - self.accepted) // size)
            started = time.perf_counter()
            result = load(
                self.server, request, judge=judge_batch,
                connections=min(self.connections, batches), max_requests=batches,
                max_seconds=3600.0,
            )  # fmt: skip
            self.seconds += time.perf_counter() - started
            self.accepted += result.accepted
            self.refused += result.refused
            self.requests += result.requests
            self.failed_requests += sum(n for s, n in result.statuses.items() if s != 200)
            if result.refused or self.failed_requests:
                if self.failed_requests:
                    msg = f"the server refused a batch: {result.first_error}"
                    raise RuntimeError(msg)
                time.sleep(1.0)  # a full queue (503 inside the batch): Retry-After


def checkpoint(label: str, server: BenchServer, loader: Loader, written: int) -> dict[str, Any]:
    """The server's RSS and peak RSS now, with how many events were accepted and written."""
    rss = server.rss()
    return {
        "label": label,
        "accepted": loader.accepted,
        "written": written,
        "rss_mib": rss["VmRSS"] / MIB,
        "hwm_mib": rss["VmHWM"] / MIB,
        "load_seconds": loader.seconds,
    }


def run_benchmark(
    total: int, batch: int, connections: int, queue_size: int | None = None
) -> dict[str, Any]:
    """Start the server, load it, read its RSS along the way, stop it, check the sink."""
    points: list[dict[str, Any]] = []
    load_before = os.getloadavg()[0]
    extra = [] if queue_size is None else [f"c.EventLog.queue_size = {queue_size}"]
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        server = BenchServer(Path(tmp), telemetry=True, extra_config=extra)
        try:
            server.start()
            sink = SinkCounter(server.sink)
            loader = Loader(server, batch, connections)
            time.sleep(1.0)
            points.append(checkpoint("idle, after start-up", server, loader, 0))
            loader.post_until(FIRST)
            sink.wait_for(loader.accepted)
            after_first = checkpoint(f"after the first {FIRST:,}", server, loader, sink.lines)
            points.append(after_first)
            step = max(batch, (total - FIRST) // CHECKPOINTS)
            while loader.accepted < total:
                loader.post_until(min(total, loader.accepted + step))
                label = "during the load" if loader.accepted < total else "end of the load"
                points.append(checkpoint(label, server, loader, sink.update()))
            drained = sink.wait_for(loader.accepted)
            label = f"after {loader.accepted:,}, all written"
            final = checkpoint(label, server, loader, sink.lines)
            points.append(final)
            time.sleep(2.0)
            points.append(checkpoint("2 s later", server, loader, sink.update()))
        finally:
            status = server.stop()
        lines = sink.update()
        sink_bytes = server.sink.stat().st_size
    problems = [] if status == 0 else [f"the server exited with status {status}"]
    if lines != loader.accepted:
        problems.append(f"the sink holds {lines} lines, {loader.accepted} events were accepted")
    growth = final["rss_mib"] - after_first["rss_mib"]
    return {
        "benchmark": "memory",
        "environment": environment(),
        "total": total,
        "batch": batch,
        "connections": connections,
        "queue_size": queue_size,
        "checkpoints": points,
        "events_accepted": loader.accepted,
        "events_refused": loader.refused,
        "requests": loader.requests,
        "load_seconds": loader.seconds,
        "events_per_second": (loader.accepted - FIRST) / max(loader.seconds, 1e-9),
        "drain_seconds": drained,
        "sink_lines": lines,
        "sink_mib": sink_bytes / MIB,
        "growth_mib": growth,
        "target": f"<= {TARGET_MIB:g} MiB",
        "met": growth <= TARGET_MIB,
        "load_average": [load_before, os.getloadavg()[0]],
        "problems": problems,
    }


def render(report: dict[str, Any]) -> str:
    """The checkpoints, the growth and the verdict."""
    base = report["checkpoints"][1]["rss_mib"]
    rows = [
        [
            p["label"], f"{p['accepted']:,}", f"{p['written']:,}", f"{p['rss_mib']:.1f}",
            f"{p['rss_mib'] - base:+.1f}", f"{p['hwm_mib']:.1f}", f"{p['load_seconds']:.1f}",
        ]
        for p in report["checkpoints"]
    ]  # fmt: skip
    headers = [
        "checkpoint", "accepted", "written", "RSS MiB", "vs first 1,000", "peak RSS MiB",
        "load s",
    ]  # fmt: skip
    verdict = "met" if report["met"] else "MISSED"
    growth = (
        f"  RSS after {report['events_accepted']:,} events - RSS after the first {FIRST:,}: "
        f"{report['growth_mib']:+.1f} MiB (target {report['target']})  {verdict}"
    )
    throughput = (
        f"  load: {report['events_per_second']:,.0f} events/s accepted, "
        f"{report['events_refused']:,} refused (queue full), {report['requests']:,} requests; "
        f"the writer finished {report['drain_seconds']:.1f} s after the last reply"
    )
    sink = f"  sink: {report['sink_lines']:,} lines ({report['sink_mib']:.0f} MiB, deleted)"
    before, after = report["load_average"]
    load = f"  machine load average (1 min) before / after: {before:.2f} / {after:.2f}"
    lines = [render_table(headers, rows), "", growth, throughput, sink, load]
    lines.extend(f"  PROBLEM: {p}" for p in report["problems"])
    lines.append(f"  sink checked after SIGTERM: {'ok' if not report['problems'] else 'FAILED'}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--total", type=int, default=1_000_000, help="events to post in all (default 1000000)"
    )
    parser.add_argument("--batch", type=int, default=500, help="events per POST (default 500)")
    parser.add_argument(
        "--connections", type=int, default=4, help="keep-alive connections (default 4)"
    )
    parser.add_argument(
        "--queue-size", type=int, default=None,
        help="set c.EventLog.queue_size (default: the extension's default, 100000)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="100,000 events: a smoke test")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.total = 100_000
    if args.total <= FIRST:
        parser.error(f"--total must be more than {FIRST}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return 1 when the sink does not hold exactly the accepted events."""
    args = parse_args(argv)
    report = run_benchmark(args.total, args.batch, args.connections, args.queue_size)
    if args.json:
        print(dumps_json(report))
    else:
        env = report["environment"]
        print(f"server memory benchmark: Python {env['python']} on {env['machine']}, "
              f"{args.total:,} events in batches of {args.batch} over "
              f"{args.connections} connections, "
              f"c.EventLog.queue_size = {args.queue_size or 'default'}\n")  # fmt: skip
        print(render(report))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
