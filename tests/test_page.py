"""The transparency page against a real server: schemas, marks, destinations, static files, auth."""

from __future__ import annotations

import logging
import logging.handlers
from collections.abc import Awaitable, Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPResponse
from traitlets.config import Config

from jupyter_telemetry_ext.server.page import page_handlers
from jupyter_telemetry_ext.server.routes import AUTH_RESOURCE
from tests.conftest import FRONTEND_ID, SHIPPED_SCHEMAS, UNLISTED_ID

Fetch = Callable[..., Awaitable[HTTPResponse]]
SHIPPED = "https://events.jupyter.org/jupyter_telemetry_ext/"
NOTEBOOK, CELL, COMMAND, SESSION = (
    SHIPPED + name for name in ("notebook", "cell", "command", "session")
)
PERSONAL = "user-identifiable-information"
SECRET = "hunter2-not-shown"
ALLOWED = {
    NOTEBOOK: {"allowed_categories": [PERSONAL]},
    CELL: {},
    COMMAND: {"allowed_properties": ["args"], "allowed_actions": ["executed"]},
    FRONTEND_ID: {},
}


class Marks(HTMLParser):
    """Collects `(schema id, field) -> mark` from the page's tables, and each schema's status."""

    def __init__(self) -> None:
        super().__init__()
        self.marks: dict[tuple[str, str], str] = {}
        self.schemas: list[str] = []
        self._schema = ""
        self._field: str | None = None
        self._in_name = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "article":
            self._schema = attributes.get("data-schema-id") or ""
            self.schemas.append(self._schema)
        elif tag == "tr":
            self._field = None
        elif tag == "code" and self._field is None and self._schema:
            self._in_name = True
        elif tag == "span" and "data-mark" in attributes and self._field is not None:
            self.marks[(self._schema, self._field)] = attributes["data-mark"] or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "article":
            self._schema = ""
        self._in_name = self._in_name and tag != "code"

    def handle_data(self, data: str) -> None:
        if self._in_name:
            self._field = data


@pytest.fixture
def jp_server_config(jp_server_config: Config, tmp_path: Path) -> Config:
    """The conftest server, with the shipped schemas, a file sink and a refused-events handler."""
    jp_server_config.TelemetryExtension.schema_paths.append(str(SHIPPED_SCHEMAS))
    jp_server_config.EventLog.allowed_schemas = ALLOWED
    jp_server_config.EventLog.handlers.append(logging.FileHandler(tmp_path / "events.jsonl"))
    jp_server_config.EventLog.failed_handlers = [
        logging.handlers.HTTPHandler(
            "collector.example:8080", "/failed", credentials=("admin", SECRET), secure=True
        )
    ]
    return jp_server_config


async def page(jp_fetch: Fetch) -> str:
    """GET the page; return its HTML."""
    response = await jp_fetch("telemetry")
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    return response.body.decode()


def marks_of(html: str) -> Marks:
    """Parse the page's marks."""
    parser = Marks()
    parser.feed(html)
    return parser


EXPECTED = {
    (NOTEBOOK, "action"): "keep",
    (NOTEBOOK, "path"): "keep",  # its category is allowed
    (CELL, "status"): "keep",
    (CELL, "source"): "redact",
    (CELL, "notebook_path"): "redact",
    (CELL, "error_value"): "redact",
    (COMMAND, "command_id"): "keep",
    (COMMAND, "args"): "keep",  # an allowed property, whatever its category
    (SESSION, "app_name"): "off",  # not in the allow-list: nothing of it is recorded
    (SESSION, "user_agent"): "off",
    (FRONTEND_ID, "path"): "redact",
    (FRONTEND_ID, "model"): "keep",
    (UNLISTED_ID, "action"): "off",
}


