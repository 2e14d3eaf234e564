"""Hub benchmark: N processes (simulated single-user servers) posting batches to one collector.

A real JupyterHub (tests/hubserver.py: configurable-http-proxy, the collector as a managed
service) on 127.0.0.1; each process logs in as its own hub user and POSTs batches with its token
through the proxy, over one keep-alive connection, as a forwarder does. Printed: events/s through
the collector (from the first request until the store holds every event), the collector
process's CPU time per event (steadier than events/s on a shared machine), the latency of each
batch request (p50/p99), and a baseline measured in the same run for at least
`--baseline-seconds`:

- `--store file` (the default): the collector writes a JSON-lines file; the baseline is the same
  events recorded straight into an EventLog writing the same kind of file, and the ratio is
  collector time / direct time;
- `--store postgres`: a throwaway PostgreSQL (tests/pgserver.py) and the collector configured
  as docs/jupyterhub.md's (`c.EventLog.handlers = [PostgresEventHandler(URL)]`); the baseline is
  raw binary COPY of the rows the collector stored (the handler's own tuples, made before the
  clock starts, 10,000 per autocommitted COPY) into an empty table of the same layout, and the
  ratio is collector events/s / raw COPY rows/s (goal >= 0.5).

    python benchmarks/bench_hub.py                     # 4 processes x 40 batches x 500 events
    python benchmarks/bench_hub.py --procs 2 --batches 10 --batch 200
    python benchmarks/bench_hub.py --past-proxy   # to the collector's own port, as a forwarder
                                                  # configured with the service's address does
    python benchmarks/bench_hub.py --store postgres
    python benchmarks/bench_hub.py --study   # an opt-in study covers the schema, all granted
    python benchmarks/bench_hub.py --store postgres --study   # the grants in telemetry_consent
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import EVENT, SCHEMA, SCHEMA_ID, SCHEMA_VERSION
from tests.hubserver import SERVICE, Hub

CONFIG = """\
{handler}
c.TelemetryCollector.schema_paths = [{schemas!r}]
c.TelemetryCollector.rate_limit = 0
c.TelemetryCollector.record_user = "username"
c.EventLog.allowed_schemas = {{{schema_id!r}: {{"allowed_categories": ["unrestricted",
                                                                   "user-identifier"]}}}}
"""
# `--study`: an opt-in study covering the benchmark's schema, which every user granted.
STUDY_CONFIG = """\
c.TelemetryCollector.consent_file = {decisions!r}
c.EventLog.studies = {{"bench": {{"title": "Bench", "text": "Bench.", "version": 1,
                                 "mode": "opt-in", "schemas": [{schema_id!r}]}}}}
"""
BENCH_KEY = "bench-user-hash-key-0123456789abcdef"
# The collector's store, as its config file sets it (PostgreSQL: docs/jupyterhub.md's line).
HANDLERS = {
    "file": "import logging\nc.EventLog.handlers = [logging.FileHandler({sink!r})]",
    "postgres": "from jupyter_telemetry_ext import PostgresEventHandler\n"
    "c.EventLog.handlers = [PostgresEventHandler({sink!r})]",
}
COPY_BATCH = 10_000  # rows per raw COPY: the handler's largest batch (its batch_size)


class Store(Protocol):
    """Where the collector writes: how many events it holds, and waiting until it holds more."""

    def count(self) -> int:
        """Return how many events the store holds."""

    def wait_for(self, events: int) -> None:
        """Return once the store holds `events` events."""

    def close(self) -> None:
        """Let go of what the store holds open."""


def batch(size: int) -> bytes:
    """Return one batch body of `size` events, each with a fresh id."""
    events = [{"schema_id": SCHEMA_ID, "version": SCHEMA_VERSION, "data": EVENT,
               "id": uuid.uuid4().hex} for _ in range(size)]  # fmt: skip
    return json.dumps({"events": events}).encode()


def poster(port: int, token: str, bodies: list[bytes], counts: list[int], out: Any) -> None:
    """POST every body (of `counts` events) over one connection; send back the latencies (s)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    latencies = []
    for body, count in zip(bodies, counts, strict=True):
        started = time.perf_counter()
        connection.request("POST", f"/services/{SERVICE}/api/telemetry/events", body, headers)
        response = connection.getresponse()
        reply = json.loads(response.read())
        latencies.append(time.perf_counter() - started)
        assert response.status == 200, reply
        assert reply["recorded"] == count, reply
    out.send(latencies)


