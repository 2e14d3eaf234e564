"""EventLogger: jupyter_events' API on our EventLog, with the allow-list and redaction on."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from traitlets import TraitError
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog, EventLogger, EventSchemaError
from jupyter_telemetry_ext.core.errors import (
    EventSchemaFileAbsent,
    EventSchemaLoadingError,
    EventSchemaUnrecognized,
    SchemaNotRegistered,
    SchemaRegistryException,
)
from tests.conftest import Sink, make_schema
from tests.hubserver import doc_block

SCHEMA_ID = "https://example.org/events/clicked"
SCHEMA = {
    "$id": SCHEMA_ID,
    "version": "1",
    "properties": {
        "button": {"type": "string"},
        "user": {"type": "string", "categories": ["user-identifier"]},
    },
    "required": ["button"],
}


@pytest.fixture
def logger(sink: Sink) -> Iterator[EventLogger]:
    """An EventLogger writing to `sink`, the schema above registered."""
    el = EventLogger(handlers=[sink.handler])
    el.register_event_schema(SCHEMA)
    yield el
    el.eventlog.close()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """What EventLogger logs (its errors) is written here."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger("jupyter_telemetry_ext").addHandler(handler)
    yield stream
    logging.getLogger("jupyter_telemetry_ext").removeHandler(handler)


# Schemas


@pytest.mark.parametrize("form", ["dict", "yaml-path", "json-path", "yaml-text", "json-text"])
def test_a_schema_registers_from_each_form(form: str, tmp_path: Path, sink: Sink) -> None:
    import yaml

    sources: dict[str, Any] = {
        "dict": SCHEMA,
        "yaml-path": tmp_path / "s.yaml",
        "json-path": tmp_path / "s.json",
        "yaml-text": yaml.safe_dump(SCHEMA),
        "json-text": json.dumps(SCHEMA),
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(SCHEMA), "utf-8")
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA), "utf-8")
    el = EventLogger(handlers=[sink.handler])
    el.register_event_schema(sources[form])
    assert SCHEMA_ID in el.schemas
    assert el.emit(schema_id=SCHEMA_ID, data={"button": "ok"}) is not None


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (9001, EventSchemaUnrecognized),
        (Path("no-such-schema.yaml"), EventSchemaFileAbsent),
        ("no/such/schema.yaml", EventSchemaLoadingError),
        ({**SCHEMA, "$id": "not-a-uri"}, jsonschema.ValidationError),
        ({**SCHEMA, "properties": {"__user__": {"type": "string"}}}, jsonschema.ValidationError),
        ({"properties": True}, jsonschema.ValidationError),
    ],
)
def test_a_bad_schema_is_refused_with_jupyter_events_errors(source: Any, error: type) -> None:
    with pytest.raises(error):
        EventLogger().register_event_schema(source)


def test_a_schema_id_registers_once(logger: EventLogger) -> None:
    with pytest.raises(SchemaRegistryException, match=SCHEMA_ID):
        logger.register_event_schema(SCHEMA)


def test_a_schema_its_eventlog_refuses_is_registered_nowhere(sink: Sink) -> None:
    """The EventLog behind the logger holds another schema under the id and version: the
    logger refuses it too, keeps nothing of it, and may register the right one later."""
    el = EventLogger(handlers=[sink.handler])
    other = {**SCHEMA, "title": "Clicked", "description": "Another schema."}
    el.eventlog.register_schema({**other, "type": "object"})
    with pytest.raises(EventSchemaError, match="already registered with a different schema"):
        el.register_event_schema(SCHEMA)
    assert SCHEMA_ID not in el.schemas
    assert SCHEMA_ID not in el.eventlog.allowed_schemas
    el.register_event_schema(other)
    assert el.emit(schema_id=SCHEMA_ID, data={"button": "ok"}) is not None
    el.eventlog.close()


def test_title_stays_required_through_eventlog() -> None:
    with pytest.raises(ValueError, match="title"):
        EventLog().register_schema({**SCHEMA, "type": "object"})


