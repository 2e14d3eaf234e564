"""The dashboard's views on a big store: PostgreSQL and rotated JSON-lines files (DuckDB).

Generates `--pg-events` events (default 10,000,000) from `--users` users (default 1,000) over
`--days` days (default 90) straight into a throwaway PostgreSQL's events table (tests/pgserver.py;
`generate_series`, the table made by the handler's own `ensure_table`), and `--file-events`
(default 1,000,000) into a JSON-lines log and its rotated copies. Then asks each view of the
dashboard, over the whole range, `--calls` times (default 20) through `model.reply` (what the
API handler runs off the event loop, minus HTTP) and reports the p50 and p95 per view. Goals:
PostgreSQL <= 300 ms, JSON-lines through DuckDB <= 1 s a view. The file source loads the files
into memory at its first question (reported apart, "load") and again only when they change.

    python benchmarks/bench_dashboard.py                        # the issue's sizes
    python benchmarks/bench_dashboard.py --pg-events 1000000    # smaller, faster to load
    python benchmarks/bench_dashboard.py --json
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from common import dumps_json, environment, render_table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.dashboard.filesource import FileSource
from jupyter_telemetry_ext.dashboard.model import reply
from jupyter_telemetry_ext.dashboard.pgsource import PostgresSource
from jupyter_telemetry_ext.dashboard.query import Query
from jupyter_telemetry_ext.dashboard.views import (
    ACTIVE_TIME,
    CELL,
    NOTEBOOK,
    SERVER_ACTION,
    VIEWS,
)
from jupyter_telemetry_ext.sinks.pgtable import ensure_table
from tests.pgserver import binaries, running_server

TABLE = "telemetry_events"
KERNEL = "https://events.jupyter.org/jupyter_telemetry_ext/kernel"
PG_GOAL_MS, FILE_GOAL_MS = 300, 1000
# What the generated events are: (share in 1000, schema, SQL of `data`).
MIX = [
    (600, CELL, ("jsonb_build_object('action', 'executed', 'status', "
                 "CASE WHEN i % 10 = 0 THEN 'error' ELSE 'ok' END)")),
    (150, NOTEBOOK, ("jsonb_build_object('action', 'opened', 'notebook_session', "
                     "'s' || (i % 50000), "
                     "'kernel_name', CASE WHEN i % 3 = 0 THEN 'ir' ELSE 'python3' END)")),
    (150, ACTIVE_TIME, ("jsonb_build_object('action', 'summary', 'notebook_session', "
                        "'s' || (i % 50000), 'active_s', (i % 3600))")),
    (90, KERNEL, "jsonb_build_object('action', 'restarted', 'kernel_name', 'python3')"),
    (10, SERVER_ACTION, ("jsonb_build_object('action', CASE WHEN i % 2 = 0 THEN 'start' "
                         "ELSE 'stop' END, 'servername', '')")),
]  # fmt: skip


def generate_sql(n: int, users: int, days: int, start: datetime) -> str:
    """Return the INSERT that makes `n` events of the mix, spread evenly over the days."""
    cases, low = [], 0
    for share, schema, data in MIX:
        cases.append((low, low + share, schema, data))
        low += share
    schema = " ".join(f"WHEN i % 1000 < {hi} THEN '{s}'" for _, hi, s, _ in cases)
    data = " ".join(f"WHEN i % 1000 < {hi} THEN {d}" for _, hi, _, d in cases)
    seconds = days * 86400
    return (
        f"INSERT INTO {TABLE} (received, schema_id, schema_version, metadata_version, username, "  # noqa: S608
        f"data) SELECT timestamptz '{start.isoformat()}' + ((i::bigint * {seconds}) / {n}) "
        f"* interval '1 second', CASE {schema} END, '1', 1, 'user' || ((i * 7919) % {users}), "
        f"CASE {data} END FROM generate_series(%s::bigint, %s::bigint) AS i"
    )


def load_postgres(url: str, n: int, users: int, days: int, start: datetime) -> float:
    """Fill the events table; return the seconds it took (ANALYZE included)."""
    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_table(conn, TABLE, partition_by_day=False)
        sql = generate_sql(n, users, days, start)
        step = 1_000_000
        for low in range(0, n, step):
            bounded = sql.replace("%s::bigint, %s", f"{low}::bigint, {min(n, low + step) - 1}")
            conn.execute(bounded.encode())  # bytes: its `%` are SQL's, not placeholders
            print(f"  PostgreSQL: {min(n, low + step):,} of {n:,} events", flush=True)
        conn.execute(f"VACUUM ANALYZE {TABLE}")
    return time.perf_counter() - began


def write_files(folder: Path, n: int, users: int, days: int, start: datetime) -> Path:
    """Write `n` events into events.jsonl and its rotated copies (.1 .. .4); return the log."""
    log = folder / "events.jsonl"
    names = [folder / f"events.jsonl.{k}" for k in (4, 3, 2, 1)] + [log]
    per_file = -(-n // len(names))
    rng = random.Random(1)
    i = 0
    for path in names:
        with path.open("w", encoding="utf-8") as out:
            for _ in range(min(per_file, n - i)):
                out.write(json.dumps(file_event(i, n, (users, days, start), rng)) + "\n")
                i += 1
    return log


def file_event(i: int, n: int, spread: tuple[int, int, datetime], rng: random.Random) -> Any:
    """Return one capsule of the mix, as a FileHandler writes it."""
    users, days, start = spread
    when = start + timedelta(seconds=i * days * 86400 / n)
    pick = i % 1000
    capsule: dict[str, Any] = {"__timestamp__": when.isoformat().replace("+00:00", "Z"),
                               "__schema_version__": "1", "__metadata_version__": 1,
                               "__user__": f"user{(i * 7919) % users}"}  # fmt: skip
    if pick < 600:
        capsule.update(__schema__=CELL, action="executed", status="error" if i % 10 == 0 else "ok")
    elif pick < 750:
        capsule.update(__schema__=NOTEBOOK, action="opened", notebook_session=f"s{i % 50000}",
                       kernel_name="ir" if i % 3 == 0 else "python3")  # fmt: skip
    elif pick < 900:
        capsule.update(__schema__=ACTIVE_TIME, action="summary",
                       notebook_session=f"s{i % 50000}", active_s=rng.randint(0, 3600))  # fmt: skip
    elif pick < 990:
        capsule.update(__schema__=KERNEL, action="restarted", kernel_name="python3")
    else:
        capsule.update(__schema__=SERVER_ACTION, action="start" if i % 2 else "stop")
    return capsule


def time_views(source: Any, query: Query, calls: int, eventlog: EventLog) -> dict[str, Any]:
    """Return p50 and p95 (ms) of each view, and the rows of each."""
    results: dict[str, Any] = {}
    for view in VIEWS:
        times = []
        for _ in range(calls):
            began = time.perf_counter()
            model = reply(view, query, source, eventlog)
            times.append((time.perf_counter() - began) * 1000)
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        results[view] = {"p50_ms": times[len(times) // 2], "p95_ms": p95,
                         "rows": len(model["rows"])}  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-events", type=int, default=10_000_000)
    parser.add_argument("--file-events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    bindir = binaries()
    if bindir is None:
        parser.error("PostgreSQL server binaries (initdb, pg_ctl) not found")
    end = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=args.days)
    query = Query(since=start, until=end + timedelta(days=1))
    eventlog = EventLog(handlers=[logging.NullHandler()])
    report: dict[str, Any] = {"environment": environment(), "args": vars(args)}
    with running_server(bindir) as pg, tempfile.TemporaryDirectory() as tmp:
        url = pg.url(pg.create_database())
        report["pg_load_s"] = load_postgres(url, args.pg_events, args.users, args.days, start)
        source = PostgresSource(url, TABLE)
        began = time.perf_counter()
        source.last_received()
        source.rows("servers", query)  # the first question builds the daily rollup
        report["rollup_s"] = time.perf_counter() - began
        report["postgresql"] = time_views(source, query, args.calls, eventlog)
        source.close()
        log = write_files(Path(tmp), args.file_events, args.users, args.days, start)
        files = FileSource(log)
        began = time.perf_counter()
        files.last_received()  # the first question loads the files
        report["file_load_s"] = time.perf_counter() - began
        report["files"] = time_views(files, query, args.calls, eventlog)
        files.close()
    eventlog.close()
    print(dumps_json(report) if args.json else render(report, args))
    return 0


def render(report: dict[str, Any], args: argparse.Namespace) -> str:
    """Return the report as a table."""
    rows = []
    for view in VIEWS:
        pg, files = report["postgresql"][view], report["files"][view]
        rows.append([view, f"{pg['p50_ms']:.0f}", f"{pg['p95_ms']:.0f}",
                     "yes" if pg["p95_ms"] <= PG_GOAL_MS else "NO",
                     f"{files['p50_ms']:.0f}", f"{files['p95_ms']:.0f}",
                     "yes" if files["p95_ms"] <= FILE_GOAL_MS else "NO"])  # fmt: skip
    headers = ["view", "pg p50 ms", "pg p95 ms", f"<= {PG_GOAL_MS}", "files p50 ms",
               "files p95 ms", f"<= {FILE_GOAL_MS}"]  # fmt: skip
    head = (f"{args.pg_events:,} events in PostgreSQL (loaded in {report['pg_load_s']:.0f} s; "
            f"rollup built at the first question in {report['rollup_s']:.1f} s), "
            f"{args.file_events:,} in 5 JSON-lines files (DuckDB load "
            f"{report['file_load_s']:.1f} s); {args.users:,} users over {args.days} days; "
            f"{args.calls} calls a view, whole range (outcomes and health: this process's "
            "counters, and the store's newest event).")  # fmt: skip
    return head + "\n\n" + render_table(headers, rows)


if __name__ == "__main__":
    raise SystemExit(main())
