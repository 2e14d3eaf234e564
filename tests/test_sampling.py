"""Sampling (`c.EventLog.sampling`): the library's decision, and a real server's replies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from tornado.httpclient import HTTPResponse
from traitlets import TraitError
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.core.sampling import SAMPLING_FORM, keeps, share
from tests.conftest import FRONTEND_ID, SERVER_ID, UNLISTED_ID, Sink, make_schema

Fetch = Callable[..., Awaitable[HTTPResponse]]
Recorded = Callable[[], list[dict[str, Any]]]
ID = "test.events/sampled"
VECTORS = json.loads((Path(__file__).parent / "sampling_vectors.json").read_text("utf-8"))


def sampled_log(make: Callable[..., EventLog], rate: float = 0.5, **kwargs: Any) -> EventLog:
    """Return an EventLog that records ID, sampled at `rate`."""
    log = make(allowed_schemas=[ID], sampling={ID: rate}, **kwargs)
    log.register_schema(make_schema(ID))
    return log


def record(log: EventLog, client_id: str | None = None, schema_id: str = ID) -> bool:
    """Record one event (with a client id if given); return True when it was recorded."""
    context = {"__client_id__": client_id} if client_id is not None else None
    return log.record_event(schema_id, 1, {"action": "a"}, context=context) is not None


# The library


@pytest.mark.parametrize(
    "ids",
    [[str(uuid.uuid4()) for _ in range(4000)], [f"id-{n}" for n in range(4000)]],
    ids=["uuid4", "sequential"],
)
def test_about_half_of_many_ids_are_kept_and_the_rest_counted_sampled_out(
    eventlog_factory: Callable[..., EventLog], sink: Sink, ids: list[str]
) -> None:
    log = sampled_log(eventlog_factory)
    kept = sum(record(log, client_id) for client_id in ids)
    assert 0.46 * len(ids) < kept < 0.54 * len(ids)
    assert log.outcomes() == {(ID, "recorded"): kept, (ID, "sampled_out"): len(ids) - kept}
    assert len(sink.events) == kept  # decided before the handlers: nothing else was written


def test_the_same_id_gets_the_same_decision(eventlog_factory: Callable[..., EventLog]) -> None:
    log = sampled_log(eventlog_factory, 0.3)
    ids = [str(uuid.uuid4()) for _ in range(300)]
    first = [record(log, client_id) for client_id in ids]
    assert [record(log, client_id) for client_id in ids] == first
    assert first == [share(ID, client_id) < 0.3 for client_id in ids]
    assert 0 < sum(first) < len(ids)


def test_without_an_id_the_decision_is_random(eventlog_factory: Callable[..., EventLog]) -> None:
    log = sampled_log(eventlog_factory, 0.25)
    kept = sum(record(log) for _ in range(4000))
    assert 0.2 * 4000 < kept < 0.3 * 4000  # 5 standard deviations either side


def test_a_rate_of_one_and_unsampled_schemas_keep_every_event(
    eventlog_factory: Callable[..., EventLog],
) -> None:
    log = sampled_log(eventlog_factory, 1)
    log.register_schema(make_schema("test.events/other"))
    log.allowed_schemas = [ID, "test.events/other"]
    ids = [f"id-{n}" for n in range(500)]
    assert all(record(log, client_id) for client_id in ids)
    assert all(record(log, client_id, "test.events/other") for client_id in ids)
    assert (log.sampling_rate(ID), log.sampling_rate("test.events/other")) == (1.0, 1.0)
    assert not any(outcome == "sampled_out" for _, outcome in log.outcomes())


def test_listeners_never_see_a_sampled_out_event(
    eventlog_factory: Callable[..., EventLog],
) -> None:
    log = sampled_log(eventlog_factory, 0.5, background=True)
    seen: list[str] = []
    log.add_listener(lambda capsule: seen.append(capsule["__client_id__"]))
    ids = [f"id-{n}" for n in range(200)]
    kept = [client_id for client_id in ids if record(log, client_id)]
    assert seen == kept
    assert kept == [client_id for client_id in ids if keeps(0.5, ID, client_id)]


def test_a_filtered_event_is_filtered_not_sampled_out(
    eventlog_factory: Callable[..., EventLog],
) -> None:
    log = sampled_log(eventlog_factory)
    log.allowed_schemas = []
    assert not any(record(log, f"id-{n}") for n in range(100))
    assert log.outcomes() == {(ID, "filtered"): 100}


def test_changing_the_rates_applies_to_the_next_event(
    eventlog_factory: Callable[..., EventLog],
) -> None:
    log = sampled_log(eventlog_factory, 0.5)
    dropped = next(f"id-{n}" for n in range(100) if not keeps(0.5, ID, f"id-{n}"))
    assert not record(log, dropped)
    log.sampling = {}
    assert record(log, dropped)
    log.sampling = {ID: 0.5}
    assert not record(log, dropped)


def test_sampling_from_the_command_line() -> None:
    from traitlets.config import Application

    app = Application()
    app.classes = [EventLog]
    app.parse_command_line(["--EventLog.sampling", f"{ID}=0.25"])
    assert EventLog(config=app.config).sampling_rate(ID) == 0.25


@pytest.mark.parametrize(
    "rates",
    [{ID: 0}, {ID: -0.5}, {ID: 1.5}, {ID: float("nan")}, {ID: float("inf")}, {"": 0.5}, {1: 0.5}],
    ids=["zero", "negative", "over-one", "nan", "inf", "empty-id", "int-id"],
)
def test_bad_rates_and_ids_are_refused_with_the_form(rates: dict[Any, Any]) -> None:
    with pytest.raises(TraitError) as e:
        EventLog(sampling=rates)
    assert "0 < rate <= 1" in str(e.value)
    assert str(e.value).startswith("sampling")
    with pytest.raises(TraitError):
        EventLog().sampling = rates


@pytest.mark.parametrize("value", [[ID], {ID: "half"}, {ID: None}], ids=["list", "str", "none"])
def test_values_that_are_not_rates_are_refused(value: Any) -> None:
    with pytest.raises(TraitError) as e:
        EventLog(sampling=value)
    assert "dict" in str(e.value) or SAMPLING_FORM in str(e.value)


def test_the_shared_vectors_are_the_library_decisions() -> None:
    """tests/sampling_vectors.json: the JupyterLab client is checked against the same file."""
    schema_id, rate = VECTORS["schema_id"], VECTORS["rate"]
    assert [[i, keeps(rate, schema_id, i)] for i, _ in VECTORS["kept"]] == VECTORS["kept"]
    for schema, client_id, crc in VECTORS["crc32"]:
        assert share(schema, client_id) * 2**32 == crc


# A real server, with plain token requests as API clients send them


@pytest.fixture
def jp_server_config(jp_server_config: Config) -> Config:
    """The extension's test server, sampling the frontend schemas at the vectors' rate."""
    jp_server_config.EventLog.sampling = {FRONTEND_ID: VECTORS["rate"], UNLISTED_ID: 0.5}
    jp_server_config.EventLog.allowed_schemas = {
        FRONTEND_ID: {"allowed_actions": ["open"]},
        SERVER_ID: {},
    }
    return jp_server_config


async def post(jp_fetch: Fetch, body: Any) -> dict[str, Any]:
    """POST a JSON body to api/telemetry/events; return the reply."""
    response = await jp_fetch("api", "telemetry", "events", method="POST", body=json.dumps(body))
    assert response.code == 200
    return dict(json.loads(response.body))


def conform(reply: Any, name: str) -> None:
    """Check a reply against a schema of the published contract (rest-api.yml, OpenAPI 3.0)."""
    api = yaml.safe_load((files("jupyter_telemetry_ext") / "rest-api.yml").read_text("utf-8"))
    registry = Registry().with_resource("urn:api", Resource(with_null(api), DRAFT4))
    ref = {"$ref": f"urn:api#/components/schemas/{name}"}
    Draft4Validator(ref, registry=registry).validate(reply)


def with_null(node: Any) -> Any:
    """Return an OpenAPI 3.0 document with `nullable: true` written as JSON Schema's null type."""
    if isinstance(node, list):
        return [with_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: with_null(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True and isinstance(node.get("type"), str):
        out["type"] = [node["type"], "null"]
    return out


def event(client_id: str | None, action: str = "open", schema_id: str = FRONTEND_ID) -> Any:
    """Return a posted event of the test schema, with a client id if given."""
    posted = {"schema_id": schema_id, "version": 1, "data": {"action": action}}
    return posted if client_id is None else {**posted, "id": client_id}


async def test_the_server_drops_what_the_vectors_say_and_a_retry_gets_the_same_answer(
    jp_fetch: Fetch, recorded: Recorded
) -> None:
    ids = [client_id for client_id, _ in VECTORS["kept"]]
    dropped = {client_id for client_id, kept in VECTORS["kept"] if not kept}
    body = {"events": [event(client_id) for client_id in ids]}
    first = await post(jp_fetch, body)
    expected = ["sampled_out" if i in dropped else "recorded" for i in ids]
    assert [result["status"] for result in first["results"]] == expected
    assert (first["recorded"], first["sampled_out"]) == (len(ids) - len(dropped), len(dropped))
    conform(first, "BatchReply")
    written = [capsule["__client_id__"] for capsule in recorded()]
    assert written == [i for i in ids if i not in dropped]

    retry = await post(jp_fetch, body)  # a client that never got the first reply
    for client_id, result in zip(ids, retry["results"], strict=True):
        if client_id in dropped:
            assert result["status"] == "sampled_out"
        else:  # kept again: written once, or twice where retries are not remembered
            assert result["status"] in ("recorded", "duplicate")
    assert not dropped & {capsule["__client_id__"] for capsule in recorded()}


async def test_a_single_event_gets_the_status_sampled_out_every_time(jp_fetch: Fetch) -> None:
    dropped = next(client_id for client_id, kept in VECTORS["kept"] if not kept)
    for _ in range(3):
        reply = await post(jp_fetch, event(dropped))
        assert reply == {"status": "sampled_out"}
    conform(reply, "EventReply")


async def test_events_without_an_id_are_sampled_at_random(
    jp_fetch: Fetch, recorded: Recorded
) -> None:
    reply = await post(jp_fetch, {"events": [event(None)] * 400})
    assert reply["recorded"] + reply["sampled_out"] == 400
    assert 120 < reply["recorded"] < 280  # rate 0.5: 8 standard deviations either side
    assert len(recorded()) == reply["recorded"]


async def test_a_filtered_event_is_filtered_whatever_its_id(jp_fetch: Fetch) -> None:
    """An action or a schema the allow-list does not record is `filtered`, even if sampled."""
    dropped = next(client_id for client_id, kept in VECTORS["kept"] if not kept)
    kept = next(client_id for client_id, kept in VECTORS["kept"] if kept)
    body = {
        "events": [
            event(dropped, "close"),
            event(kept, "close"),
            event(dropped, schema_id=UNLISTED_ID),
        ]
    }
    reply = await post(jp_fetch, body)
    assert [result["status"] for result in reply["results"]] == ["filtered"] * 3


async def test_the_schema_list_gives_each_rate(jp_fetch: Fetch) -> None:
    schemas = json.loads((await jp_fetch("api", "telemetry", "schemas")).body)["schemas"]
    rates = {(s["id"], s["version"]): s["sampling"] for s in schemas}
    assert rates[(FRONTEND_ID, 1)] == rates[(FRONTEND_ID, 2)] == VECTORS["rate"]
    assert rates[(UNLISTED_ID, 1)] == 0.5
    assert rates[(SERVER_ID, 1)] == 1
    for summary in schemas:
        conform(summary, "SchemaSummary")


async def test_metrics_count_sampled_out(jp_fetch: Fetch) -> None:
    ids = [client_id for client_id, _ in VECTORS["kept"]]
    dropped = sum(not kept for _, kept in VECTORS["kept"])
    await post(jp_fetch, {"events": [event(client_id) for client_id in ids]})
    metrics = (await jp_fetch("metrics")).body.decode()
    line = f'jupyter_telemetry_events_total{{outcome="sampled_out",schema="{FRONTEND_ID}"}}'
    assert f"{line} {float(dropped)}" in metrics
    assert "sampled_out" in metrics.split("# HELP jupyter_telemetry_events_total")[1].split("\n")[0]
