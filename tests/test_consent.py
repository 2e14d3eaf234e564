"""Consent to studies, on a real Jupyter server: events a study covers are recorded only as
the server's user decided, decisions are kept in a 0600 file and recorded as events, and bad
studies or bad decisions are refused with the field named."""

from __future__ import annotations

import http.client
import json
import logging
import stat
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext.core.consent import Consent, JsonDecisions
from jupyter_telemetry_ext.core.errors import StudyError
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.outcomes import NO_CONSENT
from jupyter_telemetry_ext.core.schema import EventSchema
from jupyter_telemetry_ext.core.studies import CONSENT_SCHEMA_ID, parse_studies
from jupyter_telemetry_ext.sinks.study_erasure import erase_user_schemas_log
from tests.conftest import FRONTEND_ID, frontend_schema
from tests.hubserver import doc_block
from tests.servers import TOKEN, Server, free_port, jupyter_environment, read_events, write_config

OPT_OUT_ID, NOTICE_ID, PAIR_ID, FREE_ID = (f"test.consent/{n}" for n in ("b", "c", "d", "e"))
STUDIES: dict[str, Any] = {
    "intro": {"title": "Intro", "text": "We record *clicks*.", "version": 1, "mode": "opt-in",
              "schemas": [FRONTEND_ID]},
    "habits": {"title": "Habits", "text": "Opt out any time.", "version": 1, "mode": "opt-out",
               "schemas": [OPT_OUT_ID]},
    "notice": {"title": "Notice", "text": "Recorded by law.", "version": 1, "mode": "notice",
               "schemas": [NOTICE_ID]},
    "pair-in": {"title": "A", "text": "a", "version": 1, "mode": "opt-in", "schemas": [PAIR_ID]},
    "pair-out": {"title": "B", "text": "b", "version": 1, "mode": "opt-out",
                 "schemas": [PAIR_ID]},
}  # fmt: skip
CONFIG = """
import logging
c.ServerApp.jpserver_extensions = {{"jupyter_telemetry_ext": True}}
c.TelemetryExtension.schema_paths = [{schemas!r}]
c.TelemetryExtension.rate_limit = 0
c.TelemetryExtension.reply_after_write = True  # a reply means written: the file is exact
c.TelemetryExtension.record_user = "username"
c.EventLog.handlers = [logging.FileHandler({events!r})]
c.EventLog.allowed_schemas = {{s: {{"allowed_categories": ["user-identifier"]}} for s in {ids!r}}}
c.EventLog.studies = {studies!r}
"""
IDS = [FRONTEND_ID, OPT_OUT_ID, NOTICE_ID, PAIR_ID, FREE_ID]
USER = "consenting-user"
CELL_ID = "https://events.jupyter.org/jupyter_telemetry_ext/cell"


def configure(tmp: Path, studies: dict[str, Any]) -> None:
    """Write the server's config with `studies`, and the test schemas (once)."""
    if not (tmp / "schemas").exists():
        write_config(tmp, "")
        for schema_id in IDS[1:]:
            name = schema_id.rsplit("/", 1)[1] + ".json"
            (tmp / "schemas" / name).write_text(json.dumps(frontend_schema(schema_id)), "utf-8")
    config = CONFIG.format(
        schemas=str(tmp / "schemas"), events=str(tmp / "events.jsonl"), ids=IDS, studies=studies
    )
    (tmp / "config" / "jupyter_server_config.py").write_text(config, "utf-8")


def start(tmp: Path, studies: dict[str, Any] = STUDIES) -> Server:
    """Start a server for USER (as a hub's single-user server is) with `studies`."""
    configure(tmp, studies)
    return Server(tmp, env={"JUPYTERHUB_USER": USER})


def post(server: Server, schema_id: str) -> str:
    """Post one event of `schema_id`; return its status."""
    status, reply = server.request(
        "POST", "/api/telemetry/events",
        {"schema_id": schema_id, "version": 1, "data": {"action": "open"}},
    )  # fmt: skip
    assert status == 200, reply
    return str(reply["status"])


