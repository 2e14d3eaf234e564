"""The hub's own actions (HubAuditHandler) under a real JupyterHub: an admin opening alice's
server through the OAuth flow and deleting her token, alice changing her own tokens, refusals,
and what never reaches the store (token values, passwords, bodies, query strings, a path's
unclassified values). One hub for the module, configured by the `tested` blocks of
docs/jupyterhub.md (PostgreSQL, `record_user = "hashed"`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.hubserver import Hub, doc_block, running_hub
from tests.servers import log_tail, wait_until

pytest.importorskip("jupyterhub", reason="the [hub] extra (jupyterhub) is not installed")
pytest.importorskip("psycopg", reason="the documented config stores in PostgreSQL ([postgres])")
requests = pytest.importorskip("requests")

from tests.test_hub import (  # noqa: E402 - after the skips: it needs jupyterhub and psycopg
    SECRET,
    _database,
    collector_config,
    hashed,
    hub_events_config,
    stored_events,
)

pytestmark = pytest.mark.e2e  # starts JupyterHub, PostgreSQL and a Jupyter server

ACTION = "https://events.jupyter.org/jupyter_telemetry_ext/hub-action"
ADMIN = "boss"  # a hub user with admin rights (not the tests' admin service)
PASSWORD = "pw-" + secrets.token_hex(12)  # DummyAuthenticator takes any: found in no event
HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)"')


@dataclass
class Audited:
    """The module's hub, its database, and the tokens made for the tests (values and ids)."""

    hub: Hub
    db: str
    admin: str  # the admin user's token
    admin_id: str
    alice: str
    alice_id: str
    bob: str

    def actions(self, **fields: Any) -> list[dict[str, Any]]:
        """The stored hub-action events whose fields have the values given."""
        return [e for e in stored_events(self.db) if e["__schema__"] == ACTION
                and all(e.get(k) == v for k, v in fields.items())]  # fmt: skip

    def wait_for(self, **fields: Any) -> list[dict[str, Any]]:
        """The hub-action events with these fields, once there is one."""
        return wait_until(
            lambda: self.actions(**fields),
            15,
            lambda: f"no hub action {fields}: {self.actions()} {log_tail(self.hub.log)}",
        )

    def everything_stored(self) -> str:
        """Every row of the store as text, and the hub's spool files."""
        import psycopg

        with psycopg.connect(self.db) as conn:
            rows = conn.execute("SELECT row_to_json(t)::text FROM telemetry_events t").fetchall()
        spool = [p.read_bytes().decode("utf-8", "replace")
                 for p in (self.hub.tmp / "spool-h").rglob("*") if p.is_file()]  # fmt: skip
        return "\n".join([row[0] for row in rows] + spool)


def new_token(hub: Hub, name: str, token: str | None = None) -> tuple[str, str]:
    """Return a new token of `name` and its id: with `token` (one of theirs) or a login."""
    body = None if token else {"auth": {"username": name, "password": PASSWORD}}
    status, reply = hub.request("POST", f"hub/api/users/{name}/tokens", body or {}, token=token)
    assert status in (200, 201), (status, reply)
    return str(reply["token"]), str(reply["id"])


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audited]:
    """A hub configured as docs/jupyterhub.md says, with an admin user and alice's server."""
    tmp = tmp_path_factory.mktemp("hub-actions")
    with _database() as db:
        config = tmp / "telemetry_config.py"
        config.write_text(collector_config(config))
        extra = (
            hub_events_config(tmp / "spool-h") + f"\nc.Authenticator.admin_users = {{{ADMIN!r}}}\n"
        )
        with running_hub(tmp, config, extra, database=db) as hub:
            admin, admin_id = new_token(hub, ADMIN)
            alice, alice_id = new_token(hub, "alice")
            bob, _ = new_token(hub, "bob")
            yield Audited(hub, db, admin, admin_id, alice, alice_id, bob)


def browser_login(hub: Hub, name: str) -> Any:
    """Return a requests session logged in to the hub through its login form, as a browser."""
    session = requests.Session()
    page = session.get(hub.url + "hub/login", timeout=30)
    form = dict(HIDDEN.findall(page.text))
    form.update(username=name, password=PASSWORD)
    # to the home page: the default /hub/spawn would start a server for the user
    reply = session.post(hub.url + "hub/login?next=%2Fhub%2Fhome", data=form, timeout=30)
    assert reply.status_code == 200, (reply.status_code, reply.url)
    return session