# Emitting


def test_emit_returns_the_capsule_as_jupyter_events_writes_it(
    logger: EventLogger, sink: Sink
) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    capsule = logger.emit(schema_id=SCHEMA_ID, data={"button": "ok"}, timestamp_override=when)
    assert logger.eventlog.flush(5)
    assert sink.events == [capsule]
    assert capsule == {
        "__timestamp__": when.isoformat() + "Z",
        "__schema__": SCHEMA_ID,
        "__schema_version__": "1",
        "__metadata_version__": 1,
        "button": "ok",
    }


def test_an_integer_schema_version_is_written_as_a_string_as_jupyter_events_does(
    sink: Sink,
) -> None:
    el = EventLogger(handlers=[sink.handler])
    el.register_event_schema({**SCHEMA, "version": 2})
    capsule = el.emit(schema_id=SCHEMA_ID, data={"button": "ok"})
    assert el.eventlog.flush(5)
    assert capsule is not None
    assert capsule["__schema_version__"] == "2"
    assert sink.events[0]["__schema_version__"] == "2"
    assert el.schemas.get(SCHEMA_ID).version == "2"
    el.eventlog.close()


def test_emit_without_handler_nor_listener_returns_none() -> None:
    el = EventLogger()
    el.register_event_schema(SCHEMA)
    assert el.emit(schema_id=SCHEMA_ID, data={"button": "ok"}) is None


def test_emit_for_a_schema_not_registered_warns_and_returns_none(logger: EventLogger) -> None:
    with pytest.warns(SchemaNotRegistered, match="https://example.org/unknown"):
        assert logger.emit(schema_id="https://example.org/unknown", data={}) is None


@pytest.mark.parametrize(
    ("schema", "data", "field"),
    [
        (SCHEMA, {"button": 7}, "button"),
        (SCHEMA, {"user": "ada"}, "button"),
        (
            {"$id": SCHEMA_ID, "version": 1, "properties": {"at": {"format": "date-time"}}},
            {"at": "secret-value"},
            "at",
        ),
    ],
)
def test_an_invalid_event_raises_validation_error_naming_the_field_not_the_value(
    schema: dict[str, Any], data: dict[str, Any], field: str, sink: Sink
) -> None:
    el = EventLogger(handlers=[sink.handler])
    el.register_event_schema(schema)
    with pytest.raises(jsonschema.ValidationError) as e:
        el.emit(schema_id=SCHEMA_ID, data=data)
    assert field in str(e.value)
    assert "secret-value" not in str(e.value)
    assert not sink.lines


# Privacy


def test_personal_properties_are_redacted_unless_allowed(logger: EventLogger) -> None:
    capsule = logger.emit(schema_id=SCHEMA_ID, data={"button": "ok", "user": "ada"})
    assert capsule is not None
    assert (capsule["button"], capsule["user"]) == ("ok", None)


def test_allowed_schemas_of_the_logger_decide(sink: Sink) -> None:
    allowed = {SCHEMA_ID: {"allowed_categories": ["user-identifier"]}}
    el = EventLogger(handlers=[sink.handler], allowed_schemas=allowed)
    el.register_event_schema(SCHEMA)
    el.register_event_schema({**SCHEMA, "$id": "https://example.org/other"})
    assert el.emit(schema_id=SCHEMA_ID, data={"button": "ok", "user": "ada"})["user"] == "ada"  # type: ignore[index]
    assert el.emit(schema_id="https://example.org/other", data={"button": "ok"}) is None


def test_the_admins_allow_list_applies_when_configured(sink: Sink) -> None:
    config = Config({"EventLog": {"allowed_schemas": ["https://example.org/other"]}})
    el = EventLogger(handlers=[sink.handler], config=config)
    el.register_event_schema(SCHEMA)
    assert el.emit(schema_id=SCHEMA_ID, data={"button": "ok"}) is None
    assert el.eventlog.outcomes()[(SCHEMA_ID, "filtered")] == 1


