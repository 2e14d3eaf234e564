"""The collector under a real JupyterHub: identity from the hub, the hub's allow-list, retries,
gzip, the hub's own events, a collector outage and a full spool with a stopped server (nothing
accepted is lost or stored twice); one hub for the module (tests/hubserver.py).

The hub's config and the collector's are the blocks of docs/jupyterhub.md marked `tested`, with
their ports, paths and secret filled in: PostgreSQL, `record_user = "hashed"` and the documented
allow-list; the tests read what the store holds.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext.core.recorded_user import hashed_user
from tests.conftest import FRONTEND_ID, UNLISTED_ID, frontend_schema
from tests.hubserver import SERVICE, ExternalCollector, Hub, doc_block, running_hub
from tests.pgserver import binaries, running_server
from tests.servers import free_port, log_tail, read_events, wait_until

pytest.importorskip("jupyterhub", reason="the [hub] extra (jupyterhub) is not installed")
pytest.importorskip("psycopg", reason="the documented config stores in PostgreSQL ([postgres])")
requests = pytest.importorskip("requests")

pytestmark = pytest.mark.e2e  # starts JupyterHub, PostgreSQL and Jupyter servers

# The outage tests give alice's named server its own options through user_options, which a
# spawner takes from the REST API only since JupyterHub 6 (5 logs "unhandled user_options").
_HUB_MAJOR = int(__import__("jupyterhub").__version__.split(".")[0])
needs_user_options = pytest.mark.skipif(
    _HUB_MAJOR < 6, reason="per-server options through the REST API need JupyterHub 6"
)

EVENTS = f"services/{SERVICE}/api/telemetry/events"
SCHEMAS = f"services/{SERVICE}/api/telemetry/schemas"
HUB_ACTION = "https://schema.jupyter.org/jupyterhub/events/server-action"
CONTENTS = "https://events.jupyter.org/jupyter_server/contents_service/v1"
NOTEBOOK = "https://events.jupyter.org/jupyter_telemetry_ext/notebook"  # shipped, allowed
SECRET = "the-hubs-user-hash-key"  # fills the docs' "..."


def hashed(name: str) -> str:
    """Return the user as the documented config records it (`record_user = "hashed"`)."""
    return hashed_user(SECRET.encode(), name)


def collector_config(config: Path) -> str:
    """Return the docs' collector config, its secret and spool folder (beside `config`)
    filled in."""
    fill = {
        '"..."': repr(SECRET),
        '"/srv/jupyterhub/collector-spool"': repr(str(config.with_suffix(".spool"))),
    }
    return doc_block("jupyterhub.md", "telemetry_config", fill)


def hub_events_config(spool: Path) -> str:
    """Return the docs' HubEventHandler config, its spool folder and secret filled in."""
    fill = {'"/srv/jupyterhub/spool"': repr(str(spool)), '"..."': repr(SECRET)}
    return doc_block("jupyterhub.md", "jupyterhub_config_events", fill)


def stored_events(db: str) -> list[dict[str, Any]]:
    """Return every event in the store, as capsules (its properties and capsule fields)."""
    import psycopg

    query = ("SELECT schema_id, metadata_version, username, client_id, data "
             "FROM telemetry_events ORDER BY received")  # fmt: skip
    with psycopg.connect(db) as conn:
        try:
            rows = conn.execute(query).fetchall()
        except psycopg.errors.UndefinedTable:  # created by the first write
            return []
    return [{**data, "__schema__": schema, "__metadata_version__": version, "__user__": user,
             "__client_id__": client} for schema, version, user, client, data in rows]  # fmt: skip


@dataclass
class Deployment:
    """The module's hub, its database URL, the users' tokens, the test schemas' folder."""

    hub: Hub
    db: str
    alice: str
    bob: str
    schemas: Path  # registered by the collector too (in its Jupyter data dir), none allowed

    def events(self) -> list[dict[str, Any]]:
        """Every event the collector and the hub stored so far."""
        return stored_events(self.db)

    def post(self, body: Any, token: str | None, path: str = EVENTS, **kw: Any) -> tuple[int, Any]:
        """POST to the collector through the proxy."""
        return self.hub.request("POST", path, body, token=token, **kw)

    def wait_for_id(self, client_id: str) -> list[dict[str, Any]]:
        """Return the stored events with this client id, once there is one."""
        return wait_until(
            lambda: [e for e in self.events() if e.get("__client_id__") == client_id],
            15,
            lambda: f"{client_id} never stored: {self.events()}",
        )


