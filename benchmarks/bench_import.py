"""Import benchmark: `import jupyter_telemetry_ext` against `import jupyter_events`.

Each import runs in a fresh interpreter (the two modules take turns), which reports the wall
time of the import itself, the growth of its peak RSS, and the modules it added. One more
process per module runs with `-X importtime` to say where the time goes, and one with
tracemalloc for the Python heap the import leaves allocated.

    python benchmarks/bench_import.py            # table
    python benchmarks/bench_import.py --json     # machine-readable
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from common import Stats, dumps_json, environment, render_table

OURS = "jupyter_telemetry_ext"
THEIRS = "jupyter_events"
TARGET_RATIO = 0.15
# Imported lazily by our package (on the first invalid event): never at import time.
MUST_NOT_IMPORT = ("jsonschema", "referencing", "rfc3987_syntax", "lark", "jupyter_events")
WATCHED = (
    "jsonschema", "jsonschema_rs", "referencing", "rfc3987_syntax", "rfc3339_validator", "lark",
    "fqdn", "webcolors", "yaml", "traitlets", "jupyter_core", "jupyter_server", "tornado",
    "pythonjsonlogger", "jupyter_events", "asyncio", "email", "http", "ssl", "socket",
)  # fmt: skip
# Modules that extension modules create at run time, not packages anyone installs.
NOT_PACKAGES = frozenset({"cython_runtime"})

CHILD = """
import json, resource, sys, time
before = set(sys.modules)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
import {module}
elapsed = time.perf_counter() - start
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss
added = sorted(set(sys.modules) - before)
result = {{"seconds": elapsed, "maxrss_delta": grown, "maxrss_before": rss, "added": added}}
print(json.dumps(result))
"""

CHILD_TRACEMALLOC = """
import json, tracemalloc
tracemalloc.start()
import {module}
current, peak = tracemalloc.get_traced_memory()
print(json.dumps({{"current": current, "peak": peak}}))
"""

# ru_maxrss is in KiB on Linux and in bytes on macOS.
RSS_UNIT = 1 if sys.platform == "darwin" else 1024
MIB = 1024 * 1024


def run_child(code: str, *options: str) -> subprocess.CompletedProcess[str]:
    """Run Python code in a fresh interpreter; raise when it fails."""
    return subprocess.run(
        [sys.executable, *options, "-c", code], capture_output=True, text=True, check=True
    )


def measure_once(module: str) -> dict[str, Any]:
    """Import the module in a fresh interpreter; return its figures."""
    result = json.loads(run_child(CHILD.format(module=module)).stdout)
    result["maxrss_delta"] *= RSS_UNIT
    result["maxrss_before"] *= RSS_UNIT
    return dict(result)


def heap_allocated(module: str) -> dict[str, int]:
    """Return the Python heap the import leaves allocated and its peak (tracemalloc)."""
    return dict(json.loads(run_child(CHILD_TRACEMALLOC.format(module=module)).stdout))


def import_time_by_package(module: str) -> Counter[str]:
    """Return `-X importtime` self time in microseconds, summed per top-level package."""
    stderr = run_child(f"import {module}", "-X", "importtime").stderr
    totals: Counter[str] = Counter()
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        self_us, _, name = line[len("import time:") :].split("|", 2)
        totals[name.strip().split(".")[0]] += int(self_us)
    return totals


def third_party(modules: Sequence[str]) -> list[str]:
    """Return the top-level packages among `modules` that are not in the standard library."""
    stdlib = sys.stdlib_module_names | NOT_PACKAGES
    tops = {name.split(".")[0] for name in modules}
    return sorted(t for t in tops if t not in stdlib and not t.startswith("_"))


def measure(runs: int) -> dict[str, Any]:
    """Alternate fresh-process imports of both modules; return every figure."""
    modules = (OURS, THEIRS)
    samples: dict[str, list[dict[str, Any]]] = {m: [] for m in modules}
    for number in range(runs):
        for module in modules if number % 2 == 0 else modules[::-1]:
            samples[module].append(measure_once(module))
    report: dict[str, Any] = {}
    for module in modules:
        runs_of = samples[module]
        added = runs_of[-1]["added"]
        report[module] = {
            "import_ms": Stats.of([r["seconds"] * 1000 for r in runs_of]).as_dict(),
            "maxrss_delta_mib": Stats.of([r["maxrss_delta"] / MIB for r in runs_of]).as_dict(),
            "interpreter_maxrss_mib": Stats.of([r["maxrss_before"] / MIB for r in runs_of]).median,
            "modules_added": len(added),
            "third_party": third_party(added),
            "watched": [name for name in WATCHED if name in {a.split(".")[0] for a in added}],
            "python_heap": heap_allocated(module),
            "importtime_self_ms": {
                name: us / 1000 for name, us in import_time_by_package(module).most_common(8)
            },
        }
    return report


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """Return the ratios and the checks on what our import pulls in."""
    ours, theirs = report[OURS], report[THEIRS]
    time_ratio = ours["import_ms"]["median"] / theirs["import_ms"]["median"]
    rss_ratio = ours["maxrss_delta_mib"]["median"] / max(theirs["maxrss_delta_mib"]["median"], 1e-9)
    heavy = [name for name in MUST_NOT_IMPORT if name in ours["watched"]]
    return {
        "time_ratio": time_ratio,
        "time_target": f"<= {TARGET_RATIO:g}",
        "time_met": time_ratio <= TARGET_RATIO,
        "rss_ratio": rss_ratio,
        "heavy_imported": heavy,
    }


def render(result: dict[str, Any]) -> str:
    """Return the report as text."""
    report, summary = result["modules"], result["summary"]
    rows = []
    for module, figures in report.items():
        t, m = figures["import_ms"], figures["maxrss_delta_mib"]
        heap = figures["python_heap"]
        rows.append([
            f"import {module}", f"{t['median']:.1f}", f"{t['q1']:.1f}-{t['q3']:.1f}",
            f"{t['min']:.1f}-{t['max']:.1f}", f"{m['median']:.1f}",
            f"{heap['current'] / MIB:.1f}", str(figures["modules_added"]),
        ])  # fmt: skip
    headers = [
        "import", "median ms", "IQR ms", "min-max ms", "peak RSS +MiB", "py heap MiB", "modules",
    ]  # fmt: skip
    verdict = "met" if summary["time_met"] else "MISSED"
    lines = [
        render_table(headers, rows),
        "",
        (
            f"  {OURS} / {THEIRS} import time: {summary['time_ratio']:.3f}x "
            f"(target {summary['time_target']})  {verdict}"
        ),
        f"  {OURS} / {THEIRS} peak RSS growth: {summary['rss_ratio']:.2f}x",
        f"  heavy modules imported by {OURS}: "
        + (", ".join(summary["heavy_imported"]) or f"none of {', '.join(MUST_NOT_IMPORT)}"),
    ]
    for module, figures in report.items():
        lines.append("")
        lines.append(f"{module}: watched modules imported: {', '.join(figures['watched']) or '-'}")
        lines.append(f"  third-party packages: {', '.join(figures['third_party']) or '-'}")
        costly = ", ".join(f"{n} {ms:.1f}" for n, ms in figures["importtime_self_ms"].items())
        lines.append(f"  -X importtime self ms by package: {costly}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=int, default=15, help="fresh processes per module (default 15)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report."""
    args = parse_args(argv)
    modules = measure(args.runs)
    result = {
        "benchmark": "import",
        "environment": environment(),
        "runs": args.runs,
        "modules": modules,
        "summary": summarise(modules),
    }
    if args.json:
        print(dumps_json(result))
    else:
        env = result["environment"]
        print(f"import benchmark: Python {env['python']} on {env['machine']}, "
              f"{args.runs} fresh processes per module, alternating\n")  # fmt: skip
        print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