class FileStore:
    """A JSON-lines file: one line an event."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def count(self) -> int:
        """Return how many lines the file holds."""
        if not self.path.exists():
            return 0
        with self.path.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))

    def wait_for(self, events: int) -> None:
        """Wait until the file holds `events` lines, reading only what was appended meanwhile."""
        seen, offset = 0, 0
        while True:
            if self.path.exists():
                with self.path.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                chunk = chunk[: chunk.rfind(b"\n") + 1]
                seen, offset = seen + chunk.count(b"\n"), offset + len(chunk)
            if seen >= events:
                return
            time.sleep(0.005)

    def close(self) -> None:
        """Hold nothing open."""


class PostgresStore:
    """The collector's PostgreSQL table, counted over one connection (opened once)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self.conn = psycopg.connect(url, autocommit=True)

    def count(self) -> int:
        """Return how many rows the events table holds (0 before the collector created it)."""
        exists = self.conn.execute("SELECT to_regclass('telemetry_events')").fetchone()
        if exists is None or exists[0] is None:
            return 0
        found = self.conn.execute("SELECT count(*) FROM telemetry_events").fetchone()
        return int(found[0]) if found else 0

    def wait_for(self, events: int) -> None:
        """Poll the count every 10 ms (only once every reply is in: the posts run undisturbed)."""
        while self.count() < events:
            time.sleep(0.01)

    def backends_cpu(self) -> float:
        """Return the CPU time the backends of every other connection have used so far."""
        others = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        ).fetchall()
        total = 0.0
        for (pid,) in others:
            with contextlib.suppress(OSError):
                total += cpu_seconds(int(pid))
        return total

    def copies(self) -> int:
        """Return how many transactions (the handler's COPYs) wrote the rows the table holds."""
        found = self.conn.execute(
            "SELECT count(DISTINCT xmin::text) FROM telemetry_events"
        ).fetchone()
        return int(found[0]) if found else 0

    def close(self) -> None:
        """Close the counting connection."""
        self.conn.close()


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def through_collector(
    hub: Hub, store: Store, bodies: list[list[bytes]], port: int
) -> tuple[float, float, list[float]]:
    """Post every process's bodies at once to `port`; return the seconds until the store held
    them all, the seconds until every reply was in, and the latencies."""
    tokens = [hub.user_token(user) for user in hub.users]
    counts = [[len(json.loads(b)["events"]) for b in per] for per in bodies]
    total = sum(map(sum, counts))
    before = store.count()
    pipes, procs = [], []
    for token, per, per_counts in zip(tokens, bodies, counts, strict=True):
        reader, writer = multiprocessing.Pipe(duplex=False)
        args = (port, token, per, per_counts, writer)
        procs.append(multiprocessing.Process(target=poster, args=args))
        pipes.append(reader)
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    latencies = [lat for reader in pipes for lat in reader.recv()]
    replied = time.perf_counter() - started
    store.wait_for(before + total)
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()
    return elapsed, replied, latencies


def direct(tmp: Path, bodies: list[list[bytes]], seconds: float) -> dict[str, float]:
    """Record the same events straight into an EventLog writing a file, pass after pass until
    `seconds` have passed; return the seconds and the events."""
    from jupyter_telemetry_ext.core.eventlog import EventLog

    handler = logging.FileHandler(tmp / "direct.jsonl")
    allowed = {SCHEMA_ID: {"allowed_categories": ["unrestricted", "user-identifier"]}}
    events = [e for per in bodies for b in per for e in json.loads(b)["events"]]
    room = max(len(events), 100_000)  # they are recorded in one block: the queue holds them all
    eventlog = EventLog(handlers=[handler], allowed_schemas=allowed, background=True,
                        queue_size=room)  # fmt: skip
    eventlog.register_schema(SCHEMA)
    elapsed, recorded = 0.0, 0
    while elapsed < seconds:
        started = time.perf_counter()
        with eventlog.batch():
            for e in events:
                context = {"__client_id__": e["id"], "__user__": "u"}
                eventlog.record_event(e["schema_id"], e["version"], e["data"], context=context)
        eventlog.flush()
        elapsed += time.perf_counter() - started
        recorded += len(events)
    eventlog.close()
    handler.close()
    return {"seconds": elapsed, "events": recorded}


