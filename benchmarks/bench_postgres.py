"""PostgresEventHandler against raw COPY and per-event INSERT, and a server through an outage.

Starts a throwaway PostgreSQL server (tests/pgserver.py; as `postgres` when run as root) and, in
the same run, stores the same events (common.EVENT, each with its own client id) by:

- raw binary COPY of the same rows, made before the clock starts (the handler's own bytes, key
  included: the client has nothing left to do), 10,000 per COPY, each its own transaction
  (autocommit), into the same table and indexes, the unique key among them (the floor);
- one INSERT per event, autocommit, of the same columns (what a naive handler does; measured on
  fewer events);
- the handler alone: the events' records handed to `PostgresEventHandler.handle`, then flush;
- `EventLog.record_event` with the handler (validation, redaction and the writer thread too),
  and, for scale, `record_event` to a handler that stores nothing;
- batched POSTs of 500 events to a running `jupyter server` whose EventLog writes to the handler.

Then the server keeps receiving events while PostgreSQL is stopped for `--outage` seconds: its
RSS is sampled (memory_events bounds it; the rest waits in the spool), and the time until every
event is stored after PostgreSQL returns is measured. `--without-ids` sends and records every
event without a client id (each then gets a random key). Figures on a shared machine are noisy.

    python benchmarks/bench_postgres.py [--events 200000] [--outage 60] [--without-ids]
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common import EVENT, SCHEMA, SCHEMA_ID, SCHEMA_VERSION, environment
from harness import OURS_PATH, BenchServer, rss_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg.types.json import Jsonb

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.core.records import RECORD_NAME, CapsuleRecord
from jupyter_telemetry_ext.sinks.pgrows import TUPLE_COLUMNS, id_key, to_row
from jupyter_telemetry_ext.sinks.pgtable import copy_stream, ensure_table
from jupyter_telemetry_ext.sinks.postgres import PostgresEventHandler
from tests.pgserver import PostgresServer, binaries, running_server

ALLOWED = {SCHEMA_ID: {"allowed_categories": ["unrestricted", "user-identifier"]}}
BATCH = 10_000
POST_BATCH = 500


def capsules(n: int, ids: bool = True) -> list[dict[str, Any]]:
    """Return n capsules as the EventLog writes them, each with its own client id (unless not
    `ids`) and user."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    head = {"__timestamp__": stamp, "__schema__": SCHEMA_ID, "__schema_version__": SCHEMA_VERSION,
            "__metadata_version__": 2, "__user__": "3f1e" * 16}  # fmt: skip
    return [{**head, **({"__client_id__": f"e{i}"} if ids else {}), **EVENT} for i in range(n)]


def context(i: int, ids: bool) -> dict[str, Any]:
    """Return the context of the i-th event recorded: a user, and a client id unless not `ids`."""
    return {"__client_id__": f"e{i}", "__user__": "u"} if ids else {"__user__": "u"}


def fresh_db(server: PostgresServer) -> str:
    """Return the URL of a new database with the events table."""
    url = server.url(server.create_database())
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_table(conn, "telemetry_events", partition_by_day=False)
    return url


def raw_copy(url: str, events: list[dict[str, Any]]) -> float:
    """Return rows/s of binary COPY of the events' rows, made beforehand, BATCH a transaction.

    The rows are the handler's own (each tuple already in the binary COPY format): only the
    COPY and the commits are timed, into the same table with the same indexes.
    """
    tuples = [to_row(c) for c in events]
    statement = f"COPY telemetry_events ({', '.join(TUPLE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    with psycopg.connect(url, autocommit=True) as conn:  # each COPY its own transaction
        start = time.perf_counter()
        for i in range(0, len(tuples), BATCH):
            copy_stream(conn, statement, tuples[i : i + BATCH])
        return len(tuples) / (time.perf_counter() - start)