@contextlib.contextmanager
def _database() -> Iterator[str]:
    bindir = binaries()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    with running_server(bindir) as server:
        yield server.url(server.create_database())


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A hub configured as docs/jupyterhub.md says: the collector and HubEventHandler."""
    tmp = tmp_path_factory.mktemp("hub")
    # The collector and the single-user servers find the test schemas in their data dir.
    schemas = tmp / "jupyter_data_dir" / "telemetry" / "schemas"
    schemas.mkdir(parents=True)
    for schema in (frontend_schema(), frontend_schema(UNLISTED_ID)):
        (schemas / f"{schema['$id'].replace('/', '_')}.json").write_text(json.dumps(schema))
    with _database() as db:
        config = tmp / "telemetry_config.py"
        config.write_text(collector_config(config))
        extra = hub_events_config(tmp / "spool-h")
        with running_hub(tmp, config, extra, database=db) as hub:
            alice, bob = hub.user_token("alice"), hub.user_token("bob")
            yield Deployment(hub, db, alice, bob, schemas)


def event(client_id: str, schema_id: str = NOTEBOOK, **data: Any) -> dict[str, Any]:
    """Return a posted event (by default of the shipped notebook schema, which the hub allows)."""
    return {"schema_id": schema_id, "version": 1, "data": data or {"action": "opened"},
            "id": client_id}  # fmt: skip


def test_token_posts_are_recorded_as_the_tokens_user(deployment: Deployment) -> None:
    status, reply = deployment.post(event("tok-single"), deployment.alice)
    assert (status, reply) == (200, {"status": "recorded"})
    status, reply = deployment.post({"events": [event("tok-b1"), event("tok-b2")]}, deployment.bob)
    assert status == 200, reply
    assert reply["recorded"] == 2
    assert deployment.wait_for_id("tok-single")[0]["__user__"] == hashed("alice")
    assert deployment.wait_for_id("tok-b2")[0]["__user__"] == hashed("bob")


def test_a_user_servers_token_posts_as_that_user(deployment: Deployment) -> None:
    """The server role and extra_user_scopes give alice's server the collector's scope."""
    hub = deployment.hub
    hub.spawn("alice")
    token = hub.server_env("alice")["JUPYTERHUB_API_TOKEN"]
    status, reply = deployment.post(event("from-server"), token)
    assert (status, reply) == (200, {"status": "recorded"})
    assert deployment.wait_for_id("from-server")[0]["__user__"] == hashed("alice")
    # ... and the hub's own event of that start, through HubEventHandler, with the capsule
    started = wait_until(
        lambda: [e for e in deployment.events()
                 if e["__schema__"] == HUB_ACTION and e.get("action") == "start"],
        15,
        lambda: f"no server-action event: {log_tail(hub.log)}",
    )[0]  # fmt: skip
    assert started["__metadata_version__"] == 2
    assert started["__user__"] == hashed("alice")  # the collector's hash: one user in the store
    assert started["servername"] == ""
    # a user-identifier, which the docs' allow-list keeps: as the same hash, never the name
    assert started["username"] == hashed("alice")


def test_a_users_server_forwards_her_events_to_the_collector_as_her(
    deployment: Deployment,
) -> None:
    """Posted to alice's own server (its allow-list records nothing), forwarded with its token."""
    hub = deployment.hub
    hub.spawn("alice")
    status, reply = hub.request("POST", "user/alice/api/telemetry/events", event("via-server"),
                                token=deployment.alice)  # fmt: skip
    assert (status, reply) == (200, {"status": "recorded"})
    assert deployment.wait_for_id("via-server")[0]["__user__"] == hashed("alice")
    model = {"type": "file", "format": "text", "content": "forwarded"}
    status, _ = hub.request("PUT", "user/alice/api/contents/forwarded.txt", model,
                            token=deployment.alice)  # fmt: skip
    assert status in (200, 201)

    def saves() -> list[dict[str, Any]]:
        return [e for e in deployment.events() if e["__schema__"] == CONTENTS
                and e.get("action") == "save" and e.get("__user__") == hashed("alice")]  # fmt: skip

    [saved, *_] = wait_until(saves, 15, lambda: f"no forwarded save: {deployment.events()}")
    assert saved["path"] is None  # the hub's allow-list keeps `action` only