def decide(server: Server, study: str, decision: str, version: int = 1) -> tuple[int, Any]:
    """PUT a decision; return the status and the reply."""
    body = {"decision": decision, "version": version}
    return server.request("PUT", f"/api/telemetry/consent/{study}", body)


def stored(tmp: Path, schema_id: str) -> list[dict[str, Any]]:
    """Return the events of `schema_id` the server's file handler wrote."""
    path = tmp / "events.jsonl"
    return [e for e in read_events(path) if e["__schema__"] == schema_id] if path.exists() else []


def configure_postgres(tmp: Path, db: str) -> None:
    """Write the server's config with the study "intro" erased on withdrawal, recording in
    PostgreSQL at `db` instead of the file."""
    studies = {**STUDIES, "intro": {**STUDIES["intro"], "erase_on_withdrawal": True}}
    configure(tmp, studies)
    config = tmp / "config" / "jupyter_server_config.py"
    handler = f"PostgresEventHandler({db!r}, spool_dir={str(tmp / 'spool')!r})"
    file_handler = f"logging.FileHandler({str(tmp / 'events.jsonl')!r})"
    text = config.read_text().replace(file_handler, handler)
    config.write_text("from jupyter_telemetry_ext import PostgresEventHandler\n" + text)


@pytest.fixture
def server(tmp_path: Path) -> Any:
    """A server with every study of STUDIES, stopped after the test."""
    with start(tmp_path) as started:
        yield started


@pytest.mark.e2e
def test_opt_in_records_nothing_until_granted_and_stops_when_declined(
    server: Server, tmp_path: Path
) -> None:
    assert post(server, FRONTEND_ID) == NO_CONSENT
    assert stored(tmp_path, FRONTEND_ID) == []
    status, reply = decide(server, "intro", "granted")
    assert status == 200, reply
    assert reply["decision"] == "granted"
    assert reply["recording"] is True
    assert post(server, FRONTEND_ID) == "recorded"
    assert len(stored(tmp_path, FRONTEND_ID)) == 1
    assert decide(server, "intro", "declined")[0] == 200
    assert post(server, FRONTEND_ID) == NO_CONSENT
    assert len(stored(tmp_path, FRONTEND_ID)) == 1
    assert post(server, FREE_ID) == "recorded"  # no study covers it


@pytest.mark.e2e
def test_every_decision_is_recorded_as_a_consent_event(server: Server, tmp_path: Path) -> None:
    decide(server, "intro", "granted")
    decide(server, "intro", "declined")
    proofs = stored(tmp_path, CONSENT_SCHEMA_ID)
    assert [(p["study"], p["decision"], p["previous"]) for p in proofs] == [
        ("intro", "granted", None),
        ("intro", "declined", "granted"),
    ]
    assert all(p["__user__"] == USER and p["study_version"] == 1 for p in proofs)


@pytest.mark.e2e
def test_the_listing_and_the_metrics_say_what_is_held_back(server: Server) -> None:
    _, listing = server.request("GET", "/api/telemetry/schemas")
    marks = {s["id"]: s.get("consent") for s in listing["schemas"]}
    assert marks[FRONTEND_ID] == "needed"
    assert marks[PAIR_ID] == "needed"
    assert marks[OPT_OUT_ID] is None
    assert marks[NOTICE_ID] is None
    assert marks[FREE_ID] is None
    studies = {s["id"]: s.get("studies") for s in listing["schemas"]}
    assert studies[PAIR_ID] == ["pair-in", "pair-out"]
    assert studies[NOTICE_ID] == ["notice"]  # named, though it keeps nothing out
    assert studies[FREE_ID] is None
    decide(server, "habits", "declined")
    _, listing = server.request("GET", "/api/telemetry/schemas")
    assert {s["id"]: s.get("consent") for s in listing["schemas"]}[OPT_OUT_ID] == "declined"
    post(server, FRONTEND_ID)
    status, batch = server.request("POST", "/api/telemetry/events", {"events": [
        {"schema_id": FRONTEND_ID, "version": 1, "data": {"action": "open"}},
        {"schema_id": FREE_ID, "version": 1, "data": {"action": "open"}},
    ]})  # fmt: skip
    assert status == 200
    assert (batch["no_consent"], batch["recorded"]) == (1, 1)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"token {TOKEN}"})
        metrics = connection.getresponse().read().decode()
    finally:
        connection.close()
    rows = [row for row in metrics.splitlines() if 'outcome="no_consent"' in row]
    assert any(FRONTEND_ID in row and row.endswith(" 2.0") for row in rows), rows


