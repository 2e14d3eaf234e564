"""No request stalls the event loop: errors are described by the fast validator, batches paced."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from tornado.httpclient import HTTPClientError, HTTPResponse

from jupyter_telemetry_ext import EventLog, EventSchema, EventValidationError
from jupyter_telemetry_ext.core.tickets import Ticket
from jupyter_telemetry_ext.server import ingest
from jupyter_telemetry_ext.server.ingest import post_event, record_batch_paced
from jupyter_telemetry_ext.server.reception import Reception
from jupyter_telemetry_ext.server.wire import Limits
from tests.conftest import Sink, make_schema

Fetch = Callable[..., Awaitable[HTTPResponse]]
PATTERN_ID = "test.frontend/pattern"
# Python's re backtracks 2**n times on n a's that end in a non-a: n = 40 never finishes.
BACKTRACKING = "a" * 40 + "!"
SCHEMA_ID = "test.events/stall"
SHAPES = {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]}
JSONSCHEMA_CLASSES = (
    jsonschema.Draft4Validator,
    jsonschema.Draft6Validator,
    jsonschema.Draft7Validator,
    jsonschema.Draft201909Validator,
    jsonschema.Draft202012Validator,
)


@pytest.fixture
def telemetry_schema_dir(telemetry_schema_dir: Path) -> Path:
    """The test schemas, plus an admin's schema whose pattern backtracks in Python's re."""
    schema = {
        **make_schema(PATTERN_ID, name={"type": "string", "pattern": "^(a+)+$"}),
        "frontend": True,
    }
    (telemetry_schema_dir / "pattern.json").write_text(json.dumps(schema), encoding="utf-8")
    return telemetry_schema_dir


def posted(name: str) -> dict[str, Any]:
    """Return a posted event of the pattern schema."""
    return {"schema_id": PATTERN_ID, "version": 1, "data": {"name": name}}


async def refused(jp_fetch: Fetch, body: Any) -> tuple[int, dict[str, Any]]:
    """POST a body that must be refused; return its status and JSON reply."""
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("api", "telemetry", "events", method="POST", body=json.dumps(body))
    assert e.value.response is not None
    return e.value.code, json.loads(e.value.response.body)


async def test_a_backtracking_pattern_is_answered_with_field_and_keyword(
    jp_fetch: Fetch, server_eventlog: EventLog
) -> None:
    failed = Sink()
    server_eventlog.failed_handlers = [failed.handler]
    code, reply = await refused(jp_fetch, posted(BACKTRACKING))
    assert code == 400
    assert reply["message"] == "data.name: fails pattern='^(a+)+$' (got string)"
    code, reply = await refused(jp_fetch, {"events": [posted(BACKTRACKING)] * 3})
    assert (code, reply["rejected"]) == (400, 3)
    assert "data.name: fails pattern" in reply["results"][2]["error"]
    assert server_eventlog.flush(5)
    assert [f["field"] for f in failed.events] == ["data.name"] * 4
    assert "aaaa" not in failed.stream.getvalue()
    failed.handler.close()


@pytest.fixture
def no_jsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every use of jsonschema's validators fail the test."""

    def called(*args: Any, **kwargs: Any) -> Any:
        msg = "jsonschema validated an event"
        raise AssertionError(msg)

    monkeypatch.setattr(jsonschema.validators, "validator_for", called)
    for cls in JSONSCHEMA_CLASSES:
        for method in ("iter_errors", "is_valid", "validate", "descend"):
            monkeypatch.setattr(cls, method, called)