def test_the_hub_and_the_users_events_share_the_postgresql_store(deployment: Deployment) -> None:
    import psycopg

    deployment.hub.spawn("alice")  # already running, or started: the hub's event is stored
    status, _ = deployment.post(event("to-pg"), deployment.alice)
    assert status == 200

    def rows() -> list[tuple[Any, ...]]:
        with psycopg.connect(deployment.db) as conn:
            query = "SELECT schema_id, username, client_id, data FROM telemetry_events"
            return list(conn.execute(query).fetchall())

    def both() -> bool:
        found = rows()
        return any(r[2] == "to-pg" for r in found) and any(r[0] == HUB_ACTION for r in found)

    wait_until(both, 15, lambda: f"not both in PostgreSQL: {rows()}")
    hub_row = next(r for r in rows() if r[0] == HUB_ACTION)
    assert hub_row[1] == hashed("alice")
    assert next(r for r in rows() if r[2] == "to-pg")[1] == hashed("alice")


def test_a_browser_posts_with_the_oauth_cookie_and_its_xsrf_token(deployment: Deployment) -> None:
    hub = deployment.hub
    browser = logged_in(hub, "alice")
    root = browser.get(hub.collector_url, timeout=30)  # OAuth: hub, then the callback
    assert root.json()["user"] == "alice"
    url = hub.url + EVENTS
    forged = browser.post(url, json=event("cookie-no-xsrf"), timeout=30)
    assert forged.status_code == 403  # another site's form would have the cookie only
    xsrf = browser.cookies.get("_xsrf", path=f"/services/{SERVICE}/")
    posted = browser.post(url, json=event("cookie"), headers={"X-XSRFToken": xsrf}, timeout=30)
    assert posted.json() == {"status": "recorded"}
    assert deployment.wait_for_id("cookie")[0]["__user__"] == hashed("alice")
    assert not [e for e in deployment.events() if e.get("__client_id__") == "cookie-no-xsrf"]


def logged_in(hub: Hub, name: str) -> Any:
    """Return a browser session (a `requests.Session`) that logged in to the hub as `name`."""
    browser = requests.Session()
    browser.get(hub.url + "hub/login", timeout=30)
    login = {"username": name, "password": "x", "_xsrf": browser.cookies.get("_xsrf")}
    assert browser.post(hub.url + "hub/login", data=login, timeout=30).ok
    return browser


@pytest.mark.parametrize(
    ("body", "query"),
    [
        ({"events": [event("bob-1")], "user": "bob"}, ""),
        ({"events": [event("bob-2"), {**event("bob-3"), "username": "bob"}]}, ""),
        ({**event("bob-4"), "__user__": "bob"}, ""),
        (event("bob-5"), "?user=bob"),
        # a body over 16 KiB is read off the event loop: the same refusal, before anything else
        (
            {
                "events": [
                    *(event(f"bob-6-{i}") for i in range(299)),
                    {**event("bob-7"), "user_name": "bob"},
                ]
            },
            "",
        ),
    ],
)
def test_a_post_naming_a_user_is_refused_and_nothing_is_written(
    deployment: Deployment, body: dict[str, Any], query: str
) -> None:
    status, reply = deployment.post(body, deployment.alice, path=EVENTS + query)
    assert status == 403, reply
    assert "cannot name its user" in reply["message"]
    deployment.post(event("after-bob"), deployment.alice)
    deployment.wait_for_id("after-bob")
    assert not [e for e in deployment.events() if str(e.get("__client_id__")).startswith("bob-")]


def test_a_user_key_written_with_escapes_is_refused_too(deployment: Deployment) -> None:
    """`\\u0075ser` is `user` once the body is read: the same 403, nothing written."""
    raw = json.dumps(event("bob-escaped"))[:-1] + ', "\\u0075ser": "bob"}'
    headers = {"Authorization": f"token {deployment.alice}", "Content-Type": "application/json"}
    reply = requests.post(deployment.hub.url + EVENTS, data=raw, headers=headers, timeout=30)
    assert reply.status_code == 403, reply.text
    assert "cannot name its user" in reply.json()["message"]
    assert not [e for e in deployment.events() if e.get("__client_id__") == "bob-escaped"]


def test_every_verb_needs_a_hub_user_with_the_scope(deployment: Deployment) -> None:
    hub = deployment.hub
    assert deployment.post(event("anon"), None)[0] == 403
    assert deployment.post(event("bad"), "not-a-token")[0] == 403
    assert hub.request("GET", SCHEMAS)[0] == 403
    assert hub.request("GET", f"{SCHEMAS}/{NOTEBOOK}")[0] == 403
    status, reply = hub.request("GET", SCHEMAS, token=deployment.alice)
    assert status == 200
    assert {s["id"] for s in reply["schemas"]} >= {NOTEBOOK, FRONTEND_ID, CONTENTS}
    # a token without the collector's scope (a service's: the admin's here)
    assert deployment.post(event("admin"), hub.admin_token)[0] == 403