@pytest.mark.e2e
def test_get_consent_lists_the_studies_with_the_users_decisions(server: Server) -> None:
    decide(server, "notice", "shown")
    status, model = server.request("GET", "/api/telemetry/consent")
    assert status == 200
    studies = {s["study"]: s for s in model["studies"]}
    assert list(studies) == list(STUDIES)
    assert studies["intro"]["decision"] is None
    assert studies["intro"]["recording"] is False
    assert studies["intro"]["text"] == "We record *clicks*."
    assert studies["notice"]["decision"] == "shown"
    assert studies["notice"]["decided_at"]
    assert studies["habits"]["recording"] is True


@pytest.mark.e2e
def test_opt_out_records_until_declined_and_notice_always(server: Server) -> None:
    assert post(server, OPT_OUT_ID) == "recorded"
    assert post(server, NOTICE_ID) == "recorded"
    decide(server, "habits", "declined")
    assert post(server, OPT_OUT_ID) == NO_CONSENT
    decide(server, "habits", "granted")
    assert post(server, OPT_OUT_ID) == "recorded"
    assert decide(server, "notice", "declined")[0] == 400  # a notice can only be shown


@pytest.mark.e2e
def test_an_event_covered_by_two_studies_needs_both(server: Server) -> None:
    assert post(server, PAIR_ID) == NO_CONSENT
    decide(server, "pair-in", "granted")
    assert post(server, PAIR_ID) == "recorded"
    decide(server, "pair-out", "declined")
    assert post(server, PAIR_ID) == NO_CONSENT


@pytest.mark.e2e
@pytest.mark.parametrize(
    "case",
    [
        (
            "intro",
            {"decision": "yes", "version": 1},
            400,
            "decision: must be 'granted' or 'declined' for an opt-in study",
        ),
        ("habits", {"decision": "shown", "version": 1}, 400, "for an opt-out study"),
        ("notice", {"decision": "granted", "version": 1}, 400, "for a notice study"),
        ("intro", {"decision": "granted", "version": 0}, 400, "version: must be an integer >= 1"),
        ("intro", {"decision": "granted", "version": -3}, 400, "version: must be an integer >= 1"),
        ("intro", {"decision": "granted", "version": True}, 400, "version: must be an integer"),
        ("intro", {"decision": "granted"}, 400, "version"),
        ("intro", {"decision": "granted", "version": "1"}, 400, "version"),
        ("intro", {"decision": "granted", "version": 1, "user": "bob"}, 400, "unknown field"),
        ("intro", ["granted"], 400, "body"),
        ("intro", {"decision": "granted", "version": 2}, 409, "version"),
        ("nosuch", {"decision": "granted", "version": 1}, 404, "study"),
    ],
)
def test_bad_decisions_are_refused_with_the_field_named(
    server: Server, tmp_path: Path, case: tuple[str, Any, int, str]
) -> None:
    study, body, code, field = case
    status, reply = server.request("PUT", f"/api/telemetry/consent/{study}", body)
    assert status == code, reply
    assert field in reply["message"]
    assert post(server, FRONTEND_ID) == NO_CONSENT
    assert stored(tmp_path, CONSENT_SCHEMA_ID) == []