def per_event_insert(url: str, events: list[dict[str, Any]]) -> float:
    """Return rows/s of one INSERT per event, autocommit (the same columns, key included)."""
    query = (f"INSERT INTO telemetry_events ({', '.join(TUPLE_COLUMNS)}) "  # noqa: S608
             "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)")  # fmt: skip
    with psycopg.connect(url, autocommit=True) as conn:
        start = time.perf_counter()
        for c in events:
            user, client = c["__user__"], c.get("__client_id__")
            key = uuid.UUID(bytes=id_key(user.encode(), client.encode())) if client else None
            conn.execute(query, (c["__timestamp__"], key, None, SCHEMA_ID, "1", 2, user, client,
                                 Jsonb(EVENT)))  # fmt: skip
        return len(events) / (time.perf_counter() - start)


def handler_alone(url: str, events: list[dict[str, Any]], spool: Path) -> float:
    """Return events/s handed to the handler's `handle` until its flush returns."""
    records = [CapsuleRecord(RECORD_NAME, c, json.dumps(c)) for c in events]
    handler = PostgresEventHandler(url, spool_dir=spool, flush_timeout=600)
    start = time.perf_counter()
    for record in records:
        handler.handle(record)
    handler.flush()
    rate = len(events) / (time.perf_counter() - start)
    handler.close()
    return rate


def through_eventlog(url: str, n: int, spool: Path, ids: bool) -> float:
    """Return events/s of `EventLog.record_event` (background writer) until flushed."""
    handler = PostgresEventHandler(url, spool_dir=spool, flush_timeout=600)
    eventlog = EventLog(handlers=[handler], allowed_schemas=ALLOWED, background=True,
                        queue_size=n + 1)  # fmt: skip
    eventlog.register_schema(SCHEMA)
    start = time.perf_counter()
    for i in range(n):
        eventlog.record_event(SCHEMA_ID, SCHEMA_VERSION, EVENT, context=context(i, ids))
    eventlog.flush(600)
    handler.flush()
    rate = n / (time.perf_counter() - start)
    eventlog.close()
    handler.close()
    return rate


class NullHandler(logging.Handler):
    """Takes each event's capsule and keeps nothing: what record_event costs without a store."""

    def emit(self, record: logging.LogRecord) -> None:
        """Read the capsule, as every handler does."""
        _ = record.msg


def eventlog_alone(n: int, ids: bool) -> float:
    """Return events/s of `EventLog.record_event` to a handler that stores nothing (for scale)."""
    eventlog = EventLog(handlers=[NullHandler()], allowed_schemas=ALLOWED, background=True,
                        queue_size=n + 1)  # fmt: skip
    eventlog.register_schema(SCHEMA)
    start = time.perf_counter()
    for i in range(n):
        eventlog.record_event(SCHEMA_ID, SCHEMA_VERSION, EVENT, context=context(i, ids))
    eventlog.flush(600)
    rate = n / (time.perf_counter() - start)
    eventlog.close()
    return rate


def count(url: str) -> int:
    """Return how many events the table holds."""
    with psycopg.connect(url) as conn:
        return int((conn.execute("SELECT count(*) FROM telemetry_events").fetchone() or [0])[0])


def wait_count(url: str, n: int, timeout: float) -> float:
    """Wait until the table holds n events; return the seconds it took."""
    start = time.perf_counter()
    while count(url) < n:
        if time.perf_counter() - start > timeout:
            msg = f"only {count(url)} of {n} events stored after {timeout} s"
            raise RuntimeError(msg)
        time.sleep(0.1)
    return time.perf_counter() - start


class Poster:
    """Sends batches of events with unique ids to a server over one keep-alive connection."""

    def __init__(self, server: BenchServer, ids: bool = True) -> None:
        self.server, self.ids = server, ids
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        self.sent = 0

    def post(self, size: int) -> None:
        events = [{"schema_id": SCHEMA_ID, "version": SCHEMA_VERSION, "data": EVENT,
                   **({"id": uuid.uuid4().hex} if self.ids else {})}
                  for _ in range(size)]  # fmt: skip
        self.connection.request("POST", "/" + OURS_PATH.lstrip("/"),
                                body=json.dumps({"events": events}),
                                headers={**self.server.headers(),
                                         "Content-Type": "application/json"})  # fmt: skip
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            msg = f"POST answered {response.status}: {body[:200]!r}"
            raise RuntimeError(msg)
        self.sent += size