def raw_copy(url: str, seconds: float) -> dict[str, float]:
    """COPY the rows the collector stored into an empty table of the same layout, pass after
    pass until `seconds` have passed; return the seconds, the rows and PostgreSQL's CPU time.

    Each row is the handler's own tuple (`to_row` of the row read back), made before the clock
    starts; each COPY of COPY_BATCH rows is its own transaction, as the handler's are.
    """
    import psycopg

    from jupyter_telemetry_ext.sinks.pgrows import COLUMNS, TUPLE_COLUMNS, to_row
    from jupyter_telemetry_ext.sinks.pgtable import copy_stream, ensure_table, to_capsule

    with psycopg.connect(url, autocommit=True) as conn:
        stored = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM telemetry_events")  # noqa: S608
        rows = [to_row(to_capsule(row)) for row in stored]
        ensure_table(conn, "raw_events", partition_by_day=False)
        copy = f"COPY raw_events ({', '.join(TUPLE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        backend = backend_pid(conn)
        elapsed, copied, cpu = 0.0, 0, 0.0
        while elapsed < seconds:
            conn.execute("TRUNCATE raw_events")
            cpu_before, started = cpu_seconds(backend), time.perf_counter()
            for i in range(0, len(rows), COPY_BATCH):
                copy_stream(conn, copy, rows[i : i + COPY_BATCH])
            elapsed += time.perf_counter() - started
            cpu += cpu_seconds(backend) - cpu_before
            copied += len(rows)
    return {"seconds": elapsed, "events": copied, "pg_cpu": cpu}


def backend_pid(conn: Any) -> int:
    """Return the pid of the PostgreSQL backend serving a connection."""
    return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """Yield the URL of a fresh database on a throwaway PostgreSQL server, removed afterwards."""
    from tests.pgserver import binaries, running_server

    bindir = binaries()
    if bindir is None:
        sys.exit("--store postgres: PostgreSQL server binaries not found")
    with running_server(bindir) as server:
        yield server.url(server.create_database())


@contextlib.contextmanager
def target(kind: str, tmp: Path) -> Iterator[str]:
    """Yield what the collector's handler is given: a file's path, or a fresh database's URL."""
    if kind == "file":
        yield str(tmp / "events.jsonl")
        return
    with postgres() as url:
        yield url


def measure(args: argparse.Namespace, tmp: Path, sink: str, store: Store) -> dict[str, Any]:
    """Start the hub, warm the collector up, post every batch; return the figures measured."""
    config = tmp / "telemetry_config.py"
    handler = HANDLERS[args.store].format(sink=sink)
    config.write_text(CONFIG.format(handler=handler, schemas=str(tmp / "schemas"),
                                    schema_id=SCHEMA_ID))  # fmt: skip
    users = tuple(f"user{i}" for i in range(args.procs))
    if args.study:
        with config.open("a") as f:
            f.write(STUDY_CONFIG.format(decisions=str(grant_all(tmp, users)), schema_id=SCHEMA_ID))
            if args.store == "postgres":  # the decisions are kept in the store's consent table
                f.write(f"c.TelemetryCollector.user_hash_secret = {BENCH_KEY!r}\n")
                grant_all_in_store(sink, users)
    hub = Hub(tmp, config, users=users)
    try:
        hub.start()
        warm = [[batch(args.batch)] for _ in users]
        port = hub.collector_port if args.past_proxy else hub.port
        through_collector(hub, store, warm, port)  # HubAuth's token cache, the sink's file
        bodies = [[batch(args.batch) for _ in range(args.batches)] for _ in users]
        cpu_before, pg_before = cpu_seconds(hub.collector_pid()), store_cpu(store)
        seconds, replied, latencies = through_collector(hub, store, bodies, port)
        cpu = cpu_seconds(hub.collector_pid()) - cpu_before
        pg_cpu = store_cpu(store) - pg_before
        copies = store.copies() if isinstance(store, PostgresStore) else 0
    finally:
        hub.stop()
    return {"seconds": seconds, "replied": replied, "latencies": latencies, "cpu": cpu,
            "pg_cpu": pg_cpu, "bodies": bodies, "copies": copies,
            "stored": store.count()}  # fmt: skip


def grant_all(tmp: Path, users: tuple[str, ...]) -> Path:
    """Write a decisions file in which every user granted the `--study` study."""
    granted = {"study": "bench", "version": 1, "decision": "granted",
               "decided_at": "2026-01-01T00:00:00.000Z"}  # fmt: skip
    path = tmp / "consent.json"
    path.write_text(json.dumps({user: {"bench": granted} for user in users}))
    path.chmod(0o600)
    return path


