"""The collector's dashboard on a real JupyterHub and PostgreSQL: 3 users in 2 groups post
events; the counts, who sees what (admin, the scope, the scope for one group, a plain user),
and the page in headless Chromium with every chart drawn and nothing loaded from elsewhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext.dashboard.views import CELL, NOTEBOOK, PROCESS_VIEWS, VIEWS
from tests.conftest import SHIPPED_SCHEMAS
from tests.hubserver import SERVICE, Hub, doc_block
from tests.pgserver import server_for_tests

pytest.importorskip("jupyterhub", reason="the [hub] extra (jupyterhub) is not installed")
pytest.importorskip("psycopg", reason="the [postgres] extra (psycopg) is not installed")
pytestmark = pytest.mark.e2e  # starts PostgreSQL, JupyterHub and Chromium

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
API = f"services/{SERVICE}/api/telemetry/dashboard"
WITH_USER = ["unrestricted", "user-identifier"]
COLLECTOR_CONFIG = f"""\
from jupyter_telemetry_ext import PostgresEventHandler
c.TelemetryCollector.schema_paths = [{str(SHIPPED_SCHEMAS)!r}]
c.TelemetryCollector.record_user = "hashed"
c.TelemetryCollector.user_hash_secret = {"k" * 32!r}
c.TelemetryCollector.reply_after_write = True  # a 200 means stored
c.EventLog.handlers = [PostgresEventHandler("env:TELEMETRY_DB", spool_dir={{spool!r}})]
c.EventLog.allowed_schemas = {{{{
    {CELL!r}: {{{{"allowed_categories": {WITH_USER!r}}}}},
    {NOTEBOOK!r}: {{{{"allowed_categories": {WITH_USER!r}}}}},
}}}}
"""
# alice and bob study physics, carol chemistry; dana teaches physics; carmen sees everything
# (the docs' roles); ada is an admin.
GROUPS = """
c.JupyterHub.load_groups = {"physics": {"users": ["alice", "bob"]},
                            "chemistry": {"users": ["carol"]}}
c.Authenticator.admin_users = {"ada"}
"""
# What each student posts: cell runs (ok, error) and notebooks opened.
POSTS = {"alice": ["ok", "error", "open"], "bob": ["ok"], "carol": ["ok", "ok", "open"]}


@dataclass
class Dashboard:
    """The hub, and a token of each person."""

    hub: Hub
    tokens: dict[str, str]

    def get(self, who: str, path: str = "", **params: str) -> tuple[int, Any]:
        """GET a dashboard route with someone's token."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        url = API + (f"/{path}" if path else "") + (f"?{query}" if query else "")
        return self.hub.request("GET", url, token=self.tokens[who])


def event(kind: str) -> dict[str, Any]:
    """Return a posted cell run (`ok`, `error`) or notebook opening (`open`)."""
    if kind == "open":
        return {"schema_id": NOTEBOOK, "version": 2,
                "data": {"action": "opened", "notebook_session": "s"}}  # fmt: skip
    return {"schema_id": CELL, "version": 2, "data": {"action": "executed", "status": kind}}


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """One PostgreSQL, one hub (the docs' dashboard roles), the students' events posted."""
    tmp = tmp_path_factory.mktemp("dashboard-hub")
    config = tmp / "telemetry_config.py"
    config.write_text(COLLECTOR_CONFIG.format(spool=str(tmp / "spool")), "utf-8")
    extra = "\n" + doc_block("jupyterhub.md", "jupyterhub_dashboard") + GROUPS
    people = ("alice", "bob", "carol", "dana", "carmen", "ada")
    for pg in server_for_tests():
        database = pg.url(pg.create_database())
        # The hub makes the others from its groups, roles and admins; the harness adds eve.
        hub = Hub(tmp, config, extra, users=("eve",), database=database)
        try:
            hub.start()
            tokens = {name: hub.user_token(name) for name in people}
            for name, kinds in POSTS.items():
                body = {"events": [event(k) for k in kinds]}
                code, reply = hub.request("POST", f"services/{SERVICE}/api/telemetry/events",
                                          body, token=tokens[name])  # fmt: skip
                assert (code, reply["recorded"]) == (200, len(kinds)), reply
            yield Dashboard(hub, tokens)
        finally:
            hub.stop()