@pytest.mark.e2e
def test_a_new_version_stops_opt_in_until_decided_again(tmp_path: Path) -> None:
    with start(tmp_path) as server:
        decide(server, "intro", "granted")
        assert post(server, FRONTEND_ID) == "recorded"
    decisions = tmp_path / "data" / "jupyter_telemetry_ext_consent.json"
    assert stat.S_IMODE(decisions.stat().st_mode) == 0o600
    assert json.loads(decisions.read_text())[USER]["intro"]["decision"] == "granted"
    with start(tmp_path) as server:  # the decision outlives a restart
        assert post(server, FRONTEND_ID) == "recorded"
    studies = {**STUDIES, "intro": {**STUDIES["intro"], "version": 2}}
    with start(tmp_path, studies) as server:
        assert post(server, FRONTEND_ID) == NO_CONSENT
        assert decide(server, "intro", "granted", 1)[0] == 409  # stale
        assert decide(server, "intro", "granted", 2)[0] == 200
        assert post(server, FRONTEND_ID) == "recorded"
    assert len(stored(tmp_path, FRONTEND_ID)) == 3


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("study", "error"),
    [
        ({"title": "T", "text": "x", "version": 0, "mode": "opt-in", "schemas": ["a"]},
         "EventLog.studies['s'].version: must be an integer >= 1"),
        ({"title": "T", "text": "x", "version": 1, "mode": "maybe", "schemas": ["a"]},
         "EventLog.studies['s'].mode: must be one of opt-in, opt-out, notice"),
        ({"title": "T", "text": "x", "version": 1, "mode": "opt-in"},
         "EventLog.studies['s']: schemas or categories must name what the study covers"),
        ({"title": "T", "text_file": "/nonexistent.md", "version": 1, "mode": "notice",
          "schemas": ["a"]}, "EventLog.studies['s'].text_file: /nonexistent.md cannot be read"),
        ({"title": "T", "text": "x", "version": 1, "mode": "opt-in", "schemas": ["a"],
          "erase_on_withdrawal": "yes"}, "EventLog.studies['s'].erase_on_withdrawal"),
        ({"title": "T", "text": "x", "version": 1, "mode": "opt-in",
          "schemas": ["https://events.jupyter.org/jupyter_telemetry_ext/execution"]},
         ("EventLog.studies['s'].schemas: https://events.jupyter.org/jupyter_telemetry_ext/"
          "execution is the audit's record")),
    ],
)  # fmt: skip
def test_a_bad_study_stops_the_server(tmp_path: Path, study: Any, error: str) -> None:
    configure(tmp_path, {"s": study})
    command = [sys.executable, "-m", "jupyter_server", "--ip=127.0.0.1", f"--port={free_port()}",
               "--no-browser", "--allow-root", f"--IdentityProvider.token={TOKEN}"]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=jupyter_environment(tmp_path),
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode != 0, result.stderr
    assert error in result.stderr


@pytest.mark.e2e
def test_a_single_server_erases_a_withdrawn_study_from_its_own_file(tmp_path: Path) -> None:
    studies = {**STUDIES, "intro": {**STUDIES["intro"], "erase_on_withdrawal": True}}
    with start(tmp_path, studies) as server:
        assert decide(server, "intro", "granted")[0] == 200
        for schema_id in (FRONTEND_ID, FRONTEND_ID, FREE_ID):
            assert post(server, schema_id) == "recorded"
        status, reply = decide(server, "intro", "declined")
        assert status == 200, reply
        assert reply["erased"] == 2
        assert stored(tmp_path, FRONTEND_ID) == []
        assert len(stored(tmp_path, FREE_ID)) == 1
        proofs = [e["decision"] for e in stored(tmp_path, CONSENT_SCHEMA_ID)]
        assert proofs == ["granted", "declined"]  # the proof stays
        assert post(server, FREE_ID) == "recorded"  # written to the new file
        assert len(stored(tmp_path, FREE_ID)) == 2
    erasures = (tmp_path / "events.jsonl-erasures.jsonl").read_text().splitlines()
    assert [(json.loads(e)["operator"], json.loads(e)["events"]) for e in erasures] == [
        ("withdrawal from study intro", 2)]  # fmt: skip


