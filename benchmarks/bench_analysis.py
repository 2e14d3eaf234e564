"""`load_events` of a million events from rotated JSON-lines files and from PostgreSQL.

Writes `--events` capsules (common.EVENT: two nested objects and an array, 1,000 users, one
client id each, over 30 days) to a log rotated every 100,000 events (`events.log`,
`events.log.1`, ...), and COPYs the same capsules' rows into a throwaway PostgreSQL server
(tests/pgserver.py; as `postgres` when run as root). Then, alternating, in the same run:

- `load_events(log, schema)`: a DataFrame with a typed column per property (nested ones
  flattened), in order of reception, erased users checked;
- the baseline for files: DuckDB's own `read_ndjson` of the same files into an Arrow table (a
  plain read, with its type detection: no selection, flattening, order or DataFrame);
- `load_events(url, schema)`: the same DataFrame from PostgreSQL;
- the baseline for PostgreSQL: `COPY (SELECT * FROM telemetry_events) TO STDOUT` of the same
  rows, every byte read by the client (the transfer alone: nothing parsed).

    python benchmarks/bench_analysis.py [--events 1000000] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from common import EVENT, SCHEMA_ID, SCHEMA_VERSION, Stats, dumps_json, environment, render_table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb
import psycopg

from jupyter_telemetry_ext.analysis import load_events
from jupyter_telemetry_ext.sinks.pgrows import TUPLE_COLUMNS, to_row
from jupyter_telemetry_ext.sinks.pgtable import copy_stream, ensure_table
from tests.pgserver import binaries, running_server

PER_FILE = 100_000  # events per rotated file
START = datetime(2026, 9, 1, tzinfo=timezone.utc)
COPY = f"COPY telemetry_events ({', '.join(TUPLE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"


def capsules(n: int) -> Iterator[dict[str, Any]]:
    """Yield n capsules as the EventLog writes them, over 30 days, of 1,000 users."""
    step = timedelta(days=30) / n
    for i in range(n):
        stamp = (START + i * step).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        yield {"__timestamp__": stamp, "__schema__": SCHEMA_ID,
               "__schema_version__": SCHEMA_VERSION, "__metadata_version__": 2,
               "__user__": f"{i % 1000:064x}", "__client_id__": f"e{i}", **EVENT}  # fmt: skip


def write_logs(folder: Path, n: int) -> Path:
    """Write the capsules to a log rotated every PER_FILE events (oldest the highest number)."""
    log = folder / "events.log"
    files = -(-n // PER_FILE)
    lines: list[bytes] = []
    for i, capsule in enumerate(capsules(n)):
        lines.append(orjson.dumps(capsule))
        if len(lines) == PER_FILE or i == n - 1:
            number = files - 1 - i // PER_FILE
            path = log if number == 0 else log.with_name(f"events.log.{number}")
            path.write_bytes(b"\n".join(lines) + b"\n")
            lines = []
    return log


def fill_store(url: str, n: int) -> None:
    """COPY the same capsules' rows into the events table, 10,000 a transaction."""
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_table(conn, "telemetry_events", partition_by_day=False)
        rows: list[bytes] = []
        for capsule in capsules(n):
            rows.append(to_row(capsule))
            if len(rows) == 10_000:
                copy_stream(conn, COPY, rows)
                rows = []
        if rows:
            copy_stream(conn, COPY, rows)


def duckdb_read(log: Path) -> int:
    """Read the log's files with DuckDB's read_ndjson into an Arrow table; return the rows."""
    files = [str(p) for p in log.parent.glob("events.log*")]
    con = duckdb.connect()
    try:
        table = con.sql("SELECT * FROM read_ndjson($files)", params={"files": files})
        return int(table.to_arrow_table().num_rows)
    finally:
        con.close()


def copy_out(url: str) -> int:
    """Read every row of the events table as COPY text; return the bytes read."""
    size = 0
    with (
        psycopg.connect(url) as conn,
        conn.cursor().copy("COPY (SELECT * FROM telemetry_events) TO STDOUT") as copy,
    ):
        for block in copy:
            size += len(block)
    return size


def timed(run: Callable[[], Any]) -> float:
    """Return the seconds `run` takes."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    """Generate, measure in alternation, print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    bindir = binaries()
    if bindir is None:
        sys.exit("bench_analysis: PostgreSQL server binaries (initdb, pg_ctl) not found")
    n = args.events
    with tempfile.TemporaryDirectory() as folder, running_server(bindir) as server:
        log = write_logs(Path(folder), n)
        url = server.url(server.create_database())
        fill_store(url, n)
        contenders: dict[str, Callable[[], Any]] = {
            "load_events, JSON-lines": lambda: _check(load_events(log, SCHEMA_ID), n),
            "baseline: DuckDB read_ndjson": lambda: duckdb_read(log),
            "load_events, PostgreSQL": lambda: _check(load_events(url, SCHEMA_ID), n),
            "baseline: COPY TO STDOUT": lambda: copy_out(url),
        }
        seconds: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, run in contenders.items():
                seconds[name].append(timed(run))
    report(seconds, n, args.json)


def _check(frame: Any, n: int) -> None:
    if len(frame) != n:
        sys.exit(f"bench_analysis: load_events returned {len(frame)} events, not {n}")


def report(seconds: dict[str, list[float]], n: int, as_json: bool) -> None:
    """Print events/s per contender (median of the rounds) and the ratio to its baseline."""
    stats = {name: Stats.of(samples) for name, samples in seconds.items()}
    if as_json:
        print(dumps_json({"events": n, "environment": environment(),
                          "seconds": {k: v.as_dict() for k, v in stats.items()}}))  # fmt: skip
        return
    names = list(stats)
    rows = []
    for i, name in enumerate(names):
        baseline = stats[names[i + 1 if i % 2 == 0 else i]].median
        s = stats[name]
        spread = f"{s.low:.2f}-{s.high:.2f}"
        rows.append([name, f"{s.median:.2f}", spread, f"{n / s.median:,.0f}",
                     f"{s.median / baseline:.2f}x"])  # fmt: skip
    print(f"{n:,} events; {environment()}")
    print(render_table(["contender", "median s", "min-max s", "events/s", "time vs baseline"],
                       rows))  # fmt: skip


if __name__ == "__main__":
    main()
