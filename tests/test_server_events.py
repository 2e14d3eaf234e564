"""The server's own events go through the same allow-list; counts appear on /metrics."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPResponse
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.server.server_events import warn_unredacted_handlers
from tests.conftest import FRONTEND_ID, SERVER_ID, Sink, make_schema

Fetch = Callable[..., Awaitable[HTTPResponse]]
CONTENTS = "https://events.jupyter.org/jupyter_server/contents_service/v1"
KERNELS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"


def server_config(jp_server_config: Config, allowed: Any) -> Config:
    config = Config(jp_server_config)
    config.EventLog.allowed_schemas = allowed
    return config


@pytest.fixture
def allowed_server_schemas() -> Any:
    return {
        CONTENTS: {"allowed_properties": ["action"]},
        KERNELS: {"allowed_properties": ["action"]},
        FRONTEND_ID: {},
    }


@pytest.fixture
def server_event_handlers() -> list[logging.Handler]:
    return []


@pytest.fixture
def jp_server_config(  # type: ignore[no-redef]
    jp_server_config: Config,
    allowed_server_schemas: Any,
    server_event_handlers: Any,
) -> Config:
    config = server_config(jp_server_config, allowed_server_schemas)
    if server_event_handlers:
        config.EventLogger.handlers = server_event_handlers
    return config


async def save_a_file_and_start_a_kernel(jp_fetch: Fetch) -> None:
    model = {"type": "file", "format": "text", "content": "private notes"}
    await jp_fetch("api", "contents", "secret-plans.txt", method="PUT", body=json.dumps(model))
    reply = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kernel_id = json.loads(reply.body)["id"]
    await jp_fetch("api", "kernels", kernel_id, method="DELETE")


async def wait_recorded(server_eventlog: EventLog, sink: Sink) -> list[dict[str, Any]]:
    import asyncio

    await asyncio.sleep(0.2)  # jupyter_events runs listeners as tasks on the event loop
    assert server_eventlog.flush(5)
    return sink.events


async def test_server_events_recorded_with_paths_redacted(
    jp_fetch: Fetch, server_eventlog: EventLog, sink: Sink
) -> None:
    await save_a_file_and_start_a_kernel(jp_fetch)
    events = await wait_recorded(server_eventlog, sink)
    saves = [e for e in events if e["__schema__"] == CONTENTS and e["action"] == "save"]
    assert saves
    assert saves[0]["path"] is None
    assert "secret-plans" not in json.dumps(events)
    actions = {e["action"] for e in events if e["__schema__"] == KERNELS}
    assert {"start", "shutdown"} <= actions
    assert all(e.get("kernel_id") is None for e in events if e["__schema__"] == KERNELS)


@pytest.mark.parametrize("allowed_server_schemas", [[FRONTEND_ID]])
async def test_server_events_not_allowed_record_nothing(
    jp_fetch: Fetch, server_eventlog: EventLog, sink: Sink
) -> None:
    await save_a_file_and_start_a_kernel(jp_fetch)
    assert await wait_recorded(server_eventlog, sink) == []
    assert server_eventlog.outcomes()[(CONTENTS, "filtered")] >= 1


async def test_server_schemas_cannot_be_posted(jp_fetch: Fetch) -> None:
    from tornado.httpclient import HTTPClientError

    body = {"schema_id": KERNELS, "version": "1", "data": {"action": "start", "msg": "forged"}}
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("api", "telemetry", "events", method="POST", body=json.dumps(body))
    assert e.value.code == 403


async def test_metrics_count_outcomes_per_schema(
    jp_fetch: Fetch, server_eventlog: EventLog
) -> None:
    good = {"schema_id": FRONTEND_ID, "version": 1, "data": {"action": "open"}}
    bad = {"schema_id": FRONTEND_ID, "version": 1, "data": {"action": "jump"}}
    body = json.dumps({"events": [good, good, bad]})
    await jp_fetch("api", "telemetry", "events", method="POST", body=body)
    metrics = (await jp_fetch("metrics")).body.decode()
    assert (
        f'jupyter_telemetry_events_total{{outcome="recorded",schema="{FRONTEND_ID}"}} 2.0'
        in metrics
    )
    assert (
        f'jupyter_telemetry_events_total{{outcome="rejected",schema="{FRONTEND_ID}"}} 1.0'
        in metrics
    )
    assert "jupyter_telemetry_queue_pending" in metrics


# jupyter_server's own route POST api/events emits on the same event logger we record from.

FORGED_KERNEL = {"action": "interrupt", "kernel_id": "forged", "status": "success", "msg": "x"}
FORGED = [
    pytest.param(CONTENTS, {"action": "delete", "path": "forged.txt"}, id="contents"),
    pytest.param(KERNELS, FORGED_KERNEL, id="kernel"),
]


async def post_to_api_events(jp_fetch: Fetch, schema_id: str, data: dict[str, Any]) -> int:
    body = json.dumps({"schema_id": schema_id, "version": "1", "data": data})
    try:
        reply = await jp_fetch("api", "events", method="POST", body=body)
    except HTTPClientError as e:
        return e.code
    return reply.code


@pytest.mark.parametrize(("schema_id", "data"), FORGED)
async def test_forged_server_events_are_refused_and_not_recorded(
    jp_fetch: Fetch, server_eventlog: EventLog, sink: Sink, schema_id: str, data: dict[str, Any]
) -> None:
    assert await post_to_api_events(jp_fetch, schema_id, data) == 403
    await save_a_file_and_start_a_kernel(jp_fetch)
    events = await wait_recorded(server_eventlog, sink)
    actions = {(e["__schema__"], e["action"]) for e in events}
    assert (CONTENTS, "save") in actions
    assert {(KERNELS, "start"), (KERNELS, "shutdown")} <= actions
    assert (schema_id, data["action"]) not in actions


async def test_our_schemas_not_open_to_frontends_are_refused_on_api_events(jp_fetch: Fetch) -> None:
    body = json.dumps({"schema_id": SERVER_ID, "version": 1, "data": {"action": "x"}})
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("api", "events", method="POST", body=body)
    assert e.value.code == 403
    assert "not open to frontends" in json.loads(e.value.response.body)["message"]


def server_schema(serverapp: Any, schema_id: str, **keys: Any) -> dict[str, Any]:
    """A jupyter_events schema as an extension registers it on the server's event logger."""
    # jupyter_events wants the version as its release does: 1 in older ones, "1" in newer.
    version = serverapp.event_logger.schemas.get(CONTENTS).version
    schema = make_schema(schema_id, version, action={"type": "string"})
    return {**schema, "personal-data": True, **keys}


