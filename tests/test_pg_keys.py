"""PostgreSQL keys: per poster whatever `record_user` says, and one for every event at reception.

A real Jupyter server (two users named by a header) and the collector under a real JupyterHub
(two hub users) record into a real PostgreSQL; a TCP proxy between the handler and PostgreSQL
drops the connection right after PostgreSQL committed a batch, before the handler hears of it:
the batch is written again, as it would be after a network cut at that moment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.core.errors import RowError, StoreUnavailableError
from jupyter_telemetry_ext.core.event_keys import (
    RequestKeys,
    client_key,
    key_bytes,
    new_key,
    poster_key,
)
from jupyter_telemetry_ext.core.recorded_user import SECRET_FILE, hashed_user
from jupyter_telemetry_ext.core.records import HeldEvent
from jupyter_telemetry_ext.sinks.pgrows import key_of, keyed_line, line_row, row_line, to_row
from jupyter_telemetry_ext.sinks.pgtable import DDL, UNIQUE_DDL, VERSION_DDL
from tests.conftest import FRONTEND_ID, Sink
from tests.test_postgres import handlers, make_handler, make_log, pg, record, rows, url
from tests.test_reliability import Fetch, send

psycopg = pytest.importorskip("psycopg", reason="the [postgres] extra (psycopg) is not installed")

from jupyter_telemetry_ext.sinks.postgres import PostgresEventHandler  # noqa: E402

pytestmark = pytest.mark.e2e  # starts a PostgreSQL server

__all__ = ["handlers", "pg", "url"]  # fixtures shared with test_postgres
STORED = "SELECT username, client_id, key FROM telemetry_events ORDER BY received, client_id"


class CommitCutter:
    """A TCP proxy to PostgreSQL that, once armed, drops the connection right after the first
    commit of a transaction that copied rows: PostgreSQL has stored them, the client is told
    nothing but that the connection is gone (SSL and GSS encryption must be off)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.cuts = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def url(self, dbname: str) -> str:
        """Return a URL of a database through the proxy."""
        return (f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"
                "?sslmode=disable&gssencmode=disable")  # fmt: skip

    def _accept(self) -> None:
        while not self._stop.is_set():
            if not select.select([self.listener], [], [], 0.1)[0]:
                continue
            client, _ = self.listener.accept()
            server = socket.create_connection(("127.0.0.1", self.target))
            thread = threading.Thread(target=self._pump, args=(client, server), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        """Forward both ways; read the server's messages (type, int32 length, payload)."""
        pending, copied = b"", False
        with client, server:
            while not self._stop.is_set():
                ready = select.select([client, server], [], [], 0.1)[0]
                if client in ready:
                    data = client.recv(65536)
                    if not data:
                        return
                    server.sendall(data)
                if server in ready:
                    data = server.recv(65536)
                    if not data:
                        return
                    pending += data
                    out = b""
                    while len(pending) >= 5:
                        size = int.from_bytes(pending[1:5], "big") + 1
                        if len(pending) < size:
                            break
                        message, pending = pending[:size], pending[size:]
                        if message[:1] == b"C" and message[5:].startswith(b"COPY"):
                            copied = True
                        if message[:1] == b"Z" and message[5:6] == b"I":  # idle: committed
                            if copied and self.armed.is_set():
                                self.armed.clear()
                                self.cuts += 1
                                client.sendall(out)  # all but the end of the transaction
                                return
                            copied = False
                        out += message
                    client.sendall(out)

    def close(self) -> None:
        """Stop forwarding and close every connection."""
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self.listener.close()


@pytest.fixture
def cutter(pg: Any) -> Iterator[CommitCutter]:
    """A proxy to the session's PostgreSQL server that cuts a connection after a commit."""
    proxy = CommitCutter(pg.port)
    yield proxy
    proxy.close()


@pytest.fixture
def db(pg: Any) -> str:
    """The name of a fresh database."""
    return str(pg.create_database())


def stored(url: str) -> list[Any]:
    return rows(url, STORED)


def stored_once_created(url: str) -> list[Any]:
    """Return the stored rows, none while the handler has not created its table yet."""
    import psycopg

    try:
        return stored(url)
    except psycopg.errors.UndefinedTable:
        return []


# A real server, two users, no user recorded


@pytest.fixture
def server_to_postgres(
    *,
    request: pytest.FixtureRequest,
    jp_server_config: Config,
    pg: Any,
    db: str,
    cutter: CommitCutter,
    handlers: list[Any],
    tmp_path: Path,
    sink: Sink,
) -> PostgresEventHandler:
    """The server records frontend events into PostgreSQL (through the proxy) and a log."""
    options = getattr(request, "param", {})
    handler = make_handler(cutter.url(db), handlers, tmp_path, flush_timeout=20,
                           max_backoff=0.2, **options.get("handler", {}))  # fmt: skip
    jp_server_config.EventLog.handlers = [handler, sink.handler]
    jp_server_config.EventLog.allowed_schemas = {FRONTEND_ID: {}}
    jp_server_config.TelemetryExtension.rate_limit = 0.0
    jp_server_config.TelemetryExtension.duplicate_window = options.get("window", 86400.0)
    return handler


@pytest.fixture
def written(
    server_eventlog: EventLog, server_to_postgres: PostgresEventHandler
) -> Callable[[], None]:
    """Return a function that waits until the server's events are committed."""

    def wait() -> None:
        assert server_eventlog.flush(10)
        server_to_postgres.flush()

    return wait


def posted(*ids: str | None) -> dict[str, Any]:
    """Return a batch of events with these client ids (None: without one)."""
    return {"events": [
        {"schema_id": FRONTEND_ID, "version": 1, "data": {"action": "open"},
         **({"id": i} if i else {})} for i in ids
    ]}  # fmt: skip


def statuses(reply: dict[str, Any]) -> list[str]:
    return [r["status"] for r in reply["results"]]


@pytest.mark.parametrize(
    ("server_to_postgres", "retried"),
    [({}, "duplicate"), ({"window": 0.0}, "recorded")],
    ids=["duplicate-window", "no-window"],
    indirect=["server_to_postgres"],
)
async def test_the_same_id_from_two_users_is_two_events_when_no_user_is_recorded(
    *,
    named_users: None,
    server_to_postgres: PostgresEventHandler,
    written: Callable[[], None],
    jp_fetch: Fetch,
    jp_data_dir: Path,
    pg: Any,
    db: str,
    sink: Sink,
    retried: str,
) -> None:
    for user in ("ada", "grace"):
        _, reply, _ = await send(jp_fetch, posted("same", "other"), user)
        assert statuses(reply) == ["recorded", "recorded"]
    for user in ("ada", "grace"):  # each one's retry; without a window it reaches PostgreSQL
        _, reply, _ = await send(jp_fetch, posted("same", "other"), user)
        assert statuses(reply) == [retried, retried]
    written()
    url = pg.url(db)
    events = stored(url)
    assert [(user, client) for user, client, _ in events] == [(None, "other"), (None, "same")] * 2
    keys = {key for _, _, key in events}
    assert len(keys) == 4  # each user's events are their own
    assert server_to_postgres.counts == {
        "stored": 4, "duplicate": 4 if retried == "recorded" else 0, "refused": 0, "erased": 0,
        "outages": 0
    }  # fmt: skip
    # The poster is in the key only: no column holds it, nor a hash of it, nor does the log.
    secret = (jp_data_dir / SECRET_FILE).read_bytes().strip()
    posters = {
        value
        for name in ("ada", "grace")
        for value in (name, hashed_user(secret, name), poster_key(secret, f"user:{name}").hex())
    }
    values = "SELECT value FROM telemetry_events e, jsonb_each_text(to_jsonb(e) - 'key')"
    assert not [p for (value,) in rows(url, values) for p in posters if p in (value or "")]
    assert all("__user__" not in e and "__key__" not in e for e in sink.events)
    assert not [key for key in keys if key.hex in sink.stream.getvalue()]


@pytest.mark.parametrize(
    "server_to_postgres",
    [{"handler": {}}, {"handler": {"memory_events": 0}}, {"handler": {"partition_by_day": True}}],
    ids=["in-memory", "spooled", "partitioned"],
    indirect=True,
)
async def test_events_without_id_replayed_after_a_lost_commit_are_stored_once(
    *,
    named_users: None,
    server_to_postgres: PostgresEventHandler,
    written: Callable[[], None],
    cutter: CommitCutter,
    jp_fetch: Fetch,
    pg: Any,
    db: str,
    sink: Sink,
) -> None:
    _, reply, _ = await send(jp_fetch, posted("a"), "ada")  # the table exists: arm for events
    written()
    cutter.armed.set()
    _, reply, _ = await send(jp_fetch, posted(None, None, None, "b"), "ada")
    assert statuses(reply) == ["recorded"] * 4  # no id: never a duplicate of one another
    _, reply, _ = await send(jp_fetch, posted(None, None), "grace")
    assert statuses(reply) == ["recorded"] * 2
    written()
    assert cutter.cuts == 1  # PostgreSQL committed a batch whose reply never arrived
    events = stored(pg.url(db))
    assert sorted(str(client) for _, client, _ in events) == ["None"] * 5 + ["a", "b"]
    assert len({key for _, _, key in events}) == 7
    assert server_to_postgres.counts["outages"] == 1
    assert server_to_postgres.counts["duplicate"] >= 1  # the replay met what was committed
    assert len(sink.events) == 7  # and the log has each event once, without its key
    assert all("__client_id__" not in e for e in sink.events[1:4])


# The collector under a real JupyterHub: two hub users, no user recorded

COLLECTOR_CONFIG = """\
import logging
from jupyter_telemetry_ext import PostgresEventHandler
c.TelemetryCollector.schema_paths = [{schemas!r}]
c.TelemetryCollector.duplicate_window = 0.0  # every retry reaches PostgreSQL
c.EventLog.handlers = [logging.FileHandler({sink!r}),
                       PostgresEventHandler({db!r}, spool_dir={spool!r})]
c.EventLog.allowed_schemas = {{{frontend!r}: {{"allowed_categories": ["unrestricted",
                                                                   "user-identifier"]}}}}
"""


def test_the_collector_stores_the_same_id_from_two_hub_users_twice(
    pg: Any, db: str, tmp_path: Path
) -> None:
    pytest.importorskip("jupyterhub", reason="the [hub] extra (jupyterhub) is not installed")
    from tests.conftest import frontend_schema
    from tests.hubserver import SERVICE, running_hub
    from tests.servers import read_events, wait_until

    schemas, sink = tmp_path / "schemas", tmp_path / "events.jsonl"
    schemas.mkdir()
    (schemas / "frontend.json").write_text(json.dumps(frontend_schema()))
    config = tmp_path / "telemetry_config.py"
    config.write_text(COLLECTOR_CONFIG.format(
        schemas=str(schemas), sink=str(sink), db=pg.url(db), spool=str(tmp_path / "spool"),
        frontend=FRONTEND_ID))  # fmt: skip
    url, events = pg.url(db), f"services/{SERVICE}/api/telemetry/events"
    (tmp_path / "hub").mkdir()
    with running_hub(tmp_path / "hub", config) as hub:
        tokens = [hub.user_token(name) for name in ("alice", "bob")]
        for _ in range(2):  # each one's batch, then each one's retry of it
            for token in tokens:
                status, reply = hub.request("POST", events, posted("same", None), token=token)
                assert (status, statuses(reply)) == (200, ["recorded", "recorded"])
        wait_until(lambda: len(read_events(sink)) == 8, 15, lambda: f"{read_events(sink)}")
        wait_until(lambda: len(stored_once_created(url)) == 6, 15,
                   lambda: f"{stored_once_created(url)}")  # fmt: skip
    assert sorted(str(client) for _, client, _ in stored(url)) == ["None"] * 4 + ["same"] * 2
    assert all(user is None for user, _, _ in stored(url))  # no user column, nor in the log:
    assert all("__user__" not in e and "__key__" not in e for e in read_events(sink))
    assert len({key for _, _, key in stored(url)}) == 6


# Events a program records (no reception): a key when the row is made


@pytest.mark.parametrize("memory_events", [100, 0])
def test_program_events_without_id_replayed_after_a_lost_commit_are_stored_once(
    *,
    cutter: CommitCutter,
    pg: Any,
    db: str,
    handlers: list[Any],
    tmp_path: Path,
    memory_events: int,
) -> None:
    handler = make_handler(cutter.url(db), handlers, tmp_path, max_backoff=0.2,
                           flush_timeout=20, memory_events=memory_events)  # fmt: skip
    eventlog = make_log(handler)
    record(eventlog, 0, "warm")
    assert eventlog.flush(10)
    handler.flush()
    cutter.armed.set()
    for n in range(1, 6):
        record(eventlog, n)
    record(eventlog, 6, "c")
    assert eventlog.flush(10)
    handler.flush()
    assert cutter.cuts == 1
    assert rows(pg.url(db), "SELECT data->>'n' FROM telemetry_events ORDER BY 1") == [
        (str(n),) for n in range(7)
    ]  # fmt: skip
    legacy = hashlib.sha256(b"u1\x00c").digest()[:16]  # a program's client id: as before
    assert rows(pg.url(db), "SELECT key FROM telemetry_events WHERE client_id = 'c'") == [
        (uuid.UUID(bytes=legacy),)
    ]


# A table written before keys were given at reception


def test_a_table_of_the_previous_release_keeps_working(
    url: str, handlers: list[Any], tmp_path: Path
) -> None:
    names = {k: f'"telemetry_events{k[1:]}"' for k in ("t", "t_received", "t_schema", "t_key",
             "t_erasures", "t_version")}  # fmt: skip
    before = datetime(2026, 1, 2, tzinfo=timezone.utc)
    legacy = uuid.UUID(bytes=hashlib.sha256(b"\x00same").digest()[:16])
    with psycopg.connect(url, autocommit=True) as conn:  # layout 2, as it was created then
        conn.execute(DDL.replace("{partition}", "").replace("{unique}", UNIQUE_DDL).format(**names))
        conn.execute(VERSION_DDL.format(**names))
        conn.execute('INSERT INTO "telemetry_events_version" VALUES (2)')
        insert = (
            "INSERT INTO telemetry_events (received, schema_id, schema_version, "
            "metadata_version, client_id, data, key) VALUES (%s, 's', '1', 2, %s, '{}', %s)"
        )
        conn.execute(insert, [before, "same", legacy])
        conn.execute(insert, [before, None, None])
    handler = make_handler(url, handlers, tmp_path)
    eventlog = make_log(handler)
    record(eventlog, 1, "same", user="u2")
    record(eventlog, 2)
    assert eventlog.flush(10)
    handler.flush()
    assert rows(url, "SELECT count(*), count(key) FROM telemetry_events") == [(4, 3)]
    assert rows(url, "SELECT version FROM telemetry_events_version") == [(2,)]
    assert handler.counts["stored"] == 2


@pytest.mark.parametrize("partition_by_day", [False, True])
def test_a_table_that_lost_its_unique_key_index_gets_it_back_at_start(
    *, url: str, handlers: list[Any], tmp_path: Path, caplog: pytest.LogCaptureFixture,
    partition_by_day: bool,
) -> None:  # fmt: skip
    first = make_handler(url, handlers, tmp_path, partition_by_day=partition_by_day)
    eventlog = make_log(first)
    record(eventlog, 1, "a")
    assert eventlog.flush(10)
    first.flush()
    drop = ("ALTER TABLE telemetry_events_ids DROP CONSTRAINT telemetry_events_ids_pkey"
            if partition_by_day else "DROP INDEX telemetry_events_key")  # fmt: skip
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(drop)
    later = make_handler(url, handlers, tmp_path / "b", partition_by_day=partition_by_day)
    eventlog = make_log(later)
    record(eventlog, 1, "a")  # a retry, after a restart
    assert eventlog.flush(10)
    later.flush()
    assert rows(url, "SELECT count(*) FROM telemetry_events") == [(1,)]
    assert later.counts["duplicate"] == 1
    assert "has no unique index on its keys: making it" in caplog.text


def test_a_table_that_cannot_get_its_unique_key_index_back_stores_nothing_and_says_so(
    url: str, handlers: list[Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = make_handler(url, handlers, tmp_path)
    eventlog = make_log(first)
    record(eventlog, 1, "a")
    assert eventlog.flush(10)
    first.flush()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP INDEX telemetry_events_key")
        conn.execute("INSERT INTO telemetry_events SELECT * FROM telemetry_events")  # one key twice
    later = make_handler(url, handlers, tmp_path / "b", flush_timeout=0.5)
    eventlog = make_log(later)
    record(eventlog, 2, "b")
    assert eventlog.flush(10)
    with pytest.raises(StoreUnavailableError):
        later.flush()  # the event waits, in the spool
    assert "could not create unique index" in caplog.text
    assert rows(url, "SELECT count(*) FROM telemetry_events") == [(2,)]


# The key of each poster


def test_keys_are_per_poster_and_made_once_for_events_without_id(tmp_path: Path) -> None:
    from jupyter_telemetry_ext.server.reception import Policy

    policy = Policy.from_options(Options(tmp_path))
    assert (tmp_path / SECRET_FILE).exists()  # kept whatever record_user says
    now = datetime.now(timezone.utc)
    ada = policy.reception("ada", "user:ada", now)
    grace = policy.reception("grace", "user:grace", now)
    assert ada.recorded_user is None
    assert ada.event_key("x") == policy.reception("ada", "user:ada", now).event_key("x")
    assert ada.event_key("x") != grace.event_key("x")
    assert ada.event_key("x") == client_key(poster_key(policy.key_secret, "user:ada"), "x")
    first = ada.event_key(None)
    assert first is not None
    assert first < ada.event_key(None)  # in the order they were made
    assert first[:6] == int(now.timestamp() * 1000).to_bytes(6, "big")
    again = Policy.from_options(Options(tmp_path))  # a restart, or a replica sharing the key
    assert again.reception("ada", "user:ada", now).event_key("x") == ada.event_key("x")
    configured = Policy.from_options(Options(tmp_path / "elsewhere", user_hash_secret="k"))
    assert configured.key_secret == b"k"
    assert not (tmp_path / "elsewhere").exists()


def test_new_keys_sort_in_the_order_they_were_made() -> None:
    first = new_key()
    time.sleep(0.002)  # the next millisecond
    assert new_key() > first  # the unique index adds it at its end
    assert len({new_key() for _ in range(1000)}) == 1000


def test_a_spooled_line_keeps_its_key_and_a_damaged_key_is_refused() -> None:
    capsule = {"__timestamp__": "2026-01-02T03:04:05.000006Z", "__schema__": "s",
               "__schema_version__": "1", "__metadata_version__": 2, "a": 1}  # fmt: skip
    key = new_key()
    row = to_row(capsule, key)
    assert key_of(row) == key
    assert key_of(line_row(row_line(row))) == key  # waited in memory, then on disk
    line = keyed_line(json.dumps(capsule), key)  # spooled at once (memory full)
    assert json.loads(line)["__key__"] == key.hex()
    assert line_row(line) == row
    assert key_of(line_row(json.dumps(capsule))) != key_of(line_row(json.dumps(capsule)))
    for bad in ("zz", "00", 7):
        with pytest.raises(RowError):
            line_row(json.dumps({**capsule, "__key__": bad}))


def test_a_data_dir_that_cannot_hold_the_key_is_said_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from jupyter_telemetry_ext.server.reception import Policy

    (tmp_path / "file").write_text("")
    with caplog.at_level(logging.WARNING):
        policy = Policy.from_options(Options(tmp_path / "file" / "data"))
    assert len(policy.key_secret) == 32
    assert "a key of this process only" in caplog.text


class Options:
    """What a Policy is made from, record_user "none" (TelemetryExtension's defaults)."""

    def __init__(self, data_dir: Path, user_hash_secret: str = "") -> None:
        self.duplicate_window, self.duplicate_capacity = 86400.0, 100
        self.duplicate_capacity_per_user, self.event_time_window = 10, 0.0
        self.rate_limit, self.rate_burst = 0.0, 1
        self.record_user, self.user_hash_secret = "none", user_hash_secret
        self.data_dir, self.reply_after_write = str(data_dir), False


def test_a_client_ids_key_hashed_later_is_the_same_key() -> None:
    """The request path hands a client id's key over unhashed; its reader (the writer thread)
    gets the key `client_key` makes, and a key without a client id as it was made."""
    keys = RequestKeys(b"k" * 32, "user:ada", 1_700_000_000_000)
    expected = client_key(poster_key(b"k" * 32, "user:ada"), "c1")
    pending = keys.pending("c1")
    assert not isinstance(pending, bytes)
    assert key_bytes(pending) == expected == keys.key("c1")
    held = HeldEvent({}, None, pending)
    assert held.key == expected
    assert held.key is held.key  # hashed once
    fresh = keys.pending(None)
    assert isinstance(fresh, bytes)
    assert HeldEvent({}, None, fresh).key == fresh
    assert HeldEvent({}, None, None).key is None
