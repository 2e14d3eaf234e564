"""PostgresEventHandler and the CLI on PostgreSQL, against a real server started by the tests."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import uuid
import weakref
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.core.errors import StoreUnavailableError
from jupyter_telemetry_ext.core.recorded_user import hashed_user
from jupyter_telemetry_ext.core.records import RECORD_NAME, CapsuleRecord, HeldEvent
from jupyter_telemetry_ext.sinks.pgtable import EVENTS_KEY
from tests.conftest import FRONTEND_ID, Sink, make_schema
from tests.pgserver import PostgresServer, server_for_tests
from tests.test_reliability import Fetch, send
from tests.test_sinks import small_disk  # noqa: F401 - the 64 KiB tmpfs fixture

psycopg = pytest.importorskip("psycopg", reason="the [postgres] extra (psycopg) is not installed")

from jupyter_telemetry_ext.sinks.postgres import PostgresEventHandler  # noqa: E402

pytestmark = pytest.mark.e2e  # starts a PostgreSQL server

SCHEMA_ID = "test.events/pg"
SCHEMA = make_schema(
    SCHEMA_ID,
    action={"type": "string", "categories": ["unrestricted"]},
    n={"type": "integer", "categories": ["unrestricted"]},
)
ALLOWED = {SCHEMA_ID: {"allowed_categories": ["unrestricted", "user-identifier"]}}
PASSWORD = "s3cret-Pw-9931"
JUPYTER = str(Path(sys.executable).with_name("jupyter"))


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (about half a second to start)."""
    yield from server_for_tests()


@pytest.fixture
def url(pg: PostgresServer) -> str:
    """The URL of a fresh database on the session's server, with a password in it."""
    return pg.url(pg.create_database(), password=PASSWORD)


@pytest.fixture
def handlers(tmp_path: Path) -> Iterator[list[PostgresEventHandler]]:
    """Handlers made by a test, closed at its end."""
    made: list[PostgresEventHandler] = []
    yield made
    for handler in made:
        handler.flush_timeout = 1
        handler.close()


def make_handler(
    url: str, made: list[PostgresEventHandler], tmp_path: Path, **kwargs: Any
) -> PostgresEventHandler:
    kwargs.setdefault("spool_dir", tmp_path / "spool")
    kwargs.setdefault("max_backoff", 0.5)
    handler = PostgresEventHandler(url, **kwargs)
    made.append(handler)
    return handler


def make_log(handler: PostgresEventHandler, **kwargs: Any) -> EventLog:
    eventlog = EventLog(handlers=[handler], allowed_schemas=ALLOWED, background=True, **kwargs)
    eventlog.register_schema(SCHEMA)
    return eventlog


def record(
    eventlog: EventLog, n: int, client_id: str | None = None, user: str = "u1", **kw: Any
) -> None:
    context = {"__user__": user, **({"__client_id__": client_id} if client_id else {})}
    eventlog.record_event(SCHEMA_ID, 1, {"action": "open", "n": n}, context=context, **kw)


def rows(url: str, query: str = "SELECT * FROM telemetry_events ORDER BY received") -> list[Any]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def partition_count(url: str) -> int:
    query = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'telemetry_events'::regclass"
    return int(rows(url, query)[0][0])


def test_every_column_as_written(url: str, handlers: list[Any], tmp_path: Path) -> None:
    handler = make_handler(url, handlers, tmp_path)
    eventlog = make_log(handler)
    received = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone.utc)
    context = {"__user__": "hash-of-u1", "__client_id__": "e-1",
               "__event_time__": "2026-03-04T05:06:00.000001Z"}  # fmt: skip
    eventlog.record_event(SCHEMA_ID, 1, {"action": "open", "n": 7}, received, context=context)
    assert eventlog.flush(10)
    handler.flush()
    [row] = rows(url)
    key = uuid.UUID(bytes=hashlib.sha256(b"hash-of-u1\x00e-1").digest()[:16])
    assert row == (
        received, datetime(2026, 3, 4, 5, 6, 0, 1, tzinfo=timezone.utc), SCHEMA_ID, "1", 2,
        "hash-of-u1", "e-1", {"action": "open", "n": 7}, key,
    )  # fmt: skip
    assert rows(url, f"SELECT {EVENTS_KEY} FROM telemetry_events") == [(key,)]  # noqa: S608
    assert rows(url, "SELECT version FROM telemetry_events_version") == [(2,)]
    assert rows(url, "SELECT to_regclass('telemetry_events_ids')") == [(None,)]  # the key is here


