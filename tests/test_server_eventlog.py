"""`server_eventlog(serverapp)`: the server's EventLog for an extension that loads before ours."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPResponse
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext import server_eventlog as get_server_eventlog
from tests.conftest import FRONTEND_ID, SERVER_ID, Sink

Fetch = Callable[..., Awaitable[HTTPResponse]]
EARLY = "aaa_early_telemetry_user"  # sorts before jupyter_telemetry_ext: loaded first
EARLY_ID = "https://example.org/early-extension/clicked"

EARLY_EXTENSION = f'''
"""A server extension that registers a schema when it loads and records at request time."""
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web

from jupyter_telemetry_ext import server_eventlog

SCHEMA = {{
    "$id": "{EARLY_ID}", "version": 1, "title": "Clicked", "description": "A click.",
    "type": "object",
    "properties": {{
        "button": {{"type": "string", "categories": ["unrestricted"]}},
        "user": {{"type": "string", "categories": ["user-identifier"]}},
    }},
}}
LOADED = {{}}


class ClickHandler(JupyterHandler):
    @web.authenticated
    def post(self):
        eventlog = server_eventlog(self.serverapp)
        capsule = eventlog.record_event(SCHEMA["$id"], 1, {{"button": "ok", "user": "ada"}})
        self.finish({{"recorded": capsule is not None}})


def _jupyter_server_extension_points():
    return [{{"module": "{EARLY}"}}]


def _load_jupyter_server_extension(serverapp):
    LOADED["published_at_load"] = "telemetry_eventlog" in serverapp.web_app.settings
    LOADED["eventlog"] = server_eventlog(serverapp)
    LOADED["eventlog"].register_schema(SCHEMA)
    route = url_path_join(serverapp.base_url, "early", "click")
    serverapp.web_app.add_handlers(".*$", [(route, ClickHandler)])
'''


@pytest.fixture
def early_extension(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Return the early extension's module, importable as a server extension."""
    folder = tmp_path / "early"
    folder.mkdir()
    (folder / f"{EARLY}.py").write_text(textwrap.dedent(EARLY_EXTENSION), "utf-8")
    monkeypatch.syspath_prepend(str(folder))
    yield __import__(EARLY)
    sys.modules.pop(EARLY, None)


@pytest.fixture
def jp_server_config(jp_server_config: Config, early_extension: Any) -> Config:  # type: ignore[no-redef]
    config = Config(jp_server_config)
    config.ServerApp.jpserver_extensions = {**config.ServerApp.jpserver_extensions, EARLY: True}
    config.EventLog.allowed_schemas = {FRONTEND_ID: {}, SERVER_ID: {}, EARLY_ID: {}}
    return config


async def test_an_extension_loaded_first_registers_at_load_and_records_at_request_time(
    jp_serverapp: Any, jp_fetch: Fetch, early_extension: Any, sink: Sink
) -> None:
    loaded = early_extension.LOADED
    published: EventLog = jp_serverapp.web_app.settings["telemetry_eventlog"]
    assert loaded["published_at_load"] is False  # the settings had no EventLog yet
    assert loaded["eventlog"] is published is get_server_eventlog(jp_serverapp)
    assert EARLY_ID in {schema.id for schema in published.schemas}
    assert FRONTEND_ID in {schema.id for schema in published.schemas}  # found schemas too
    reply = await jp_fetch("early", "click", method="POST", body="")
    assert json.loads(reply.body) == {"recorded": True}
    assert published.flush(5)
    [event] = [e for e in sink.events if e["__schema__"] == EARLY_ID]
    assert event["button"] == "ok"
    assert event["user"] is None  # personal: redacted, as the allow-list keeps no category


def test_a_server_without_the_extension_is_refused() -> None:
    class Server:
        extension_manager = None

    with pytest.raises(RuntimeError, match="jupyter_telemetry_ext is not enabled"):
        get_server_eventlog(Server())