def server_config(url: str, spool: Path) -> list[str]:
    return [
        "from jupyter_telemetry_ext import PostgresEventHandler",
        (
            f"c.EventLog.handlers = [PostgresEventHandler({url!r}, spool_dir={str(spool)!r}, "
            "max_backoff=1)]"
        ),
        f"c.EventLog.allowed_schemas = {ALLOWED!r}",
        "c.TelemetryExtension.rate_limit = 0",
        "c.TelemetryExtension.server_events = False",
    ]


def through_server(pg: PostgresServer, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Return POST events/s, then the outage's RSS and drain time."""
    url = fresh_db(pg)
    server = BenchServer(work / "server", extra_config=server_config(url, work / "server-spool"))
    server.start()
    try:
        poster = Poster(server, not args.without_ids)
        start = time.perf_counter()
        while poster.sent < args.events:
            poster.post(min(POST_BATCH, args.events - poster.sent))
        wait_count(url, poster.sent, args.drain_timeout)
        post_rate = poster.sent / (time.perf_counter() - start)
        outage = outage_run(pg, url, server, poster, args)
    except RuntimeError:
        print(server.log_tail(), file=sys.stderr)
        raise
    finally:
        server.stop()
    return {"post_events_per_s": post_rate, **outage}


def outage_run(
    pg: PostgresServer, url: str, server: BenchServer, poster: Poster, args: argparse.Namespace
) -> dict[str, Any]:
    """Post at a steady rate while PostgreSQL is down; return RSS figures and the drain time."""
    rss_before = rss_bytes(server.pid)["VmRSS"]
    stored_before = poster.sent
    pg.stop()
    peak = rss_before
    start = time.perf_counter()
    try:
        while time.perf_counter() - start < args.outage:
            tick = time.perf_counter()
            poster.post(POST_BATCH)
            peak = max(peak, rss_bytes(server.pid)["VmRSS"])
            time.sleep(max(0.0, POST_BATCH / args.outage_rate - (time.perf_counter() - tick)))
    finally:
        pg.start()
    drain = wait_count(url, poster.sent, args.drain_timeout)
    return {
        "outage_s": args.outage,
        "events_during_outage": poster.sent - stored_before,
        "rss_before_mib": rss_before / 2**20,
        "rss_peak_during_outage_mib": peak / 2**20,
        "drain_s_after_return": drain,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--insert-events", type=int, default=5_000,
                        help="events for the per-event INSERT (it is slow)")  # fmt: skip
    parser.add_argument("--outage", type=float, default=60.0, help="seconds PostgreSQL is down")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--outage-rate", type=float, default=2_000.0,
                        help="events/s posted during the outage")  # fmt: skip
    parser.add_argument("--without-ids", action="store_true",
                        help="events without client ids (each gets a random key)")  # fmt: skip
    args = parser.parse_args(argv)
    bindir = binaries()
    if bindir is None:
        print("PostgreSQL server binaries not found")
        return 2
    ids = not args.without_ids
    events = capsules(args.events, ids)
    with tempfile.TemporaryDirectory() as tmp, running_server(bindir) as pg:
        work = Path(tmp)
        figures: dict[str, Any] = {
            "raw_copy_rows_per_s": raw_copy(fresh_db(pg), events),
            "insert_rows_per_s": per_event_insert(fresh_db(pg), events[: args.insert_events]),
            "handler_events_per_s": handler_alone(fresh_db(pg), events, work / "s1"),
            "record_event_events_per_s": through_eventlog(
                fresh_db(pg), args.events, work / "s2", ids
            ),
            "record_event_no_store_events_per_s": eventlog_alone(args.events, ids),
        }
        print(json.dumps(figures), file=sys.stderr, flush=True)  # in case the server part fails
        figures.update(through_server(pg, args, work))
    raw, insert = figures["raw_copy_rows_per_s"], figures["insert_rows_per_s"]
    figures["handler_vs_raw_copy"] = figures["handler_events_per_s"] / raw
    figures["handler_vs_insert"] = figures["handler_events_per_s"] / insert
    figures["record_event_vs_raw_copy"] = figures["record_event_events_per_s"] / raw
    figures["post_vs_raw_copy"] = figures["post_events_per_s"] / raw
    print(json.dumps({"environment": environment(), "events": args.events, "ids": ids, **figures},
                     indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
