"""compat.jupyter_telemetry: jupyter-telemetry 0.1.0's EventLog on ours, privacy on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog as CoreEventLog
from jupyter_telemetry_ext import EventSchemaError
from jupyter_telemetry_ext.compat.jupyter_telemetry import TELEMETRY_METADATA_VERSION, EventLog
from jupyter_telemetry_ext.core.errors import UnknownSchemaError
from tests.conftest import Sink
from tests.hubserver import doc_block

# A schema as jupyter-telemetry 0.1.0's users wrote them: no title, description nor type.
SCHEMA: dict[str, Any] = {
    "$id": "my.extension/opened",
    "version": 1,
    "properties": {
        "path": {"type": "string"},
        "user": {"type": "string", "categories": ["user-identifier"]},
    },
}


@pytest.fixture
def eventlog(sink: Sink) -> Iterator[EventLog]:
    """A compatibility EventLog writing to `sink`, the schema above registered and allowed."""
    el = EventLog(handlers=[sink.handler])
    el.register_schema(SCHEMA)
    el.allowed_schemas = [SCHEMA["$id"]]
    yield el
    el.close()


def test_title_and_description_are_optional_here_and_required_by_ours() -> None:
    registered = EventLog().register_schema(SCHEMA)
    assert (registered.title, registered.description) == (SCHEMA["$id"], SCHEMA["$id"])
    with pytest.raises(EventSchemaError, match="title: is required"):
        CoreEventLog().register_schema(SCHEMA)


def test_the_rest_of_a_schema_is_checked_as_ours() -> None:
    with pytest.raises(EventSchemaError, match=r"properties\.__x: property names starting"):
        EventLog().register_schema({**SCHEMA, "properties": {"__x": {"type": "string"}}})
    with pytest.raises(EventSchemaError, match="version: is required"):
        EventLog().register_schema({"$id": "a/b", "properties": {}})


def test_record_event_writes_the_capsule_as_jupyter_telemetry_did(
    eventlog: EventLog, sink: Sink
) -> None:
    when = datetime(2026, 12, 1, 9, 30, 15, 123456)  # noqa: DTZ001 - naive UTC, as its users pass
    eventlog.record_event("my.extension/opened", 1, {"path": "a.ipynb"}, when)
    eventlog.record_event(schema_name="my.extension/opened", version=1, event={"path": "b"})
    first, second = sink.events
    assert first == {
        "__timestamp__": "2026-12-01T09:30:15.123456Z",
        "__schema__": "my.extension/opened",
        "__schema_version__": 1,
        "__metadata_version__": TELEMETRY_METADATA_VERSION,
        "path": "a.ipynb",
    }
    assert (second["path"], second["__metadata_version__"]) == ("b", 1)


def test_nothing_is_recorded_unless_allowed(sink: Sink) -> None:
    el = EventLog(handlers=[sink.handler])
    el.register_schema(SCHEMA)
    assert el.record_event("my.extension/opened", 1, {"path": "a"}) is None
    assert not sink.lines


def test_the_admins_allow_list_applies(sink: Sink) -> None:
    config = Config({"EventLog": {"allowed_schemas": ["my.extension/other"]}})
    el = EventLog(handlers=[sink.handler], config=config)
    el.register_schema(SCHEMA)
    assert el.record_event("my.extension/opened", 1, {"path": "a"}) is None
    assert not sink.lines


def test_personal_properties_are_redacted_unless_allowed(eventlog: EventLog, sink: Sink) -> None:
    eventlog.record_event("my.extension/opened", 1, {"path": "a", "user": "ada"})
    eventlog.allowed_schemas = {SCHEMA["$id"]: {"allowed_categories": ["user-identifier"]}}
    eventlog.record_event("my.extension/opened", 1, {"path": "a", "user": "ada"})
    assert [event["user"] for event in sink.events] == [None, "ada"]


def test_an_invalid_event_names_the_field_not_the_value(eventlog: EventLog, sink: Sink) -> None:
    with pytest.raises(jsonschema.ValidationError) as e:
        eventlog.record_event("my.extension/opened", 1, {"path": ["secret-value"]})
    assert "path" in str(e.value)
    assert "secret-value" not in str(e.value)
    assert not sink.lines


def test_schemas_read_as_registered_from_a_dict_or_a_file(tmp_path: Path) -> None:
    path = tmp_path / "closed.yaml"
    closed = {**SCHEMA, "$id": "my.extension/closed"}
    path.write_text(yaml.safe_dump(closed), "utf-8")
    el = EventLog()
    el.register_schema(SCHEMA)
    el.register_schema_file(path)
    assert el.schemas.values() == [SCHEMA, closed]
    assert el.schemas[("my.extension/closed", 1)] == closed
    assert dict(el.schemas) == {
        ("my.extension/opened", 1): SCHEMA,
        ("my.extension/closed", 1): closed,
    }
    assert [schema.title for schema in el.schemas] == ["my.extension/opened", "my.extension/closed"]


def test_a_file_without_title_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**SCHEMA, "properties": {"x": {"type": "nonsense"}}}))
    with pytest.raises(EventSchemaError, match=r"bad\.yaml: properties\.x\.type"):
        EventLog().register_schema_file(path)


def test_the_migration_pages_example_records_the_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    names: dict[str, Any] = {}
    exec(doc_block("migrating.md", "jupyter_telemetry_compat"), names)  # noqa: S102 - our docs
    names["eventlog"].close()
    for handler in names["eventlog"].handlers:
        handler.close()
    (line,) = (tmp_path / "events.log").read_text("utf-8").splitlines()
    assert json.loads(line)["path"] == "a.ipynb"


@pytest.mark.parametrize(("schema_id", "version"), [("my.extension/nope", 1), (SCHEMA["$id"], 9)])
def test_an_unregistered_schema_is_a_value_error_as_in_jupyter_telemetry(
    schema_id: str, version: int
) -> None:
    eventlog = EventLog(allowed_schemas=[SCHEMA["$id"]])
    eventlog.register_schema(SCHEMA)
    with pytest.raises(ValueError, match=r"is not registered") as raised:
        eventlog.record_event(schema_id, version, {})
    assert isinstance(raised.value, UnknownSchemaError)
