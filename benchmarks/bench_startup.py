"""Start-up benchmark: `jupyter server` with the extension enabled against disabled.

Each start is a fresh `python -m jupyter_server` in fresh temporary folders (see harness.py),
with the same config file except for `jpserver_extensions["jupyter_telemetry_ext"]`; every
other server extension installed is disabled. The time runs from just before the process is
started until `GET /api/status` (polled every 5 ms) answers 200; the server is then stopped
with SIGTERM. The two variants alternate; one unmeasured start of each warms the disk caches.

    python benchmarks/bench_startup.py            # table
    python benchmarks/bench_startup.py --json     # machine-readable
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import Stats, dumps_json, environment, render_table
from harness import BenchServer

ENABLED = "extension enabled"
DISABLED = "extension disabled"
TARGET_MS = 100.0
MIB = 1024 * 1024


def start_once(enabled: bool) -> dict[str, float]:
    """Start and stop one server; return its start-up seconds and RSS once it answered."""
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        server = BenchServer(Path(tmp), telemetry=enabled)
        try:
            seconds = server.start()
            rss = server.rss()["VmRSS"]
            loaded = "jupyter_telemetry_ext | extension was successfully loaded" in server.log_tail(
                100
            )
        finally:
            status = server.stop()
    if status != 0:
        msg = f"the server exited with status {status}"
        raise RuntimeError(msg)
    if loaded != enabled:
        msg = f"the extension was {'not ' if enabled else ''}loaded with enabled={enabled}"
        raise RuntimeError(msg)
    return {"seconds": seconds, "rss": rss}


def measure(runs: int) -> dict[str, list[dict[str, float]]]:
    """Warm up both variants, then alternate them `runs` times, flipping the order each time."""
    variants = ((ENABLED, True), (DISABLED, False))
    for _, enabled in variants:
        start_once(enabled)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
    for number in range(runs):
        for name, enabled in variants if number % 2 == 0 else variants[::-1]:
            samples[name].append(start_once(enabled))
    return samples


def summarise(samples: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Medians, spread and the added start-up time (difference of medians and of pairs)."""
    variants = {
        name: {
            "startup_ms": Stats.of([s["seconds"] * 1000 for s in runs]).as_dict(),
            "rss_mib": Stats.of([s["rss"] / MIB for s in runs]).as_dict(),
        }
        for name, runs in samples.items()
    }
    on, off = samples[ENABLED], samples[DISABLED]
    pairs = [(a["seconds"] - b["seconds"]) * 1000 for a, b in zip(on, off, strict=True)]
    added = variants[ENABLED]["startup_ms"]["median"] - variants[DISABLED]["startup_ms"]["median"]
    rss_added = variants[ENABLED]["rss_mib"]["median"] - variants[DISABLED]["rss_mib"]["median"]
    return {
        "variants": variants,
        "added_ms": added,
        "added_ms_pairs": Stats.of(pairs).as_dict(),
        "added_rss_mib": rss_added,
        "target": f"<= {TARGET_MS:g} ms",
        "met": added <= TARGET_MS,
    }


def render(summary: dict[str, Any]) -> str:
    """The table and the verdict."""
    rows = []
    for name, f in summary["variants"].items():
        t, m = f["startup_ms"], f["rss_mib"]
        rows.append([
            name, f"{t['median']:.0f}", f"{t['q1']:.0f}-{t['q3']:.0f}",
            f"{t['min']:.0f}-{t['max']:.0f}", f"{m['median']:.1f}",
        ])  # fmt: skip
    headers = ["server", "median start-up ms", "IQR", "min-max", "RSS MiB once up"]
    pairs = summary["added_ms_pairs"]
    verdict = "met" if summary["met"] else "MISSED"
    added = (
        f"  enabling the extension adds {summary['added_ms']:.0f} ms (difference of medians; "
        f"paired runs: median {statistics.median(pairs['samples']):.0f} ms, "
        f"min-max {pairs['min']:.0f}-{pairs['max']:.0f}) (target {summary['target']})  {verdict}"
    )
    rss = f"  and {summary['added_rss_mib']:.1f} MiB of RSS once the server answers"
    before, after = summary["load_average"]
    load = f"  machine load average (1 min) before / after: {before:.2f} / {after:.2f}"
    return "\n".join([render_table(headers, rows), "", added, rss, load])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="starts per variant (default 10)")
    parser.add_argument("--quick", action="store_true", help="3 starts per variant: a smoke test")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 3
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report."""
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    summary = summarise(measure(args.runs))
    summary["load_average"] = [load_before, os.getloadavg()[0]]
    result = {"benchmark": "startup", "environment": environment(), "runs": args.runs, **summary}
    if args.json:
        print(dumps_json(result))
    else:
        env = result["environment"]
        title = (
            f"server start-up benchmark: Python {env['python']} on {env['machine']}, "
            f"{args.runs} starts per variant, alternating, until GET /api/status answers\n"
        )
        print(title)
        print(render(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
