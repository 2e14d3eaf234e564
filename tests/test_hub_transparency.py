"""The transparency page on a real JupyterHub: alice's server forwards her events to the
collector, and her page shows the hub's rules (what the collector records, her hashed identity
included), not her server's own allow-list; the collector serves the same page at its root to
a logged-in browser, JSON to other clients, and a redirect (not an error) without a login."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SHIPPED_SCHEMAS
from tests.hubserver import SERVICE, Hub, running_hub
from tests.servers import log_tail, read_events, wait_until
from tests.test_page import marks_of

pytest.importorskip("jupyterhub", reason="the [hub] extra (jupyterhub) is not installed")
requests = pytest.importorskip("requests")

pytestmark = pytest.mark.e2e  # starts JupyterHub, the collector and a Jupyter server

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = "https://events.jupyter.org/jupyter_telemetry_ext/"
NOTEBOOK, CELL, COMMAND, SESSION, KERNEL = (
    SHIPPED + name for name in ("notebook", "cell", "command", "session", "kernel")
)
HUB_RECORDS = (NOTEBOOK, CELL, COMMAND, SESSION)  # the four kinds the hub records
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = ROOT / "test-artifacts"
WAIT = 60.0  # a forwarder that missed the collector at start asks again 30 s later

COLLECTOR_CONFIG = """\
import logging
c.TelemetryCollector.record_user = "hashed"
c.TelemetryCollector.user_hash_secret = "the-hubs-secret-key"
c.EventLog.handlers = [logging.FileHandler({sink!r})]
c.EventLog.allowed_schemas = {{name: {{"allowed_categories": ["user-identifier"]}}
                               for name in {recorded!r}}}
"""


@dataclass
class HubPages:
    """The module's hub, the collector's sink and alice's token."""

    hub: Hub
    sink: Path
    alice: str

    def page(self, path: str, token: str | None = None) -> str:
        """GET a page through the proxy as a browser asks for it; return its HTML."""
        headers = {"Accept": "text/html,application/xhtml+xml"}
        if token:
            headers["Authorization"] = f"token {token}"
        reply = requests.get(self.hub.url + path, headers=headers, timeout=30)
        assert reply.status_code == 200, (reply.status_code, reply.text[:300])
        return str(reply.text)


@pytest.fixture(scope="module")
def hub_pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubPages]:
    """A hub whose collector records four shipped schemas with each user's hash; alice's server
    (whose own allow-list records nothing) forwards to it and has read its listing."""
    tmp = tmp_path_factory.mktemp("hub-page")
    # The collector and the single-user servers find the shipped schemas in their data dir.
    shutil.copytree(SHIPPED_SCHEMAS, tmp / "jupyter_data_dir" / "telemetry" / "schemas")
    sink = tmp / "events.jsonl"
    config = tmp / "telemetry_config.py"
    config.write_text(COLLECTOR_CONFIG.format(sink=str(sink), recorded=list(HUB_RECORDS)))
    with running_hub(tmp, config) as hub:
        hub.spawn("alice")
        alice = hub.user_token("alice")

        def rules_read() -> bool:
            status, reply = hub.request("GET", "user/alice/api/telemetry/schemas", token=alice)
            return status == 200 and any(s["policy"] for s in reply["schemas"])

        wait_until(rules_read, WAIT, lambda: f"the listing was never read: {log_tail(hub.log)}")
        yield HubPages(hub, sink, alice)


def recorded_ids(html: str) -> set[str]:
    """Return the schema ids the page marks as recorded (a field kept or partly kept)."""
    marks = marks_of(html).marks
    return {schema for (schema, _), mark in marks.items() if mark not in ("off", "")}


def test_her_page_shows_what_the_hub_records_of_her(hub_pages: HubPages) -> None:
    """Four kinds recorded, with her hashed identity: as the collector really records them."""
    html = hub_pages.page("user/alice/telemetry", hub_pages.alice)
    assert recorded_ids(html) == set(HUB_RECORDS)
    assert marks_of(html).marks[(KERNEL, "action")] == "off"
    assert "recorded by the hub" in html
    assert "Who sent it: recorded" in html
    assert "Who sent it: removed" not in html
    assert "a code computed from your user name" in html
    assert "not recorded." not in html
    # ... and the collector does record her events of those kinds with her hash.
    event = {"schema_id": SESSION, "version": 1, "id": "page-truth",
             "data": {"action": "started", "app_name": "JupyterLab"}}  # fmt: skip
    hub = hub_pages.hub
    status, reply = hub.request("POST", "user/alice/api/telemetry/events", event,
                                token=hub_pages.alice)  # fmt: skip
    assert (status, reply) == (200, {"status": "recorded"})
    [written] = wait_until(
        lambda: [e for e in read_events(hub_pages.sink) if e.get("__client_id__") == "page-truth"],
        30,
        lambda: f"never written: {log_tail(hub.log)}",
    )
    assert written["__user__"] not in (None, "alice")  # her hash


