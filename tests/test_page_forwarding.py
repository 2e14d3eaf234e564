"""The transparency page of a server that forwards its events to a JupyterHub collector."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPResponse
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.server.restapi import schemas_model
from jupyter_telemetry_ext.server.transparency import shown_url
from tests.conftest import SHIPPED_SCHEMAS
from tests.test_page import marks_of

Fetch = Callable[..., Awaitable[HTTPResponse]]
# Nothing listens on port 9 of the loopback: the events would wait in the spool.
COLLECTOR = "http://admin:s3cret@127.0.0.1:9/services/telemetry/?key=k3y"
SHIPPED = "https://events.jupyter.org/jupyter_telemetry_ext/"
CELL, SESSION, NOTEBOOK = (SHIPPED + name for name in ("cell", "session", "notebook"))
OWN_ALLOW_LIST = [SESSION]  # the server's own: it must never be shown as the hub's
HUB_ALLOW_LIST = {
    CELL: {"allowed_categories": ["user-identifier"]},
    NOTEBOOK: {"allowed_properties": ["path"]},
}
WAIT = 30.0


class Listing(ThreadingHTTPServer):
    """A stand-in collector on the loopback: answers GET .../api/telemetry/schemas with
    `payload` (what a collector's listing says, or anything else), and 503 to the rest."""

    payload = b""
    reads = 0

    @property
    def url(self) -> str:
        """Return its root URL, as a server's collector_url."""
        return f"http://127.0.0.1:{self.server_address[1]}/services/telemetry/"


class _ListingHandler(BaseHTTPRequestHandler):
    server: Listing

    def do_GET(self) -> None:
        if not self.path.endswith("/api/telemetry/schemas"):
            self.send_error(503)
            return
        self.server.reads += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.server.payload)))
        self.end_headers()
        self.wfile.write(self.server.payload)

    def do_POST(self) -> None:
        self.send_error(503)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


def hub_listing() -> bytes:
    """Return what a collector with the hub's allow-list and hashed users lists."""
    eventlog = EventLog(allowed_schemas=HUB_ALLOW_LIST)
    for path in sorted(SHIPPED_SCHEMAS.rglob("*.yaml")):
        eventlog.register_schema_file(path)
    return json.dumps(schemas_model(eventlog, "hashed")).encode()


@pytest.fixture
def listing(request: pytest.FixtureRequest) -> Iterator[Listing]:
    """Run a stand-in collector for one test, listing the hub's rules (or `request.param`)."""
    server = Listing(("127.0.0.1", 0), _ListingHandler)
    server.payload = getattr(request, "param", None) or hub_listing()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def collector_url(request: pytest.FixtureRequest) -> str:
    """The stand-in collector's URL when the test has one, else a collector that never answers."""
    if "listing" in request.fixturenames:
        return str(request.getfixturevalue("listing").url)
    return COLLECTOR


@pytest.fixture(scope="module")
def spools() -> Iterator[list[Any]]:
    """Close the forwarders' spools once every server of the module has stopped.

    A server's forwarder keeps its spool (and the spool's lock) open until the process exits,
    so that what is recorded while it stops still reaches the spool; the tests' servers stop
    inside the test process.
    """
    opened: list[Any] = []
    yield opened
    for spool in opened:
        spool.close()


@pytest.fixture
def jp_server_config(jp_server_config: Config, tmp_path: Path, collector_url: str) -> Config:
    """Forward to a collector (by default one whose URL carries credentials and a query); the
    server's own allow-list records the session schema."""
    jp_server_config.TelemetryExtension.schema_paths.append(str(SHIPPED_SCHEMAS))
    jp_server_config.EventLog.allowed_schemas = OWN_ALLOW_LIST
    jp_server_config.TelemetryExtension.collector_url = collector_url
    jp_server_config.TelemetryExtension.forward_spool_dir = str(tmp_path / "spool")
    return jp_server_config


