"""Consent on a real JupyterHub: the collector keeps each hub user's decisions, applies a study
only to its groups, and checks every post as the token owner's."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext.core.studies import CONSENT_SCHEMA_ID
from tests.hubserver import SERVICE, Hub, running_hub
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


PG_CONFIG = """\
from jupyter_telemetry_ext import PostgresEventHandler
c.TelemetryCollector.record_user = "username"
c.TelemetryCollector.consent_file = {decisions!r}
c.EventLog.handlers = [PostgresEventHandler({db!r}, spool_dir={spool!r})]
c.EventLog.allowed_schemas = {{{notebook!r}: {{"allowed_categories": ["user-identifier"]}}}}
c.EventLog.studies = {{"withdrawable": {{
    "title": "A study one can leave", "text": "Leave and we erase.", "version": 1,
    "mode": "opt-in", "schemas": [{notebook!r}], "erase_on_withdrawal": True,
}}}}
"""


def pg_rows(db: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Return the rows of a query on the store."""
    import psycopg

    with psycopg.connect(db) as conn:
        return list(conn.execute(query, list(params)).fetchall())


def test_withdrawal_with_erase_removes_her_study_events_and_records_the_erasure(
    tmp_path: Path,
) -> None:
    pytest.importorskip("psycopg", reason="the [postgres] extra")
    from tests.pgserver import binaries, running_server

    bindir = binaries()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    with running_server(bindir) as pg:
        db = pg.url(pg.create_database())
        config = tmp_path / "telemetry_config.py"
        decisions, spool = str(tmp_path / "decisions.json"), str(tmp_path / "pg-spool")
        config.write_text(
            PG_CONFIG.format(decisions=decisions, db=db, spool=spool, notebook=NOTEBOOK)
        )
        with running_hub(tmp_path, config) as hub:
            alice, bob = hub.user_token("alice"), hub.user_token("bob")
            put = f"{BASE}consent/withdrawable"
            assert hub.request("PUT", put, {"decision": "granted", "version": 1},
                               token=alice)[0] == 200  # fmt: skip
            for token, client_id in ((alice, "a-1"), (alice, "a-2"), (bob, "b-1")):
                body = {"schema_id": NOTEBOOK, "version": 1, "data": {"action": "opened"},
                        "id": client_id}  # fmt: skip
                assert hub.request("POST", BASE + "events", body, token=token)[1] == {
                    "status": "recorded" if token == alice else "no_consent"
                }
            status, reply = hub.request("PUT", put, {"decision": "declined", "version": 1},
                                        token=alice)  # fmt: skip
            assert status == 200, reply
            assert reply["erased"] == 2
        query = "SELECT username, client_id FROM telemetry_events WHERE schema_id = %s"
        assert pg_rows(db, query, NOTEBOOK) == []
        erasures = pg_rows(db, "SELECT operator, events FROM telemetry_events_erasures")
        assert erasures == [("withdrawal from study withdrawable", 2)]
        proofs = pg_rows(db, "SELECT username FROM telemetry_events WHERE schema_id = %s",
                         CONSENT_SCHEMA_ID)  # fmt: skip
        assert proofs == [("alice",), ("alice",)]
        listed = consent_list(db, "--json")
        assert listed.returncode == 0, listed.stderr
        counts = [json.loads(line) for line in listed.stdout.splitlines()]
        assert counts == [{"study": "withdrawable", "version": 1, "decision": "declined",
                           "users": 1}]  # fmt: skip
        assert "alice" not in listed.stdout
        nothing = consent_list(db, "--study", "nosuch")
        assert nothing.returncode == 1
        assert "the store holds no decision on study 'nosuch'" in nothing.stderr


def consent_list(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `jupyter telemetry consent list --db URL` with `args`."""
    command = [sys.executable, "-m", "jupyter_telemetry_ext.cli.main", "consent", "list",
               "--db", db, *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