def test_the_collectors_root_is_the_same_page_for_a_logged_in_browser(
    hub_pages: HubPages,
) -> None:
    hub = hub_pages.hub
    browser = requests.Session()
    browser.get(hub.url + "hub/login", timeout=30)
    login = {"username": "alice", "password": "x", "_xsrf": browser.cookies.get("_xsrf")}
    assert browser.post(hub.url + "hub/login", data=login, timeout=30).ok
    accept = {"Accept": "text/html,application/xhtml+xml"}
    page = browser.get(hub.collector_url, headers=accept, timeout=30)  # OAuth, then the page
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "What this JupyterHub records" in page.text
    served = marks_of(page.text).marks
    forwarded = marks_of(hub_pages.page("user/alice/telemetry", hub_pages.alice)).marks
    assert {k: v for k, v in served.items() if k[0] in HUB_RECORDS} == {
        k: v for k, v in forwarded.items() if k[0] in HUB_RECORDS
    }
    assert 'id="live"' not in page.text  # no live view at the collector
    for name in ("telemetry.css",):
        url = f"{hub.url}services/{SERVICE}/static/{name}"
        assert f'href="/services/{SERVICE}/static/{name}?v=' in page.text
        assert requests.get(url, timeout=30).status_code == 200  # public, no login
    # Other clients still get JSON; without a login, a redirect (the hub's start-up check).
    assert browser.get(hub.collector_url, timeout=30).json()["user"] == "alice"
    status, reply = hub.request("GET", f"services/{SERVICE}/", token=hub_pages.alice)
    assert (status, reply["user"]) == (200, "alice")
    anonymous = requests.get(hub.collector_url, headers=accept, allow_redirects=False, timeout=30)
    assert anonymous.status_code == 302
    assert "What this JupyterHub records" not in anonymous.text


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_both_pages_in_chromium_load_nothing_from_elsewhere(hub_pages: HubPages) -> None:
    """Logged in with the hub's form: her server's page and the collector's, offline."""
    from playwright.sync_api import sync_playwright

    hub = hub_pages.hub
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
            tab.goto(hub.url + "hub/login?next=%2Fhub%2Fhome")
            tab.fill("#username_input", "alice")
            tab.fill("#password_input", "x")
            tab.click("#login_submit")
            tab.wait_for_url("**/hub/home")
            requested: list[str] = []
            tab.on("request", lambda request: requested.append(request.url))
            for path, name, title in [
                ("user/alice/telemetry", "server", "What your JupyterHub records"),
                (f"services/{SERVICE}/", "collector", "What this JupyterHub records"),
            ]:
                tab.goto(hub.url + path)
                tab.locator("h1", has_text=title).wait_for(timeout=WAIT * 1000)
                shown = tab.locator(f'article[data-schema-id="{CELL}"] .status').first.inner_text()
                assert shown == "Recorded"
                # the style sheet applies: a recorded mark is not drawn as plain text
                style = tab.locator(".status-on").first.evaluate(
                    "(e) => getComputedStyle(e).backgroundColor"
                )
                assert style not in ("rgba(0, 0, 0, 0)", "transparent")
                tab.screenshot(path=str(ARTIFACTS / f"hub-telemetry-{name}.png"), full_page=True)
                tab.screenshot(path=str(ARTIFACTS / f"hub-telemetry-{name}-top.png"))
                tab.locator("#destinations").scroll_into_view_if_needed()
                tab.screenshot(path=str(ARTIFACTS / f"hub-telemetry-{name}-end.png"))
        finally:
            browser.close()
    elsewhere = [url for url in requested if not url.startswith(hub.url)]
    assert not elsewhere, json.dumps(elsewhere)


def test_a_listing_says_policies_to_a_token(hub_pages: HubPages) -> None:
    """The collector's listing: each recorded schema's policy, none of anyone's data."""
    status, reply = hub_pages.hub.request(
        "GET", f"services/{SERVICE}/api/telemetry/schemas", token=hub_pages.alice
    )
    assert status == 200
    policies: dict[str, Any] = {s["id"]: s["policy"] for s in reply["schemas"]}
    assert policies[CELL] == {
        "actions": [], "categories": ["unrestricted", "user-identifier"], "properties": [],
        "user": "hashed", "redaction": "null",
    }  # fmt: skip
    assert policies[KERNEL] is None
    assert "alice" not in json.dumps(reply)
