"""The dashboard's PostgreSQL source on a real PostgreSQL: days over come from the daily
rollup, today from the events table; an erasure takes the user out of both; group scoping."""

# ruff: noqa: S608 - the table's name is a constant

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.dashboard.model import reply
from jupyter_telemetry_ext.dashboard.query import Query
from jupyter_telemetry_ext.dashboard.views import ACTIVE_TIME, CELL, SQL_VIEWS
from jupyter_telemetry_ext.sinks.pgtable import ensure_table
from jupyter_telemetry_ext.sinks.store import erase_user
from jupyter_telemetry_ext.sinks.study_erasure import erase_user_schemas
from tests.pgserver import PostgresServer, server_for_tests

psycopg = pytest.importorskip("psycopg", reason="the [postgres] extra (psycopg) is not installed")
pytestmark = pytest.mark.e2e  # starts PostgreSQL
TABLE = "telemetry_events"
TODAY = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
INSERT = (f"INSERT INTO {TABLE} (received, schema_id, schema_version, metadata_version, "
          "username, data) VALUES (%s, %s, '2', 1, %s, %s)")  # fmt: skip


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the module."""
    yield from server_for_tests()


@pytest.fixture
def url(pg: PostgresServer) -> str:
    """A fresh database with the events table: ann, ben on 3 past days; ann, cat today."""
    url = pg.url(pg.create_database())
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_table(conn, TABLE, partition_by_day=False)
        for days_ago, user in [(3, "ann"), (2, "ann"), (2, "ben"), (1, "ben"), (0, "ann"),
                               (0, "cat")]:  # fmt: skip
            when = TODAY - timedelta(days=days_ago) + timedelta(hours=1)
            data = {"action": "executed", "status": "error" if user == "ben" else "ok"}
            conn.execute(INSERT, [when, CELL, user, json.dumps(data)])
            session = {"action": "summary", "notebook_session": f"s-{user}", "active_s": 700}
            conn.execute(INSERT, [when, ACTIVE_TIME, user, json.dumps(session)])
    return url


def ask(url: str, view: str, **changes: Any) -> list[dict[str, Any]]:
    """Return a view's rows over the last week, from a new source."""
    from jupyter_telemetry_ext.dashboard.pgsource import PostgresSource

    query = Query(TODAY - timedelta(days=7), TODAY + timedelta(hours=12))
    source = PostgresSource(url, TABLE)
    eventlog = EventLog(handlers=[logging.NullHandler()])
    try:
        return reply(view, dataclasses.replace(query, **changes), source, eventlog)["rows"]  # type: ignore[no-any-return]
    finally:
        source.close()
        eventlog.close()


def daily_rows(url: str) -> int:
    """Return how many rows the rollup holds."""
    with psycopg.connect(url) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {TABLE}_daily").fetchone()[0])


def test_days_over_come_from_the_rollup_and_today_from_the_events(url: str) -> None:
    active = ask(url, "active-users")
    assert [r["users"] for r in active] == [1, 2, 1, 2]  # ann; ann ben; ben; ann cat
    assert active[-1]["period"].startswith(TODAY.date().isoformat())
    assert daily_rows(url) == 2 * 4  # the past days' (cell + active-time) x user, not today's
    lab = ask(url, "lab-activity", bucket="month")
    assert sum(r["cell_runs"] for r in lab) == 6
    assert sum(r["cell_errors"] for r in lab) == 2
    assert ask(url, "active-time") == [{"minutes": 10, "sessions": 6}]


def test_a_sessions_active_minutes_are_the_sum_of_its_summaries(url: str) -> None:
    """Each active-time summary counts the seconds since the previous one: a session's active
    time in a day is their sum, on a day of the rollup as today."""
    with psycopg.connect(url, autocommit=True) as conn:
        for days_ago in (2, 0):  # ann's session: a second summary, 700 s more, each day
            when = TODAY - timedelta(days=days_ago) + timedelta(hours=2)
            session = {"action": "summary", "notebook_session": "s-ann", "active_s": 700}
            conn.execute(INSERT, [when, ACTIVE_TIME, "ann", json.dumps(session)])
    # 1400 s (23 minutes) twice, 700 s (11 minutes) for the 4 other sessions
    assert ask(url, "active-time") == [{"minutes": 10, "sessions": 4},
                                       {"minutes": 20, "sessions": 2}]  # fmt: skip


def test_a_prune_takes_its_days_out_of_the_rollup_at_once(url: str) -> None:
    """Events pruned (a retention policy) leave the rollup in the prune's transaction, not at
    its daily rebuild: a day wholly before the time given goes, the day it falls in is counted
    again from the events left."""
    from jupyter_telemetry_ext.sinks.store import prune

    with psycopg.connect(url, autocommit=True) as conn:  # cat, later on the day cut in two
        data = json.dumps({"action": "executed", "status": "ok"})
        conn.execute(INSERT, [TODAY - timedelta(days=2, hours=-3), CELL, "cat", data])
    assert [r["users"] for r in ask(url, "active-users")] == [1, 3, 1, 2]  # the rollup is built
    with psycopg.connect(url) as conn:
        assert prune(conn, TABLE, TODAY - timedelta(days=2, hours=-2)) == 6
    assert [r["users"] for r in ask(url, "active-users")] == [1, 1, 2]  # cat; ben; ann cat
    held = rollup(url)
    assert not [row for rows in held.values() for row in rows if "ann" in row], held
    assert sum(r["cell_runs"] for r in ask(url, "lab-activity", bucket="month")) == 4