def test_the_hubs_allow_list_decides(deployment: Deployment) -> None:
    """UNLISTED_ID is open to frontends (a user's server may allow it); the hub does not."""
    status, reply = deployment.post(event("unlisted", UNLISTED_ID, action="open"),
                                    deployment.alice)  # fmt: skip
    assert (status, reply) == (200, {"status": "filtered"})
    # jupyter_server's own events (not open to frontends) are taken from users' servers ...
    contents = event("contents", CONTENTS, action="get", path="secret.ipynb")
    assert deployment.post(contents, deployment.alice) == (200, {"status": "recorded"})
    written = deployment.wait_for_id("contents")[0]
    assert written["action"] == "get"
    assert written["path"] is None  # redacted by the hub's allow-list
    # ... but never the hub's own events (unknown to the collector; refused even if registered)
    forged = event("forged", HUB_ACTION, action="start", username="bob", servername="")
    status, reply = deployment.post(forged, deployment.alice)
    assert status in (400, 403), reply
    assert not [e for e in deployment.events() if e.get("__client_id__") in ("unlisted", "forged")]


def test_a_retried_batch_is_recorded_once(deployment: Deployment) -> None:
    batch = {"events": [event("retry-1"), event("retry-2")]}
    assert deployment.post(batch, deployment.alice)[1]["recorded"] == 2
    again = deployment.post(batch, deployment.alice)[1]
    assert (again["recorded"], again["duplicate"]) == (0, 2)
    # ids are per hub user: bob's event with the same id is his own
    assert deployment.post({"events": [event("retry-1")]}, deployment.bob)[1]["recorded"] == 1
    deployment.post(event("retry-end"), deployment.alice)
    deployment.wait_for_id("retry-end")
    users = sorted(e["__user__"] for e in deployment.events() if e["__client_id__"] == "retry-1")
    assert users == sorted([hashed("alice"), hashed("bob")])


def test_gzip_bodies_are_inflated_and_a_gzip_bomb_is_refused(deployment: Deployment) -> None:
    gz = {"Content-Encoding": "gzip"}
    body = gzip.compress(json.dumps({"events": [event("gz-1"), event("gz-2")]}).encode())
    status, reply = deployment.post(None, deployment.alice, headers=gz, data=body)
    assert status == 200, reply
    assert reply["recorded"] == 2
    # 1 MiB limit (max_body_size's default): 50 MB of zeros inflate far beyond it from 50 KB
    bomb = gzip.compress(b'{"events": [' + b" " * 50_000_000 + b"]}", 9)
    assert len(bomb) < 1 << 20
    status, reply = deployment.post(None, deployment.alice, headers=gz, data=bomb)
    assert status == 413, reply
    assert "inflates to more than 1048576 bytes" in reply["message"]
    broken = deployment.post(None, deployment.alice, headers=gz, data=body[:-10])
    assert broken[0] == 400
    assert deployment.post(event("gz-after"), deployment.alice)[0] == 200  # still serving


def test_a_refusal_names_the_collectors_own_option(deployment: Deployment) -> None:
    """The collector's limits are TelemetryCollector options: its errors name those, the ones
    an admin can set, never the server extension's."""
    too_many = {"events": [event(f"many-{n}") for n in range(501)]}
    too_large = event("large", action="opened", kernel_name="k" * 100)
    too_large["data"]["padding"] = "x" * (40 << 10)  # refused for its size before its schema
    far = {**event("far"), "timestamp": "2000-01-01T00:00:00Z"}
    expected = [(too_many, 413, "max_batch_events"), (too_large, 413, "max_event_size"),
                (far, 400, "event_time_window")]  # fmt: skip
    for body, status, option in expected:
        code, reply = deployment.post(body, deployment.alice)
        assert code == status, reply
        assert f"(TelemetryCollector.{option})" in reply["message"], reply
    assert not [e for e in deployment.events()
                if e.get("__client_id__") in ("many-0", "large", "far")]  # fmt: skip


