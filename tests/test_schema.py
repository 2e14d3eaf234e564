"""Schema loading and checking: every rule of registration, each bad input."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from jupyter_telemetry_ext import EventLog, EventSchema, EventSchemaError
from jupyter_telemetry_ext.core.validation import EventValidationError
from tests.conftest import billion_laughs, make_schema


def test_yaml_and_json_files_register(tmp_path: Path) -> None:
    schema = make_schema("my.events/set1/event1")
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(schema))
    (tmp_path / "b.json").write_text(json.dumps({**schema, "version": 2}))
    log = EventLog()
    assert log.register_schema_file(tmp_path / "a.yaml").id == "my.events/set1/event1"
    assert log.register_schema_file(str(tmp_path / "b.json")).version == 2
    assert sorted(s.version_key for s in log.schemas) == ["1", "2"]


def test_open_file_objects_register() -> None:
    log = EventLog()
    text = yaml.safe_dump(make_schema("from.a/file"))
    assert log.register_schema_file(io.StringIO(text)).id == "from.a/file"
    assert log.register_schema_file(io.BytesIO(text.encode())).id == "from.a/file"


def test_uri_ids_and_string_versions() -> None:
    schema = EventSchema(
        make_schema("https://events.jupyter.org/jupyter_server/kernel_actions/v1", "1")
    )
    assert schema.version == "1"
    assert schema.version_key == EventSchema(make_schema(version=1)).version_key


def _without(key: str) -> dict[str, Any]:
    schema = make_schema()
    del schema[key]
    return schema


@pytest.mark.parametrize(
    ("document", "key"),
    [
        (_without("$id"), "$id"),
        (_without("version"), "version"),
        (_without("title"), "title"),
        (_without("description"), "description"),
        (_without("properties"), "properties"),
        ({**make_schema(), "type": "array"}, "type"),
        ({**make_schema(), "version": True}, "version"),
        ({**make_schema(), "version": 1.5}, "version"),
        ({**make_schema(), "$id": ""}, "$id"),
        ({**make_schema(), "properties": []}, "properties"),
        ([1, 2], "(document)"),
        (make_schema(x={"type": 12}), "properties.x.type"),
        ({**make_schema(), "$schema": "https://example.org/my-dialect"}, "$schema"),
    ],
)
def test_bad_schemas_name_the_key(document: Any, key: str) -> None:
    with pytest.raises(EventSchemaError) as e:
        EventSchema(document)
    assert f": {key}: " in str(e.value)
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize(
    "properties",
    [
        {"__timestamp__": {"type": "string"}},
        {"outer": {"type": "object", "properties": {"__inner": {"type": "string"}}}},
        {"list": {"type": "array", "items": {"properties": {"__deep": {}}}}},
        {"x": {"anyOf": [{"properties": {"__alt": {}}}]}},
    ],
)
def test_reserved_property_names_refused_at_any_depth(properties: dict[str, Any]) -> None:
    with pytest.raises(EventSchemaError, match="reserved"):
        EventSchema(make_schema(**properties))


DRAFT4 = "http://json-schema.org/draft-04/schema#"
DRAFT2020 = "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize(
    ("extra", "event", "field"),
    [
        pytest.param({}, {"blob": {"__user__": "eve"}}, "blob.__user__", id="empty-schema"),
        # A key the schema does not name may be data: it is shown as "*" (the reserved one is not)
        pytest.param({}, {"other": {"__user__": "eve"}}, "*.__user__", id="undeclared-key"),
        pytest.param({}, {"list": [1, {"__x": 1}]}, "list[1].__x", id="items-empty"),
        pytest.param({}, {"blob": {"a": [[{"b": {"__c": 1}}]]}}, "blob.*[0][0].*.__c", id="deep"),
        pytest.param({}, {"obj": {"n": 1, "__n": 2}}, "obj.__n", id="described-object"),
        pytest.param({"$schema": DRAFT4}, {"obj": {"__n": 2}}, "obj.__n", id="draft-04"),
        pytest.param({"$schema": DRAFT2020}, {"blob": {"__u": 1}}, "blob.__u", id="draft-2020"),
        pytest.param(
            {"$ref": "#/definitions/root", "definitions": {"root": {"type": "object"}}},
            {"blob": {"__u": 1}},
            "blob.__u",
            id="root-ref",
        ),
    ],
)
def test_reserved_keys_refused_in_every_object_of_an_event(
    extra: dict[str, Any], event: dict[str, Any], field: str
) -> None:
    properties = {
        "blob": {},
        "list": {"type": "array", "items": {}},
        "obj": {"type": "object", "properties": {"n": {"type": "integer"}}},
    }
    log = EventLog()
    log.register_schema({**make_schema("x/reserved", **properties), **extra})
    with pytest.raises(EventValidationError) as e:
        log.record_event("x/reserved", 1, event)
    assert e.value.field == field
    assert "property names starting with '__' are reserved" in str(e.value)
    assert log.record_event("x/reserved", 1, {"blob": {"user": "eve"}}) is None  # filtered, valid


def test_the_reserved_key_rule_keeps_unevaluated_properties_strict() -> None:
    document = {
        **make_schema("x/strict", action={"type": "string"}),
        "$schema": DRAFT2020,
        "unevaluatedProperties": False,
    }
    schema = EventSchema(document)
    assert schema.is_valid({"action": "open"})
    assert not schema.is_valid({"action": "open", "extra": 1})
    assert not schema.is_valid({"action": "open", "__x": 1})


def test_a_bad_schema_is_a_jsonschema_schema_error_too() -> None:
    """Code written for jupyter_telemetry catches jsonschema.SchemaError (its own test does)."""
    with pytest.raises(jsonschema.SchemaError) as e:
        EventLog().register_schema({"properties": True})
    assert isinstance(e.value, ValueError)
    assert isinstance(e.value, EventSchemaError)
    assert (
        e.value.message == str(e.value) == "schema: $id: is required and must be a non-empty string"
    )
    assert repr(e.value) == f"EventSchemaError({str(e.value)!r})"
    again = pickle.loads(pickle.dumps(e.value))  # noqa: S301 - our own bytes
    assert (type(again), str(again)) == (type(e.value), str(e.value))


def test_raising_a_schema_error_does_not_import_jsonschema() -> None:
    code = (
        "import sys\n"
        "from jupyter_telemetry_ext import EventLog, EventSchemaError\n"
        "try:\n"
        "    EventLog().register_schema({'properties': True})\n"
        "except EventSchemaError as e:\n"
        "    assert isinstance(e, ValueError), e\n"
        "assert 'jsonschema' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump({**make_schema(), "title": None}))
    with pytest.raises(EventSchemaError) as e:
        EventLog().register_schema_file(path)
    assert str(path) in str(e.value)
    assert "title" in str(e.value)


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("bad.yaml", "a: [unclosed", "not valid YAML"),
        ("bad.json", "{not json", "not valid JSON"),
        ("missing.yaml", None, "cannot read"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, text: str | None, problem: str) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(EventSchemaError, match=problem):
        EventLog().register_schema_file(path)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.yaml"
    path.write_text("!!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(EventSchemaError, match="not valid YAML"):
        EventLog().register_schema_file(path)


@pytest.mark.timeout(60)
def test_yaml_aliases_are_refused_so_a_bomb_is_checked_at_once(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs(10))  # 9**10 strings once expanded
    assert len(path.read_bytes()) < 800
    with pytest.raises(EventSchemaError, match=r"an alias \(\*a0\) is not allowed") as e:
        EventLog().register_schema_file(path)
    assert str(e.value).startswith(f"{path}: not valid YAML")
    assert "line 9" in str(e.value)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("x: &a {type: string}\ny: *a\n", id="alias"),
        pytest.param("x: &a {type: string}\ny:\n  <<: *a\n", id="merge-key"),
    ],
)
def test_any_yaml_alias_is_refused(text: str) -> None:
    source = io.StringIO(yaml.safe_dump(make_schema("x/alias")) + text)
    source.name = "alias.yaml"
    with pytest.raises(EventSchemaError, match="alias"):
        EventLog().register_schema_file(source)


def test_identical_schema_twice_is_a_noop() -> None:
    log = EventLog()
    first = log.register_schema(make_schema(version=1))
    assert log.register_schema(make_schema(version="1")) is first
    assert len(log.schemas) == 1


def test_different_schema_same_id_and_version_is_refused() -> None:
    log = EventLog()
    log.register_schema(make_schema())
    with pytest.raises(EventSchemaError, match="already registered"):
        log.register_schema(make_schema(other={"type": "string"}))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param({"const": True}, {"const": 1}, id="const-true-or-1"),
        pytest.param({"enum": [False, "x"]}, {"enum": [0, "x"]}, id="enum-false-or-0"),
        pytest.param({"default": 1}, {"default": True}, id="default-1-or-true"),
        pytest.param({"type": "string"}, {"type": "string", "maxLength": 3}, id="one-more-rule"),
    ],
)
def test_a_different_schema_under_a_registered_version_is_refused_not_ignored(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    """Python says `True == 1`: JSON Schema does not, and neither does registration."""
    log = EventLog(allowed_schemas=["test.events/example"])
    kept = log.register_schema(make_schema(a=first))
    with pytest.raises(EventSchemaError, match="already registered with a different schema"):
        log.register_schema(make_schema(a=second))
    assert log.get_schema("test.events/example", 1) is kept
    assert log.register_schema(make_schema(a=dict(first))) is kept  # the same again: a no-op


def test_numbers_equal_in_json_schema_are_the_same_schema() -> None:
    log = EventLog()
    kept = log.register_schema(make_schema(a={"type": "number", "maximum": 1}))
    assert log.register_schema(make_schema(a={"type": "number", "maximum": 1.0})) is kept


def test_versions_live_side_by_side() -> None:
    log = EventLog(allowed_schemas=["test.events/example"])
    log.register_schema(make_schema(version=1, a={"type": "string"}))
    log.register_schema(make_schema(version=2, b={"type": "integer"}))
    assert log.record_event("test.events/example", 1, {"a": "x"}) is not None
    assert log.record_event("test.events/example", "2", {"b": 3}) is not None
    assert log.latest_version("test.events/example") == 2


def test_schemas_is_a_list_and_reads_as_jupyter_telemetry_mapping(tmp_path: Path) -> None:
    one, two = make_schema("x/a", version=1), make_schema("x/a", version="2")
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(one))
    log = EventLog()
    log.register_schema_file(path)
    log.register_schema(two)
    schemas = log.schemas
    # as before: a list of EventSchema, each version on its own
    assert [(s.id, s.version) for s in schemas] == [("x/a", 1), ("x/a", "2")]
    assert isinstance(schemas, list)
    assert schemas[0].id == "x/a"
    # as jupyter_telemetry's `{(id, version): schema}`
    assert one in schemas.values()
    assert schemas[("x/a", 1)] == one
    assert schemas[("x/a", "1")] == one  # the same version
    assert (("x/a", 2) in schemas, ("x/a", 3) in schemas) == (True, False)
    assert dict(schemas) == {("x/a", 1): one, ("x/a", "2"): two}
    assert list(schemas.keys()) == [("x/a", 1), ("x/a", "2")]
    assert schemas.get(("x/b", 1)) is None
    with pytest.raises(KeyError):
        schemas[("x/b", 1)]
    schemas[("x/a", 1)]["title"] = "changed"  # a copy: the registered schema stays
    assert log.schemas[("x/a", 1)] == one


def test_caller_schema_dict_is_copied() -> None:
    document = make_schema()
    schema = EventSchema(document)
    document["properties"]["action"]["type"] = "integer"
    assert schema.is_valid({"action": "still a string"})


def test_local_refs_work() -> None:
    document = {
        **make_schema(thing={"$ref": "#/definitions/thing"}),
        "definitions": {"thing": {"type": "object", "properties": {"n": {"type": "integer"}}}},
    }
    schema = EventSchema(document)
    assert schema.is_valid({"thing": {"n": 1}})
    assert not schema.is_valid({"thing": {"n": "one"}})


def test_remote_refs_are_refused_not_fetched() -> None:
    with pytest.raises(EventSchemaError, match="remote"):
        EventSchema(make_schema(thing={"$ref": "https://example.org/schemas/thing.json"}))


def test_other_drafts_by_dollar_schema() -> None:
    draft7_tuple = make_schema(
        pair={"type": "array", "items": [{"type": "string"}, {"type": "integer"}]}
    )
    assert not EventSchema(draft7_tuple).is_valid({"pair": ["a", "b"]})
    draft2020 = {
        **make_schema(
            pair={"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]}
        ),
        "$schema": "https://json-schema.org/draft/2020-12/schema",
    }
    assert not EventSchema(draft2020).is_valid({"pair": ["a", "b"]})
    assert EventSchema(draft2020).is_valid({"pair": ["a", 1]})


def test_jupyter_server_schemas_register_unchanged() -> None:
    from jupyter_server import DEFAULT_EVENTS_SCHEMA_PATH

    log = EventLog()
    files = sorted(Path(DEFAULT_EVENTS_SCHEMA_PATH).glob("*/v1.yaml"))
    assert files
    for path in files:
        schema = log.register_schema_file(path)
        assert schema.personal_data
        written = yaml.safe_load(path.read_text())["version"]
        assert written in ("1", 1)  # "1" in newer jupyter_server releases, 1 in older ones
        assert schema.version == written


def test_jupyterhub_style_schema_with_if_then_registers() -> None:
    document = {
        **make_schema("https://schema.jupyter.org/jupyterhub/events/server-action", "1"),
        "properties": {
            "action": {"enum": ["start", "stop"]},
            "username": {"type": "string"},
            "servername": {"type": "string"},
        },
        "if": {"properties": {"action": {"const": "start"}}},
        "then": {"required": ["servername"]},
    }
    schema = EventSchema(document)
    assert schema.is_valid({"action": "start", "username": "u", "servername": ""})
    assert not schema.is_valid({"action": "start", "username": "u"})


def test_formats_are_annotations() -> None:
    schema = EventSchema(make_schema(when={"type": "string", "format": "date-time"}))
    assert schema.is_valid({"when": "not a date"})
