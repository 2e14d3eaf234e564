"""End to end: the transparency page in headless Chromium against a real `jupyter server`.

A real `jupyter server` runs on 127.0.0.1 under a base URL, with a token, temporary Jupyter
folders, the shipped schemas, an allow-list and a file sink. Debian's Chromium (driven by
Playwright, whose own browsers are never downloaded) logs in through the login form, so the
session is a cookie, opens the page and posts events from page JavaScript as JupyterLab's
`ServerConnection` does: with the `_xsrf` cookie's value in `X-XSRFToken`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import pytest
from playwright.sync_api import sync_playwright

from tests.servers import Process, SinkFile, free_port, jupyter_command, jupyter_environment

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TOKEN = "e2e-transparency-token"
BASE_URL = "/jp/"
SHIPPED = "https://events.jupyter.org/jupyter_telemetry_ext/"
NOTEBOOK, CELL, COMMAND, SESSION = (SHIPPED + n for n in ("notebook", "cell", "command", "session"))
ALLOWED = {
    NOTEBOOK: {"allowed_categories": ["user-identifiable-information"]},
    CELL: {},
    COMMAND: {},
}
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOT = ARTIFACTS / "telemetry-page.png"
README_SCREENSHOT = ROOT / "docs" / "telemetry-page.png"
WAIT = 20.0

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
    ),
]

SERVER_CONFIG = """
import logging

c.ServerApp.jpserver_extensions = {extensions!r}
c.TelemetryExtension.schema_paths = [{schemas!r}]
c.EventLog.handlers = [logging.FileHandler({sink!r}, encoding="utf-8")]
c.EventLog.allowed_schemas = {allowed!r}
"""
# Only this extension: the others would slow the start down and are not under test.
EXTENSIONS = {
    "jupyter_telemetry_ext": True,
    "jupyterlab": False,
    "jupyter_lsp": False,
    "jupyter_server_terminals": False,
    "notebook_shim": False,
}

# Posts one event from the page as JupyterLab's ServerConnection does: the session cookie goes
# by itself; the `_xsrf` cookie's value goes in the X-XSRFToken header (unless told not to).
POST_FROM_PAGE = """
async ([url, event, withXsrf]) => {
  const headers = {"Content-Type": "application/json"};
  const xsrf = document.cookie.match("\\\\b_xsrf=([^;]*)\\\\b");
  if (withXsrf && xsrf) {
    headers["X-XSRFToken"] = xsrf[1];
  }
  const reply = await fetch(url, {method: "POST", headers, body: JSON.stringify(event)});
  return {status: reply.status, body: await reply.text()};
}
"""

PAGE_MARKS = """
() => Object.fromEntries([...document.querySelectorAll("article[data-schema-id]")].map(
  (article) => [article.dataset.schemaId, Object.fromEntries(
    [...article.querySelectorAll("tbody tr")].map(
      (row) => [row.querySelector("th code").textContent,
                row.querySelector("[data-mark]").dataset.mark]))]))
"""


@dataclass
class Server(SinkFile):
    """A running `jupyter server`: its sink file, its log and its URL (with the base URL)."""

    url: str
    wait: ClassVar[float] = WAIT


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`jupyter server` on 127.0.0.1 recording the allowed shipped schemas into a file."""
    tmp = tmp_path_factory.mktemp("telemetry-page")
    (tmp / "root").mkdir()
    sink = tmp / "telemetry-events.jsonl"
    config = tmp / "jupyter_server_config.py"
    config.write_text(
        SERVER_CONFIG.format(
            extensions=EXTENSIONS, schemas=str(ROOT / "schemas"), sink=str(sink), allowed=ALLOWED
        ),
        encoding="utf-8",
    )
    port = free_port()
    base_url = f"--ServerApp.base_url={BASE_URL}"
    command = jupyter_command("server", config, port, tmp / "root", TOKEN, base_url)
    log = tmp / "server.log"
    url = f"http://127.0.0.1:{port}{BASE_URL}"
    with Process(command, tmp, jupyter_environment(tmp), log) as process:
        headers = {"Authorization": f"token {TOKEN}"}
        process.wait_until_up(f"{url}api/status", headers, 60, 0.2)
        yield Server(sink, log, url)