def test_without_parent_nor_config_the_running_applications_allow_list_applies(
    sink: Sink,
) -> None:
    from traitlets.config import Application

    config = Config({"EventLog": {"allowed_schemas": ["https://example.org/other"]}})
    Application.instance(config=config)  # a Jupyter server, its config file read
    try:
        el = EventLogger(handlers=[sink.handler])
    finally:
        Application.clear_instance()
    el.register_event_schema(SCHEMA)
    el.register_event_schema({**SCHEMA, "$id": "https://example.org/other"})
    assert el.emit(schema_id=SCHEMA_ID, data={"button": "ok"}) is None
    assert el.emit(schema_id="https://example.org/other", data={"button": "ok"})
    assert el.eventlog.flush(5)
    assert [e["__schema__"] for e in sink.events] == ["https://example.org/other"]


def test_a_schema_the_allow_list_leaves_out_is_named_in_a_warning_at_registration(
    sink: Sink, logs: io.StringIO
) -> None:
    config = Config({"EventLog": {"allowed_schemas": ["https://example.org/other"]}})
    el = EventLogger(handlers=[sink.handler], config=config)
    el.register_event_schema(SCHEMA)
    el.register_event_schema({**SCHEMA, "$id": "https://example.org/other"})
    warning = (
        f"{SCHEMA_ID} is registered, but the allow-list (c.EventLog.allowed_schemas) does not "
        "name it: its events will not be recorded"
    )
    assert logs.getvalue().splitlines() == [warning]


# Handlers


def test_handlers_register_and_remove(sink: Sink) -> None:
    el = EventLogger()
    el.register_event_schema(SCHEMA)
    el.register_handler(sink.handler)
    el.emit(schema_id=SCHEMA_ID, data={"button": "one"})
    el.remove_handler(sink.handler)
    el.emit(schema_id=SCHEMA_ID, data={"button": "two"})
    assert el.eventlog.flush(5)
    assert [e["button"] for e in sink.events] == ["one"]


def test_a_configured_handler_must_be_a_logging_handler() -> None:
    with pytest.raises(TraitError):
        EventLogger(config=Config({"EventLogger": {"handlers": [0]}}))


# Modifiers


def test_modifiers_run_before_validation(logger: EventLogger) -> None:
    def add_button(schema_id: str, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "button": "added"}

    logger.add_modifier(schema_id=SCHEMA_ID, modifier=add_button)
    capsule = logger.emit(schema_id=SCHEMA_ID, data={})  # invalid without the modifier
    assert capsule is not None
    assert capsule["button"] == "added"


def test_a_modifier_for_all_schemas_applies_to_those_registered_later(sink: Sink) -> None:
    el = EventLogger(handlers=[sink.handler])
    el.add_modifier(modifier=lambda schema_id, data: {**data, "button": "masked"})
    el.register_event_schema(SCHEMA)
    assert el.emit(schema_id=SCHEMA_ID, data={"button": "ok"})["button"] == "masked"  # type: ignore[index]


def test_a_removed_modifier_no_longer_runs(logger: EventLogger) -> None:
    def mask(schema_id: str, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "button": "masked"}

    logger.add_modifier(modifier=mask)
    logger.remove_modifier(modifier=mask)
    assert logger.emit(schema_id=SCHEMA_ID, data={"button": "ok"})["button"] == "ok"  # type: ignore[index]


def test_a_modifier_that_raises_is_logged_and_the_event_not_recorded(
    logger: EventLogger, sink: Sink, logs: io.StringIO
) -> None:
    def broken(schema_id: str, data: dict[str, Any]) -> dict[str, Any]:
        msg = "no-such-key"
        raise KeyError(msg)

    logger.add_modifier(modifier=broken)
    assert logger.emit(schema_id=SCHEMA_ID, data={"button": "ok"}) is None
    assert logger.eventlog.flush(5)
    assert not sink.lines
    assert "no-such-key" in logs.getvalue()
    assert "was not recorded" in logs.getvalue()