@pytest.mark.e2e
def test_a_single_server_with_postgresql_erases_there_and_its_decisions_are_counted(
    tmp_path: Path,
) -> None:
    """A single server keeps its decisions in its file; `consent list` counts them from the
    consent events of the store, and a withdrawal erases the study's events there."""
    pytest.importorskip("psycopg", reason="the [postgres] extra")
    from tests.pgserver import server_for_tests

    for pg in server_for_tests():
        db = pg.url(pg.create_database())
        configure_postgres(tmp_path, db)
        with Server(tmp_path, env={"JUPYTERHUB_USER": USER}) as server:
            assert decide(server, "intro", "granted")[0] == 200
            assert post(server, FRONTEND_ID) == "recorded"
            assert post(server, FREE_ID) == "recorded"
            status, reply = decide(server, "intro", "declined")
            assert (status, reply["erased"]) == (200, 1)
        command = [sys.executable, "-m", "jupyter_telemetry_ext.cli.main", "consent", "list",
                   "--db", db, "--json"]  # fmt: skip
        listed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert listed.returncode == 0, listed.stderr
        assert [json.loads(line) for line in listed.stdout.splitlines()] == [
            {"study": "intro", "version": 1, "decision": "declined", "users": 1}]  # fmt: skip
        import psycopg

        with psycopg.connect(db) as conn:
            left = conn.execute("SELECT schema_id FROM telemetry_events ORDER BY received")
            assert [r[0] for r in left] == [CONSENT_SCHEMA_ID, FREE_ID, CONSENT_SCHEMA_ID]
            erasures = conn.execute("SELECT operator, events FROM telemetry_events_erasures")
            assert erasures.fetchall() == [("withdrawal from study intro", 1)]


@pytest.mark.e2e
def test_a_withdrawal_takes_the_studys_events_out_of_the_dashboards_daily_counts(
    tmp_path: Path,
) -> None:
    """The dashboard counts the days over from its daily rollup of the store: a withdrawal
    takes the study's events out of it at once, not at the dashboard's next rebuild."""
    pytest.importorskip("psycopg", reason="the [postgres] extra")
    import psycopg

    from jupyter_telemetry_ext.sinks.pgtable import ensure_table
    from tests.pgserver import server_for_tests

    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    insert = ("INSERT INTO telemetry_events (received, schema_id, schema_version, "
              "metadata_version, username, data) VALUES (%s, %s, '1', 1, %s, '{}')")  # fmt: skip
    for pg in server_for_tests():
        db = pg.url(pg.create_database())
        with psycopg.connect(db, autocommit=True) as conn:
            ensure_table(conn, "telemetry_events", partition_by_day=False)
            for days_ago, schema_id in [(2, FRONTEND_ID), (1, FRONTEND_ID), (1, FREE_ID)]:
                when = today - timedelta(days=days_ago, hours=-1)
                conn.execute(insert, [when, schema_id, USER])
        configure_postgres(tmp_path, db)
        with Server(tmp_path, env={"JUPYTERHUB_USER": USER}) as server:
            assert dashboard_counts(server) == ({FRONTEND_ID: 2, FREE_ID: 1}, [1, 1])
            with psycopg.connect(db) as conn:  # what the dashboard read: its rollup
                rolled = conn.execute("SELECT sum(events) FROM telemetry_events_daily_totals "
                                      "WHERE schema_id = %s", [FRONTEND_ID])  # fmt: skip
                assert rolled.fetchone() == (2,)
            assert decide(server, "intro", "granted")[0] == 200
            status, reply = decide(server, "intro", "declined")
            assert (status, reply["erased"]) == (200, 2)
            assert dashboard_counts(server) == ({FREE_ID: 1}, [1])
        with psycopg.connect(db) as conn:
            left = conn.execute("SELECT schema_id, username FROM telemetry_events_daily_users")
            assert left.fetchall() == [(FREE_ID, USER)]


@pytest.mark.e2e
def test_a_withdrawal_reaches_the_file_dashboard_at_its_next_request(tmp_path: Path) -> None:
    """The dashboard of a JSON-lines log keeps no counts of its own: it loads the files again
    when one changed, and the erasure replaces the file, so the next request counts without
    the withdrawn study's events."""
    pytest.importorskip("duckdb", reason="the [analysis] extra")
    studies = {**STUDIES, "intro": {**STUDIES["intro"], "erase_on_withdrawal": True}}
    with start(tmp_path, studies) as server:
        assert decide(server, "intro", "granted")[0] == 200
        for schema_id in (FRONTEND_ID, FRONTEND_ID, FREE_ID):
            assert post(server, schema_id) == "recorded"
        assert dashboard_counts(server)[0] == {FRONTEND_ID: 2, FREE_ID: 1}
        status, reply = decide(server, "intro", "declined")
        assert (status, reply["erased"]) == (200, 2)
        assert dashboard_counts(server)[0] == {FREE_ID: 1}