@pytest.mark.parametrize("partition_by_day", [False, True])
def test_a_retry_is_stored_once_across_batches_days_and_replicas(
    url: str, handlers: list[Any], tmp_path: Path, partition_by_day: bool
) -> None:
    first = make_handler(url, handlers, tmp_path, partition_by_day=partition_by_day)
    replica = make_handler(url, handlers, tmp_path / "b", partition_by_day=partition_by_day)
    log1, log2 = make_log(first), make_log(replica)
    day1 = datetime(2026, 5, 1, 23, 59, tzinfo=timezone.utc)
    record(log1, 1, "a", timestamp_override=day1)
    record(log1, 2, "b", timestamp_override=day1)
    record(log1, 3, None, timestamp_override=day1)  # no id: always stored
    assert log1.flush(10)
    record(log1, 1, "a", timestamp_override=day1)  # another batch
    record(log1, 2, "b", timestamp_override=day1 + timedelta(days=1))  # another day
    record(log2, 1, "a", timestamp_override=day1 + timedelta(days=2))  # another replica
    record(log2, 4, "b", user="u2")  # the same id from another user is another event
    record(log2, 5, "c")
    record(log2, 5, "c")  # twice in one batch
    assert log1.flush(10)
    assert log2.flush(10)
    stored = rows(url, "SELECT username, client_id, data->>'n' FROM telemetry_events ORDER BY 3")
    assert stored == [("u1", "a", "1"), ("u1", "b", "2"), ("u1", None, "3"), ("u2", "b", "4"),
                      ("u1", "c", "5")]  # fmt: skip
    assert first.counts["duplicate"] + replica.counts["duplicate"] == 4
    assert partition_count(url) == (4 if partition_by_day else 0)  # one a day, made as needed


def test_the_handler_filters_still_apply(url: str, handlers: list[Any], tmp_path: Path) -> None:
    handler = make_handler(url, handlers, tmp_path)
    handler.addFilter(lambda record: record.msg["n"] != 2)
    eventlog = make_log(handler)
    for n in range(4):
        record(eventlog, n, f"f{n}")
    assert eventlog.flush(10)
    handler.flush()
    stored = rows(url, "SELECT data->>'n' FROM telemetry_events ORDER BY 1")
    assert stored == [("0",), ("1",), ("3",)]