def test_a_body_over_the_limit_gets_its_413_through_the_proxy(deployment: Deployment) -> None:
    """The collector reads a refused body before it answers: through configurable-http-proxy
    the poster gets the 413 and its JSON message, not the proxy's own 503 page (which a
    forwarder would retry as it is, for ever, rather than halve the batch)."""
    for size in (1_100_000, 2 << 20, 8 << 20):
        big = {"events": [event("big")]}
        big["events"][0]["data"]["padding"] = "x" * size
        for _ in range(3):
            status, reply = deployment.post(big, deployment.alice)
            assert status == 413, reply
            assert "(TelemetryCollector.max_body_size)" in reply["message"], reply
    assert deployment.post(event("after-big"), deployment.alice)[0] == 200  # still serving
    assert not [e for e in deployment.events() if e.get("__client_id__") == "big"]


SLOW_CONFIG = """\
import logging, os, time
class Slow(logging.FileHandler):
    def emit(self, record):
        deadline = time.monotonic() + 30
        while os.path.exists({hold!r}) and time.monotonic() < deadline:
            time.sleep(0.01)  # the test holds the sink until it has sent SIGINT
        super().emit(record)
c.TelemetryCollector.record_user = "username"
c.TelemetryCollector.reply_after_write = False  # answered once queued: SIGINT must write them
c.EventLog.handlers = [Slow({sink!r})]
c.EventLog.allowed_schemas = [{notebook!r}]
"""


def direct_collector(hub: Hub, config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start `jupyter telemetry collect --url` on `port`, as the hub's service SERVICE (users'
    tokens hold its scope), asking the hub who a token is; posts go to its port directly."""
    env = {**os.environ, "JUPYTERHUB_API_URL": f"{hub.url}hub/api",
           "JUPYTERHUB_API_TOKEN": hub.admin_token, "JUPYTERHUB_SERVICE_NAME": SERVICE,
           "JUPYTERHUB_CLIENT_ID": f"service-{SERVICE}"}  # fmt: skip
    command = [sys.executable, "-m", "jupyter_telemetry_ext.cli.main", "collect", "--config",
               str(config), "--url", f"http://127.0.0.1:{port}"]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def test_sigint_writes_every_accepted_event_and_exits(
    deployment: Deployment, tmp_path: Path
) -> None:
    """An external collector (--url) answering once queued, with a held sink: SIGINT writes
    all, exits in seconds."""
    hub, sink, port = deployment.hub, tmp_path / "slow.jsonl", free_port()
    hold = tmp_path / "hold"
    config = tmp_path / "config.py"
    config.write_text(SLOW_CONFIG.format(sink=str(sink), notebook=NOTEBOOK, hold=str(hold)))
    hold.touch()
    log = tmp_path / "collector.log"
    process = direct_collector(hub, config, port, log)
    try:
        url = f"http://127.0.0.1:{port}/services/{SERVICE}/api/telemetry/events"
        batch = {"events": [event(f"sig-{i}") for i in range(400)]}
        headers = {"Authorization": f"token {deployment.alice}"}

        def posted() -> Any:
            if process.poll() is not None:
                pytest.fail(f"the collector exited: {log_tail(log)}")
            with contextlib.suppress(requests.ConnectionError):
                return requests.post(url, json=batch, headers=headers, timeout=30)
            return None

        reply = wait_until(posted, 60, lambda: log_tail(log), 0.2)
        assert reply.json()["recorded"] == 400
        assert len(read_events(sink)) == 0  # accepted, still queued behind the held sink
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        hold.unlink()
        assert process.wait(15) == 0, log_tail(log)
        assert time.monotonic() - started < 5
        assert len(read_events(sink)) == 400
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


UNREACHABLE_STORE_CONFIG = """\
from jupyter_telemetry_ext import PostgresEventHandler
c.EventLog.handlers = [PostgresEventHandler("postgresql://nobody@127.0.0.1:{port}/none",
                                            spool_dir={spool!r}, max_backoff=0.5)]