async def test_the_page_names_the_collector_without_credentials(
    jp_fetch: Fetch, jp_serverapp: Any, spools: list[Any]
) -> None:
    """Every event goes to the hub's collector, whose rules decide; no credentials shown."""
    [extension] = jp_serverapp.extension_manager.extension_apps["jupyter_telemetry_ext"]
    spools.append(extension.forwarder.spool)
    html = (await jp_fetch("telemetry")).body.decode()
    assert '<code class="path">http://127.0.0.1:9/services/telemetry/</code>' in html
    assert "the hub's rules" in html
    assert "s3cret" not in html
    assert "k3y" not in html


def forwarder_of(jp_serverapp: Any, spools: list[Any]) -> Any:
    """Return the server's forwarder (its spool closed after the module)."""
    [extension] = jp_serverapp.extension_manager.extension_apps["jupyter_telemetry_ext"]
    spools.append(extension.forwarder.spool)
    return extension.forwarder


async def until(condition: Callable[[], bool]) -> None:
    """Wait until the forwarder's thread made `condition` true."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "the forwarder never read the listing"
        await asyncio.sleep(0.05)


async def test_until_the_collector_answers_the_page_shows_no_rules(
    jp_fetch: Fetch, jp_serverapp: Any, spools: list[Any]
) -> None:
    """Not the server's own allow-list as if it applied: the page says the rules are unknown."""
    forwarder_of(jp_serverapp, spools)
    html = (await jp_fetch("telemetry")).body.decode()
    assert 'class="summary rules-unknown"' in html
    assert "kinds of event are recorded" not in html
    assert "<article" not in html  # no schema, no mark
    assert 'id="live"' not in html
    assert "telemetry.js" not in html
    assert "also keeps its own copy of 1 kind of event" in html
    assert "Who sent it</strong>: not known yet" in html  # not "not recorded": unknown
    listed = json.loads((await jp_fetch("api", "telemetry", "schemas")).body)["schemas"]
    assert {s["policy"] for s in listed} == {None}


async def test_the_page_shows_the_collectors_rules(
    listing: Listing, jp_fetch: Fetch, jp_serverapp: Any, spools: list[Any]
) -> None:
    """What the collector lists is what the page shows, the user's hash included."""
    forwarder = forwarder_of(jp_serverapp, spools)
    await until(lambda: forwarder.rules is not None)
    html = (await jp_fetch("telemetry")).body.decode()
    parsed = marks_of(html)
    assert parsed.marks[(CELL, "source")] == "redact"
    assert parsed.marks[(CELL, "status")] == "keep"
    assert parsed.marks[(NOTEBOOK, "path")] == "keep"
    assert parsed.marks[(SESSION, "app_name")] == "off"  # the server's own rule: not the hub's
    recorded = len([s for s in parsed.schemas if s in (CELL, NOTEBOOK)])
    assert f"<strong>{recorded}</strong> of" in html
    assert "recorded by the hub" in html
    assert "Who sent it: recorded" in html  # the cell schema keeps the user-identifier
    assert "a code computed from your user name" in html
    listed = json.loads((await jp_fetch("api", "telemetry", "schemas")).body)["schemas"]
    policies = {s["id"]: s["policy"] for s in listed}
    assert policies[CELL]["user"] == "hashed"
    assert policies[SESSION] is None


OLDER_COLLECTOR = json.dumps({"schemas": [{"id": CELL, "version": 1, "allowed": True}]}).encode()


@pytest.mark.parametrize("listing", [OLDER_COLLECTOR], indirect=True)
async def test_a_listing_without_rules_is_not_shown_as_rules(
    listing: Listing, jp_fetch: Fetch, jp_serverapp: Any, spools: list[Any]
) -> None:
    """An older collector's listing (no policy) says which schemas it records, not how."""
    forwarder = forwarder_of(jp_serverapp, spools)
    await until(lambda: forwarder.announced is not None)
    html = (await jp_fetch("telemetry")).body.decode()
    assert 'class="summary rules-unknown"' in html
    assert "<article" not in html


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hub.example.org/services/telemetry/", "https://hub.example.org/services/telemetry/"),
        ("http://u:p@[::1]:8000/services/t/?token=x#f", "http://[::1]:8000/services/t/"),
    ],
)  # fmt: skip
def test_shown_url_keeps_where_it_leads(url: str, shown: str) -> None:
    """Scheme, host, port and path: never a user, password, query or fragment."""
    assert shown_url(url) == shown
