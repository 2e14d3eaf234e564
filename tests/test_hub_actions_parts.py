"""HubAuditHandler's parts without a hub: its options refused at start, the route names, and a
real tornado application whose log function it is (JupyterHub's, or the one it chains to, still
runs; an action that cannot be recorded is logged, and the request answered all the same)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tornado import httpclient, httpserver, web

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.hub.actions import HUB_ACTION, HubAuditHandler
from jupyter_telemetry_ext.hub.routes_named import NAMED
from tests.conftest import SHIPPED_SCHEMAS
from tests.servers import free_port

pytest.importorskip("jupyterhub", reason="the [hub] extra (jupyterhub) is not installed")

SECRET = "a-key-of-the-tests-0123456789"


class Gate(logging.Handler):
    """A sink that keeps each line, and holds its writer at the gate until it is opened."""

    def __init__(self, closed: bool = False) -> None:
        """Open, unless `closed`."""
        super().__init__()
        self.entered, self.opened = threading.Event(), threading.Event()
        if not closed:
            self.opened.set()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Wait at the gate, then keep the event."""
        self.entered.set()
        self.opened.wait(30)
        self.lines.append(json.loads(record.getMessage()))


def eventlog(sink: logging.Handler, **options: Any) -> EventLog:
    """An EventLog allowing hub-action (with its users), writing to `sink`."""
    log = EventLog(handlers=[sink], allowed_schemas={HUB_ACTION: {
        "allowed_categories": ["unrestricted", "user-identifier"]}}, **options)  # fmt: skip
    log.register_schema_file(SHIPPED_SCHEMAS / "hub-action" / "v1.yaml")
    return log


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"record_user": "name"}, "record_user: must be"),
        ({"record_user": "hashed"}, "needs user_hash_secret"),
        ({"record_user": "hashed", "user_hash_secret": "..."}, "at least 16 characters"),
        ({"skip_actions": ["user.activty"]}, "skip_actions: unknown action names"),
    ],
)
def test_wrong_options_stop_the_hub_at_start(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HubAuditHandler(eventlog(Gate()), chain=lambda handler: None, **options)


def test_an_allow_list_without_hub_action_stops_the_hub_at_start() -> None:
    """Nothing would ever be recorded: said at start, not found out at the first audit."""
    log = EventLog(handlers=[Gate()], allowed_schemas=["https://example.org/other"])
    with pytest.raises(ValueError, match=r"does not allow .*hub-action"):
        HubAuditHandler(log, chain=lambda handler: None)


def test_the_handler_survives_the_configs_copies() -> None:
    """The handler survives the config's copies (traitlets deep-copies config values)."""
    import copy

    audit = HubAuditHandler(eventlog(Gate()), chain=lambda handler: None)
    assert copy.deepcopy({"log_function": audit.log_request})["log_function"].__self__ is audit


def test_every_named_route_names_its_targets_in_order() -> None:
    for (method, route), naming in NAMED.items():
        assert method in {"POST", "PUT", "PATCH", "DELETE"}
        assert len(naming.targets) == route.count("("), route


class Created(web.RequestHandler):
    """A hub-like route: answers 201 to a POST about a user."""

    def post(self, name: str) -> None:
        """Answer 201."""
        self.set_status(201)

    def get(self, name: str) -> None:
        """Answer 200 (no action)."""


@pytest.fixture
def served() -> Iterator[tuple[list[str], Any]]:
    """What the chained log function saw, and a function that serves an app with an audit."""
    chained: list[str] = []
    servers: list[httpserver.HTTPServer] = []

    def serve(audit: HubAuditHandler) -> str:
        app = web.Application([(r"/hub/api/users/([^/]+)", Created)],
                              log_function=audit.log_request)  # fmt: skip
        server = httpserver.HTTPServer(app)
        port = free_port()
        server.listen(port, "127.0.0.1")
        servers.append(server)
        return f"http://127.0.0.1:{port}/hub/api/users/"

    yield chained, serve
    for server in servers:
        server.stop()


async def post(url: str) -> int:
    """POST an empty body; return the status."""
    client = httpclient.AsyncHTTPClient()
    reply = await client.fetch(url, method="POST", body=b"{}", raise_error=False)
    return reply.code


async def test_the_chained_log_function_runs_and_the_action_is_recorded(
    served: tuple[list[str], Any],
) -> None:
    chained, serve = served
    sink = Gate()
    audit = HubAuditHandler(eventlog(sink), chain=lambda h: chained.append(h.request.path))
    url = serve(audit)
    assert await post(url + "carol?password=hunter2") == 201
    await httpclient.AsyncHTTPClient().fetch(url + "carol")  # a GET: logged, no action
    assert chained == ["/hub/api/users/carol", "/hub/api/users/carol"]
    [event] = sink.lines
    assert event == {**event, "action": "user.create", "route": "/api/users/([^/]+)",
                     "target_user": "carol", "status": 201, "actor_kind": "none"}  # fmt: skip
    assert "hunter2" not in json.dumps(event)


async def test_an_action_that_cannot_be_recorded_is_logged_and_the_request_answered(
    served: tuple[list[str], Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A full queue (its writer stuck): the third action is lost, and an ERROR says so."""
    _, serve = served
    sink = Gate(closed=True)
    log = eventlog(sink, background=True, queue_size=1)
    url = serve(HubAuditHandler(log, chain=lambda handler: None))
    try:
        assert await post(url + "one") == 201
        assert sink.entered.wait(10)  # the writer holds "one" at the gate
        assert await post(url + "two") == 201  # waits in the queue
        with caplog.at_level(logging.ERROR, "jupyter_telemetry_ext.hub.actions"):
            assert await post(url + "three") == 201  # answered all the same
    finally:
        sink.opened.set()
        log.close(10)
    assert [e["target_user"] for e in sink.lines] == ["one", "two"]
    [error] = [r for r in caplog.records if r.name == "jupyter_telemetry_ext.hub.actions"]
    assert "Hub action not recorded (POST request)" in error.getMessage()
    assert error.exc_info is not None


async def test_skipped_actions_are_not_recorded(served: tuple[list[str], Any]) -> None:
    _, serve = served
    sink = Gate()
    url = serve(HubAuditHandler(eventlog(sink), chain=lambda handler: None,
                                skip_actions=["user.create"]))  # fmt: skip
    assert await post(url + "carol") == 201
    assert sink.lines == []