@pytest.mark.parametrize("returned", [None, ["button"]])
def test_a_modifier_that_returns_no_dict_is_logged_and_the_event_not_recorded(
    logger: EventLogger, sink: Sink, logs: io.StringIO, returned: Any
) -> None:
    logger.add_modifier(modifier=lambda schema_id, data: returned)
    assert logger.emit(schema_id=SCHEMA_ID, data={"button": "ok"}) is None
    assert logger.eventlog.flush(5)
    assert not sink.lines
    assert f"returned {type(returned).__name__}, not a dict" in logs.getvalue()
    assert "was not recorded" in logs.getvalue()


def test_a_modifier_must_be_callable(logger: EventLogger) -> None:
    with pytest.raises(TypeError):
        logger.add_modifier(modifier="not callable")  # type: ignore[arg-type]


# Listeners


async def test_an_async_listener_is_awaited_on_the_jupyter_servers_loop(
    jp_serverapp: Any, sink: Sink
) -> None:
    # Made in the server, the logger reads its config: its own allow-list names the schema.
    logger = EventLogger(handlers=[sink.handler], allowed_schemas=[SCHEMA_ID])
    logger.register_event_schema(SCHEMA)
    seen: list[tuple[str, dict[str, Any], asyncio.AbstractEventLoop]] = []

    async def listener(logger: EventLogger, schema_id: str, data: dict[str, Any]) -> None:
        seen.append((schema_id, data, asyncio.get_running_loop()))

    logger.add_listener(schema_id=SCHEMA_ID, listener=listener)
    logger.emit(schema_id=SCHEMA_ID, data={"button": "ok", "user": "ada"})
    await logger.gather_listeners()
    assert seen == [(SCHEMA_ID, {"button": "ok", "user": None}, jp_serverapp.io_loop.asyncio_loop)]
    assert not logger._active_listeners


async def test_a_listener_that_raises_is_logged_and_others_still_run(
    logger: EventLogger, logs: io.StringIO
) -> None:
    ran = []

    async def broken(logger: EventLogger, schema_id: str, data: dict[str, Any]) -> None:
        raise RuntimeError

    async def fine(logger: EventLogger, schema_id: str, data: dict[str, Any]) -> None:
        ran.append(data["button"])

    logger.add_listener(listener=broken)
    logger.add_listener(listener=fine)
    assert logger.emit(schema_id=SCHEMA_ID, data={"button": "ok"}) is not None
    await logger.gather_listeners()
    assert ran == ["ok"]
    assert "RuntimeError" in logs.getvalue()


async def test_an_unmodified_listener_sees_the_data_before_modifiers_redacted(
    logger: EventLogger,
) -> None:
    seen = []

    async def listener(logger: EventLogger, schema_id: str, data: dict[str, Any]) -> None:
        seen.append(data)

    logger.add_modifier(modifier=lambda schema_id, data: {**data, "button": "masked"})
    logger.add_listener(modified=False, schema_id=SCHEMA_ID, listener=listener)
    logger.emit(schema_id=SCHEMA_ID, data={"button": "ok", "user": "ada"})
    await logger.gather_listeners()
    assert seen == [{"button": "ok", "user": None}]


async def test_a_removed_listener_no_longer_runs(logger: EventLogger) -> None:
    seen = []

    async def listener(logger: EventLogger, schema_id: str, data: dict[str, Any]) -> None:
        seen.append(data)

    logger.add_listener(schema_id=SCHEMA_ID, listener=listener)
    logger.remove_listener(listener=listener)
    logger.emit(schema_id=SCHEMA_ID, data={"button": "ok"})
    await logger.gather_listeners()
    assert seen == []


async def test_listeners_see_nothing_the_allow_list_filters(sink: Sink) -> None:
    seen = []

    async def listener(logger: EventLogger, schema_id: str, data: dict[str, Any]) -> None:
        seen.append(data)

    el = EventLogger(handlers=[sink.handler], allowed_schemas=[])
    el.register_event_schema(SCHEMA)
    el.add_listener(listener=listener)
    assert el.emit(schema_id=SCHEMA_ID, data={"button": "ok"}) is None
    await el.gather_listeners()
    assert seen == []