def test_an_admin_opening_alices_server_is_recorded_with_the_admin_as_actor(
    audited: Audited,
) -> None:
    """The OAuth authorization of alice's server for the admin: the confirmation, then the grant."""
    hub = audited.hub
    hub.spawn("alice")
    session = browser_login(hub, ADMIN)
    # alice's server sends the admin to the hub's authorization, which asks to confirm
    page = session.get(hub.url + "user/alice/", timeout=30)
    assert page.status_code == 200, (page.status_code, page.url)
    assert "/hub/api/oauth2/authorize" in page.url
    form = [*HIDDEN.findall(page.text)]
    granted = session.post(page.url, data=form, timeout=30)
    assert granted.status_code == 200, (granted.status_code, granted.url, granted.text[:300])
    assert granted.url.startswith(hub.url + "user/alice/")  # the admin is in alice's server
    common = {"action": "server.access", "actor": hashed(ADMIN), "actor_kind": "user",
              "actor_via": "cookie", "target_user": hashed("alice"),
              "target_server": ""}  # fmt: skip
    [confirmation] = audited.wait_for(**common, method="GET")
    [grant] = audited.wait_for(**common, method="POST")
    assert (confirmation["status"], grant["status"]) == (200, 302)
    assert grant["route"] == "/api/oauth2/authorize"
    assert grant["__user__"] == hashed(ADMIN)
    assert grant["duration_ms"] >= 0


def test_alice_opening_her_own_server_is_no_hub_action(audited: Audited) -> None:
    hub = audited.hub
    hub.spawn("alice")
    session = browser_login(hub, "alice")
    page = session.get(hub.url + "user/alice/", timeout=30)
    assert page.status_code == 200, (page.status_code, page.url)
    assert page.url.startswith(hub.url + "user/alice/")
    login = audited.wait_for(action="user.login", actor=hashed("alice"))[0]
    assert (login["method"], login["status"], login["actor_via"]) == ("POST", 302, "login")
    assert not audited.actions(action="server.access", actor=hashed("alice"))


def test_an_admin_deleting_alices_token_is_recorded_with_the_admin_as_actor(
    audited: Audited,
) -> None:
    hub = audited.hub
    _, doomed = new_token(hub, "alice", audited.alice)
    path = f"hub/api/users/alice/tokens/{doomed}"
    assert hub.request("DELETE", path, token=audited.admin)[0] == 204
    [deleted] = audited.wait_for(action="token.delete", target_token_id=doomed)
    assert deleted == {**deleted, "actor": hashed(ADMIN), "actor_kind": "user",
                       "actor_via": "token", "actor_token_id": audited.admin_id,
                       "actor_service": None, "target_user": hashed("alice"), "status": 204,
                       "method": "DELETE",
                       "route": "/api/users/([^/]+)/tokens/([^/]*)"}  # fmt: skip
    # JupyterHub's own access log line is still written (the audit chains to it)
    assert f"204 DELETE /hub/api/users/alice/tokens/{doomed}" in hub.log.read_text()


def test_alice_changing_her_own_tokens_is_recorded_with_alice_as_actor(
    audited: Audited,
) -> None:
    hub = audited.hub
    _, made = new_token(hub, "alice", audited.alice)
    assert (
        hub.request("DELETE", f"hub/api/users/alice/tokens/{made}", token=audited.alice)[0] == 204
    )
    [created] = audited.wait_for(action="token.create", actor=hashed("alice"), status=201)[-1:]
    assert created["target_user"] == hashed("alice")
    assert created["actor_token_id"] == audited.alice_id
    # (ids are reused once deleted: the one the admin deleted may have had this id)
    # the token asked for with her password in the body (new_token, at the start)
    assert audited.actions(action="token.create", target_user=hashed("alice"),
                           actor=hashed("alice"), actor_via="login", status=201)  # fmt: skip
    [deleted] = audited.wait_for(action="token.delete", target_token_id=made, actor=hashed("alice"))
    assert deleted["status"] == 204