@pytest.mark.usefixtures("no_jsonschema")
@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"name": BACKTRACKING}, "name: fails pattern='^(a+)+$' (got string)"),
        ({"shapes": [0] * 20_000}, "shapes: does not match any of the allowed shapes"),
        ({"shapes": ["x", 3]}, "shapes: does not match any of the allowed shapes"),
        ({"nested": {"__user__": "x"}}, "nested.__user__: property names starting with '__'"),
        ({"nested": {"n": "SECRET"}}, "nested.n: must be of type 'integer' (got string)"),
        ({"count": "SECRET"}, "count: must be of type ['integer', 'null'] (got string)"),
        ({"tags": ["SECRET"] * 3}, "tags: fails maxItems=2 (got array)"),
        ({"extra": "SECRET"}, "(event): has properties the schema does not allow ('extra')"),
        ({}, "name: is required but missing"),
    ],
)
def test_an_invalid_event_is_described_without_jsonschema(
    event: dict[str, Any], message: str
) -> None:
    schema = EventSchema(
        {
            **make_schema(
                SCHEMA_ID,
                name={"type": "string", "pattern": "^(a+)+$"},
                shapes=SHAPES,
                nested={"type": "object", "properties": {"n": {"type": "integer"}}},
                count={"type": ["integer", "null"]},
                tags={"type": "array", "maxItems": 2},
            ),
            "required": ["name"],
            "additionalProperties": False,
        }
    )
    data = {"name": "aaa", **event}
    if not event:
        data = {}
    with pytest.raises(EventValidationError) as e:
        schema.validate(data)
    assert str(e.value).startswith(f"invalid event for schema {SCHEMA_ID!r} version 1: {message}")
    assert "SECRET" not in str(e.value)
    assert "aaaa" not in str(e.value)


def test_a_batch_gives_the_event_loop_back_between_slices(
    eventlog_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "SLICE_SECONDS", 0.0)  # one event per slice
    log = eventlog_factory(allowed_schemas=[SCHEMA_ID])
    log.register_schema({**make_schema(SCHEMA_ID), "frontend": True})
    order: list[str] = []
    log.add_listener(lambda capsule: order.append("event"))
    items = [{"schema_id": SCHEMA_ID, "version": 1, "data": {"action": "x"}}] * 3

    async def other_request() -> None:
        for _ in range(3):
            order.append("other")
            await asyncio.sleep(0)

    async def both() -> list[str]:
        other = asyncio.ensure_future(other_request())
        reception = Reception(received_at=datetime.now(timezone.utc))
        batch = await record_batch_paced(log, items, Limits(), reception)
        await other
        return [result["status"] for result in batch.results]

    assert asyncio.run(both()) == ["recorded"] * 3
    first, last = order.index("event"), len(order) - order[::-1].index("event") - 1
    assert "other" in order[first:last]


def test_a_paced_batch_tracks_only_its_own_events(
    eventlog_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between a batch's slices other requests run: their events never join its ticket."""
    monkeypatch.setattr(ingest, "SLICE_SECONDS", 0.0)  # one event per slice
    log = eventlog_factory(allowed_schemas=[SCHEMA_ID])
    log.register_schema({**make_schema(SCHEMA_ID), "frontend": True})
    tracked: list[tuple[Ticket | None, str]] = []
    log.add_listener(lambda capsule: tracked.append((log.ticket, capsule["action"])))
    batch_items = [{"schema_id": SCHEMA_ID, "version": 1, "data": {"action": "batch"}}] * 3
    other_item = {"schema_id": SCHEMA_ID, "version": 1, "data": {"action": "other"}}
    ours, theirs = Ticket(), Ticket()

    async def other_request() -> None:
        for _ in range(3):
            reception = Reception(received_at=datetime.now(timezone.utc))
            with log.tracking(theirs, seal=False):
                post_event(log, other_item, Limits(), reception)
            await asyncio.sleep(0)

    async def both() -> None:
        other = asyncio.ensure_future(other_request())
        reception = Reception(received_at=datetime.now(timezone.utc))
        track = lambda: log.tracking(ours, seal=False)  # noqa: E731
        await record_batch_paced(log, batch_items, Limits(), reception, track)
        await other

    asyncio.run(both())
    assert [action for _, action in tracked].count("other") == 3
    assert all((ticket is ours) == (action == "batch") for ticket, action in tracked)
