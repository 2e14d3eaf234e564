"""Hub benchmark: N processes (simulated single-user servers) posting batches to one collector.

A real JupyterHub (tests/hubserver.py: configurable-http-proxy, the collector as a managed
service) on 127.0.0.1; each process logs in as its own hub user and POSTs batches with its token
through the proxy, over one keep-alive connection, as a forwarder does. The collector writes a
JSON-lines file. Printed: events/s through the collector (from the first request until the sink
holds every event), the collector process's CPU time per event (steadier than events/s on a
shared machine), the latency of each batch request (p50/p99), and, in the same run, the same
events recorded straight into an EventLog writing the same kind of file (the baseline): the
ratio is collector time / direct time.

    python benchmarks/bench_hub.py                     # 4 processes x 40 batches x 500 events
    python benchmarks/bench_hub.py --procs 2 --batches 10 --batch 200
    python benchmarks/bench_hub.py --past-proxy   # to the collector's own port, as a forwarder
                                                  # configured with the service's address does
"""

from __future__ import annotations

import argparse
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import EVENT, SCHEMA, SCHEMA_ID, SCHEMA_VERSION
from tests.hubserver import SERVICE, Hub

CONFIG = """\
import logging
c.TelemetryCollector.schema_paths = [{schemas!r}]
c.TelemetryCollector.rate_limit = 0
c.TelemetryCollector.record_user = "username"
c.EventLog.handlers = [logging.FileHandler({sink!r})]
c.EventLog.allowed_schemas = {{{schema_id!r}: {{"allowed_categories": ["unrestricted",
                                                                   "user-identifier"]}}}}
"""


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


def count_lines(path: Path) -> int:
    """Return how many lines the file holds."""
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def wait_for_lines(path: Path, lines: int) -> None:
    """Wait until the file holds `lines` lines, reading only what was appended since last time."""
    seen, offset = 0, 0
    while True:
        if path.exists():
            with path.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
            chunk = chunk[: chunk.rfind(b"\n") + 1]
            seen, offset = seen + chunk.count(b"\n"), offset + len(chunk)
        if seen >= lines:
            return
        time.sleep(0.005)


def cpu_seconds(pid: int) -> float:
    """Return the CPU time (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def through_collector(
    hub: Hub, sink: Path, bodies: list[list[bytes]], port: int
) -> tuple[float, list[float]]:
    """Post every process's bodies at once to `port`; return the seconds and the latencies."""
    tokens = [hub.user_token(user) for user in hub.users]
    counts = [[len(json.loads(b)["events"]) for b in per] for per in bodies]
    total = sum(map(sum, counts))
    before = count_lines(sink)
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
    wait_for_lines(sink, before + total)
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()
    return elapsed, latencies


def direct(tmp: Path, bodies: list[list[bytes]]) -> float:
    """Record the same events straight into an EventLog writing a file; return the seconds."""
    from jupyter_telemetry_ext.core.eventlog import EventLog

    handler = logging.FileHandler(tmp / "direct.jsonl")
    allowed = {SCHEMA_ID: {"allowed_categories": ["unrestricted", "user-identifier"]}}
    events = [e for per in bodies for b in per for e in json.loads(b)["events"]]
    room = max(len(events), 100_000)  # they are recorded in one block: the queue holds them all
    eventlog = EventLog(handlers=[handler], allowed_schemas=allowed, background=True,
                        queue_size=room)  # fmt: skip
    eventlog.register_schema(SCHEMA)
    started = time.perf_counter()
    with eventlog.batch():
        for e in events:
            eventlog.record_event(e["schema_id"], e["version"], e["data"],
                                  context={"__client_id__": e["id"], "__user__": "u"})  # fmt: skip
    eventlog.flush()
    elapsed = time.perf_counter() - started
    eventlog.close()
    handler.close()
    return elapsed


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--batches", type=int, default=40, help="batches per process")
    parser.add_argument("--batch", type=int, default=500, help="events per batch")
    past = "post to the collector's port rather than through the proxy"
    parser.add_argument("--past-proxy", action="store_true", help=past)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as name:
        tmp = Path(name)
        (tmp / "schemas").mkdir()
        (tmp / "schemas" / "bench.json").write_text(json.dumps(SCHEMA))
        sink = tmp / "events.jsonl"
        config = tmp / "telemetry_config.py"
        config.write_text(CONFIG.format(schemas=str(tmp / "schemas"), sink=str(sink),
                                        schema_id=SCHEMA_ID))  # fmt: skip
        users = tuple(f"user{i}" for i in range(args.procs))
        hub = Hub(tmp, config, users=users)
        try:
            hub.start()
            warm = [[batch(args.batch)] for _ in users]
            port = hub.collector_port if args.past_proxy else hub.port
            through_collector(hub, sink, warm, port)  # HubAuth's token cache, the sink's file
            bodies = [[batch(args.batch) for _ in range(args.batches)] for _ in users]
            cpu_before = cpu_seconds(hub.collector_pid())
            collector_s, latencies = through_collector(hub, sink, bodies, port)
            collector_cpu = cpu_seconds(hub.collector_pid()) - cpu_before
        finally:
            hub.stop()
        direct_s = direct(tmp, bodies)
    total = args.procs * args.batches * args.batch
    quantiles = statistics.quantiles(latencies, n=100)
    print(f"{args.procs} processes x {args.batches} batches x {args.batch} events = {total}"
          f" ({'past' if args.past_proxy else 'through'} the proxy)")  # fmt: skip
    print(f"collector: {total / collector_s:,.0f} events/s ({collector_s:.2f} s)")
    print(f"collector CPU: {collector_cpu / total * 1e6:.1f} us an event (all its threads)")
    print(f"batch latency: p50 {quantiles[49] * 1000:.1f} ms, p99 {quantiles[98] * 1000:.1f} ms")
    print(f"direct EventLog + file: {total / direct_s:,.0f} events/s ({direct_s:.2f} s)")
    print(f"overhead: {collector_s / direct_s:.2f}x the direct write")


if __name__ == "__main__":
    main()
