"""Consent on a real JupyterHub: the collector keeps each hub user's decisions, applies a study
only to its groups, and checks every post as the token owner's."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext.core.recorded_user import hashed_user
from jupyter_telemetry_ext.core.studies import CONSENT_SCHEMA_ID
from tests.conftest import frontend_schema
from tests.hubserver import EXTERNAL_SERVICE, SERVICE, ExternalCollector, Hub, running_hub
from tests.servers import read_events, wait_until

pytest.importorskip("jupyterhub", reason="the [hub] extra (jupyterhub) is not installed")
pytestmark = pytest.mark.e2e  # starts JupyterHub

NOTEBOOK = "https://events.jupyter.org/jupyter_telemetry_ext/notebook"
BASE = f"services/{SERVICE}/api/telemetry/"
CONFIG = """\
import logging
c.TelemetryCollector.record_user = "username"
c.TelemetryCollector.consent_file = {decisions!r}
c.EventLog.handlers = [logging.FileHandler({sink!r})]
c.EventLog.allowed_schemas = {{{notebook!r}: {{"allowed_categories": ["user-identifier"]}}}}
c.EventLog.studies = {{"course": {{
    "title": "Course study", "text": "We record notebook openings.", "version": 1,
    "mode": "opt-in", "schemas": [{notebook!r}], "groups": ["study-group"],
}}}}
"""


@dataclass
class Deployment:
    """The hub, the collector's sink and decisions file, alice's and bob's tokens."""

    hub: Hub
    sink: Path
    decisions: Path
    alice: str
    bob: str

    def post(self, token: str, client_id: str) -> str:
        """Post one notebook event; return its status."""
        body = {"schema_id": NOTEBOOK, "version": 1, "data": {"action": "opened"},
                "id": client_id}  # fmt: skip
        status, reply = self.hub.request("POST", BASE + "events", body, token=token)
        assert status == 200, reply
        return str(reply["status"])

    def decide(self, token: str, decision: str, version: int = 1, **extra: Any) -> tuple[int, Any]:
        """PUT a decision on the course study."""
        body = {"decision": decision, "version": version, **extra}
        return self.hub.request("PUT", BASE + "consent/course", body, token=token)

    def stored(self, schema_id: str = NOTEBOOK, count: int = 1) -> list[dict[str, Any]]:
        """Return the sink's events of `schema_id`, once there are at least `count`."""

        def found() -> list[dict[str, Any]]:
            events = read_events(self.sink) if self.sink.exists() else []
            kept = [e for e in events if e["__schema__"] == schema_id]
            return kept if len(kept) >= count else []

        return wait_until(found, 15, lambda: f"fewer than {count} events of {schema_id}")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A hub whose collector has one opt-in study for the group of alice (not bob)."""
    tmp = tmp_path_factory.mktemp("consent-hub")
    sink, decisions = tmp / "events.jsonl", tmp / "decisions.json"
    config = tmp / "telemetry_config.py"
    config.write_text(CONFIG.format(sink=str(sink), decisions=str(decisions), notebook=NOTEBOOK))
    groups = 'c.JupyterHub.load_groups = {"study-group": {"users": ["alice"]}}\n'
    with running_hub(tmp, config, groups) as hub:
        yield Deployment(hub, sink, decisions, hub.user_token("alice"), hub.user_token("bob"))


def test_a_study_for_alices_group_holds_back_her_events_not_bobs(deployment: Deployment) -> None:
    assert deployment.post(deployment.alice, "a-1") == "no_consent"
    assert deployment.post(deployment.bob, "b-1") == "recorded"
    assert [e["__user__"] for e in deployment.stored()] == ["bob"]
    _, alices = deployment.hub.request("GET", BASE + "consent", token=deployment.alice)
    _, bobs = deployment.hub.request("GET", BASE + "consent", token=deployment.bob)
    assert [s["study"] for s in alices["studies"]] == ["course"]
    assert bobs == {"studies": []}


def test_alice_grants_then_withdraws_and_bob_cannot_decide_for_her(
    deployment: Deployment,
) -> None:
    assert deployment.decide(deployment.bob, "granted")[0] == 404  # not a study of his
    assert deployment.decide(deployment.bob, "granted", user="alice")[0] == 404
    assert deployment.decide(deployment.alice, "granted", user="bob")[0] == 400
    assert deployment.post(deployment.alice, "a-2") == "no_consent"
    assert deployment.decide(deployment.alice, "granted", 2)[0] == 409
    status, reply = deployment.decide(deployment.alice, "granted")
    assert status == 200, reply
    assert reply["recording"] is True
    assert deployment.post(deployment.alice, "a-3") == "recorded"
    assert deployment.decide(deployment.alice, "declined")[0] == 200
    assert deployment.post(deployment.alice, "a-4") == "no_consent"
    assert deployment.post(deployment.bob, "b-2") == "recorded"  # written after a-4 would be
    events = deployment.stored(count=3)
    assert [(e["__user__"], e["__client_id__"]) for e in events] == [
        ("bob", "b-1"), ("alice", "a-3"), ("bob", "b-2"),
    ]  # fmt: skip
    proofs = deployment.stored(CONSENT_SCHEMA_ID, 2)
    assert [(p["__user__"], p["decision"]) for p in proofs] == [
        ("alice", "granted"),
        ("alice", "declined"),
    ]
    kept = json.loads(deployment.decisions.read_text())
    assert list(kept) == ["alice"]
    assert kept["alice"]["course"]["decision"] == "declined"


def test_a_consent_request_naming_a_user_in_its_query_is_refused(deployment: Deployment) -> None:
    """It was answered for the caller: alice's `?user=bob` took a decision of hers, 200."""
    _, before = deployment.hub.request("GET", BASE + "consent", token=deployment.alice)
    body = {"decision": "granted", "version": 1}
    for query in ("user=bob", "username=bob", "__user__=bob"):
        status, reply = deployment.hub.request("PUT", f"{BASE}consent/course?{query}", body,
                                               token=deployment.alice)  # fmt: skip
        assert status == 403, reply
        assert "cannot name its user" in reply["message"]
        assert "bob" not in reply["message"]
    status, _ = deployment.hub.request("GET", BASE + "consent?user=bob", token=deployment.alice)
    assert status == 403
    _, after = deployment.hub.request("GET", BASE + "consent", token=deployment.alice)
    assert after == before  # nothing was decided


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"decision": "granted", "version": 0}, "version: must be an integer >= 1"),
        ({"decision": "granted", "version": -1}, "version: must be an integer >= 1"),
        ({"decision": "granted", "version": False}, "version: must be an integer"),
        ({"decision": "shown", "version": 1},
         "decision: must be 'granted' or 'declined' for an opt-in study"),
    ],
)  # fmt: skip
def test_the_collector_refuses_a_bad_version_or_decision_naming_the_field(
    deployment: Deployment, body: dict[str, Any], message: str
) -> None:
    status, reply = deployment.hub.request("PUT", BASE + "consent/course", body,
                                           token=deployment.alice)  # fmt: skip
    assert status == 400, reply
    assert message in reply["message"]