def grant_all_in_store(url: str, users: tuple[str, ...]) -> None:
    """Write in the store's consent table that every user granted the `--study` study."""
    import psycopg

    from jupyter_telemetry_ext.core.recorded_user import hashed_user
    from jupyter_telemetry_ext.sinks.consent_table import ensure

    with psycopg.connect(url, autocommit=True) as conn:
        ensure(conn, "telemetry_consent")
        for user in users:
            conn.execute("INSERT INTO telemetry_consent VALUES (%s, %s, 'bench', 1, 'granted', "
                         "now())", [hashed_user(BENCH_KEY.encode(), user), user])  # fmt: skip


def store_cpu(store: Store) -> float:
    """Return the CPU time PostgreSQL's backends have used so far (0 for a file)."""
    return store.backends_cpu() if isinstance(store, PostgresStore) else 0.0


def report(args: argparse.Namespace, run: dict[str, Any], baseline: dict[str, float]) -> None:
    """Print the figures of the collector and of the baseline."""
    total = args.procs * args.batches * args.batch
    seconds, quantiles = run["seconds"], statistics.quantiles(run["latencies"], n=100)
    where = "past" if args.past_proxy else "through"
    study = ", one opt-in study (every user granted)" if args.study else ""
    print(f"{args.procs} processes x {args.batches} batches x {args.batch} events = {total}"
          f" ({where} the proxy), store: {args.store}{study}")  # fmt: skip
    print(f"load average before: {args.load}")
    print(f"collector: {total / seconds:,.0f} events/s ({seconds:.2f} s; every reply in after "
          f"{run['replied']:.2f} s)")  # fmt: skip
    print(f"collector CPU: {run['cpu'] / total * 1e6:.1f} us an event (all its threads)")
    print(f"batch latency: p50 {quantiles[49] * 1000:.1f} ms, p99 {quantiles[98] * 1000:.1f} ms")
    per_event = baseline["seconds"] / baseline["events"]
    lasted = f"{baseline['events']:,.0f} in {baseline['seconds']:.1f} s"
    if args.store == "file":
        print(f"direct EventLog + file: {1 / per_event:,.0f} events/s ({lasted})")
        print(f"overhead: {seconds / total / per_event:.2f}x the direct write")
        return
    each = run["stored"] / max(run["copies"], 1)
    print(f"PostgreSQL CPU: {run['pg_cpu'] / total * 1e6:.1f} us an event (its backends); "
          f"{run['copies']:,} COPYs, {each:,.0f} rows each")  # fmt: skip
    pg_cpu = baseline["pg_cpu"] / baseline["events"]
    print(f"raw binary COPY: {1 / per_event:,.0f} rows/s ({lasted}; PostgreSQL CPU "
          f"{pg_cpu * 1e6:.1f} us a row)")  # fmt: skip
    ratio = per_event * total / seconds
    verdict = "met" if ratio >= 0.5 else "MISSED"
    print(f"collector / raw COPY: {ratio:.2f}x (goal >= 0.5: {verdict})")


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--batches", type=int, default=40, help="batches per process")
    parser.add_argument("--batch", type=int, default=500, help="events per batch")
    past = "post to the collector's port rather than through the proxy"
    parser.add_argument("--past-proxy", action="store_true", help=past)
    parser.add_argument("--store", choices=sorted(HANDLERS), default="file",
                        help="where the collector writes (default: a JSON-lines file)")  # fmt: skip
    study = "add an opt-in study covering the schema, granted by every user"
    parser.add_argument("--study", action="store_true", help=study)
    least = "the baseline repeats until it has lasted this long (default 5)"
    parser.add_argument("--baseline-seconds", type=float, default=5.0, help=least)
    args = parser.parse_args()
    args.load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    with (
        tempfile.TemporaryDirectory(prefix="bench-hub-") as name,
        target(args.store, Path(name)) as sink,
    ):
        tmp = Path(name)
        (tmp / "schemas").mkdir()
        (tmp / "schemas" / "bench.json").write_text(json.dumps(SCHEMA))
        store: Store = FileStore(Path(sink)) if args.store == "file" else PostgresStore(sink)
        try:
            run = measure(args, tmp, sink, store)
        finally:
            store.close()
        if args.store == "file":
            baseline = direct(tmp, run["bodies"], args.baseline_seconds)
        else:
            baseline = raw_copy(sink, args.baseline_seconds)
    report(args, run, baseline)


if __name__ == "__main__":
    main()