def test_a_refused_request_is_recorded_with_its_status(audited: Audited) -> None:
    hub = audited.hub
    status, _ = hub.request("DELETE", "hub/api/users/alice", token=audited.bob)
    assert status == 403
    [refused] = audited.wait_for(action="user.delete", actor=hashed("bob"))
    assert (refused["status"], refused["target_user"]) == (403, hashed("alice"))
    # nobody: a request without credentials is recorded too, with no actor
    assert hub.request("POST", "hub/api/groups/teachers")[0] == 403
    [anonymous] = audited.wait_for(action="group.create", target_group="teachers")
    assert (anonymous["actor_kind"], anonymous["actor"], anonymous["status"]) == ("none", None, 403)


def test_a_service_acting_is_recorded_as_the_service(audited: Audited) -> None:
    hub = audited.hub
    assert hub.admin("POST", "hub/api/users/carol", {})[0] == 201
    [added] = audited.wait_for(action="user.create", target_user=hashed("carol"))
    assert (added["actor_kind"], added["actor_service"], added["actor"]) == (
        "service", "test-admin", None)  # fmt: skip
    assert added["__user__"] is None  # a service is nobody's: no user to export or erase by


def test_no_token_password_body_query_or_unnamed_value_is_ever_stored(
    audited: Audited,
) -> None:
    hub = audited.hub
    browser_login(hub, "bob")  # the password in a form body
    # a token value where a token id belongs: refused by the hub, its id recorded as null
    status, _ = hub.request("DELETE", f"hub/api/users/alice/tokens/{audited.alice}",
                            token=audited.admin)  # fmt: skip
    assert status == 404
    [wrong] = audited.wait_for(action="token.delete", status=404)
    assert wrong["target_token_id"] is None
    # a route without a name of its own: its pattern, never the path's values
    marker = "unnamed" + secrets.token_hex(8)
    status, _ = hub.request("POST", f"hub/api/users/alice/{marker}?note={marker}",
                            {"value": marker}, token=audited.admin)  # fmt: skip
    assert status == 404
    [generic] = audited.wait_for(action="request.post", status=404, actor=hashed(ADMIN))
    assert marker not in generic["route"]
    # a body and a query string of a named action
    quiet = "body" + secrets.token_hex(8)
    path = f"hub/api/users/alice/tokens?secret={quiet}"
    assert hub.request("POST", path, {"note": quiet}, token=audited.alice)[0] == 201
    audited.wait_for(action="token.create", actor=hashed("alice"))
    stored = everything = audited.everything_stored()
    for value in (audited.admin, audited.alice, audited.bob, PASSWORD, marker, quiet):
        assert value not in everything, value
    assert ADMIN not in stored  # names are hashed ("hashed")
    assert "alice" not in stored


def test_users_cannot_post_hub_actions_to_the_collector(audited: Audited) -> None:
    """Posted by alice in someone else's name, a hub-action is refused and never stored."""
    forged = {"action": "user.delete", "method": "DELETE", "route": "/api/users/([^/]+)",
              "status": 204, "duration_ms": 1, "actor": "forged-" + secrets.token_hex(4),
              "actor_kind": "user", "actor_via": "token"}  # fmt: skip
    event = {"schema_id": ACTION, "version": 1, "data": forged, "id": "forged-1"}
    status, reply = audited.hub.request("POST", "services/telemetry/api/telemetry/events",
                                        event, token=audited.alice)  # fmt: skip
    assert status >= 400 or reply.get("status") != "recorded", reply
    assert not audited.actions(actor=forged["actor"])


def test_a_wrong_audit_config_stops_the_hub_at_start(tmp_path: Path) -> None:
    """A key too short for the hashes: the hub exits at start, its log says why."""
    events = doc_block("jupyterhub.md", "jupyterhub_config_events", {
        '"/srv/jupyterhub/spool"': repr(str(tmp_path / "spool")),
        'events.eventlog, record_user="hashed", user_hash_secret="..."':
            'events.eventlog, record_user="hashed", user_hash_secret="short"',
        '"..."': repr(SECRET)})  # fmt: skip
    config = tmp_path / "telemetry_config.py"
    config.write_text(collector_config(config))
    hub = Hub(tmp_path, config, events, database="postgresql://telemetry@127.0.0.1:1/telemetry")
    try:
        with pytest.raises(RuntimeError, match="the hub exited"):
            hub.start(timeout=60)
    finally:
        hub.stop()
    assert "user_hash_secret: a key of at least 16 characters" in hub.log.read_text()
