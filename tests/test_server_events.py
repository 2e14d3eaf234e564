"""The server's own events go through the same allow-list; counts appear on /metrics."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tornado.httpclient import HTTPResponse
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog
from tests.conftest import FRONTEND_ID, Sink

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
def jp_server_config(jp_server_config: Config, allowed_server_schemas: Any) -> Config:  # type: ignore[no-redef]
    return server_config(jp_server_config, allowed_server_schemas)


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