def test_an_async_listener_without_a_running_loop_is_logged(
    logger: EventLogger, logs: io.StringIO
) -> None:
    async def listener(logger: EventLogger, schema_id: str, data: dict[str, Any]) -> None:
        raise AssertionError

    logger.add_listener(schema_id=SCHEMA_ID, listener=listener)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited"
        assert logger.emit(schema_id=SCHEMA_ID, data={"button": "ok"}) is not None
    assert "no running event loop" in logs.getvalue()


# jupyter-telemetry's keyword


def test_record_event_takes_jupyter_telemetrys_schema_name(eventlog_factory: Any) -> None:
    el = eventlog_factory(allowed_schemas=["test.events/example"])
    el.register_schema(make_schema())
    capsule = el.record_event(schema_name="test.events/example", version=1, event={"action": "a"})
    assert capsule is not None
    assert capsule["action"] == "a"
    with pytest.raises(TypeError, match="not both"):
        el.record_event("test.events/example", 1, {}, schema_name="test.events/example")
    with pytest.raises(TypeError, match="needs a schema_id"):
        el.record_event(version=1, event={})


def test_a_modifier_works_on_a_copy_of_the_callers_event(logger: EventLogger) -> None:
    def mutate(schema_id: str, data: dict[str, Any]) -> dict[str, Any]:
        data["button"] = "masked"
        return data

    logger.add_modifier(modifier=mutate)
    event = {"button": "ok"}
    logger.emit(schema_id=SCHEMA_ID, data=event)
    assert event == {"button": "ok"}


def test_a_schema_marked_personal_data_redacts_its_uncategorised_properties(sink: Sink) -> None:
    el = EventLogger(handlers=[sink.handler])
    el.register_event_schema({**SCHEMA, "personal-data": True})
    capsule = el.emit(schema_id=SCHEMA_ID, data={"button": "ok"})
    assert capsule is not None
    assert capsule["button"] is None


def test_the_migration_pages_example_writes_what_jupyter_events_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "clicked.yaml").write_text(doc_block("migrating.md", "clicked_schema"))
    names: dict[str, Any] = {}
    exec(doc_block("migrating.md", "jupyter_events_compat"), names)  # noqa: S102 - our docs
    names["logger"].eventlog.close()
    for handler in names["logger"].handlers:
        handler.close()
    (line,) = (tmp_path / "events.log").read_text("utf-8").splitlines()
    event = json.loads(line)
    assert event["__timestamp__"].endswith("+00:00Z")
    del event["__timestamp__"]
    assert event == {
        "__schema__": "https://example.org/my-extension/clicked",
        "__schema_version__": "1",
        "__metadata_version__": 1,
        "button": "ok",
    }


async def test_an_unmodified_listener_never_sees_an_action_the_allow_list_leaves_out(
    sink: Sink,
) -> None:
    schema_id = "https://example.org/events/acted"
    el = EventLogger(handlers=[sink.handler], allowed_schemas=[(schema_id, ["open"], [])])
    el.register_event_schema(
        {"$id": schema_id, "version": "1", "properties": {"action": {"enum": ["open", "purge"]}}}
    )
    seen: list[dict[str, Any]] = []

    async def listener(logger: EventLogger, schema_id: str, data: dict[str, Any]) -> None:
        seen.append(data)

    el.add_listener(modified=False, schema_id=schema_id, listener=listener)
    el.add_modifier(schema_id=schema_id, modifier=lambda schema_id, data: {"action": "open"})
    assert el.emit(schema_id=schema_id, data={"action": "purge"})  # recorded as "open"
    assert el.emit(schema_id=schema_id, data={"action": "open"})
    await el.gather_listeners()
    assert seen == [{"action": "open"}]
    el.eventlog.close()