def test_a_bad_row_does_not_block_its_batch(
    url: str, handlers: list[Any], tmp_path: Path, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    handler = make_handler(url, handlers, tmp_path)
    eventlog = make_log(handler, failed_handlers=[sink.handler])
    with eventlog.batch():
        for n in range(10):
            client = "secret\u0000value" if n == 6 else f"id{n}"  # a text column refuses U+0000
            eventlog.record_event(SCHEMA_ID, 1, {"action": "open", "n": n},
                                  context={"__client_id__": client})  # fmt: skip
    assert eventlog.flush(10)
    stored = [int(r[0]) for r in rows(url, "SELECT data->>'n' FROM telemetry_events")]
    assert sorted(stored) == [0, 1, 2, 3, 4, 5, 7, 8, 9]
    [failure] = sink.events
    assert failure["outcome"] == "sink_failure"
    assert failure["schema_id"] == SCHEMA_ID
    assert failure["reason"].endswith("StoreRefusedError SQLSTATE 22021")
    assert eventlog.outcomes()[(SCHEMA_ID, "sink_failure")] == 1
    assert "secret" not in sink.stream.getvalue() + caplog.text  # the value is never shown


def test_a_nul_character_in_the_data_is_stored_as_its_escape_not_refused(
    url: str, handlers: list[Any], tmp_path: Path, sink: Sink
) -> None:
    """jsonb cannot hold U+0000: the event is stored, each one kept as the six characters
    \\u0000, rather than refused (a reply `recorded` would have been false)."""
    handler = make_handler(url, handlers, tmp_path)
    eventlog = make_log(handler, failed_handlers=[sink.handler])
    for n, action in enumerate(["a\u0000b", "\\\u0000", "\\u0000 as typed"]):
        eventlog.record_event(SCHEMA_ID, 1, {"action": action, "n": n})
    assert eventlog.flush(10)
    stored = rows(url, "SELECT data->>'action' FROM telemetry_events ORDER BY data->>'n'")
    assert stored == [("a\\u0000b",), ("\\\\u0000",), ("\\u0000 as typed",)]
    assert sink.events == []


def test_migration_from_empty_and_a_newer_table_refused(
    url: str, handlers: list[Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    handler = make_handler(url, handlers, tmp_path, partition_by_day=True)
    eventlog = make_log(handler)
    record(eventlog, 1, "a")
    assert eventlog.flush(10)
    tables = rows(url, "SELECT relname, relkind FROM pg_class WHERE relname LIKE 'telemetry%' "
                       "AND relkind IN ('r', 'p') ORDER BY 1")  # fmt: skip
    names = [name for name, _ in tables]
    assert names[:1] == ["telemetry_events"]
    assert ("telemetry_events", "p") in tables
    for table in ("telemetry_events_ids", "telemetry_events_erasures", "telemetry_events_version"):
        assert table in names
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE telemetry_events_version SET version = 3")
    newer = make_handler(url, handlers, tmp_path / "newer", flush_timeout=1)
    newer.handle(logging.makeLogRecord({"msg": {"__timestamp__": "2026-01-01T00:00:00Z",
                                                "__schema__": SCHEMA_ID}}))  # fmt: skip
    with pytest.raises(StoreUnavailableError, match="1 events not committed"):
        newer.flush()
    assert "has layout version 3; this version of jupyter_telemetry_ext understands up to 2" in (
        caplog.text
    )
    assert rows(url, "SELECT count(*) FROM telemetry_events") == [(1,)]


# The tables of layout version 1: no key column; the ids in a table keyed by the two texts.
LAYOUT_1 = """CREATE TABLE telemetry_events (
    received timestamptz NOT NULL, event_time timestamptz, schema_id text NOT NULL,
    schema_version text NOT NULL, metadata_version integer NOT NULL, username text,
    client_id text, data jsonb NOT NULL
){partition};
CREATE INDEX telemetry_events_received ON telemetry_events USING brin (received);
CREATE INDEX telemetry_events_schema ON telemetry_events (schema_id, received);
CREATE TABLE telemetry_events_ids (
    username  text        NOT NULL,
    client_id text        NOT NULL,
    received  timestamptz NOT NULL,
    PRIMARY KEY (username, client_id)
);
CREATE INDEX ON telemetry_events_ids USING brin (received);
CREATE TABLE telemetry_events_erasures (at timestamptz NOT NULL DEFAULT now(),
    operator text NOT NULL, events bigint NOT NULL);
CREATE TABLE telemetry_events_version (version integer NOT NULL);
INSERT INTO telemetry_events_version VALUES (1);
"""


def layout_1(url: str, partitioned: bool, day: datetime) -> None:
    """Make the tables of layout 1 with the events (and ids) it stored: zoë's é-1, u1's a, one
    without an id (and, in a plain table, a hand-made copy of u1's a)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(LAYOUT_1.format(partition=" PARTITION BY RANGE (received)" * partitioned))
        if partitioned:
            conn.execute("CREATE TABLE telemetry_events_20260201 PARTITION OF telemetry_events "
                         "FOR VALUES FROM ('2026-02-01Z') TO ('2026-02-02Z')")  # fmt: skip
        stored = [("zoë", "é-1", 1), ("u1", "a", 2), ("u1", None, 0)]
        for user, client, n in stored + ([] if partitioned else [("u1", "a", 9)]):
            conn.execute("INSERT INTO telemetry_events VALUES (%s, NULL, %s, '1', 2, %s, %s, %s)",
                         [day + timedelta(seconds=n), SCHEMA_ID, user, client,
                          psycopg.types.json.Jsonb({"n": n})])  # fmt: skip
        for user, client, _ in stored[:2]:
            conn.execute("INSERT INTO telemetry_events_ids VALUES (%s, %s, %s)",
                         [user, client, day])  # fmt: skip


@pytest.mark.parametrize("partitioned", [False, True])
def test_migration_from_layout_1_keeps_every_id(
    url: str, handlers: list[Any], tmp_path: Path, partitioned: bool
) -> None:
    import psycopg.types.json  # noqa: F401 - for layout_1

    day = datetime(2026, 2, 1, tzinfo=timezone.utc)
    layout_1(url, partitioned, day)
    handler = make_handler(url, handlers, tmp_path)
    eventlog = make_log(handler)
    record(eventlog, 1, "é-1", user="zoë")  # retries of ids stored before the migration
    record(eventlog, 2, "a")
    record(eventlog, 3, "a", user="zoë")  # new ids
    record(eventlog, 4, "é-1")
    assert eventlog.flush(10)
    new = (
        "SELECT username, client_id FROM telemetry_events WHERE received > '2026-02-02Z' ORDER BY 2"
    )
    assert rows(url, new) == [("zoë", "a"), ("u1", "é-1")]
    assert handler.counts["duplicate"] == 2
    assert rows(url, "SELECT version FROM telemetry_events_version ORDER BY 1") == [(1,), (2,)]
    keyed = f"SELECT data->>'n' FROM telemetry_events WHERE key = {EVENTS_KEY} ORDER BY 1"  # noqa: S608
    assert rows(url, keyed) == [("1",), ("2",), ("3",), ("4",)]  # the first of each id only
    ids = rows(url, "SELECT to_regclass('telemetry_events_ids') IS NOT NULL")[0][0]
    assert ids == partitioned  # a plain table keeps its keys itself
    if partitioned:
        columns = "SELECT column_name FROM information_schema.columns WHERE table_name = '{}'"
        assert rows(url, columns.format("telemetry_events_ids") + " ORDER BY 1") == [
            ("key",), ("received",)
        ]  # fmt: skip
        assert rows(url, "SELECT count(*), min(received) FROM telemetry_events_ids") == [(4, day)]


def test_an_event_that_waited_on_disk_keeps_every_column(
    pg: PostgresServer, url: str, handlers: list[Any], tmp_path: Path
) -> None:
    handler = make_handler(url, handlers, tmp_path, flush_timeout=0.5)
    eventlog = make_log(handler)
    record(eventlog, 0, "first")
    assert eventlog.flush(10)
    received = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone.utc)
    context = {"__user__": "zoë", "__client_id__": "é-2",
               "__event_time__": "2026-03-04T05:06:00.000001Z"}  # fmt: skip
    pg.stop()
    try:
        eventlog.record_event(SCHEMA_ID, 1, {"action": "ouvert \"ü\"\n", "n": -7}, received,
                              context=context)  # fmt: skip
        eventlog.record_event(SCHEMA_ID, 1, {}, received)
        assert eventlog.flush(10)
        with pytest.raises(StoreUnavailableError):
            handler.flush()  # what waited in memory is now in the spool
        assert list((tmp_path / "spool").glob("*.spool"))
    finally:
        pg.start()
    handler.flush_timeout = 30
    handler.flush()
    query = "SELECT * FROM telemetry_events WHERE received = %s ORDER BY client_id NULLS LAST"
    with psycopg.connect(url) as conn:
        stored = conn.execute(query, [received]).fetchall()
    assert stored[0] == (
        received, datetime(2026, 3, 4, 5, 6, 0, 1, tzinfo=timezone.utc), SCHEMA_ID, "1", 2,
        "zoë", "é-2", {"action": "ouvert \"ü\"\n", "n": -7},
        uuid.UUID(bytes=hashlib.sha256("zoë\x00é-2".encode()).digest()[:16]),
    )  # fmt: skip
    assert stored[1][:-1] == (received, None, SCHEMA_ID, "1", 2, None, None, {})
    assert stored[1][-1] is not None  # without a client id: the key given when it was handed over


def test_database_down_mid_stream_then_back_every_event_once(
    pg: PostgresServer,
    url: str,
    handlers: list[Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from prometheus_client import REGISTRY, generate_latest

    handler = make_handler(url, handlers, tmp_path, memory_events=50, flush_timeout=1)
    eventlog = make_log(handler)
    for n in range(100):
        record(eventlog, n, f"id{n}")
    assert eventlog.flush(10)
    pg.stop()
    try:
        for n in range(100, 400):
            record(eventlog, n, f"id{n}")
        eventlog.flush(10)
        # The flush reported that the events are not committed yet (logged; nothing is lost).
        flush_errors = [r for r in caplog.records if r.exc_info and r.exc_info[0] is not None]
        assert any(r.exc_info[0] is StoreUnavailableError for r in flush_errors)
        assert list((tmp_path / "spool").glob("*.spool"))  # beyond 50 in memory: on disk
        metrics = generate_latest(REGISTRY).decode()
        assert 'jupyter_telemetry_postgres_outages_total{table="telemetry_events"} 1.0' in metrics
        assert 'jupyter_telemetry_postgres_pending{table="telemetry_events"} 300.0' in metrics
    finally:
        pg.start()
    handler.flush_timeout = 30
    handler.flush()
    assert rows(url, "SELECT count(*), count(DISTINCT client_id) FROM telemetry_events") == [
        (400, 400)
    ]
    assert not list((tmp_path / "spool").glob("*.spool"))
    outage_logs = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(outage_logs) == 1  # once per outage, not per event or attempt
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(handler)


def test_a_full_spool_disk_refuses_and_counts_events_and_loses_no_other(
    pg: PostgresServer,
    url: str,
    handlers: list[Any],
    small_disk: Path,  # noqa: F811 - the fixture imported above
) -> None:
    """PostgreSQL down, its spool on a disk that fills: the events neither memory nor the spool
    takes are sink failures, counted; every other one is stored once PostgreSQL is back, with no
    line of the spool cut, and the writer goes on."""
    (small_disk / "filler").write_bytes(b"x" * (16 << 10))
    spool = small_disk / "spool"
    handler = make_handler(url, handlers, small_disk, spool_dir=spool, memory_events=10,
                           flush_timeout=0.5)  # fmt: skip
    failed = Sink()
    eventlog = make_log(handler, failed_handlers=[failed.handler])
    pg.stop()
    try:
        n = 1500  # about 250 bytes each: far more than the 48 KiB free
        for m in range(n):
            context = {"__user__": "u1", "__client_id__": f"id{m}"}
            eventlog.record_event(SCHEMA_ID, 1, {"action": "p" * 97, "n": m}, context=context)
            if m % 500 == 499:
                eventlog.flush(10)
        data = b"".join(path.read_bytes() for path in spool.glob("*.spool"))
        assert data.endswith(b"\n")  # no line cut by the full disk
        assert all(line.count(b"__schema__") == 1 for line in data.splitlines())
        refused = eventlog.outcomes().get((SCHEMA_ID, "sink_failure"), 0)
        assert [e["outcome"] for e in failed.events] == ["sink_failure"] * refused
    finally:
        pg.start()
    (small_disk / "filler").unlink()
    handler.flush_timeout = 30
    handler.flush()
    stored = {n for (n,) in rows(url, "SELECT (data->>'n')::int FROM telemetry_events")}
    assert len(stored) == n - refused  # every event not counted lost is stored, once
    assert rows(url, "SELECT count(*) FROM telemetry_events") == [(n - refused,)]
    record(eventlog, n, f"id{n}")  # the writer goes on
    assert eventlog.flush(10)
    handler.flush()
    assert n in {m for (m,) in rows(url, "SELECT (data->>'n')::int FROM telemetry_events")}


def test_spool_left_by_a_stopped_process_is_written(
    pg: PostgresServer, url: str, handlers: list[Any], tmp_path: Path
) -> None:
    handler = make_handler(url, handlers, tmp_path, memory_events=5, flush_timeout=0.5)
    eventlog = make_log(handler)
    pg.stop()
    try:
        for n in range(20):
            record(eventlog, n, f"id{n}")
        eventlog.flush(10)
        eventlog.close(1)
        handler.close()  # what it had in memory goes to the spool too
    finally:
        pg.start()
    spooled = list((tmp_path / "spool").glob("*.spool"))
    assert spooled
    dead = spooled[0].with_name("telemetry_events.999999999.spool")  # a process that is gone
    spooled[0].rename(dead)
    for other in spooled[1:]:
        dead.write_text(dead.read_text() + other.read_text())
        other.unlink()
    successor = make_handler(url, handlers, tmp_path, flush_timeout=30)
    successor.flush()
    assert rows(url, "SELECT count(DISTINCT client_id), count(*) FROM telemetry_events") == [
        (20, 20)
    ]


def test_the_outage_spool_is_readable_by_its_owner_only(
    pg: PostgresServer, url: str, handlers: list[Any], tmp_path: Path
) -> None:
    """The spool holds recorded events (users, data): the folder it creates is 0700, its files
    0600, whatever the umask, as the forwarding spool's and the tombstones' are."""
    handler = make_handler(url, handlers, tmp_path, memory_events=1, flush_timeout=0.5)
    eventlog = make_log(handler)
    old = os.umask(0o022)
    pg.stop()
    try:
        for n in range(5):
            record(eventlog, n, f"id{n}")
        assert eventlog.flush(10)
        with pytest.raises(StoreUnavailableError):
            handler.flush()
        spooled = list((tmp_path / "spool").glob("*.spool"))
        assert spooled
        assert oct((tmp_path / "spool").stat().st_mode & 0o777) == oct(0o700)
        assert {oct(path.stat().st_mode & 0o777) for path in spooled} == {oct(0o600)}
    finally:
        os.umask(old)
        pg.start()
    handler.flush_timeout = 30
    handler.flush()
    assert rows(url, "SELECT count(*) FROM telemetry_events") == [(5,)]


def test_url_from_environment_variable(
    url: str, handlers: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_TELEMETRY_DB", url)
    handler = make_handler("env:MY_TELEMETRY_DB", handlers, tmp_path)
    eventlog = make_log(handler)
    record(eventlog, 1, "a")
    assert eventlog.flush(10)
    assert rows(url, "SELECT count(*) FROM telemetry_events") == [(1,)]
    assert PASSWORD not in repr(handler)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([JUPYTER, "telemetry", *args], capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, **(env or {})})  # fmt: skip


@pytest.fixture(params=[True, False], ids=["partitioned", "plain"])
def filled(url: str, handlers: list[Any], tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A store (partitioned, or not) with events of alice (hashed), bob (hashed) over 3 days."""
    secret = b"k" * 64
    (tmp_path / "secret").write_bytes(secret)
    handler = make_handler(url, handlers, tmp_path, partition_by_day=request.param)
    eventlog = make_log(handler)
    now = datetime.now(timezone.utc)
    alice, bob = hashed_user(secret, "alice"), hashed_user(secret, "bob")
    for n, (user, age) in enumerate([(alice, 100), (bob, 100), (alice, 1), (bob, 0), (alice, 0)]):
        record(eventlog, n, f"id{n}", user=user, timestamp_override=now - timedelta(days=age))
    assert eventlog.flush(10)
    return url


def test_cli_events_stats_and_sql(filled: str) -> None:
    env = {"TELEMETRY_DB": filled}
    events = cli("events", "--db", "env:TELEMETRY_DB", "--since", "2d", "--json", env=env)
    assert events.returncode == 0, events.stderr
    lines = [json.loads(line) for line in events.stdout.splitlines()]
    assert [e["n"] for e in lines] == [2, 3, 4]
    assert lines[0]["__schema__"] == SCHEMA_ID
    assert lines[0]["__client_id__"] == "id2"
    stats = cli("stats", "--db", filled, "--by", "all", "--schema", SCHEMA_ID, "--json")
    assert [json.loads(line) for line in stats.stdout.splitlines()] == [
        {"period": "all", "schema": SCHEMA_ID, "version": "1", "action": "open", "count": 5}
    ]
    query = cli("sql", "--db", filled, "SELECT count(*) AS n FROM telemetry_events")
    assert query.returncode == 0, query.stderr
    assert query.stdout.split() == ["n", "-", "5"]
    write = cli("sql", "--db", filled, "DELETE FROM telemetry_events")
    assert write.returncode == 1
    assert "read-only transaction" in write.stderr
    assert rows(filled, "SELECT count(*) FROM telemetry_events") == [(5,)]


def test_cli_never_prints_the_password(pg: PostgresServer) -> None:
    wrong = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{pg.port}/no_such_db"
    result = cli("events", "--db", wrong)
    assert result.returncode == 2
    assert "no_such_db" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


def test_cli_prune_export_erase(filled: str, tmp_path: Path) -> None:
    secret = ["--secret-file", str(tmp_path / "secret")]
    exported = cli("export", "--db", filled, "--user", "alice", *secret)
    assert [json.loads(line)["n"] for line in exported.stdout.splitlines()] == [0, 2, 4], (
        exported.stderr
    )
    erased = cli("erase", "--db", filled, "--user", "alice", *secret)
    assert erased.stdout.strip() == "erased 3 events", erased.stderr
    assert rows(filled, "SELECT operator, events FROM telemetry_events_erasures") == [
        (os.environ.get("USER") or __import__("getpass").getuser(), 3)
    ]
    left = rows(filled, "SELECT data->>'n' FROM telemetry_events ORDER BY 1")
    assert left == [("1",), ("3",)]
    partitions = partition_count(filled)
    keys = "telemetry_events_ids" if partitions else "telemetry_events WHERE key IS NOT NULL"
    assert rows(filled, f"SELECT count(*) FROM {keys}") == [(2,)]  # noqa: S608 - bob's only
    pruned = cli("prune", "--db", filled, "--older-than", "90d")
    assert pruned.stdout.startswith("removed 1 events"), pruned.stderr
    assert rows(filled, "SELECT data->>'n' FROM telemetry_events") == [("3",)]
    assert rows(filled, f"SELECT count(*) FROM {keys}") == [(1,)]  # noqa: S608
    assert partition_count(filled) == max(partitions - 1, 0)  # the oldest day's, dropped whole


def test_a_closed_handler_opens_again_on_the_next_event(
    url: str, handlers: list[Any], tmp_path: Path
) -> None:
    handler = make_handler(url, handlers, tmp_path)
    eventlog = make_log(handler)
    logging.shutdown([lambda: handler])  # what logging.config.dictConfig does at server start
    record(eventlog, 1, "a")
    assert eventlog.flush(10)
    handler.flush()
    assert rows(url, "SELECT count(*) FROM telemetry_events") == [(1,)]


# A real Jupyter server writing to PostgreSQL: with reply_after_write, a 200 means committed.


@pytest.fixture
def server_to_postgres(
    jp_server_config: Config, url: str, handlers: list[Any], tmp_path: Path
) -> PostgresEventHandler:
    """The server records frontend events into PostgreSQL and answers after the commit."""
    handler = make_handler(url, handlers, tmp_path, flush_timeout=2)
    jp_server_config.EventLog.handlers = [handler]
    jp_server_config.EventLog.allowed_schemas = {FRONTEND_ID: {}}
    jp_server_config.TelemetryExtension.reply_after_write = True
    jp_server_config.TelemetryExtension.rate_limit = 0.0
    return handler


def posted(n: int) -> dict[str, Any]:
    """Return a batch of two events with the client ids p<n>a and p<n>b."""
    return {"events": [
        {"schema_id": FRONTEND_ID, "version": 1, "id": f"p{n}{x}", "data": {"count": n}}
        for x in "ab"
    ]}  # fmt: skip


async def test_reply_after_write_acknowledges_only_what_is_committed(
    server_to_postgres: PostgresEventHandler, pg: PostgresServer, url: str, jp_fetch: Fetch
) -> None:
    code, reply, _ = await send(jp_fetch, posted(1))
    assert (code, reply["recorded"]) == (200, 2)
    assert rows(url, "SELECT client_id FROM telemetry_events ORDER BY 1") == [("p1a",), ("p1b",)]
    pg.stop()
    try:
        code, reply, headers = await send(jp_fetch, posted(2))
        assert (code, headers["Retry-After"]) == (503, "1")  # not committed: not acknowledged
    finally:
        pg.start()
    for _ in range(3):  # the retry: committed once, whatever the first attempt left waiting
        code, reply, _ = await send(jp_fetch, posted(2))
        if code == 200:
            break
    assert code == 200
    stored = rows(url, "SELECT client_id, count(*) FROM telemetry_events GROUP BY 1 ORDER BY 1")
    assert stored == [("p1a", 1), ("p1b", 1), ("p2a", 1), ("p2b", 1)]


def test_logging_shutdown_never_fails_while_the_database_is_down(
    pg: PostgresServer, url: str, handlers: list[Any], tmp_path: Path
) -> None:
    """logging.shutdown (at exit, and in traitlets' dictConfig at every server start) never
    raises, and what waits for the database is on disk by then: a process exit loses nothing."""
    handler = make_handler(url, handlers, tmp_path, flush_timeout=1)
    eventlog = make_log(handler)
    record(eventlog, 1, "before")
    assert eventlog.flush(10)
    pg.stop()
    try:
        record(eventlog, 2, "during")
        eventlog.flush(0.5)
        logging.shutdown([weakref.ref(handler)])  # as at exit, for every handler
        spooled = "".join(p.read_text() for p in (tmp_path / "spool").glob("*.spool"))
        assert '"during"' in spooled
    finally:
        pg.start()
    handler.flush_timeout = 30
    handler.flush()
    assert rows(url, "SELECT client_id FROM telemetry_events ORDER BY 1") == [
        ("before",),
        ("during",),
    ]


def test_a_batch_beyond_memory_events_waits_in_the_spool_with_its_keys(
    url: str, handlers: list[Any], tmp_path: Path
) -> None:
    """Handed over in one call, a batch larger than memory_events keeps what fits in memory
    and spools the rest, each event with the key it came with: each is stored once."""
    handler = make_handler(url, handlers, tmp_path, memory_events=3)
    eventlog = make_log(handler)
    schema = eventlog.get_schema(SCHEMA_ID, 1)
    keys = [bytes([n]) * 16 for n in range(10)]
    for _ in range(2):  # the second time: a retry of the same events, by their keys
        with eventlog.batch():
            for n, key in enumerate(keys):
                eventlog.record_checked(schema, {"action": "open", "n": n}, key=key)
        assert eventlog.flush(10)
        handler.flush()
    stored = rows(url, "SELECT data->>'n', key FROM telemetry_events ORDER BY key")
    assert stored == [(str(n), uuid.UUID(bytes=key)) for n, key in enumerate(keys)]
    assert handler.counts["stored"] == 10
    assert handler.counts["duplicate"] == 10


def test_a_batch_event_whose_capsule_cannot_be_read_back_is_refused_alone(
    url: str, handlers: list[Any], tmp_path: Path
) -> None:
    """A record handed over without its capsule and with a damaged line is refused (counted,
    described by its SQLSTATE alone); the events beside it in the batch are stored."""
    handler = make_handler(url, handlers, tmp_path)
    good = {
        "__timestamp__": "2026-12-07T10:00:00Z",
        "__schema__": SCHEMA_ID,
        "__schema_version__": "1",
        "__metadata_version__": 2,
        "action": "open",
        "n": 1,
    }
    damaged = CapsuleRecord(RECORD_NAME, None, '{"__timestamp__": "2026-12-0')
    handler.handle_batch([damaged, HeldEvent(good, None, b"\x07" * 16)])
    handler.flush()
    assert rows(url, "SELECT data->>'n' FROM telemetry_events") == [("1",)]
    assert handler.counts["refused"] == 1
    assert handler.counts["stored"] == 1