def counts(model: dict[str, Any]) -> dict[tuple[str, str], int]:
    """Return the events view's counts by (schema, action)."""
    return {(r["schema"], r["action"]): r["events"] for r in model["rows"]}


@pytest.mark.parametrize("who", ["ada", "carmen"])
def test_admins_and_the_scope_see_every_event(dashboard: Dashboard, who: str) -> None:
    code, index = dashboard.get(who)
    assert (code, index["views"], index["source"], index["scope"]) == (
        200, list(VIEWS), "postgresql", "all")  # fmt: skip
    code, active = dashboard.get(who, "active-users")
    assert (code, [r["users"] for r in active["rows"]]) == (200, [3])
    everyone = {(CELL, "executed"): 5, (NOTEBOOK, "opened"): 2}
    assert counts(dashboard.get(who, "events")[1]) == everyone
    lab = dashboard.get(who, "lab-activity")[1]["rows"]
    assert [(r["cell_runs"], r["cell_errors"], r["notebooks_opened"]) for r in lab] == [(5, 1, 2)]
    rows = dashboard.get(who, "health")[1]["rows"]
    health = {(r["part"], r["measure"]): r["value"] for r in rows}
    assert health[("PostgresEventHandler", "stored")] == 7
    assert health[("PostgresEventHandler", "available")] is True


def test_an_instructor_scoped_to_a_group_sees_only_its_members(dashboard: Dashboard) -> None:
    code, index = dashboard.get("dana")
    assert (code, index["scope"]) == (200, "groups")
    assert not set(PROCESS_VIEWS) & set(index["views"])
    code, active = dashboard.get("dana", "active-users")
    assert (code, active["scope"], [r["users"] for r in active["rows"]]) == (200, "groups", [2])
    physics = {(CELL, "executed"): 3, (NOTEBOOK, "opened"): 1}  # alice's and bob's
    assert counts(dashboard.get("dana", "events")[1]) == physics
    for view in PROCESS_VIEWS:  # about the whole collector: not hers
        assert dashboard.get("dana", view)[0] == 403


@pytest.mark.parametrize("path", ["", "events", "active-users", "health"])
def test_a_plain_user_gets_403(dashboard: Dashboard, path: str) -> None:
    code, reply = dashboard.get("alice", path)
    assert code == 403
    assert "custom:telemetry:read" in reply["message"]


def test_a_bad_argument_is_400_naming_it(dashboard: Dashboard) -> None:
    code, reply = dashboard.get("carmen", "events", since="last-week")
    assert (code, reply["message"].split(":")[0]) == (400, "since")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_the_page_draws_every_chart_offline(dashboard: Dashboard, tmp_path: Path) -> None:
    """Logged in with the hub's form: every view drawn, no console error, nothing from
    elsewhere (every request to another host is refused: the page must work offline)."""
    from playwright.sync_api import sync_playwright

    hub, errors, elsewhere = dashboard.hub, [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 900})

            def route(r: Any) -> None:
                if r.request.url.startswith("http://127.0.0.1:"):
                    r.continue_()
                else:
                    elsewhere.append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            tab = context.new_page()
            tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: errors.append(str(e)))
            tab.on("response", lambda r: r.status < 400 or errors.append(f"{r.status} {r.url}"))
            tab.goto(hub.url + "hub/login?next=%2Fhub%2Fhome")
            tab.fill("#username_input", "ada")
            tab.fill("#password_input", "x")
            tab.click("#login_submit")
            tab.wait_for_url("**/hub/home")
            tab.goto(hub.url + f"services/{SERVICE}/dashboard")
            try:
                tab.locator("body[data-drawn='true']").wait_for(timeout=30_000)
            except Exception:  # playwright's TimeoutError: say what the page said
                pytest.fail(f"not drawn: {errors} {elsewhere} {tab.content()[:3000]}")
            drawn = tab.locator("section.view .chart svg").count()
            empty = tab.locator("section.view .chart.empty").count()  # no events: said in words
            sections = tab.locator("section.view").count()
            csv_links = tab.locator("section.view a.csv").count()
            tab.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    # Nothing was posted for active time, kernels and the hub's servers: those say so.
    assert (sections, drawn, empty, csv_links) == (len(VIEWS), len(VIEWS) - 3, 3, len(VIEWS))
    assert not errors, errors
    assert not elsewhere, json.dumps(elsewhere)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