async def test_schemas_of_other_extensions_keep_jupyter_servers_answer(
    jp_fetch: Fetch, jp_serverapp: Any, server_eventlog: EventLog, sink: Sink
) -> None:
    schema_id = "https://events.example.org/other-extension/v1"
    jp_serverapp.event_logger.register_event_schema(server_schema(jp_serverapp, schema_id))
    heard: list[dict[str, Any]] = []

    async def listen(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        heard.append(data)

    jp_serverapp.event_logger.add_listener(schema_id=schema_id, listener=listen)
    assert await post_to_api_events(jp_fetch, schema_id, {"action": "clicked"}) == 204
    assert await wait_recorded(server_eventlog, sink) == []
    assert heard == [{"action": "clicked"}]


OPEN_ID = "https://events.example.org/open/v1"


@pytest.mark.parametrize("allowed_server_schemas", [{OPEN_ID: {"allowed_properties": ["action"]}}])
async def test_server_schema_open_to_frontends_posted_to_api_events_is_not_recorded(
    jp_fetch: Fetch, jp_serverapp: Any, server_eventlog: EventLog, sink: Sink
) -> None:
    from jupyter_telemetry_ext.server.server_events import record_server_events

    schema_id = OPEN_ID
    jp_serverapp.event_logger.register_event_schema(
        server_schema(jp_serverapp, schema_id, frontend=True)
    )
    assert schema_id in record_server_events(
        jp_serverapp.event_logger, server_eventlog, jp_serverapp.log
    )
    assert await post_to_api_events(jp_fetch, schema_id, {"action": "forged"}) == 204
    jp_serverapp.event_logger.emit(schema_id=schema_id, data={"action": "real"})
    events = await wait_recorded(server_eventlog, sink)
    assert [e["action"] for e in events if e["__schema__"] == schema_id] == ["real"]


@pytest.fixture
def authorizer(jp_server_authorizer: type, jp_server_config: Config) -> type:
    """pytest-jupyter's checking authorizer (each route's resource), with its own permissions."""
    cls = type("Authorizer", (jp_server_authorizer,), {"permissions": {}})
    jp_server_config.ServerApp.authorizer_class = cls
    return cls


@pytest.mark.parametrize(
    ("permissions", "code"),
    [
        ({}, 403),
        ({"actions": ["write"], "resources": ["telemetry"]}, 403),
        ({"actions": ["read"], "resources": ["events"]}, 403),
        ({"actions": ["write"], "resources": ["events"]}, 204),
    ],
)
async def test_api_events_keeps_jupyter_servers_permission(
    authorizer: type, jp_fetch: Fetch, jp_serverapp: Any, permissions: Any, code: int
) -> None:
    authorizer.permissions = permissions  # type: ignore[attr-defined]
    schema_id = "https://events.example.org/other-extension/v1"
    jp_serverapp.event_logger.register_event_schema(server_schema(jp_serverapp, schema_id))
    assert await post_to_api_events(jp_fetch, schema_id, {"action": "clicked"}) == code


async def test_api_events_without_credentials_is_refused(
    jp_fetch: Fetch, server_eventlog: EventLog, sink: Sink
) -> None:
    body = json.dumps({"schema_id": KERNELS, "version": "1", "data": FORGED_KERNEL})
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("api", "events", method="POST", body=body, headers={"Authorization": ""})
    assert e.value.code == 403
    assert await wait_recorded(server_eventlog, sink) == []


RAW_HANDLERS = "jupyter_server's own event logger also writes its events to StreamHandler"
UNREDACTED = io.StringIO()


@pytest.mark.parametrize("server_event_handlers", [[logging.StreamHandler(UNREDACTED)]])
async def test_handlers_of_jupyter_servers_own_event_logger_are_named_in_a_warning(
    jp_fetch: Fetch, server_eventlog: EventLog, sink: Sink, jp_serverapp: Any
) -> None:
    await save_a_file_and_start_a_kernel(jp_fetch)
    assert "secret-plans" not in json.dumps(await wait_recorded(server_eventlog, sink))
    assert "secret-plans" in UNREDACTED.getvalue()  # what the warning is about
    stream = io.StringIO()
    warn_unredacted_handlers(jp_serverapp.event_logger, logging_to(stream))
    assert RAW_HANDLERS in stream.getvalue()
    assert "c.EventLogger.handlers" in stream.getvalue()


def test_no_warning_for_handlers_recording_through_an_eventlog() -> None:
    pytest.importorskip("jupyterhub")
    from jupyter_events import EventLogger

    from jupyter_telemetry_ext.hub.events import HubEventHandler

    stream = io.StringIO()
    warn_unredacted_handlers(EventLogger(), logging_to(stream))
    handler = HubEventHandler(allowed_schemas=[])
    warn_unredacted_handlers(EventLogger(handlers=[handler]), logging_to(stream))
    handler.close()
    assert stream.getvalue() == ""


def logging_to(stream: io.StringIO) -> logging.Logger:
    """Return a logger of its own writing to `stream`."""
    log = logging.getLogger(f"test.server_events.{id(stream)}")
    log.propagate = False
    log.handlers = [logging.StreamHandler(stream)]
    return log