@pytest.fixture
def page(server: Server) -> Iterator[Any]:
    """The transparency page in a fresh Chromium, logged in with the login form.

    Function-scoped: Playwright's sync API runs an event loop of its own, which must be gone
    before pytest-jupyter's autouse loop fixture closes the current loop.
    """
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 900})
            tab = context.new_page()
            tab.goto(f"{server.url}login?next={quote(BASE_URL + 'telemetry')}")
            tab.fill("#password_input", TOKEN)
            tab.click("#login_submit")
            tab.wait_for_url(f"{server.url}telemetry")
            tab.locator('#live-status[data-state="open"]').wait_for(timeout=WAIT * 1000)
            yield tab
        finally:
            browser.close()


def post(page: Any, server: Server, event: dict[str, Any], *, xsrf: bool) -> dict[str, Any]:
    """POST an event from the page's JavaScript; return the status and body."""
    return dict(page.evaluate(POST_FROM_PAGE, [f"{server.url}api/telemetry/events", event, xsrf]))


def command(command_id: str) -> dict[str, Any]:
    """A command event with personal arguments (the allow-list does not keep them)."""
    data = {"action": "executed", "command_id": command_id, "success": True, "args": {"p": "x"}}
    return {"schema_id": COMMAND, "version": 1, "data": data}


def test_login_is_a_cookie_session(page: Any) -> None:
    names = {cookie["name"] for cookie in page.context.cookies()}
    assert "_xsrf" in names
    assert any(name.startswith("username-") for name in names)
    assert TOKEN not in page.url


def test_page_lists_the_shipped_schemas_with_their_marks(page: Any) -> None:
    marks = page.evaluate(PAGE_MARKS)
    # The newest version (2) of the notebook schema: version 1's fields, cause and session.
    assert marks[NOTEBOOK] == {
        "action": "keep", "path": "keep", "kernel_name": "keep", "cell_count": "keep",
        "cause": "keep", "notebook_session": "keep",
    }  # fmt: skip
    assert marks[CELL]["status"] == "keep"
    assert {k: marks[CELL][k] for k in ("source", "notebook_path", "error_value")} == dict.fromkeys(
        ("source", "notebook_path", "error_value"), "redact"
    )
    assert marks[COMMAND] == {
        "action": "keep", "command_id": "keep", "invoked_from": "keep", "success": "keep",
        "args": "redact",
    }  # fmt: skip
    assert set(marks[SESSION].values()) == {"off"}
    assert page.locator(f'article[data-schema-id="{SESSION}"] .status').inner_text() == (
        "Not recorded"
    )


def test_events_posted_with_xsrf_are_recorded_and_shown_live(page: Any, server: Server) -> None:
    reply = post(page, server, command("e2e:with-xsrf"), xsrf=True)
    assert (reply["status"], json.loads(reply["body"])) == (200, {"status": "recorded"})
    recorded = server.wait_for(lambda e: e.get("command_id") == "e2e:with-xsrf")
    assert recorded["args"] is None  # personal: redacted before it is written
    shown = page.locator("#live-events li", has_text="e2e:with-xsrf")
    shown.wait_for(timeout=WAIT * 1000)
    assert "JupyterLab command" in shown.inner_text()
    count = page.locator(f'#live-counts tr[data-schema-id="{COMMAND}"] .count')
    assert count.inner_text() == "1"

    # Without the header the cookie session is refused, and nothing is recorded: the next
    # event, posted right after, is written and shown alone.
    refused = post(page, server, command("e2e:without-xsrf"), xsrf=False)
    assert refused["status"] == 403
    assert "_xsrf" in refused["body"]
    post(page, server, command("e2e:after"), xsrf=True)
    server.wait_for(lambda e: e.get("command_id") == "e2e:after")
    page.locator("#live-events li", has_text="e2e:after").wait_for(timeout=WAIT * 1000)
    assert [e["command_id"] for e in server.events()] == ["e2e:with-xsrf", "e2e:after"]
    assert page.locator("#live-events li", has_text="e2e:without-xsrf").count() == 0
    assert count.inner_text() == "2"

    cell = {"action": "executed", "status": "ok", "duration_ms": 41.5, "source": "secret = 1"}
    post(page, server, {"schema_id": CELL, "version": 1, "data": cell}, xsrf=True)
    page.locator("#live-events li", has_text="Cell execution").wait_for(timeout=WAIT * 1000)
    page.select_option("#live-filter", CELL)
    assert page.locator("#live-events li:visible").count() == 1
    page.select_option("#live-filter", "")
    assert page.locator("#live-events li:visible").count() == 3
    screenshot(page)


def screenshot(page: Any) -> None:
    """Save the whole page with the test artifacts; refresh the README's copy when asked to."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    if os.environ.get("UPDATE_README_SCREENSHOT"):
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(SCREENSHOT, README_SCREENSHOT)