def test_an_erased_user_leaves_the_counts(url: str) -> None:
    assert sum(r["users"] for r in ask(url, "active-users")) == 6
    with psycopg.connect(url) as conn:
        assert erase_user(conn, TABLE, ["ben"], "test") == 4
    assert sum(r["users"] for r in ask(url, "active-users")) == 4
    with psycopg.connect(url) as conn:
        held = conn.execute(f"SELECT count(*) FROM {TABLE}_daily WHERE username = 'ben'")
        assert held.fetchone()[0] == 0


def test_an_erasure_takes_the_user_out_of_the_rollup_at_once(url: str) -> None:
    """The rollup holds each user's daily activity (their keyed hash, per schema, action,
    kernel, minutes): the erasure deletes those rows itself, not at the dashboard's next
    question, which may never come."""
    ask(url, "active-users")  # the rollup is built
    with_ben = ("_daily", "_daily_users", "_daily_active", "_daily_sessions")
    count = "SELECT count(*) FROM {}{} WHERE username = 'ben'"
    with psycopg.connect(url) as conn:
        held = [conn.execute(count.format(TABLE, t)).fetchone()[0] for t in with_ben]
        assert all(held), held
        assert erase_user(conn, TABLE, ["ben"], "test") == 4
        left = [conn.execute(count.format(TABLE, t)).fetchone()[0] for t in with_ben]
    assert left == [0, 0, 0, 0]
    assert sum(r["users"] for r in ask(url, "active-users")) == 4


def rollup(url: str) -> dict[str, list[str]]:
    """Return the rows of each of the rollup's tables, as text, in order."""
    tables = ("_daily", "_daily_totals", "_daily_users", "_daily_active", "_daily_sessions")
    with psycopg.connect(url) as conn:
        return {t: [r[0] for r in conn.execute(f"SELECT r::text FROM {TABLE}{t} r ORDER BY 1")]
                for t in tables}  # fmt: skip


@pytest.mark.parametrize(
    ("user", "schemas"),
    [("ben", [CELL]), ("ben", [ACTIVE_TIME]), (None, [CELL]), ("ben", None)],
    ids=["his-cells", "his-sessions", "everyones-cells", "all-his"],
)
def test_a_study_erasure_leaves_the_rollup_as_a_rebuild_would(
    url: str, user: str | None, schemas: list[str] | None
) -> None:
    """A withdrawal's erasure (a user's events of some schemas, or anyone's) and `erase --user`
    take their rows out of the rollup and count its totals again: the rollup is then what a
    rebuild from the events table makes, and holds none of the erased rows."""
    ask(url, "active-users")  # the rollup is built
    with psycopg.connect(url) as conn:
        if schemas is None:
            erase_user(conn, TABLE, ["ben"], "test")
        else:
            erase_user_schemas(url, TABLE, user, schemas, "withdrawal from study s")
    erased = rollup(url)
    ask(url, "active-users")  # a new source: the erasure is counted, the rollup rebuilt
    assert rollup(url) == erased
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT username, schema_id FROM {TABLE}_daily").fetchall()
    assert not [r for r in rows if user in (None, r[0]) and schemas in (None, [r[1]])], rows


def test_a_group_scope_counts_only_its_users(url: str) -> None:
    assert [r["users"] for r in ask(url, "active-users", users=("ben", "cat"))] == [1, 1, 1]
    assert ask(url, "active-users", users=()) == []
    events = ask(url, "events", schemas=(CELL,), users=("ann",))
    assert sum(r["events"] for r in events) == 3


def test_health_names_the_newest_event_today_or_of_the_last_day_counted(url: str) -> None:
    def newest() -> str:
        rows = ask(url, "health")
        return next(r["value"] for r in rows if r["measure"] == "last event received")

    assert newest().startswith((TODAY + timedelta(hours=1)).isoformat()[:19])
    with psycopg.connect(url) as conn:
        conn.execute(f"DELETE FROM {TABLE} WHERE received >= %s", [TODAY])
    yesterday = TODAY - timedelta(days=1) + timedelta(hours=1)
    assert newest().startswith(yesterday.isoformat()[:19])


@pytest.mark.parametrize("bucket", ["day", "month"])
def test_every_count_is_a_whole_number_in_json(url: str, bucket: str) -> None:
    """PostgreSQL sums bigints as numeric: a count must still reach JSON (and the page's CSV) as
    3, as the file store answers it, never 3.0."""
    for view in SQL_VIEWS:
        for row in ask(url, view, bucket=bucket):
            counts = {k: v for k, v in row.items() if k not in ("period", "schema", "action",
                                                              "kernel")}  # fmt: skip
            assert all(type(v) is int for v in counts.values()), (view, row)


def test_health_says_the_store_cannot_be_read_when_it_is_down(url: str) -> None:
    """The view an admin opens in an outage answers, saying the store is unreadable; the views
    of counts are refused (503)."""
    from jupyter_telemetry_ext.core.errors import StoreError
    from jupyter_telemetry_ext.dashboard.pgsource import PostgresSource
    from tests.servers import free_port

    down = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere?connect_timeout=2"
    source = PostgresSource(down, TABLE)
    eventlog = EventLog(handlers=[logging.NullHandler()])
    query = Query(TODAY - timedelta(days=7), TODAY + timedelta(hours=12))
    try:
        rows = reply("health", query, source, eventlog)["rows"]
        with pytest.raises(StoreError):
            reply("events", query, source, eventlog)
    finally:
        source.close()
        eventlog.close()
    health = {(r["part"], r["measure"]): r["value"] for r in rows}
    assert health[("store", "readable")] is False
    assert health[("store", "last event received")] is None
    assert health[("process", "events waiting")] == 0
    up = {(r["part"], r["measure"]): r["value"] for r in ask(url, "health")}
    assert up[("store", "readable")] is True