c.EventLog.allowed_schemas = [{notebook!r}]
c.TelemetryCollector.reply_after_write = False  # answered once queued, the store unreachable
"""
# How the hub writes its own lines: the level, the time, then who logged it.
LOG_LINE = r"\[[DIWEC] \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{3}} {name}\] {message}"


def test_the_collectors_log_lines_tell_their_level_and_time(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Its store's outage, its refusals and its own lines each have a level and a time, as the
    hub's lines beside them in the hub's log (the store's and tornado's had neither)."""
    hub, port, log = deployment.hub, free_port(), tmp_path / "collector.log"
    config = tmp_path / "config.py"
    config.write_text(UNREACHABLE_STORE_CONFIG.format(
        port=free_port(), spool=str(tmp_path / "spool"), notebook=NOTEBOOK))  # fmt: skip
    url = f"http://127.0.0.1:{port}/services/{SERVICE}/api/telemetry/events"
    process = direct_collector(hub, config, port, log)
    try:

        def posted() -> Any:
            if process.poll() is not None:
                pytest.fail(f"the collector exited: {log_tail(log)}")
            with contextlib.suppress(requests.ConnectionError):
                return requests.post(url, json=event("log-1"),
                                     headers={"Authorization": f"token {deployment.alice}"},
                                     timeout=30)  # fmt: skip
            return None

        assert wait_until(posted, 60, lambda: log_tail(log), 0.2).json() == {"status": "recorded"}
        assert requests.post(url, json=event("log-2"), timeout=30).status_code == 403
        expected = [
            ("TelemetryCollector", "Telemetry collector listening on "),
            ("jupyter_telemetry_ext.sinks.postgres", "Telemetry: PostgreSQL .* unavailable"),
            ("tornado.access", "403 POST /services/"),
        ]
        for name, message in expected:
            line = LOG_LINE.format(name=re.escape(name), message=message)
            wait_until(lambda line=line: re.search(line, log.read_text("utf-8")), 15,
                       lambda line=line: f"no {line!r} in {log_tail(log)}")  # fmt: skip
        assert "200 POST" not in log.read_text("utf-8")  # one line per answer would flood it
    finally:
        process.kill()
        process.wait(10)


HUB_WARNING_CONFIG = """
import logging
from jupyter_telemetry_ext import HubEventHandler
# No user-identifier in the allow-list while record_user asks for the user: a warning at start.
c.EventLogger.handlers = [HubEventHandler(
    handlers=[logging.FileHandler({sink!r})],
    allowed_schemas={{"https://schema.jupyter.org/jupyterhub/events/server-action": {{
        "allowed_categories": ["unrestricted"]}}}},
    record_user="hashed", user_hash_secret={secret!r})]
"""


def test_the_hub_handlers_log_in_the_hubs_own_format(tmp_path: Path) -> None:
    """HubEventHandler's warning is a line of JupyterHub's log, in its format (it
    was Python's last resort: the bare message)."""
    config = tmp_path / "telemetry_config.py"
    config.write_text(f"c.EventLog.allowed_schemas = [{NOTEBOOK!r}]\n")
    extra = HUB_WARNING_CONFIG.format(sink=str(tmp_path / "hub.jsonl"), secret=SECRET)
    with running_hub(tmp_path, config, extra) as hub:
        text = hub.log.read_text("utf-8")
    warning = "Telemetry: record_user = 'hashed', but the allow-list does not keep"
    lines = [line for line in text.splitlines() if warning in line]
    assert len(lines) == 1, text
    prefix = (
        r"\[W \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} jupyter_telemetry_ext\.hub\.events \w+:\d+\] "
    )
    assert re.match(prefix + re.escape(warning), lines[0]), lines[0]


REVOCATION_CONFIG = """\
c.TelemetryCollector.auth_cache_max_age = 1
c.EventLog.allowed_schemas = [{notebook!r}]
"""


def test_a_revoked_token_is_refused_once_auth_cache_max_age_has_passed(
    deployment: Deployment, tmp_path: Path
) -> None:
    """HubAuth's answers were cached 300 s: a revoked token kept posting for 5 minutes."""
    hub, port, log = deployment.hub, free_port(), tmp_path / "collector.log"
    config = tmp_path / "config.py"
    config.write_text(REVOCATION_CONFIG.format(notebook=NOTEBOOK))
    auth = {"auth": {"username": "alice", "password": "x"}}
    status, token = hub.request("POST", "hub/api/users/alice/tokens", auth)
    assert status in (200, 201), token
    url = f"http://127.0.0.1:{port}/services/{SERVICE}/api/telemetry/events"
    headers = {"Authorization": f"token {token['token']}"}
    process = direct_collector(hub, config, port, log)

    def post() -> int | None:
        if process.poll() is not None:
            pytest.fail(f"the collector exited: {log_tail(log)}")
        with contextlib.suppress(requests.ConnectionError):
            reply = requests.post(url, json=event("revoked"), headers=headers, timeout=30)
            return int(reply.status_code)
        return None

    try:
        assert wait_until(post, 60, lambda: log_tail(log), 0.2) == 200  # and cached
        revoked = hub.admin("DELETE", f"hub/api/users/alice/tokens/{token['id']}")
        assert revoked[0] == 204, revoked
        wait_until(lambda: post() == 403, 20, lambda: f"still accepted: {log_tail(log)}", 0.5)
    finally:
        process.kill()
        process.wait(10)