@pytest.mark.parametrize(
    ("jp_argv", "changed"),
    [
        pytest.param([], {}, id="null"),
        pytest.param(
            ["--EventLog.redaction=drop"],
            {k: "drop" for k, v in EXPECTED.items() if v == "redact"},
            id="drop",
        ),
        pytest.param(
            ["--EventLog.unrestricted_only=True"],
            {(NOTEBOOK, "path"): "redact", (COMMAND, "args"): "redact"},
            id="unrestricted-only",
        ),
    ],
)
async def test_page_lists_every_schema_with_its_marks(
    jp_fetch: Fetch, changed: dict[tuple[str, str], str]
) -> None:
    parsed = marks_of(await page(jp_fetch))
    assert {NOTEBOOK, CELL, COMMAND, SESSION, FRONTEND_ID, UNLISTED_ID} <= set(parsed.schemas)
    assert {key: parsed.marks.get(key) for key in EXPECTED} == {**EXPECTED, **changed}


async def test_page_says_what_is_recorded_and_where(jp_fetch: Fetch, tmp_path: Path) -> None:
    html = await page(jp_fetch)
    assert "Recorded only for: executed" in html
    assert "Cell execution" in html
    assert "A code cell finished executing" in html
    assert (
        f'<code>logging.FileHandler</code>: <code class="path">{tmp_path / "events.jsonl"}</code>'
        in html
    )
    assert "<code>logging.StreamHandler</code>" in html
    assert "<code>logging.handlers.HTTPHandler</code>" in html
    assert SECRET not in html
    assert "collector.example" not in html
    assert 'class="forwarded"' not in html  # not forwarding: no word of a collector
    assert "Who sent it</strong>: not recorded" in html


async def test_page_reads_the_record_user_mode(jp_fetch: Fetch, jp_serverapp: Any) -> None:
    [extension] = jp_serverapp.extension_manager.extension_apps["jupyter_telemetry_ext"]
    extension.record_user = "hashed"
    html = await page(jp_fetch)
    assert "a code computed from your user name" in html
    assert "Who sent it: removed" in html  # no schema allows `user-identifier`


async def test_page_uses_the_extension_static_files(jp_fetch: Fetch, jp_base_url: str) -> None:
    html = await page(jp_fetch)
    for name in ("telemetry.js", "telemetry.css"):
        assert f'"{jp_base_url}static/jupyter_telemetry_ext/{name}?v=' in html
        response = await jp_fetch("static", "jupyter_telemetry_ext", name)
        assert response.code == 200
        assert b"transparency page" in response.body
    assert f'data-base-url="{jp_base_url}"' in html


async def test_page_without_credentials_redirects_to_login(jp_fetch: Fetch) -> None:
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("telemetry", headers={"Authorization": ""}, follow_redirects=False)
    assert e.value.code == 302
    assert e.value.response is not None
    assert "/login?next=" in e.value.response.headers["Location"]
    assert b"Cell execution" not in (e.value.response.body or b"")


@pytest.fixture
def jp_server_auth_resources(jp_server_auth_core_resources: dict[str, str]) -> dict[str, str]:
    """Map the page's route to the telemetry resource, for pytest-jupyter's authorizer."""
    return {**jp_server_auth_core_resources, **{url: AUTH_RESOURCE for url, _ in page_handlers}}


@pytest.fixture
def authorizer(jp_server_authorizer: type, jp_server_config: Config) -> type:
    """pytest-jupyter's checking authorizer, with permissions each test sets."""
    cls = type("Authorizer", (jp_server_authorizer,), {"permissions": {}})
    jp_server_config.ServerApp.authorizer_class = cls
    return cls


@pytest.mark.parametrize(
    ("permissions", "allowed"),
    [
        pytest.param({}, False, id="nothing"),
        pytest.param({"actions": ["write"], "resources": [AUTH_RESOURCE]}, False, id="write"),
        pytest.param({"actions": ["read"], "resources": ["contents"]}, False, id="other"),
        pytest.param({"actions": ["read"], "resources": [AUTH_RESOURCE]}, True, id="read"),
    ],
)
async def test_page_needs_read_on_telemetry(
    *,
    authorizer: type,  # first: the server must start with it
    jp_fetch: Fetch,
    permissions: dict[str, list[str]],
    allowed: bool,
) -> None:
    authorizer.permissions = permissions  # type: ignore[attr-defined]
    if allowed:
        response = await jp_fetch("telemetry")
        assert b"Cell execution" in response.body
        return
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("telemetry")
    assert e.value.code == 403
    assert e.value.response is not None
    assert b"Cell execution" not in (e.value.response.body or b"")
