"""Erasure and export reach everything: the outage spool, late events, the deployment's key.

Against a real PostgreSQL server (tests/pgserver.py) and the real `jupyter telemetry` command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.core.recorded_user import hashed_user
from jupyter_telemetry_ext.core.tombstones import FileTombstones, erased_file
from jupyter_telemetry_ext.sinks.retention import erasures_file
from tests.conftest import make_schema
from tests.pgserver import PostgresServer, server_for_tests
from tests.servers import wait_until

psycopg = pytest.importorskip("psycopg", reason="the [postgres] extra (psycopg) is not installed")

from jupyter_telemetry_ext.sinks import spool as spool_module  # noqa: E402
from jupyter_telemetry_ext.sinks.postgres import PostgresEventHandler  # noqa: E402

pytestmark = pytest.mark.e2e  # starts a PostgreSQL server

SCHEMA_ID = "test.events/erasure"
SCHEMA = make_schema(SCHEMA_ID, n={"type": "integer", "categories": ["unrestricted"]})
ALLOWED = {SCHEMA_ID: {"allowed_categories": ["unrestricted", "user-identifier"]}}
JUPYTER = str(Path(sys.executable).with_name("jupyter"))
SECRET = "d" * 64


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the module."""
    yield from server_for_tests()


@pytest.fixture
def url(pg: PostgresServer) -> str:
    """A fresh database."""
    return pg.url(pg.create_database(), password="pw")


@pytest.fixture
def handlers() -> Iterator[list[PostgresEventHandler]]:
    """Handlers made by a test, closed at its end."""
    made: list[PostgresEventHandler] = []
    yield made
    for handler in made:
        handler.flush_timeout = 1
        handler.close()


def make_handler(url: str, made: list[PostgresEventHandler], spool: Path, **kw: Any) -> Any:
    handler = PostgresEventHandler(url, spool_dir=spool, max_backoff=0.5, **kw)
    made.append(handler)
    eventlog = EventLog(handlers=[handler], allowed_schemas=ALLOWED, background=True)
    eventlog.register_schema(SCHEMA)
    return handler, eventlog


def record(eventlog: EventLog, n: int, user: str, when: datetime | None = None) -> None:
    context = {"__user__": user, "__client_id__": f"id{n}"}
    eventlog.record_event(SCHEMA_ID, 1, {"n": n}, context=context, timestamp_override=when)