def test_a_collector_whose_config_fails_stops_the_hub_that_starts_it(tmp_path: Path) -> None:
    """The docs' config with an empty $TELEMETRY_DB: the collector's handler cannot be built, so
    it exits 2 with the reason, and the hub reports it and stops (it used to serve, filtering
    every event)."""
    config = tmp_path / "telemetry_config.py"
    config.write_text(collector_config(config))
    hub = Hub(tmp_path, config, database="")
    try:
        with pytest.raises(RuntimeError, match="the hub exited"):
            hub.start(timeout=120)
    finally:
        hub.stop()
    written = hub.log.read_text("utf-8", "replace")
    assert "the environment variable TELEMETRY_DB is empty or not set" in written
    lines = config.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if 'PostgresEventHandler("env:' in text)
    assert f"{config}, line {line}: StoreError" in written
    assert "Service telemetry exited with status 2" in written


@pytest.mark.parametrize(
    ("database", "error"),
    [(None, "KeyError: 'TELEMETRY_DB'"), ("", "TELEMETRY_DB is empty or not set")],
)
def test_jupyterhub_commands_stop_cleanly_without_telemetry_db(
    tmp_path: Path, database: str | None, error: str
) -> None:
    """`jupyterhub token` reads the docs' jupyterhub_config.py: without the variable it stops
    with the reason, and no half-built PostgresEventHandler crashes logging.shutdown at exit."""
    config = tmp_path / "telemetry_config.py"
    config.write_text(collector_config(config))
    hub = Hub(tmp_path, config, hub_events_config(tmp_path / "spool-h"))
    env = {**os.environ, **hub.environment}
    env.pop("TELEMETRY_DB", None)
    if database is not None:
        env["TELEMETRY_DB"] = database
    command = [sys.executable, "-m", "jupyterhub", "token", "alice", "-f", str(hub.config)]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip
    assert result.returncode != 0
    assert error in result.stderr
    assert "AttributeError" not in result.stderr
    assert "Exception ignored" not in result.stderr


# Outages: alice's named server OUTAGE forwards to the hub's external collector service, which the
# tests stop and start; both collectors write to the module's PostgreSQL database.

OUTAGE = "outage"
OUTAGE_EVENTS = f"user/alice/{OUTAGE}/api/telemetry/events"


@dataclass
class Outage:
    """alice's server OUTAGE (a 4 KiB spool that refuses when full) and its collector."""

    deployment: Deployment
    collector: ExternalCollector
    args: tuple[str, ...]

    def post(self, client_id: str) -> tuple[int, Any]:
        """POST an event to alice's server through the proxy, with her token."""
        hub, token = self.deployment.hub, self.deployment.alice
        return hub.request("POST", OUTAGE_EVENTS, event(client_id), token=token)

    def stored(self, prefix: str) -> dict[str, list[str]]:
        """Return the users of each stored event whose client id starts with `prefix`."""
        import psycopg

        query = ("SELECT client_id, username FROM telemetry_events WHERE client_id LIKE %s "
                 "ORDER BY client_id")  # fmt: skip
        found: dict[str, list[str]] = {}
        with psycopg.connect(str(self.deployment.db)) as conn:
            try:
                rows = conn.execute(query, (prefix + "%",)).fetchall()
            except psycopg.errors.UndefinedTable:  # created by the first write
                return found
        for client_id, user in rows:
            found.setdefault(client_id, []).append(user)
        return found

    def wait_stored(self, prefix: str, last: str) -> dict[str, list[str]]:
        """Wait until `last` is stored (the spool is sent in order); return `stored(prefix)`."""
        wait_until(lambda: last in self.stored(prefix), 30,
                   lambda: f"{last} never stored: {self.forwarding_log()}")  # fmt: skip
        return self.stored(prefix)

    def start(self) -> None:
        """Start the collector and alice's server OUTAGE unless they run (at the same time)."""
        if not self.collector.running:
            self.collector.launch()
        self.deployment.hub.spawn("alice", OUTAGE, self.args)
        self.collector.wait_up()

    def forwarding_log(self) -> str:
        """Return what alice's servers logged about forwarding (in the hub's log)."""
        lines = self.deployment.hub.log.read_text("utf-8", "replace").splitlines()
        return "\n".join(line for line in lines if "Telemetry forwarding" in line)


