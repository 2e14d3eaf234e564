"""`jupyter telemetry sql`, `events --db` and `stats` on a real PostgreSQL store and on logs."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext.core.recorded_user import hashed_user
from tests.pgserver import PostgresServer, server_for_tests
from tests.test_postgres import PASSWORD, SCHEMA_ID, cli, make_handler, make_log, record, rows

psycopg = pytest.importorskip("psycopg", reason="the [postgres] extra (psycopg) is not installed")

from jupyter_telemetry_ext.cli.store import statement_start  # noqa: E402
from jupyter_telemetry_ext.sinks.postgres import PostgresEventHandler  # noqa: E402
from jupyter_telemetry_ext.sinks.store import connect, read_only_query  # noqa: E402

SECRET = b"k" * 64
ALICE, BOB = hashed_user(SECRET, "alice"), hashed_user(SECRET, "bob")
AUDIT = "SELECT operator, events FROM telemetry_events_erasures"
EVENTS = "SELECT data->>'n' FROM telemetry_events ORDER BY 1"
TABLES = "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the module (about half a second to start)."""
    yield from server_for_tests()


@pytest.fixture
def store(pg: PostgresServer, tmp_path: Path) -> Iterator[str]:
    """A store with 3 events of alice and 2 of bob (hashed) in March, one of nobody, an erasure."""
    url = pg.url(pg.create_database(), password=PASSWORD)
    made: list[PostgresEventHandler] = []
    eventlog = make_log(make_handler(url, made, tmp_path))
    for n, (user, day, hour) in enumerate(
        [(ALICE, 1, 9), (BOB, 1, 10), (ALICE, 3, 9), (BOB, 4, 9), (ALICE, 4, 10)]
    ):
        when = datetime(2026, 3, day, hour, tzinfo=timezone.utc)
        record(eventlog, n, f"id{n}", user=user, timestamp_override=when)
    eventlog.record_event(SCHEMA_ID, 1, {"action": "tick", "n": 5})  # now, and nobody's
    assert eventlog.flush(10)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO telemetry_events_erasures (operator, events) VALUES ('op', 4)")
    yield url
    for handler in made:
        handler.close()


def snapshot(url: str) -> list[Any]:
    """Everything an escaped statement could have changed: audit, events, the tables' count."""
    return [rows(url, AUDIT), rows(url, EVENTS), rows(url, TABLES)]


# Attacks from the report (each escaped the old read-only transaction), and their relatives.
ESCAPES = [
    "COMMIT; CREATE TABLE pwned (x int)",
    "ROLLBACK; BEGIN READ WRITE; DELETE FROM telemetry_events_erasures",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; DELETE FROM telemetry_events_erasures",
    "COMMIT; SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; TRUNCATE telemetry_events",
    "SELECT 1; COMMIT; DROP TABLE telemetry_events_erasures",
    "COMMIT",
    "COMMIT AND CHAIN",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    "SET default_transaction_read_only = off",
    "SELECT set_config('transaction_read_only', 'off', false)",
    "DO $$BEGIN COMMIT; DELETE FROM telemetry_events_erasures; END$$",
    "WITH d AS (DELETE FROM telemetry_events_erasures RETURNING 1) SELECT count(*) FROM d",
    "TRUNCATE telemetry_events_erasures",
    "DELETE FROM telemetry_events",
    "CREATE TABLE pwned (x int)",
]


@pytest.mark.e2e
def test_no_statement_escapes_the_read_only_transaction(store: str) -> None:
    """The guarantee itself, without the command's keyword check: PostgreSQL refuses each."""
    before = snapshot(store)
    for attack in ESCAPES:
        with closing(connect(store, "telemetry_events", read_only=True)) as conn:
            with contextlib.suppress(psycopg.Error):  # a lone COMMIT or SET runs, alone
                read_only_query(conn, attack)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # and changes nothing
                read_only_query(conn, "DELETE FROM telemetry_events_erasures")
        assert snapshot(store) == before, attack
    assert before[0] == [("op", 4)]