def cli(*args: str, data_dir: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `jupyter telemetry ...` as an admin would, with its own (empty) Jupyter dirs."""
    env = {**os.environ, "JUPYTER_DATA_DIR": str(data_dir), "JUPYTER_CONFIG_DIR": str(data_dir)}
    env.pop("JUPYTER_TELEMETRY_DB", None)
    return subprocess.run([JUPYTER, "telemetry", *args], capture_output=True, text=True,
                          timeout=120, check=False, env=env, cwd=cwd)  # fmt: skip


def query(url: str, sql: str) -> list[Any]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql.encode()).fetchall()


def numbers(url: str) -> list[tuple[str, int]]:
    rows = query(url, "SELECT username, (data->>'n')::int FROM telemetry_events ORDER BY 2")
    return [(user, n) for user, n in rows]


def left_by_a_dead_process(spool: Path) -> None:
    """Make the spool files look like those of a process that is gone (as after a crash)."""
    files = sorted(spool.glob("*.spool"))
    assert files
    dead = spool / "telemetry_events.999999999.spool"
    dead.write_bytes(b"".join(f.read_bytes() for f in files))
    for f in files:
        f.unlink()


def test_erase_reaches_events_waiting_in_the_outage_spool(
    pg: PostgresServer, url: str, handlers: list[Any], tmp_path: Path
) -> None:
    """carol's events spooled during an outage: exported, counted by erase, never written."""
    spool, data = tmp_path / "spool", tmp_path / "data"
    handler, eventlog = make_handler(url, handlers, spool, flush_timeout=0.5)
    record(eventlog, 0, "carol")
    record(eventlog, 1, "bob")
    assert eventlog.flush(10)
    handler.flush()
    pg.stop()
    try:
        for n in (2, 3, 4):
            record(eventlog, n, "carol")
        record(eventlog, 5, "bob")
        assert eventlog.flush(10)
        eventlog.close(1)
        handler.close()  # what waited in memory is in the spool now
    finally:
        pg.start()
    left_by_a_dead_process(spool)
    store = ["--db", url, "--spool-dir", str(spool)]

    exported = cli("export", "--user", "carol", *store, data_dir=data)
    assert exported.returncode == 0, exported.stderr
    assert sorted(json.loads(line)["n"] for line in exported.stdout.splitlines()) == [0, 2, 3, 4]

    erased = cli("erase", "--user", "carol", *store, data_dir=data)
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout.strip() == (
        "erased 1 events; 3 more waiting in the spool are dropped when written"
    )
    [(key,)] = query(url, "SELECT user_key FROM telemetry_events_erased_users")
    assert key != "carol"  # a keyed hash, never the name
    assert len(key) == 64

    successor, later = make_handler(url, handlers, spool, flush_timeout=30)
    successor.flush()  # the spool left behind is written: carol's events are dropped
    assert numbers(url) == [("bob", 1), ("bob", 5)]
    assert successor.counts["erased"] == 3
    assert not list(spool.glob("*.spool"))
    record(later, 6, "carol")  # after the erasure: recorded as usual
    assert later.flush(10)
    successor.flush()
    assert numbers(url) == [("bob", 1), ("bob", 5), ("carol", 6)]


def test_a_running_writer_learns_of_an_erasure_run_elsewhere(
    url: str, handlers: list[Any], tmp_path: Path
) -> None:
    """A hashed store: the tombstone is the stored hash; a late event from before is dropped."""
    (tmp_path / "key").write_text(SECRET)
    alice = hashed_user(SECRET.encode(), "alice")
    handler, eventlog = make_handler(url, handlers, tmp_path / "spool")
    before = datetime.now(timezone.utc) - timedelta(minutes=5)
    record(eventlog, 0, alice, before)
    assert eventlog.flush(10)
    handler.flush()  # connected, tombstones read (none)
    erased = cli("erase", "--user", "alice", "--db", url, "--secret-file", str(tmp_path / "key"),
                 data_dir=tmp_path / "data")  # fmt: skip
    assert erased.stdout.strip() == "erased 1 events", erased.stderr
    keys = [key for (key,) in query(url, "SELECT user_key FROM telemetry_events_erased_users")]
    assert alice in keys  # the stored hash itself (and a keyed hash of the name, never the name)
    assert "alice" not in keys
    record(eventlog, 1, alice, before)  # a retry of an event from before the erasure
    record(eventlog, 2, alice)  # a new one
    assert eventlog.flush(10)
    handler.flush()
    assert numbers(url) == [(alice, 2)]
    assert handler.counts["erased"] == 1


CONFIG = """\
from jupyter_telemetry_ext import PostgresEventHandler
c.TelemetryCollector.record_user = "hashed"
c.TelemetryCollector.user_hash_secret = {secret!r}
c.EventLog.handlers = [PostgresEventHandler({url!r}, spool_dir={spool!r})]
"""


HUB_CONFIG = """
from jupyter_telemetry_ext import HubEventHandler, PostgresEventHandler
c.EventLogger.handlers = [HubEventHandler(
    handlers=[PostgresEventHandler({url!r}, spool_dir={spool!r})],
    record_user="hashed", user_hash_secret={secret!r},
)]
"""


@pytest.mark.parametrize("template", [CONFIG, HUB_CONFIG], ids=["collector", "hub"])
def test_export_and_erase_find_the_key_and_store_in_the_deployments_config(
    url: str, handlers: list[Any], tmp_path: Path, template: str
) -> None:
    alice, bob = (hashed_user(SECRET.encode(), name) for name in ("alice", "bob"))
    handler, eventlog = make_handler(url, handlers, tmp_path / "spool")
    for n, user in enumerate([alice, bob, alice]):
        record(eventlog, n, user)
    assert eventlog.flush(10)
    handler.flush()
    config = tmp_path / "telemetry_config.py"
    config.write_text(template.format(secret=SECRET, url=url, spool=str(tmp_path / "spool")))
    # A spool left by a collector that stopped during an outage: read, never taken over.
    dead = tmp_path / "spool" / "telemetry_events.999999999.spool"
    waiting = {"__timestamp__": "2026-01-02T03:04:05Z", "__schema__": SCHEMA_ID,
               "__schema_version__": "1", "__metadata_version__": 1, "__user__": alice,
               "__client_id__": "id9", "n": 9}  # fmt: skip
    dead.parent.mkdir(exist_ok=True)
    dead.write_text(json.dumps(waiting) + "\n")
    data = tmp_path / "data"
    exported = cli("export", "--config", str(config), "--user", "alice", data_dir=data)
    assert exported.returncode == 0, exported.stderr
    assert [json.loads(line)["n"] for line in exported.stdout.splitlines()] == [0, 2, 9]
    erased = cli("erase", "--config", str(config), "--user", "alice", data_dir=data)
    assert erased.returncode == 0, erased.stderr
    assert erased.stdout.strip() == (
        "erased 2 events; 1 more waiting in the spool are dropped when written"
    )
    assert numbers(url) == [(bob, 1)]
    assert dead.exists()  # the commands only read the config's settings


@pytest.fixture
def hashed_store(url: str, handlers: list[Any], tmp_path: Path) -> str:
    """A store holding one event of alice, recorded as a keyed hash."""
    handler, eventlog = make_handler(url, handlers, tmp_path / "spool")
    record(eventlog, 0, hashed_user(SECRET.encode(), "alice"))
    assert eventlog.flush(10)
    handler.flush()
    return url


@pytest.mark.parametrize("command", ["export", "erase"])
def test_every_did_nothing_path_says_so_and_exits_non_zero(
    hashed_store: str, tmp_path: Path, command: str
) -> None:
    data, spool = tmp_path / "data", ["--spool-dir", str(tmp_path / "spool")]
    missing = cli(command, "--config", str(tmp_path / "nope.py"), "--user", "alice",
                  data_dir=data)  # fmt: skip
    assert missing.returncode == 2
    assert "nope.py: no such config file" in missing.stderr
    broken = tmp_path / "broken_config.py"
    broken.write_text("c.TelemetryCollector.user_hash_secret = undefined_name\n")
    failed = cli(command, "--config", str(broken), "--db", hashed_store, "--user", "alice",
                 data_dir=data)  # fmt: skip
    assert failed.returncode == 2
    assert "cannot be loaded: NameError" in failed.stderr
    no_key = cli(command, "--db", hashed_store, "--user", "alice", *spool, data_dir=data)
    assert (no_key.returncode, no_key.stdout) == (2, ""), no_key.stderr
    assert "no key was found" in no_key.stderr
    assert query(hashed_store, "SELECT count(*) FROM telemetry_events") == [(1,)]
    (tmp_path / "key").write_text(SECRET)
    key = ["--secret-file", str(tmp_path / "key")]
    nobody = cli(command, "--db", hashed_store, "--user", "zed", *key, *spool, data_dir=data)
    assert nobody.returncode == 1
    assert "no events of this user" in nobody.stderr
    assert nobody.stdout.strip() == ("erased 0 events" if command == "erase" else "")
    no_user = cli(command, "--db", hashed_store, *key, data_dir=data)
    assert no_user.returncode == 2
    assert "name the user with --user NAME" in no_user.stderr
    assert query(hashed_store, "SELECT count(*) FROM telemetry_events") == [(1,)]


def test_the_spool_is_on_disk_before_it_returns_one_fsync_per_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    spool = spool_module.Spool(tmp_path / "spool", "telemetry_events")
    spool.append([json.dumps({"n": n}) for n in range(1000)])
    assert len(synced) == 2  # the file's lines, and the folder that now names the file
    spool.append([json.dumps({"n": n}) for n in range(1000, 1500)])
    assert len(synced) == 3  # one for the whole batch
    assert spool.take(2000)[0][-1] == '{"n": 1499}'


def line(user: str, when: datetime, n: int) -> str:
    capsule = {
        "__timestamp__": when.isoformat(),
        "__schema__": SCHEMA_ID,
        "__schema_version__": 1,
        "__metadata_version__": 1,
        "__user__": user,
        "n": n,
    }
    return json.dumps(capsule) + "\n"


def test_erasing_a_log_keeps_a_tombstone_beside_it_that_names_nobody(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    before = datetime.now(timezone.utc) - timedelta(minutes=1)
    log.write_text(line("carol", before, 1) + line("bob", before, 2))
    watcher = FileTombstones(log)  # a collector writing the log, started before the erasure
    assert watcher.erased_at("carol") is None
    erased = cli("erase", "--user", "carol", str(log), data_dir=tmp_path / "data")
    assert erased.stdout.strip() == "erased 1 events", erased.stderr
    kept = erased_file(log).read_text()
    assert "carol" not in kept
    assert erased_file(log).stat().st_mode & 0o077 == 0
    assert erasures_file(log).stat().st_mode & 0o077 == 0  # who erased, when, how many
    assert watcher.refresh().drops("carol", before)  # an event from before the erasure
    assert not watcher.refresh().drops("carol", datetime.now(timezone.utc) + timedelta(seconds=1))
    assert watcher.erased_at("bob") is None
    again = cli("erase", "--user", "carol", str(log), data_dir=tmp_path / "data")
    assert (again.returncode, again.stdout.strip()) == (1, "erased 0 events")


def test_an_erasure_waits_for_a_batch_checked_before_it(
    url: str, handlers: list[Any], tmp_path: Path
) -> None:
    """A writer that checked the tombstones before the erasure holds its lock until its batch
    is committed: the erasure's delete comes after, and takes that batch's rows too."""
    handler, eventlog = make_handler(url, handlers, tmp_path / "spool")
    record(eventlog, 0, "carol")
    assert eventlog.flush(10)
    handler.flush()  # the tables exist
    with psycopg.connect(url, autocommit=True) as writer:
        writer.execute("SELECT pg_advisory_lock_shared(hashtext('telemetry_events:erasures'))")
        env = {**os.environ, "JUPYTER_DATA_DIR": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path)}
        erase = subprocess.Popen(
            [JUPYTER, "telemetry", "erase", "--user", "carol", "--db", url, "--spool-dir",
             str(tmp_path / "spool")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        try:
            waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            wait_until(lambda: writer.execute(waiting).fetchone() == (1,), 30)
            # the late batch, checked before the erasure, commits while the erasure waits
            writer.execute(
                "INSERT INTO telemetry_events (received, schema_id, schema_version, "
                "metadata_version, username, data) VALUES (now(), 's', '1', 1, 'carol', '{}')"
            )
            writer.execute(
                "SELECT pg_advisory_unlock_shared(hashtext('telemetry_events:erasures'))"
            )
            out, err = erase.communicate(timeout=60)
        finally:
            erase.kill()
    assert (erase.returncode, out.strip()) == (0, "erased 2 events"), err
    assert query(url, "SELECT count(*) FROM telemetry_events") == [(0,)]


def test_an_erasure_the_store_refuses_erases_nothing_and_says_so(
    pg: PostgresServer, url: str, handlers: list[Any], tmp_path: Path
) -> None:
    handler, eventlog = make_handler(url, handlers, tmp_path / "spool")
    record(eventlog, 0, "carol")
    assert eventlog.flush(10)
    handler.flush()
    reader = "reader_" + url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{reader}" LOGIN'.encode())
        conn.execute(f'GRANT SELECT ON telemetry_events TO "{reader}"'.encode())
    as_reader = f"postgresql://{reader}@127.0.0.1:{pg.port}/{url.rsplit('/', 1)[1]}"
    erased = cli("erase", "--user", "carol", "--db", as_reader, data_dir=tmp_path / "data")
    assert (erased.returncode, erased.stdout) == (1, ""), erased.stderr
    assert "nothing was erased: permission denied" in erased.stderr
    assert numbers(url) == [("carol", 0)]


def test_a_hub_config_gives_the_key_of_its_hub_event_handler(tmp_path: Path) -> None:
    """The hub's own events (HubEventHandler, record_user "hashed") in a log: erased with the
    hub's config."""
    log = tmp_path / "hub-events.log"
    now = datetime.now(timezone.utc)
    alice = hashed_user(SECRET.encode(), "alice")
    log.write_text(line(alice, now, 1) + line(hashed_user(SECRET.encode(), "bob"), now, 2))
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(
        "from jupyter_telemetry_ext.hub.events import HubEventHandler\n"
        "c.EventLogger.handlers = [HubEventHandler(handlers=[], record_user='hashed', "
        f"user_hash_secret={SECRET!r})]\n"
    )
    erased = cli("erase", "--config", str(config), "--user", "alice", str(log),
                 data_dir=tmp_path / "data")  # fmt: skip
    assert (erased.returncode, erased.stdout.strip()) == (0, "erased 1 events"), erased.stderr
    assert alice not in log.read_text()


FILE_CONFIG = """\
import logging
c.TelemetryCollector.record_user = "hashed"
c.TelemetryCollector.user_hash_secret = {secret!r}
c.EventLog.handlers = [logging.FileHandler({log!r})]
"""


def test_a_collectors_config_with_a_file_handler_gives_the_log(tmp_path: Path) -> None:
    """A JSON-lines collector: export and erase find the log in its config, as they find a
    PostgreSQL store there (they said "name one event log file")."""
    log = tmp_path / "events.jsonl"
    now = datetime.now(timezone.utc)
    alice, bob = (hashed_user(SECRET.encode(), name) for name in ("alice", "bob"))
    log.write_text(line(alice, now, 1) + line(bob, now, 2) + line(alice, now, 3))
    config = tmp_path / "telemetry_config.py"
    config.write_text(FILE_CONFIG.format(secret=SECRET, log=str(log)))
    data = tmp_path / "data"
    exported = cli("export", "--config", str(config), "--user", "alice", data_dir=data)
    assert exported.returncode == 0, exported.stderr
    assert [json.loads(row)["n"] for row in exported.stdout.splitlines()] == [1, 3]
    erased = cli("erase", "--config", str(config), "--user", "alice", data_dir=data)
    assert (erased.returncode, erased.stdout.strip()) == (0, "erased 2 events"), erased.stderr
    assert [json.loads(row)["__user__"] for row in log.read_text().splitlines()] == [bob]


@pytest.mark.parametrize("command", ["export", "erase"])
def test_a_configs_log_missing_where_the_command_runs_is_said_not_created(
    tmp_path: Path, command: str
) -> None:
    """A config's relative log name, read where the server does not run: the command says the
    log is missing (it created an empty log there, and answered "no events of this user")."""
    config = tmp_path / "telemetry_config.py"
    config.write_text(FILE_CONFIG.format(secret=SECRET, log="events.jsonl"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = cli(command, "--config", str(config), "--user", "alice", data_dir=tmp_path / "data",
                 cwd=elsewhere)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().endswith(
        f"{elsewhere / 'events.jsonl'}: cannot read: no such file"
    )
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("content", [None, b"  \n"], ids=["missing", "empty"])
def test_an_unusable_key_file_stops_the_command(tmp_path: Path, content: bytes | None) -> None:
    log = tmp_path / "events.log"
    log.write_text(line("carol", datetime.now(timezone.utc), 1))
    key = tmp_path / "key"
    if content is not None:
        key.write_bytes(content)
    for command in ("export", "erase"):
        result = cli(command, "--user", "carol", "--secret-file", str(key), str(log),
                     data_dir=tmp_path / "data")  # fmt: skip
        assert (result.returncode, result.stdout) == (2, ""), result.stderr
        assert "key file" in result.stderr
    assert "carol" in log.read_text()