def dashboard_counts(server: Server) -> tuple[dict[str, int], list[int]]:
    """Return the dashboard's events per schema of FRONTEND_ID and FREE_ID, and its active
    users of each day before today that has any (over the last week, through its API)."""
    today = datetime.now(timezone.utc).date().isoformat()
    since = (datetime.now(timezone.utc) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, events = server.request("GET", f"/api/telemetry/dashboard/events?since={since}")
    assert status == 200, events
    counted: dict[str, int] = {}
    for row in events["rows"]:
        if row["schema"] in (FRONTEND_ID, FREE_ID):
            counted[row["schema"]] = counted.get(row["schema"], 0) + row["events"]
    status, active = server.request("GET", f"/api/telemetry/dashboard/active-users?since={since}")
    assert status == 200, active
    return counted, [r["users"] for r in active["rows"] if not r["period"].startswith(today)]


def test_erasing_from_a_log_being_written_loses_no_other_event(tmp_path: Path) -> None:
    """Threads write through the handler while a study's events are erased from its file:
    every other event is there afterwards, each once, and the file was replaced whole."""
    path = tmp_path / "events.jsonl"
    handler = logging.FileHandler(path)
    path.chmod(0o640)
    logger = logging.getLogger(f"test-erasure-{tmp_path.name}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    def write(user: str, count: int) -> None:
        for n in range(count):
            capsule = {"__timestamp__": "2026-12-07T10:00:00Z", "__schema_version__": 1,
                       "__metadata_version__": 2, "__schema__": FRONTEND_ID if n % 2 else FREE_ID,
                       "__user__": user, "__client_id__": f"{user}-{n}"}  # fmt: skip
            logger.info(json.dumps(capsule))

    write("ann", 200)
    writers = [threading.Thread(target=write, args=(f"w{i}", 2000)) for i in range(3)]
    for thread in writers:
        thread.start()
    erased = erase_user_schemas_log(handler, "ann", [FRONTEND_ID], "withdrawal from study s")
    for thread in writers:
        thread.join()
    handler.close()
    events = read_events(path)
    assert erased == 100
    assert sorted(e["__client_id__"] for e in events if e["__user__"] == "ann") == sorted(
        f"ann-{n}" for n in range(0, 200, 2))  # fmt: skip
    written = [e["__client_id__"] for e in events if e["__user__"] != "ann"]
    assert len(written) == len(set(written)) == 6000
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert not list(tmp_path.glob("*.tmp"))


def test_decisions_are_cached_and_dropped_at_once_on_a_change(tmp_path: Path) -> None:
    studies = parse_studies({"s": STUDIES["intro"]})
    schema = EventSchema(frontend_schema())
    consent = Consent(studies, JsonDecisions(tmp_path / "c.json"))
    assert consent.withheld(schema, "ann") == {"s": "needed"}
    consent.decide("ann", "s", {"decision": "granted", "version": 1})
    assert consent.allows(schema, "ann")
    assert not consent.allows(schema, "bob")
    assert not consent.allows(schema, None)  # an unknown user: opt-in fails closed
    again = Consent(studies, JsonDecisions(tmp_path / "c.json"))
    assert again.allows(schema, "ann")


def test_a_study_by_category_covers_every_schema_with_it() -> None:
    studies = parse_studies({"s": {"title": "T", "text": "x", "version": 1, "mode": "opt-in",
                                   "categories": ["user-identifiable-information"]}})  # fmt: skip
    assert studies["s"].covers(EventSchema(frontend_schema()))  # its `path` has it
    with pytest.raises(StudyError, match=r"\['s'\].groups: must be a list of names"):
        parse_studies({"s": {**STUDIES["intro"], "groups": "staff"}})


def test_the_library_drops_events_without_consent_before_any_tap() -> None:
    eventlog = EventLog(allowed_schemas=[FRONTEND_ID], studies={"s": STUDIES["intro"]})
    eventlog.register_schema(frontend_schema())
    tapped: list[Any] = []
    eventlog.add_tap(lambda *args: tapped.append(args))
    assert eventlog.record_event(FRONTEND_ID, 1, {"action": "open"}) is None
    assert tapped == []
    assert eventlog.outcomes()[(FRONTEND_ID, NO_CONSENT)] == 1


@pytest.mark.e2e
def test_a_client_cannot_post_a_proof_of_consent(server: Server, tmp_path: Path) -> None:
    event = {"study": "intro", "study_version": 1, "decision": "granted", "mode": "opt-in"}
    body = {"schema_id": CONSENT_SCHEMA_ID, "version": 1, "data": event}
    status, reply = server.request("POST", "/api/telemetry/events", body)
    assert status == 403
    assert "PUT api/telemetry/consent" in reply["message"]
    assert stored(tmp_path, CONSENT_SCHEMA_ID) == []


@pytest.mark.e2e
def test_the_docs_opt_in_example_records_cells_only_once_granted(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    config = doc_block("consent.md", "consent_config",
                       {'"/srv/telemetry/events.jsonl"': repr(str(events))})  # fmt: skip
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "jupyter_server_config.py").write_text(config, "utf-8")
    cell = {"schema_id": CELL_ID, "version": 1,
            "data": {"action": "executed", "status": "ok", "source": "secret = 42"}}  # fmt: skip
    with Server(tmp_path, env={"JUPYTERHUB_USER": USER}) as server:
        assert server.request("POST", "/api/telemetry/events", cell)[1]["status"] == NO_CONSENT
        _, listing = server.request("GET", "/api/telemetry/consent")
        [study] = listing["studies"]
        assert (study["study"], study["mode"], study["recording"]) == (
            "intro-2027",
            "opt-in",
            False,
        )
        assert decide(server, "intro-2027", "granted")[0] == 200
        assert server.request("POST", "/api/telemetry/events", cell)[1]["status"] == "recorded"
    written = read_events(events)
    assert [e["__schema__"] for e in written] == [CONSENT_SCHEMA_ID, CELL_ID]
    assert written[1].get("source") is None  # the allow-list keeps no code
    assert written[1]["__user__"] == written[0]["__user__"] is not None  # erasable by user


@pytest.mark.e2e
@pytest.mark.parametrize("body", [b"\xff\xfe{", b"{not json", b" " * 2000])
def test_a_body_that_is_not_json_is_a_400(server: Server, body: bytes) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        headers = {"Authorization": f"token {TOKEN}", "Content-Type": "application/json"}
        connection.request("PUT", "/api/telemetry/consent/intro", body, headers)
        response = connection.getresponse()
        reply = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 400
    assert reply["message"].startswith("body: ")


@pytest.mark.e2e
def test_a_server_without_studies_has_none_and_knows_none(tmp_path: Path) -> None:
    with start(tmp_path, {}) as server:
        assert server.request("GET", "/api/telemetry/consent") == (200, {"studies": []})
        assert decide(server, "intro", "granted")[0] == 404
        assert post(server, FRONTEND_ID) == "recorded"


@pytest.mark.e2e
def test_a_forwarding_server_with_studies_of_its_own_stops(tmp_path: Path) -> None:
    """Its consent routes go to the collector: local studies would hold events back forever."""
    configure(tmp_path, STUDIES)
    command = [sys.executable, "-m", "jupyter_server", "--ip=127.0.0.1", f"--port={free_port()}",
               "--no-browser", "--allow-root", f"--IdentityProvider.token={TOKEN}",
               f"--TelemetryExtension.collector_url=http://127.0.0.1:{free_port()}/"]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=jupyter_environment(tmp_path),
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode != 0, result.stderr
    assert "configure the studies in the collector's config" in result.stderr