@pytest.mark.e2e
def test_the_session_is_read_only_and_keeps_the_urls_options(store: str) -> None:
    url = store + "?options=-c%20statement_timeout%3D4321"
    with closing(connect(url, "telemetry_events", read_only=True)) as conn:
        show = "SELECT current_setting('default_transaction_read_only'), "
        assert read_only_query(conn, show + "current_setting('statement_timeout')") == (
            ["current_setting", "current_setting"],
            [("on", "4321ms")],
        )


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        pytest.param(ESCAPES[0], 2, "sql: COMMIT is refused", id="commit-create"),
        pytest.param(ESCAPES[1], 2, "sql: ROLLBACK is refused", id="rollback-begin"),
        pytest.param(ESCAPES[2], 2, "sql: SET is refused", id="set-session"),
        pytest.param(ESCAPES[4], 2, "sql: give one statement: several were given", id="several"),
        pytest.param("/* a /* b */ */ -- c\n ;( Commit", 2, "COMMIT is refused", id="hidden"),
        pytest.param(ESCAPES[10], 2, "sql: DO is refused", id="do"),
        pytest.param("COPY (SELECT 1) TO PROGRAM 'true'", 2, "COPY is refused", id="copy"),
        # PostgreSQL ends a `--` comment at a carriage return too: the COPY is what it runs.
        pytest.param(
            "-- x\rCOPY (SELECT 1) TO PROGRAM 'true' /*\nSELECT 1 */",
            2,
            "COPY is refused",
            id="copy-after-cr",
        ),
        pytest.param(ESCAPES[11], 1, "in a read-only transaction", id="cte"),
        pytest.param(ESCAPES[12], 1, "cannot execute TRUNCATE TABLE in a read-only", id="trunc"),
        pytest.param(" -- nothing\n ; ", 2, "sql: the statement is empty", id="empty"),
        pytest.param("SELEC 1", 1, 'sql: syntax error at or near "SELEC"', id="syntax"),
    ],
)
def test_sql_refusals_are_one_line(store: str, query: str, code: int, message: str) -> None:
    before = snapshot(store)
    result = cli("sql", "--db", store, query)
    assert (result.returncode, result.stdout) == (code, ""), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("query", "start"),
    [
        ("  ;(COMMIT", "COMMIT"),
        ("/* a /* b */ c */ begin", "begin"),
        ("/*/ COMMIT */ SELECT 1", "SELECT 1"),
        ("-- x\n--y\nSET x", "SET x"),
        ("-- x\rCOPY t TO PROGRAM 'p' /*\nSELECT 1 */", "COPY t TO PROGRAM 'p' /*\nSELECT 1 */"),
        ("-- x\r\nSET x", "SET x"),
        ("/* unterminated", ""),
        ("-- only", ""),
    ],
)
def test_statement_start_skips_comments_as_postgresql_does(query: str, start: str) -> None:
    assert statement_start(query) == start


@pytest.mark.e2e
def test_sql_says_how_much_of_a_long_value_is_cut(store: str) -> None:
    query = "SELECT repeat('x', 200) AS long, 'short' AS s"
    table = cli("sql", "--db", store, query)
    assert table.returncode == 0, table.stderr
    cell = table.stdout.splitlines()[2].split("  ")[0]
    kept = cell.split("…")[0]
    assert cell == f"{kept}…(+{200 - len(kept)} chars)"
    assert len(cell) <= 64
    assert "1 values cut to 64 characters" in table.stderr
    full = cli("sql", "--db", store, "--full", query)
    assert full.stdout.splitlines()[2].split() == ["x" * 200, "short"]
    assert "cut" not in full.stderr
    as_json = cli("sql", "--db", store, "--json", query)
    assert json.loads(as_json.stdout) == {"long": "x" * 200, "s": "short"}


