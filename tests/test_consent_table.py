"""The collector's consent table on a real PostgreSQL: decisions written by one process are
read by another, a newer layout is refused, and an outage keeps the decisions read last."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jupyter_telemetry_ext.core.consent import Decision
from jupyter_telemetry_ext.core.errors import ConsentError
from jupyter_telemetry_ext.core.recorded_user import hashed_user
from tests.pgserver import PostgresServer, server_for_tests

pytestmark = pytest.mark.e2e  # starts PostgreSQL
psycopg = pytest.importorskip("psycopg", reason="the [postgres] extra (psycopg) is not installed")
from jupyter_telemetry_ext.sinks.consent_table import PgDecisions, consent_table  # noqa: E402

KEY = b"consent-table-tests-key-0123456789"
GRANTED = Decision("s", 1, "granted", "2026-12-07T10:00:00.000Z")
DECLINED = Decision("s", 1, "declined", "2026-12-07T11:00:00.000Z")


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the module."""
    yield from server_for_tests()


def decisions(url: str, keep_names: bool = False) -> PgDecisions:
    """Return the decisions of the store at `url`, users keyed by KEY."""
    return PgDecisions(url, "telemetry_consent", lambda name: hashed_user(KEY, name), keep_names)


def test_a_decision_of_one_process_is_read_by_another(pg: PostgresServer) -> None:
    url = pg.url(pg.create_database())
    one, other = decisions(url), decisions(url)
    one.save("ann", GRANTED)
    assert one.load("ann") == {"s": GRANTED}
    assert other.load("ann") == {}
    assert other.reload() is True
    assert other.load("ann") == {"s": GRANTED}
    assert one.reload() is False  # its own decision: nothing new to read
    other.save("ann", DECLINED)  # the same version: the row is replaced
    assert one.reload() is True
    assert one.load("ann") == {"s": DECLINED}
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT user_key, username, version, decision FROM telemetry_consent")
        assert rows.fetchall() == [(hashed_user(KEY, "ann"), None, 1, "declined")]


def test_names_are_kept_only_when_asked(pg: PostgresServer) -> None:
    url = pg.url(pg.create_database())
    decisions(url, keep_names=True).save("ann", GRANTED)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT username FROM telemetry_consent").fetchall() == [("ann",)]


def test_a_newer_layout_is_refused(pg: PostgresServer) -> None:
    url = pg.url(pg.create_database())
    decisions(url)
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE telemetry_consent_state SET layout = 2")
    with pytest.raises(ConsentError, match=r"has layout version 2; .* up to 1: upgrade it"):
        decisions(url)


def test_an_unreachable_store_keeps_the_decisions_read_last(pg: PostgresServer) -> None:
    url = pg.url(pg.create_database())
    kept = decisions(url)
    kept.save("ann", DECLINED)
    pg.stop()
    try:
        assert kept.reload() is False
        assert kept.load("ann") == {"s": DECLINED}
        with pytest.raises(OSError, match="the decision was not written"):
            kept.save("ann", GRANTED)
        assert kept.load("ann") == {"s": DECLINED}
        with pytest.raises(ConsentError, match="the consent decisions cannot be read"):
            decisions(url)
    finally:
        pg.start()
    other = decisions(url)
    other.save("ann", GRANTED)
    assert kept.reload() is True  # back: the decision taken meanwhile elsewhere is read
    assert kept.load("ann") == {"s": GRANTED}


def test_the_table_is_named_after_the_events_table() -> None:
    assert consent_table("telemetry_events") == "telemetry_consent"
    assert consent_table("course_events") == "course_consent"
    assert consent_table("events2027") == "events2027_consent"
