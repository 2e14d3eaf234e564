"""A lone surrogate (U+D800-U+DFFF in a Python string: not UTF-8 text) in an event's value or key
is an invalid event naming the field, never the value, as the REST API refuses a body holding one:
no handler, listener, tap or sink ever sees it."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from tornado.httpclient import HTTPClientError, HTTPResponse

from jupyter_telemetry_ext import EventLog, EventSchema, EventSchemaError, EventValidationError
from jupyter_telemetry_ext.core.eventlog_v1 import MetadataV1EventLog
from jupyter_telemetry_ext.sinks.otel import OTLPEventHandler
from tests.conftest import FRONTEND_ID, Sink, make_schema
from tests.otlp_receiver import Receiver

Fetch = Callable[..., Awaitable[HTTPResponse]]
SCHEMA_ID = "test.events/text"
SCHEMA = make_schema(
    SCHEMA_ID,
    action={"type": "string", "categories": ["unrestricted"]},
    path={"type": "string", "pattern": "^/", "categories": ["unrestricted"]},
    user={"type": "string", "categories": ["user-identifier"]},
    model={"type": "object", "categories": ["unrestricted"]},
    secret={"type": "object", "categories": ["user-identifiable-information"]},
    tags={"type": "array", "items": {"type": "string"}, "categories": ["unrestricted"]},
)
UNRESTRICTED = [SCHEMA_ID]  # `user` and `secret` are redacted
EVERY_VALUE = {SCHEMA_ID: {"allowed_categories": [
    "unrestricted", "user-identifier", "user-identifiable-information"]}}  # fmt: skip
GOOD = {"action": "open", "path": "/home/😀", "user": "ada", "tags": ["é"]}

# (event, the field named, what holds the surrogate)
CASES = [
    pytest.param({"action": "\ud800"}, "action", "string", id="value"),
    pytest.param({"action": "ok\udfff"}, "action", "string", id="low-half"),
    # Two halves that JSON would read back as one other character (U+1F600), not as written.
    pytest.param({"action": "\ud83d\ude00"}, "action", "string", id="two-halves"),
    pytest.param({"path": "/\ud800"}, "path", "string", id="read-by-the-validator"),
    pytest.param({"user": "\ud800"}, "user", "string", id="redacted-value"),
    pytest.param({"secret": {"k": ["\ud800"]}}, "secret.*[0]", "string", id="redacted-nested"),
    pytest.param({"model": {"k": "\ud800"}}, "model.*", "string", id="nested-value"),
    pytest.param({"tags": ["a", "\udc00"]}, "tags[1]", "string", id="array-item"),
    pytest.param({"model": {"\ud800": 1}}, "model.*", "key", id="nested-key"),
    pytest.param({"secret": {"\ud800": 1}}, "secret.*", "key", id="redacted-key"),
    pytest.param({"\ud800": 1}, "*", "key", id="top-level-key"),
]


def surrogate_free(text: str) -> bool:
    """Return True when no character of `text` is a surrogate."""
    return not any(0xD800 <= ord(char) <= 0xDFFF for char in text)


def refused(log: EventLog, event: dict[str, Any], **kwargs: Any) -> EventValidationError:
    """Record an event that must be refused; return the error."""
    with pytest.raises(EventValidationError) as e:
        log.record_event(SCHEMA_ID, 1, event, **kwargs)
    return e.value


@pytest.mark.parametrize("allowed", [UNRESTRICTED, EVERY_VALUE, []])
@pytest.mark.parametrize(("event", "field", "holder"), CASES)
def test_a_lone_surrogate_is_an_invalid_event_naming_the_field_not_the_value(
    sink: Sink, allowed: Any, event: dict[str, Any], field: str, holder: str
) -> None:
    """Refused whether the allow-list records the event, keeps every value, or filters it."""
    log = EventLog(handlers=[sink.handler], allowed_schemas=allowed)
    log.register_schema(SCHEMA)
    error = refused(log, event)
    assert (error.field, error.reason) == (
        field, f"is not UTF-8 text (got a {holder} holding a lone surrogate, U+D800-U+DFFF)"
    )  # fmt: skip
    assert surrogate_free(str(error))
    assert sink.lines == []
    assert ("test.events/text", "recorded") not in log.outcomes()


def test_a_lone_surrogate_in_the_users_name_is_refused(sink: Sink) -> None:
    """A capsule field (`__user__`) is refused as a property is, kept or redacted."""
    for allowed in (EVERY_VALUE, UNRESTRICTED):
        log = EventLog(handlers=[sink.handler], allowed_schemas=allowed)
        log.register_schema(SCHEMA)
        error = refused(log, {"action": "open"}, context={"__user__": "ad\udc00a"})
        assert error.field == "__user__"
    assert sink.lines == []


@pytest.mark.parametrize("eventlog_class", [EventLog, MetadataV1EventLog])
def test_no_handler_listener_or_tap_sees_a_lone_surrogate(
    tmp_path: Path, eventlog_class: type[EventLog]
) -> None:
    """Logging handlers (a JSON-lines file, a stream), OpenTelemetry, listeners and taps get
    the valid events only; the file stays UTF-8 JSON that a strict reader takes."""
    path = tmp_path / "events.jsonl"
    file_handler = logging.FileHandler(path, encoding="utf-8")
    stream = Sink()
    heard: list[dict[str, Any]] = []
    tapped: list[Any] = []
    with Receiver() as receiver:
        otel = OTLPEventHandler(receiver.endpoint)
        log = eventlog_class(handlers=[file_handler, stream.handler, otel],
                             allowed_schemas=EVERY_VALUE)  # fmt: skip
        log.register_schema(SCHEMA)
        log.add_listener(heard.append)
        log.add_tap(lambda schema, event, *_: tapped.append(event))
        for case in CASES:
            refused(log, case.values[0])
        log.record_event(SCHEMA_ID, 1, GOOD)
        assert log.flush(10)
        otel.close()
    file_handler.close()
    lines = path.read_bytes().decode("utf-8").splitlines()
    assert [{k: v for k, v in orjson.loads(line).items() if k[:2] != "__"} for line in lines] == [
        GOOD
    ]
    assert stream.events == heard
    assert [record["body"] for record in receiver.records] == [GOOD]
    assert len(heard) == 1
    assert tapped == [GOOD]


def test_a_failure_description_naming_a_lone_surrogate_is_written_escaped(sink: Sink) -> None:
    """`record_failure` with a schema id or field holding one writes it as its escape (text)."""
    log = EventLog(failed_handlers=[sink.handler])
    log.record_failure("rejected", "unknown schema", schema_id="x/\ud800é", field="a\udfff")
    [description] = sink.events
    assert (description["schema_id"], description["field"]) == ("x/\\ud800é", "a\\udfff")


def test_text_past_u_ffff_is_recorded_as_given(sink: Sink) -> None:
    """A character past U+FFFF is one code point in Python, written as an escaped pair."""
    log = EventLog(handlers=[sink.handler], allowed_schemas=EVERY_VALUE)
    log.register_schema(SCHEMA)
    log.record_event(SCHEMA_ID, 1, {"action": "\U0001f600", "model": {"\U0001f600": ("x",)}})
    assert sink.lines[0].isascii()
    [event] = sink.events
    assert (event["action"], event["model"]) == ("\U0001f600", {"\U0001f600": ["x"]})


@pytest.mark.parametrize(
    ("document", "where"),
    [
        pytest.param({"$id": "test.events/\ud800"}, "$id", id="id"),
        pytest.param({"description": "x\udfff"}, "description", id="description"),
        pytest.param({"properties": {"\ud800": {"type": "string"}}}, "properties.\\ud800",
                     id="property-name"),
        pytest.param({"properties": {"a": {"enum": ["x", "\udc00"]}}}, "properties.a.enum.1",
                     id="enum"),
    ],
)  # fmt: skip
def test_a_schema_holding_a_lone_surrogate_is_refused_naming_where(
    document: dict[str, Any], where: str
) -> None:
    with pytest.raises(EventSchemaError) as e:
        EventSchema({**make_schema(SCHEMA_ID), **document})
    assert f"{where}: is not UTF-8 text" in str(e.value)
    assert surrogate_free(str(e.value))


# The REST API reads JSON text; the library, Python values. The same text read by Python's json
# module gives the value: a `\ud800` escape a lone surrogate, an escaped pair one character.
TEXTS = [
    pytest.param('"\\ud800"', False, id="lone-high"),
    pytest.param('"x\\udfff"', False, id="lone-low"),
    pytest.param('"\\ude00\\ud83d"', False, id="halves-reversed"),
    pytest.param('"\\ud83d\\ude00"', True, id="escaped-pair"),
    pytest.param('"\U0001f600"', True, id="character"),
]


async def posted(jp_fetch: Fetch, data_text: str) -> str:
    """POST an event whose `data` is the JSON text given; return "recorded", or the status and
    message of the refusal."""
    body = f'{{"schema_id": "{FRONTEND_ID}", "version": 1, "data": {data_text}}}'
    try:
        await jp_fetch("api", "telemetry", "events", method="POST", body=body.encode())
    except HTTPClientError as e:
        message = json.loads(e.response.body)["message"] if e.response is not None else ""
        return f"{e.code}: {message}"
    return "recorded"


def recorded(eventlog: EventLog, data: Any) -> str:
    """Record an event; return "recorded", or why it is invalid."""
    try:
        eventlog.record_event(FRONTEND_ID, 1, data)
    except EventValidationError as e:
        return e.reason
    return "recorded"


DATA_TEXTS = {
    "value": '{"action": "open", "model": {"paths": [%s]}}',
    "key": '{"action": "open", "model": {%s: 1}}',
    "redacted": '{"action": "open", "path": %s}',
}


@pytest.mark.parametrize(("text", "valid"), TEXTS)
@pytest.mark.parametrize("where", list(DATA_TEXTS))
async def test_the_library_refuses_what_the_rest_api_refuses(
    jp_fetch: Fetch, server_eventlog: EventLog, text: str, valid: bool, where: str
) -> None:
    """A posted body and `record_event` with the value that body means: both take it, or both
    refuse it (the body with 400, the event with EventValidationError)."""
    data_text = DATA_TEXTS[where] % text
    over_rest = await posted(jp_fetch, data_text)
    in_process = recorded(server_eventlog, json.loads(data_text))
    if valid:
        assert (over_rest, in_process) == ("recorded", "recorded")
    else:
        assert over_rest.startswith("400: ")
        assert "lone surrogate" in over_rest
        assert "lone surrogate" in in_process


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """A fresh database on a throwaway PostgreSQL server."""
    from tests.pgserver import server_for_tests

    for server in server_for_tests():
        yield server.url(server.create_database())


@pytest.mark.e2e
def test_postgresql_stores_the_valid_events_and_never_sees_a_lone_surrogate(
    pg_url: str, tmp_path: Path
) -> None:
    """PostgreSQL's jsonb refuses a `\\ud800` escape: no such line ever reaches it."""
    psycopg = pytest.importorskip("psycopg", reason="the [postgres] extra is not installed")
    from jupyter_telemetry_ext.sinks.postgres import PostgresEventHandler

    handler = PostgresEventHandler(pg_url, spool_dir=tmp_path / "spool", max_backoff=0.5)
    try:
        log = EventLog(handlers=[handler], allowed_schemas=EVERY_VALUE, background=True)
        log.register_schema(SCHEMA)
        for case in CASES:
            refused(log, case.values[0])
        log.record_event(SCHEMA_ID, 1, GOOD)
        assert log.flush(10)
        handler.flush()
        with psycopg.connect(pg_url) as conn:
            stored = conn.execute("SELECT data FROM telemetry_events").fetchall()
        assert stored == [(GOOD,)]
        assert log.handler_failures == {}
    finally:
        handler.flush_timeout = 1
        handler.close()