@pytest.mark.e2e
def test_sql_as_a_read_only_role(store: str, pg: PostgresServer) -> None:
    """The role the docs advise: reads every table; no server files, no programs, no writes."""
    role = "analyst_" + uuid.uuid4().hex[:8]
    with psycopg.connect(store, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN IN ROLE pg_read_all_data")
    analyst = store.replace("postgres:" + PASSWORD, role)
    read = cli("sql", "--db", analyst, "SELECT count(*) AS n FROM telemetry_events_erasures")
    assert (read.returncode, read.stdout.split(), read.stderr) == (0, ["n", "-", "1"], "")
    superuser = cli("sql", "--db", store, "SELECT 1 AS one")
    assert "connected as a superuser" in superuser.stderr
    files = cli("sql", "--db", analyst, "SELECT pg_read_file('/etc/hostname')")
    assert files.returncode == 1
    assert "permission denied for function pg_read_file" in files.stderr


@pytest.mark.e2e
def test_events_db_shows_the_user_column(store: str) -> None:
    result = cli("events", "--db", store)
    assert result.returncode == 0, result.stderr
    header, _, *lines = result.stdout.splitlines()
    assert header.split()[:3] == ["time", "user", "schema"]
    users = [line.split()[1] for line in lines]
    assert users == [ALICE, BOB, ALICE, BOB, ALICE, SCHEMA_ID]  # the last one has none


@pytest.mark.e2e
def test_stats_db_by_user_schema_and_day(store: str) -> None:
    by_user = cli("stats", "--db", store, "--by", "user", "--json")
    assert by_user.returncode == 0, by_user.stderr
    assert [json.loads(line) for line in by_user.stdout.splitlines()] == [
        {"user": ALICE, "count": 3},
        {"user": BOB, "count": 2},
        {"user": None, "count": 1},
    ]
    assert ALICE in cli("stats", "--db", store, "--by", "user").stdout  # whole, never resolved
    by_schema = cli("stats", "--db", store, "--by", "schema", "--json")
    assert [json.loads(line) for line in by_schema.stdout.splitlines()] == [
        {"schema": SCHEMA_ID, "version": "1", "count": 6}
    ]
    by_day = cli("stats", "--db", store, "--by", "day", "--json")
    counts = [
        (r["period"], r["action"], r["count"]) for r in map(json.loads, by_day.stdout.splitlines())
    ]
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert counts == [
        ("2026-03-01", "open", 2), ("2026-03-03", "open", 1), ("2026-03-04", "open", 2),
        (today, "tick", 1),
    ]  # fmt: skip


def capsule(stamp: str, user: str | None, schema: str = "a/b") -> str:
    """One JSON line of a log, as the server writes it (a user when recorded)."""
    head = {"__timestamp__": stamp, "__schema__": schema, "__schema_version__": 1,
            "__metadata_version__": 1, **({"__user__": user} if user else {})}  # fmt: skip
    return json.dumps({**head, "action": "open"}) + "\n"


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """A log of alice (hashed) x2, bob (by name) and nobody, over two days and two schemas."""
    path = tmp_path / "events.log"
    path.write_text(
        capsule("2026-11-26T09:00:00Z", ALICE)
        + capsule("2026-11-27T09:00:00Z", "bob", "c/d")
        + capsule("2026-11-27T10:00:00Z", ALICE)
        + capsule("2026-11-27T11:00:00Z", None)
    )
    return path


def test_stats_of_a_log_by_user_and_schema(log: Path) -> None:
    by_user = cli("stats", str(log), "--by", "user", "--json")
    assert [json.loads(line) for line in by_user.stdout.splitlines()] == [
        {"user": ALICE, "count": 2},
        {"user": None, "count": 1},
        {"user": "bob", "count": 1},
    ]
    by_schema = cli("stats", str(log), "--by", "schema", "--json")
    assert [json.loads(line) for line in by_schema.stdout.splitlines()] == [
        {"schema": "a/b", "version": "1", "count": 3},
        {"schema": "c/d", "version": "1", "count": 1},
    ]
    table = cli("events", str(log)).stdout.splitlines()
    assert table[0].split()[:2] == ["time", "user"]
    assert table[3].split()[1] == "bob"


def test_stats_refuses_an_unknown_grouping(log: Path) -> None:
    result = cli("stats", str(log), "--by", "week")
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1
    assert "'week'" in result.stderr
    assert "Traceback" not in result.stderr


def described(url: str) -> str:
    """How the commands name the store in a message: host, port and database, no password."""
    return "PostgreSQL " + url.rsplit("@", 1)[1]


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "selection"),
    [
        (["events", "--schema", "nosuch"], "of schema 'nosuch'"),
        (["stats", "--schema", "nosuch", "--json"], "of schema 'nosuch'"),
        (["events", "--since", "2030-01-01", "--json"], "at or after 2030-01-01T00:00:00+00:00"),
    ],
)
def test_events_and_stats_db_exit_1_when_the_filter_matches_nothing(
    store: str, args: list[str], selection: str
) -> None:
    result = cli(*args, "--db", store)
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"jupyter telemetry: {args[0]}: no events {selection} in {described(store)} table "
        "telemetry_events\n"
    )
    assert PASSWORD not in result.stderr