@pytest.fixture(scope="module")
def outage_parts(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outage]:
    """The external collector (the docs' config too) and the options of alice's server OUTAGE
    (the hub stops it)."""
    tmp = tmp_path_factory.mktemp("outage")
    config = tmp / "collector_config.py"
    config.write_text(collector_config(config))
    collector = ExternalCollector(deployment.hub, config, tmp)
    args = (f"--TelemetryExtension.collector_url={collector.url}",
            f"--TelemetryExtension.forward_spool_dir={tmp / 'spool'}",
            "--TelemetryExtension.forward_spool_bytes=4096",
            "--TelemetryExtension.forward_when_full=refuse",
            "--TelemetryExtension.forward_retry_max=0.5")  # fmt: skip
    try:
        yield Outage(deployment, collector, args)
    finally:
        collector.kill()


@pytest.fixture
def outage(outage_parts: Outage) -> Outage:
    """The external collector and alice's server OUTAGE, both running (started if need be)."""
    outage_parts.start()
    return outage_parts


@needs_user_options
def test_a_collector_outage_loses_no_accepted_event_and_stores_each_once(outage: Outage) -> None:
    """Posted while the collector is stopped (token and browser), sent once it is back."""
    assert outage.post("out1-before") == (200, {"status": "recorded"})
    outage.wait_stored("out1-", "out1-before")
    failed_before = outage.forwarding_log().count("is unavailable")
    outage.collector.stop()
    posted = [f"out1-{i}" for i in range(8)]
    for client_id in posted:
        assert outage.post(client_id) == (200, {"status": "recorded"})
    posted.append(_browser_post(outage, "out1-cookie"))
    wait_until(lambda: outage.forwarding_log().count("is unavailable") > failed_before, 15,
               lambda: f"no failed attempt: {outage.forwarding_log()}")  # fmt: skip
    assert list(outage.stored("out1-")) == ["out1-before"]
    outage.collector.start()
    assert outage.post("out1-after")[0] == 200
    stored = outage.wait_stored("out1-", "out1-after")
    every = ["out1-before", *posted, "out1-after"]
    assert stored == {client_id: [hashed("alice")] for client_id in sorted(every)}


def _browser_post(outage: Outage, client_id: str) -> str:
    """Post as a browser does: alice's cookie from the hub's OAuth and the page's xsrf token."""
    hub = outage.deployment.hub
    browser = logged_in(hub, "alice")
    server = f"user/alice/{OUTAGE}/"
    page = browser.get(hub.url + server, timeout=30)  # OAuth: the hub, then the callback
    xsrf = browser.cookies.get("_xsrf", path=f"/{server}")
    assert xsrf, (page.status_code, page.url, browser.cookies)
    reply = browser.post(hub.url + OUTAGE_EVENTS, json=event(client_id),
                         headers={"X-XSRFToken": xsrf}, timeout=30)  # fmt: skip
    assert reply.json() == {"status": "recorded"}, reply.text
    return client_id


@needs_user_options
@pytest.mark.parametrize("how", ["hub", "sigterm"])
def test_a_full_spool_refuses_and_a_stopped_server_loses_no_accepted_event(
    outage: Outage, how: str
) -> None:
    """The collector stopped, the spool fills (503), the server stops: after a restart of both,
    every accepted event is stored once and no refused one. `hub`: the hub's API stops it (the
    spawner's SIGINT); `sigterm`: SIGTERM, as Kubernetes stops a pod, then the hub's API."""
    hub, prefix = outage.deployment.hub, f"out2-{how}-"
    outage.collector.stop()
    accepted, refused = [], []
    for i in range(100):
        status, reply = outage.post(f"{prefix}{i:03d}")
        assert status in (200, 503), reply
        if status == 503:
            assert "the forwarding spool is full" in reply["message"], reply
        (accepted if status == 200 else refused).append(f"{prefix}{i:03d}")
        if len(refused) == 3:
            break
    assert len(accepted) >= 10, accepted
    assert refused == [f"{prefix}{i:03d}" for i in range(len(accepted), len(accepted) + 3)]
    if how == "sigterm":
        pid = hub.server_pid("alice", OUTAGE)
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: pid not in hub.processes(), 15, lambda: log_tail(hub.log))
    hub.stop_server("alice", OUTAGE)
    outage.start()
    # The restarted server answers 503 until its spool has drained below the limit: retry, as a
    # client does after a 503.
    wait_until(lambda: outage.post(f"{prefix}after")[0] == 200, 30, lambda: log_tail(hub.log), 0.5)
    stored = outage.wait_stored(prefix, f"{prefix}after")
    assert stored == {client_id: [hashed("alice")] for client_id in [*accepted, f"{prefix}after"]}