def page_of(hub: Hub, user: str, token: str) -> str:
    """Return the transparency page of the user's server, as the hub serves it."""
    request = urllib.request.Request(f"{hub.url}user/{user}/telemetry",  # noqa: S310
                                     headers={"Authorization": f"token {token}"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
        return str(reply.read().decode("utf-8"))


def kind_of(page: str, schema_id: str) -> str:
    """Return the article of one kind of event on the page."""
    return page.split(f'data-schema-id="{schema_id}"', 1)[1].split("</article>", 1)[0]


def test_her_servers_page_marks_the_kinds_the_collectors_study_holds_back(
    deployment: Deployment,
) -> None:
    """A forwarding server's page: the study lists what it covers, and the kind it covers says
    it is not recorded for her while the collector's study keeps it out."""
    hub, mine = deployment.hub, "user/alice/api/telemetry/"
    hub.spawn("alice")
    body = {"decision": "declined", "version": 1}
    assert hub.request("PUT", mine + "consent/course", body, token=deployment.alice)[0] == 200
    page = page_of(hub, "alice", deployment.alice)
    assert "Covers: Notebook document" in page
    notebook = kind_of(page, NOTEBOOK)
    assert "Not recorded for you (study Course study: declined)" in notebook
    assert ">Not recorded for you</span>" in notebook
    assert "are recorded by the hub for you" in page
    body = {"decision": "granted", "version": 1}
    assert hub.request("PUT", mine + "consent/course", body, token=deployment.alice)[0] == 200
    notebook = kind_of(page_of(hub, "alice", deployment.alice), NOTEBOOK)
    assert "Part of study Course study" in notebook
    assert ">Recorded</span>" in notebook
    assert "Not recorded for you" not in notebook
    body = {"decision": "declined", "version": 1}  # as the tests below expect her decision
    assert hub.request("PUT", mine + "consent/course", body, token=deployment.alice)[0] == 200


def test_a_users_server_relays_her_decisions_to_the_collector(deployment: Deployment) -> None:
    hub = deployment.hub
    hub.spawn("alice")
    mine = "user/alice/api/telemetry/"
    _, direct = hub.request("GET", BASE + "consent", token=deployment.alice)
    assert hub.request("GET", mine + "consent", token=deployment.alice) == (200, direct)
    body = {"decision": "granted", "version": 1}
    status, reply = hub.request("PUT", mine + "consent/course", body, token=deployment.alice)
    assert status == 200, reply
    assert reply["recording"] is True
    assert hub.request("PUT", mine + "consent/nosuch", body, token=deployment.alice)[0] == 404
    event = {"schema_id": NOTEBOOK, "version": 1, "data": {"action": "opened"}, "id": "a-5"}
    assert hub.request("POST", mine + "events", event, token=deployment.alice)[0] == 200
    events = deployment.stored(count=4)
    assert ("alice", "a-5") in [(e["__user__"], e["__client_id__"]) for e in events]
    assert json.loads(deployment.decisions.read_text())["alice"]["course"]["decision"] == "granted"
    # Her server's transparency page lists the collector's study with her decision.
    headers = {"Authorization": f"token {deployment.alice}"}
    page = urllib.request.Request(hub.url + "user/alice/telemetry", headers=headers)  # noqa: S310
    with urllib.request.urlopen(page, timeout=30) as reply:  # noqa: S310
        html = reply.read().decode("utf-8")
    assert 'data-study="course"' in html
    assert "Your decision: <strong>accepted</strong>" in html


def test_the_collectors_page_lists_her_studies_and_decisions_without_buttons(
    deployment: Deployment,
) -> None:
    """The collector's own page (its root, for a browser) shows the viewing user her studies
    and decisions, as her server's page does; decisions are taken on her server's page."""
    hub = deployment.hub
    _, before = hub.request("GET", BASE + "consent", token=deployment.alice)
    assert deployment.decide(deployment.alice, "granted")[0] == 200
    headers = {"Authorization": f"token {deployment.alice}", "Accept": "text/html"}
    url = f"{hub.url}services/{SERVICE}/"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:  # noqa: S310
        html = r.read().decode("utf-8")
    assert 'data-study="course"' in html
    assert "Your decision: <strong>accepted</strong>" in html
    assert "Covers: Notebook document" in html
    assert "data-decision=" not in html  # no buttons: the collector takes no cookie PUT
    assert "on the telemetry page of your own" in html
    headers["Authorization"] = f"token {deployment.bob}"  # not in the study's group
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:  # noqa: S310
        assert 'data-study="course"' not in r.read().decode("utf-8")
    decided = before["studies"][0].get("decision")
    if decided in ("granted", "declined"):  # as it was: the module's tests share her decisions
        assert deployment.decide(deployment.alice, decided)[0] == 200


PG_CONFIG = """\
import logging
from jupyter_telemetry_ext import PostgresEventHandler
c.TelemetryCollector.record_user = "username"
c.TelemetryCollector.user_hash_secret = {secret!r}
c.TelemetryCollector.consent_file = {decisions!r}
c.TelemetryCollector.schema_paths = [{schemas!r}]
c.EventLog.handlers = [PostgresEventHandler({db!r}, spool_dir={spool!r}),
                       logging.FileHandler({sink!r})]
c.EventLog.allowed_schemas = {{s: {{"allowed_categories": ["user-identifier"]}} for s in {ids!r}}}
c.EventLog.studies = {{
    "withdrawable": {{"title": "A study one can leave", "text": "Leave and we erase.",
                      "version": {version}, "mode": "opt-in", "schemas": [{notebook!r}],
                      "erase_on_withdrawal": True}},
    "habits": {{"title": "Habits", "text": "Opt out any time.", "version": 1,
               "mode": "opt-out", "schemas": [{opt_out!r}]}},
    "notice": {{"title": "Notice", "text": "Recorded by law.", "version": 1, "mode": "notice",
               "schemas": [{notice!r}]}},
    "pair-in": {{"title": "A", "text": "a", "version": 1, "mode": "opt-in",
                "schemas": [{pair!r}]}},
    "pair-out": {{"title": "B", "text": "b", "version": 1, "mode": "opt-out",
                 "schemas": [{pair!r}]}},
}}
"""
SECRET = "consent-tests-user-hash-key-0123456789"
OPT_OUT_ID, NOTICE_ID, PAIR_ID = (f"test.consent/{n}" for n in ("b", "c", "d"))
WITHDRAWABLE = f"{BASE}consent/withdrawable"


@dataclass
class PgDeployment:
    """A hub whose collector stores in PostgreSQL and a file; the second collector's config."""

    hub: Hub
    db: str
    sink: Path
    decisions: Path
    tmp: Path
    alice: str
    bob: str

    def post(self, token: str, schema_id: str, client_id: str, base: str = BASE) -> str:
        """Post one event; return its status."""
        action = "opened" if schema_id == NOTEBOOK else "open"
        body = {"schema_id": schema_id, "version": 1, "data": {"action": action},
                "id": client_id}  # fmt: skip
        status, reply = self.hub.request("POST", base + "events", body, token=token)
        assert status == 200, reply
        return str(reply["status"])

    def decide(
        self, token: str, study: str, decision: str, version: int = 1, base: str = BASE
    ) -> tuple[int, Any]:
        """PUT a decision on a study."""
        body = {"decision": decision, "version": version}
        return self.hub.request("PUT", f"{base}consent/{study}", body, token=token)

    def config(self, name: str, version: int = 1) -> Path:
        """Write the config of another collector on the same store; return it."""
        return pg_config(self.tmp, self.db, name, version)


def pg_config(tmp: Path, db: str, name: str, version: int = 1) -> Path:
    """Write a collector config (its own spool; a file of its own but the managed one's)
    with the study "withdrawable" at `version`; return it."""
    path = tmp / f"{name}_config.py"
    sink = tmp / ("events.jsonl" if name == "managed" else f"{name}.jsonl")
    path.write_text(PG_CONFIG.format(
        secret=SECRET, decisions=str(tmp / "decisions.json"), schemas=str(tmp / "schemas"),
        db=db, spool=str(tmp / f"{name}-spool"), sink=str(sink),
        ids=[NOTEBOOK, OPT_OUT_ID, NOTICE_ID, PAIR_ID], version=version, notebook=NOTEBOOK,
        opt_out=OPT_OUT_ID, notice=NOTICE_ID, pair=PAIR_ID,
    ))  # fmt: skip
    return path


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgDeployment]:
    """A hub whose collector keeps events in PostgreSQL and a file, with five studies."""
    pytest.importorskip("psycopg", reason="the [postgres] extra")
    from tests.pgserver import binaries, running_server

    bindir = binaries()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    tmp = tmp_path_factory.mktemp("consent-pg")
    (tmp / "schemas").mkdir()
    for schema_id in (OPT_OUT_ID, NOTICE_ID, PAIR_ID):
        name = schema_id.rsplit("/", 1)[1] + ".json"
        (tmp / "schemas" / name).write_text(json.dumps(frontend_schema(schema_id)), "utf-8")
    with running_server(bindir) as server:
        db = server.url(server.create_database())
        with running_hub(tmp, pg_config(tmp, db, "managed")) as hub:
            yield PgDeployment(hub, db, tmp / "events.jsonl", tmp / "decisions.json", tmp,
                               hub.user_token("alice"), hub.user_token("bob"))  # fmt: skip


def pg_rows(db: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Return the rows of a query on the store."""
    import psycopg

    with psycopg.connect(db) as conn:
        return list(conn.execute(query, list(params)).fetchall())


def test_alices_server_lists_what_the_collector_holds_back_and_her_grant_is_in_the_table(
    pg: PgDeployment,
) -> None:
    hub = pg.hub
    hub.spawn("alice")
    mine = "user/alice/api/telemetry/"

    def marks() -> dict[str, Any]:
        status, listing = hub.request("GET", mine + "schemas", token=pg.alice)
        assert status == 200, listing
        return {s["id"]: s.get("consent") for s in listing["schemas"]}

    assert marks()[NOTEBOOK] == "needed"
    assert pg.post(pg.alice, NOTEBOOK, "a-0") == "no_consent"
    assert pg.decide(pg.bob, "withdrawable", "granted", base=mine)[0] == 403  # her server
    status, reply = pg.decide(pg.alice, "withdrawable", "granted", base=mine)
    assert status == 200, reply
    assert marks()[NOTEBOOK] is None  # read again after the decision, not 10 s later
    rows = pg_rows(pg.db, "SELECT user_key, username, study, version, decision "
                          "FROM telemetry_consent")  # fmt: skip
    assert rows == [(hashed_user(SECRET.encode(), "alice"), "alice", "withdrawable", 1,
                     "granted")]  # fmt: skip
    assert not pg.decisions.exists()
    assert pg.post(pg.alice, NOTEBOOK, "a-1") == "recorded"


def test_opt_out_notice_and_two_studies_on_one_schema(pg: PgDeployment) -> None:
    assert pg.post(pg.bob, OPT_OUT_ID, "b-out-1") == "recorded"  # opt-out: until declined
    assert pg.decide(pg.bob, "habits", "declined")[0] == 200
    assert pg.post(pg.bob, OPT_OUT_ID, "b-out-2") == "no_consent"
    assert pg.decide(pg.bob, "notice", "granted")[0] == 400  # a notice is only shown
    assert pg.post(pg.bob, NOTICE_ID, "b-notice-1") == "recorded"  # before it was shown too
    status, reply = pg.decide(pg.bob, "notice", "shown")
    assert (status, reply["recording"]) == (200, True)
    assert pg.post(pg.bob, PAIR_ID, "b-pair-1") == "no_consent"  # pair-in not granted
    assert pg.decide(pg.bob, "pair-in", "granted")[0] == 200
    assert pg.post(pg.bob, PAIR_ID, "b-pair-2") == "recorded"  # both allow it now
    assert pg.decide(pg.bob, "pair-out", "declined")[0] == 200
    assert pg.post(pg.bob, PAIR_ID, "b-pair-3") == "no_consent"  # one of the two declined
    assert pg.decide(pg.bob, "withdrawable", "granted")[0] == 200
    query = "SELECT client_id FROM telemetry_events WHERE username = %s AND schema_id = ANY(%s)"
    ids = [OPT_OUT_ID, NOTICE_ID, PAIR_ID]
    wait_until(lambda: len(pg_rows(pg.db, query, "bob", ids)) >= 3, 15)
    stored = [r[0] for r in pg_rows(pg.db, query, "bob", ids)]
    assert sorted(stored) == ["b-notice-1", "b-out-1", "b-pair-2"]


def test_a_decision_applies_on_every_collector_and_a_new_version_asks_again(
    pg: PgDeployment,
) -> None:
    """A second collector process on the same store: a decision taken on one applies on the
    other within a second; one configured with a new version records nothing until asked."""
    external = f"services/{EXTERNAL_SERVICE}/api/telemetry/"
    collector = ExternalCollector(pg.hub, pg.config("external"), pg.tmp)
    collector.start()
    try:
        assert pg.post(pg.alice, NOTEBOOK, "x-1", external) == "recorded"  # granted on the other
        assert pg.decide(pg.alice, "withdrawable", "declined")[0] == 200  # on the managed one
        started, ids = time.monotonic(), itertools.count()
        wait_until(lambda: pg.post(pg.alice, NOTEBOOK, f"x-2-{next(ids)}", external)
                   == "no_consent", 5)  # fmt: skip
        assert time.monotonic() - started < 1.5
        assert pg.decide(pg.alice, "withdrawable", "granted", base=external)[0] == 200
        wait_until(lambda: pg.post(pg.alice, NOTEBOOK, f"x-3-{next(ids)}") == "recorded", 5)
    finally:
        collector.stop()
    newer = ExternalCollector(pg.hub, pg.config("external-v2", version=2), pg.tmp)
    newer.start()
    try:
        assert pg.post(pg.alice, NOTEBOOK, "x-4", external) == "no_consent"  # v1's grant
        assert pg.decide(pg.alice, "withdrawable", "granted", 1, external)[0] == 409
        assert pg.decide(pg.alice, "withdrawable", "granted", 2, external)[0] == 200
        assert pg.post(pg.alice, NOTEBOOK, "x-5", external) == "recorded"
    finally:
        newer.stop()


def test_withdrawal_erases_her_study_events_from_postgresql_and_the_file(
    pg: PgDeployment,
) -> None:
    assert pg.decide(pg.alice, "withdrawable", "granted")[0] == 200  # version 1, here
    assert pg.post(pg.alice, NOTEBOOK, "w-1") == "recorded"
    assert pg.post(pg.bob, NOTEBOOK, "w-b") == "recorded"
    query = "SELECT client_id FROM telemetry_events WHERE username = %s AND schema_id = %s"
    wait_until(lambda: "w-1" in [r[0] for r in pg_rows(pg.db, query, "alice", NOTEBOOK)], 15)
    in_store = [r[0] for r in pg_rows(pg.db, query, "alice", NOTEBOOK)]
    in_file = [e["__client_id__"] for e in read_events(pg.sink)
               if e["__schema__"] == NOTEBOOK and e.get("__user__") == "alice"]  # fmt: skip
    assert "w-1" in in_file
    status, reply = pg.decide(pg.alice, "withdrawable", "declined")
    assert status == 200, reply
    assert reply["erased"] == len(in_store) + len(in_file)
    assert pg_rows(pg.db, query, "alice", NOTEBOOK) == []
    left = [(e.get("__user__"), e["__schema__"]) for e in read_events(pg.sink)]
    assert ("alice", NOTEBOOK) not in left
    assert ("bob", NOTEBOOK) in left
    assert ("alice", CONSENT_SCHEMA_ID) in left  # the proof stays
    erasures = pg_rows(pg.db, "SELECT operator, events FROM telemetry_events_erasures "
                              "ORDER BY at")  # fmt: skip
    assert erasures[-1] == ("withdrawal from study withdrawable", len(in_store))
    lines = (pg.tmp / "events.jsonl-erasures.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    assert (last["operator"], last["events"]) == ("withdrawal from study withdrawable",
                                                  len(in_file))  # fmt: skip
    assert pg.post(pg.bob, NOTEBOOK, "w-b2") == "recorded"  # the file is written on
    wait_until(lambda: "w-b2" in [e.get("__client_id__") for e in read_events(pg.sink)], 15)


def test_consent_list_counts_the_table_and_erase_keeps_only_withdrawals(pg: PgDeployment) -> None:
    listed = consent_list(pg.db, "--json", "--study", "withdrawable")
    assert listed.returncode == 0, listed.stderr
    counts = [json.loads(line) for line in listed.stdout.splitlines()]
    assert counts == [
        {"study": "withdrawable", "version": 1, "decision": "declined", "users": 1},
        {"study": "withdrawable", "version": 1, "decision": "granted", "users": 1},
    ]
    assert "alice" not in listed.stdout
    assert "bob" not in listed.stdout
    for user in ("alice", "bob"):
        erased = erase_user(pg, user)
        assert erased.returncode == 0, erased.stderr
    rows = pg_rows(pg.db, "SELECT user_key, username, decision FROM telemetry_consent")
    keys = {hashed_user(SECRET.encode(), u): u for u in ("alice", "bob")}
    assert all(name is None for _, name, _ in rows)  # no name is left
    assert sorted((keys[k], d) for k, _, d in rows) == [
        ("alice", "declined"), ("bob", "declined"), ("bob", "declined")]  # fmt: skip
    assert pg_rows(pg.db, "SELECT 1 FROM telemetry_events WHERE schema_id = %s",
                   CONSENT_SCHEMA_ID) == []  # fmt: skip
    after = consent_list(pg.db, "--json", "--study", "withdrawable")
    assert [json.loads(line) for line in after.stdout.splitlines()] == [
        {"study": "withdrawable", "version": 1, "decision": "declined", "users": 1}]  # fmt: skip
    assert pg.post(pg.bob, OPT_OUT_ID, "e-out") == "no_consent"  # his decline outlived it
    nothing = consent_list(pg.db, "--study", "nosuch")
    assert nothing.returncode == 1
    assert "the store holds no decision on study 'nosuch'" in nothing.stderr


def erase_user(pg: PgDeployment, user: str) -> subprocess.CompletedProcess[str]:
    """Run `jupyter telemetry erase --user` on the store, with the collector's config."""
    command = [sys.executable, "-m", "jupyter_telemetry_ext.cli.main", "erase", "--user", user,
               "--config", str(pg.tmp / "managed_config.py"), "--db", pg.db]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def consent_list(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `jupyter telemetry consent list --db URL` with `args`."""
    command = [sys.executable, "-m", "jupyter_telemetry_ext.cli.main", "consent", "list",
               "--db", db, *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