@pytest.mark.e2e
def test_prune_db_exits_1_when_no_event_is_that_old(store: str) -> None:
    before = rows(store, EVENTS)
    result = cli("prune", "--db", store, "--older-than", "2026-01-01")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "jupyter telemetry: prune: no events received before 2026-01-01T00:00:00+00:00 in "
        f"{described(store)} table telemetry_events: nothing was removed\n"
    )
    assert rows(store, EVENTS) == before
    pruned = cli("prune", "--db", store, "--older-than", "2026-03-02")
    assert (pruned.returncode, pruned.stdout.split()[:2]) == (0, ["removed", "2"]), pruned.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("output", [[], ["--json"]], ids=["table", "json"])
def test_sql_exits_1_when_the_statement_returns_no_rows(store: str, output: list[str]) -> None:
    query = "SELECT data->>'n' AS n FROM telemetry_events WHERE schema_id = 'nosuch'"
    result = cli("sql", "--db", store, *output, query)
    assert result.returncode == 1, result.stderr
    assert f"sql: the statement returned no rows from {described(store)}\n" in result.stderr
    count = cli("sql", "--db", store, *output, "SELECT count(*) AS n FROM telemetry_events")
    assert count.returncode == 0, count.stderr


CLIPBOARD = "https://events.jupyter.org/jupyter_telemetry_ext/clipboard"  # shipped: version 1
TEXT_VERSION = {"$id": "test.events/text-version", "version": "1", "type": "object",
                "title": "Text version", "description": "A schema whose version is text.",
                "properties": {}}  # fmt: skip


@pytest.mark.e2e
def test_exports_from_the_store_give_the_version_as_the_schema_writes_it(
    store: str, tmp_path: Path
) -> None:
    """The store keeps `schema_version` as text: `"1"` was printed where the log has 1."""
    from tests.test_postgres import SCHEMA

    with psycopg.connect(store, autocommit=True) as conn:
        for schema_id in (TEXT_VERSION["$id"], CLIPBOARD):
            conn.execute(
                "INSERT INTO telemetry_events (received, schema_id, schema_version,"
                " metadata_version, username, data) VALUES (now(), %s, '1', 1, %s, '{}')",
                [schema_id, ALICE],
            )
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "pg.json").write_text(json.dumps(SCHEMA))
    (schemas / "text.json").write_text(json.dumps(TEXT_VERSION))
    config = tmp_path / "config.py"
    config.write_text(f"c.TelemetryExtension.schema_paths = [{str(schemas)!r}]\n")
    (tmp_path / "secret").write_bytes(SECRET)
    exported = cli("export", "--db", store, "--user", "alice", "--config", str(config),
                   "--secret-file", str(tmp_path / "secret"))  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    versions = {(c["__schema__"], c["__schema_version__"])
                for c in map(json.loads, exported.stdout.splitlines())}  # fmt: skip
    assert versions == {(SCHEMA_ID, 1), (TEXT_VERSION["$id"], "1"), (CLIPBOARD, 1)}
    events = cli("events", "--db", store, "--schema", CLIPBOARD, "--json")
    assert events.returncode == 0, events.stderr
    assert [json.loads(line)["__schema_version__"] for line in events.stdout.splitlines()] == [1]
