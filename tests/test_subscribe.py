"""The websocket api/telemetry/subscribe on a real server: filter, late schemas, slow readers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.core.errors import SubscriberLimitError
from jupyter_telemetry_ext.server.subscribe import DROPPED_KEY, Subscription
from jupyter_telemetry_ext.server.subscribers import Subscribers
from tests.conftest import FRONTEND_ID, SERVER_ID, UNLISTED_ID, frontend_schema

Connect = Callable[..., Awaitable[WebSocketClientConnection]]


async def frames(ws: WebSocketClientConnection, count: int) -> list[dict[str, Any]]:
    """Read `count` JSON frames, failing after a few seconds without one."""
    received = []
    for _ in range(count):
        message = await asyncio.wait_for(ws.read_message(), 5)
        assert isinstance(message, str)
        received.append(json.loads(message))
    return received


async def nothing_more(ws: WebSocketClientConnection) -> bool:
    """Return True when no frame arrives within a short while."""
    try:
        await asyncio.wait_for(ws.read_message(), 0.2)
    except asyncio.TimeoutError:
        return True
    return False


def record(eventlog: EventLog, schema_id: str = FRONTEND_ID, **data: Any) -> None:
    """Record an event the way a server-side extension would."""
    eventlog.record_event(schema_id, 1, data or {"action": "open"})


async def test_each_capsule_is_one_frame_after_redaction(
    jp_ws_fetch: Connect, server_eventlog: EventLog
) -> None:
    ws = await jp_ws_fetch("api", "telemetry", "subscribe")
    record(server_eventlog, action="open", count=1, path="/home/me/secret.ipynb")
    record(server_eventlog, UNLISTED_ID)  # filtered by the allow-list: never sent
    record(server_eventlog, action="close", count=2)
    first, second = await frames(ws, 2)
    assert (first["__schema__"], first["count"], first["path"]) == (FRONTEND_ID, 1, None)
    assert first["__timestamp__"].endswith("Z")
    assert second["count"] == 2
    assert await nothing_more(ws)
    ws.close()


async def test_filter_by_schema_id(jp_ws_fetch: Connect, server_eventlog: EventLog) -> None:
    ws = await jp_ws_fetch("api", "telemetry", "subscribe", params={"schema_id": SERVER_ID})
    record(server_eventlog, FRONTEND_ID)
    record(server_eventlog, SERVER_ID, action="kernel-started")
    [capsule] = await frames(ws, 1)
    assert (capsule["__schema__"], capsule["action"]) == (SERVER_ID, "kernel-started")
    assert await nothing_more(ws)
    ws.close()


@pytest.fixture
def connect_query(
    jp_serverapp: Any, jp_http_port: int, jp_base_url: str, jp_auth_header: dict[str, str]
) -> Callable[[str], Awaitable[WebSocketClientConnection]]:
    """Open the socket with a query string as given (jp_ws_fetch's params cannot repeat a key)."""

    def connect(query: str) -> Awaitable[WebSocketClientConnection]:
        url = f"ws://127.0.0.1:{jp_http_port}{jp_base_url}api/telemetry/subscribe?{query}"
        return websocket_connect(HTTPRequest(url, headers=jp_auth_header))

    return connect


async def test_repeated_filter_and_a_schema_registered_later(
    connect_query: Callable[[str], Awaitable[WebSocketClientConnection]],
    jp_fetch: Callable[..., Awaitable[Any]],
    server_eventlog: EventLog,
) -> None:
    late_id = "test.late/registered"
    ws = await connect_query(urlencode([("schema_id", late_id), ("schema_id", SERVER_ID)]))
    server_eventlog.register_schema(frontend_schema(late_id))
    server_eventlog.allowed_schemas = {**server_eventlog.allowed_schemas, late_id: {}}
    body = json.dumps({"schema_id": late_id, "version": 1, "data": {"action": "open"}})
    await jp_fetch("api", "telemetry", "events", method="POST", body=body)
    record(server_eventlog, FRONTEND_ID)
    record(server_eventlog, SERVER_ID)
    late, server = await frames(ws, 2)
    assert (late["__schema__"], server["__schema__"]) == (late_id, SERVER_ID)
    assert await nothing_more(ws)
    ws.close()


@pytest.mark.parametrize("jp_argv", [["--TelemetryExtension.subscriber_buffer=5"]])
async def test_slow_subscriber_drops_the_oldest_and_says_how_many(
    jp_ws_fetch: Connect, server_eventlog: EventLog
) -> None:
    ws = await jp_ws_fetch("api", "telemetry", "subscribe")
    started = time.perf_counter()
    for count in range(50):  # without yielding to the event loop: nothing is sent meanwhile
        record(server_eventlog, action="open", count=count)
    assert time.perf_counter() - started < 1
    notice, *capsules = await frames(ws, 6)
    assert notice == {DROPPED_KEY: 45}
    assert [capsule["count"] for capsule in capsules] == [45, 46, 47, 48, 49]
    assert await nothing_more(ws)
    ws.close()


async def test_closed_subscriber_stops_listening(
    jp_ws_fetch: Connect, server_eventlog: EventLog
) -> None:
    ws = await jp_ws_fetch("api", "telemetry", "subscribe")
    assert len(server_eventlog._listeners) == 1
    ws.close()
    for _ in range(50):  # let the server see the close
        await asyncio.sleep(0.01)
        if not server_eventlog._listeners:
            break
    assert server_eventlog._listeners == []
    record(server_eventlog, action="open")
    assert server_eventlog.flush(5)


def test_subscription_buffer_is_bounded_without_a_consumer() -> None:
    wakes: list[int] = []
    subscription = Subscription([], 3, lambda: wakes.append(1))
    for count in range(10):
        subscription({"__schema__": "x", "count": count})
    assert (subscription.dropped, len(wakes)) == (7, 1)
    sent = iter(subscription.next_frame, None)
    assert [json.loads(frame) for frame in sent] == [
        {DROPPED_KEY: 7},
        {"__schema__": "x", "count": 7},
        {"__schema__": "x", "count": 8},
        {"__schema__": "x", "count": 9},
    ]
    subscription({"__schema__": "x", "count": 10})
    assert len(wakes) == 2


async def refused_socket(connecting: Awaitable[WebSocketClientConnection]) -> tuple[int, Any]:
    """Await a websocket that must be refused; return the status, its JSON and Retry-After."""
    with pytest.raises(HTTPClientError) as e:
        await connecting
    assert e.value.response is not None
    reply = json.loads(e.value.response.body)
    return e.value.code, (reply["message"], e.value.response.headers.get("Retry-After"))


async def closed(ws: WebSocketClientConnection, eventlog: EventLog, listeners: int) -> None:
    """Close a socket and wait until the server has `listeners` left."""
    ws.close()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(eventlog._listeners) == listeners:
            return
    raise AssertionError(len(eventlog._listeners))


@pytest.mark.parametrize("jp_argv", [["--TelemetryExtension.max_subscribers_per_user=2"]])
async def test_subscribers_per_user_are_capped(
    jp_ws_fetch: Connect, server_eventlog: EventLog
) -> None:
    # Plain token sockets: each is a new anonymous user to jupyter_server, one principal here.
    sockets = [await jp_ws_fetch("api", "telemetry", "subscribe") for _ in range(2)]
    code, (message, retry) = await refused_socket(jp_ws_fetch("api", "telemetry", "subscribe"))
    assert (code, retry) == (429, "1")
    assert "TelemetryExtension.max_subscribers_per_user" in message
    assert len(server_eventlog._listeners) == 2  # the refused one never listened
    await closed(sockets.pop(), server_eventlog, 1)
    sockets.append(await jp_ws_fetch("api", "telemetry", "subscribe"))  # a freed place is taken
    record(server_eventlog, action="open")
    for ws in sockets:
        assert (await frames(ws, 1))[0]["action"] == "open"
        ws.close()


@pytest.mark.parametrize(
    "jp_argv",
    [["--TelemetryExtension.max_subscribers=3", "--TelemetryExtension.max_subscribers_per_user=0"]],
)
async def test_subscribers_in_all_are_capped(
    named_users: None, jp_ws_fetch: Connect, server_eventlog: EventLog
) -> None:
    def subscribe(user: str) -> Awaitable[WebSocketClientConnection]:
        return jp_ws_fetch("api", "telemetry", "subscribe", headers={"X-Test-User": user})

    sockets = [await subscribe("ada"), await subscribe("ada"), await subscribe("grace")]
    code, (message, retry) = await refused_socket(subscribe("alan"))
    assert (code, retry) == (503, "1")
    assert "TelemetryExtension.max_subscribers" in message
    await closed(sockets.pop(0), server_eventlog, 2)
    sockets.append(await subscribe("alan"))
    assert len(server_eventlog._listeners) == 3
    for ws in sockets:
        ws.close()


def test_subscriber_counts_follow_joins_and_leaves() -> None:
    subscribers = Subscribers(total=3, per_principal=2)
    for who in ("ada", "ada", "bob"):
        subscribers.join(who)
    with pytest.raises(SubscriberLimitError) as mine:
        subscribers.join("ada")
    with pytest.raises(SubscriberLimitError) as everyone:
        subscribers.join("cy")
    assert (mine.value.status, everyone.value.status, len(subscribers)) == (429, 503, 3)
    subscribers.leave("ada")
    subscribers.join("cy")
    subscribers.leave("bob")
    subscribers.join("ada")
    assert (len(subscribers), subscribers._open) == (3, {"ada": 2, "cy": 1})
