"""Privacy categories reach a value however the schema describes it, or the schema is refused."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from jupyter_telemetry_ext import EventLog, EventSchemaError
from jupyter_telemetry_ext.server.transparency import page_model
from tests.conftest import Sink, make_schema

UII = ["user-identifiable-information"]
SECRET = "alice@example.com"
DRAFT2020 = "https://json-schema.org/draft/2020-12/schema"


def schema(schema_id: str = "https://x.events/a", **extra: Any) -> dict[str, Any]:
    """A schema with one property `s` (as `extra` describes it) and what else `extra` adds."""
    return {**make_schema(schema_id), **extra}


def record(document: dict[str, Any], event: dict[str, Any], **traits: Any) -> str:
    """Register `document` under the default rule and record `event`; return what was written."""
    sink = Sink()
    log = EventLog(handlers=[sink.handler], allowed_schemas=[document["$id"]], **traits)
    log.register_schema(document)
    log.record_event(document["$id"], 1, event)
    return sink.stream.getvalue()


SECRET_DEF = {"type": "string", "categories": UII}
# Every way of reaching a personal property from `properties.s`: (the schema, the event).
REFERENCE_FORMS = {
    "percent-encoded pointer": schema(
        properties={"s": {"$ref": "#/definitions/secret%20path"}},
        definitions={"secret path": SECRET_DEF},
    ),
    "escaped pointer": schema(
        properties={"s": {"$ref": "#/definitions/a~1b~0c"}}, definitions={"a/b~c": SECRET_DEF}
    ),
    "own absolute $id": schema(
        properties={"s": {"$ref": "https://x.events/a#/definitions/secret"}},
        definitions={"secret": SECRET_DEF},
    ),
    "own relative $id": schema(
        properties={"s": {"$ref": "a#/definitions/secret"}}, definitions={"secret": SECRET_DEF}
    ),
    "relative root $id": schema(
        "x.events/a",
        properties={"s": {"$ref": "a#/definitions/secret"}},
        definitions={"secret": SECRET_DEF},
    ),
    "$anchor": schema(
        **{"$schema": DRAFT2020},
        properties={"s": {"$ref": "#sec"}},
        **{"$defs": {"x": {"$anchor": "sec", **SECRET_DEF}}},
    ),
    "draft 7 plain-name $id": schema(
        properties={"s": {"$ref": "#sec"}}, definitions={"x": {"$id": "#sec", **SECRET_DEF}}
    ),
    "$anchor, $id without a scheme": schema(
        "x.events/anchor",
        **{"$schema": DRAFT2020},
        properties={"s": {"$ref": "#sec"}},
        **{"$defs": {"x": {"$anchor": "sec", **SECRET_DEF}}},
    ),
    "draft 7 plain-name $id, $id without a scheme": schema(
        "my.url.to.schema/actions",
        properties={"s": {"$ref": "#sec"}},
        definitions={"x": {"$id": "#sec", **SECRET_DEF}},
    ),
    "second draft 7 plain-name $id": schema(
        properties={"n": {"$ref": "#first"}, "s": {"$ref": "#second"}},
        definitions={
            "a": {"$id": "#first", "type": "object"},
            "b": {"$id": "#second", **SECRET_DEF},
        },
    ),
    "embedded $id": schema(
        properties={"s": {"$ref": "other"}}, definitions={"x": {"$id": "other", **SECRET_DEF}}
    ),
    "inside an embedded $id": schema(
        properties={"s": {"$ref": "other#/definitions/in"}},
        definitions={"x": {"$id": "other", "definitions": {"in": SECRET_DEF}}},
    ),
    "draft 4 id changes the base": schema(
        **{"$schema": "http://json-schema.org/draft-04/schema#"},
        properties={
            "o": {
                "id": "other",
                "type": "object",
                "properties": {"s": {"$ref": "#/definitions/deep"}},
                "definitions": {"deep": SECRET_DEF},
            },
        },
        definitions={"deep": {"type": "string"}},
    ),
    "$ref chain": schema(
        properties={"s": {"$ref": "#/definitions/one"}},
        definitions={"one": {"$ref": "#/definitions/two"}, "two": SECRET_DEF},
    ),
}


def event_for(form: str) -> dict[str, Any]:
    """Return an event whose secret is where the form's schema describes it."""
    return {"o": {"s": SECRET}} if form.startswith("draft 4") else {"s": SECRET}


@pytest.mark.parametrize("form", REFERENCE_FORMS)
@pytest.mark.parametrize("redaction", ["null", "drop"])
def test_every_reference_form_is_redacted(form: str, redaction: str) -> None:
    written = record(REFERENCE_FORMS[form], event_for(form), redaction=redaction)
    assert written
    assert SECRET not in written


@pytest.mark.parametrize("form", REFERENCE_FORMS)
def test_every_reference_form_is_kept_when_allowed(form: str) -> None:
    document = REFERENCE_FORMS[form]
    sink = Sink()
    log = EventLog(
        handlers=[sink.handler],
        allowed_schemas={document["$id"]: {"allowed_categories": UII}},
    )
    log.register_schema(document)
    log.record_event(document["$id"], 1, event_for(form))
    assert SECRET in sink.stream.getvalue()


@pytest.mark.parametrize("form", REFERENCE_FORMS)
def test_the_page_shows_the_verdict_applied(form: str) -> None:
    document = REFERENCE_FORMS[form]
    log = EventLog(allowed_schemas=[document["$id"]])
    log.register_schema(document)
    [view] = page_model(log).schemas
    shown = {p.name: p for p in view.properties}
    if form.startswith("draft 4"):
        shown = {p.name: p for p in shown["o"].children}
    assert (shown["s"].mark, shown["s"].categories) == ("redact", tuple(UII))


@pytest.mark.parametrize("keyword", ["$dynamicRef", "$recursiveRef"])
def test_dynamic_references_are_refused(keyword: str) -> None:
    document = schema(
        **{"$schema": DRAFT2020},
        properties={"s": {keyword: "#sec"}},
        **{"$defs": {"x": {"$dynamicAnchor": "sec", **SECRET_DEF}}},
    )
    with pytest.raises(EventSchemaError, match=f"\\{keyword}: not supported"):
        EventLog().register_schema(document)


@pytest.mark.parametrize(
    ("categories", "where"),
    [
        ("user-identifiable-information", "properties.s"),
        ([], "properties.s"),
        ([1], "properties.s"),
        ({"a": "b"}, "properties.s"),
        ([""], "properties.s"),
    ],
)
def test_categories_must_be_a_list_of_names(categories: Any, where: str) -> None:
    document = schema(properties={"s": {"type": "string", "categories": categories}})
    with pytest.raises(EventSchemaError, match=f"{where}: categories: must be a non-empty list"):
        EventLog().register_schema(document)


def test_malformed_categories_behind_a_reference_are_refused() -> None:
    document = schema(
        properties={"s": {"$ref": "#/x-hidden/secret"}},
        **{"x-hidden": {"secret": {"categories": "user-identifiable-information"}}},
    )
    with pytest.raises(EventSchemaError, match="categories: must be a non-empty list"):
        EventLog().register_schema(document)


@pytest.mark.parametrize("value", ["true", 1, None, "yes"])
def test_personal_data_must_be_a_boolean(value: Any) -> None:
    with pytest.raises(EventSchemaError, match="personal-data: must be true or false"):
        EventLog().register_schema(schema(**{"personal-data": value}))


def test_validate_command_refuses_scalar_categories(tmp_path: Path) -> None:
    path = tmp_path / "scalar.yaml"
    path.write_text(
        "$id: x.events/scalar\nversion: 1\ntitle: t\ndescription: d\ntype: object\n"
        "properties:\n  s:\n    type: string\n    categories: user-identifiable-information\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "jupyter_telemetry_ext.cli.main", "validate", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "properties.s: categories: must be a non-empty list" in result.stderr


def test_unresolvable_reference_is_refused() -> None:
    document = schema(
        **{"$schema": DRAFT2020},
        properties={"s": {"$ref": "#/$defs/missing"}},
        **{"$defs": {}},
    )
    with pytest.raises(EventSchemaError):
        EventLog().register_schema(document)


def test_a_property_matching_a_personal_pattern_is_redacted() -> None:
    document = schema(
        properties={"s": {"type": "string", "categories": ["unrestricted"]}, "t": {}},
        patternProperties={"^s": {"categories": UII}, "^x-": {"categories": UII}},
    )
    event = {"s": SECRET, "t": "kept-t", "x-mail": "bob@example.com", "zz": "kept-zz"}
    written = record(document, event)
    assert SECRET not in written
    assert "bob@example.com" not in written
    assert "kept-t" in written
    assert "kept-zz" in written
    assert "x-mail" not in written  # a redacted key the schema does not name is left out


def test_additional_properties_apply_where_they_apply() -> None:
    document = schema(
        properties={"s": {"type": "string", "categories": ["unrestricted"]}},
        additionalProperties={"categories": UII},
    )
    assert record(document, {"s": "kept", "other": SECRET}).count("kept") == 1
    assert SECRET not in record(document, {"s": "kept", "other": SECRET})
    # additionalProperties of another subschema of the same value applies to `s` as well
    sibling = schema(
        properties={"s": {"type": "string", "categories": ["unrestricted"]}},
        allOf=[{"additionalProperties": {"categories": UII}}],
    )
    assert SECRET not in record(sibling, {"s": SECRET})


def test_personal_property_names_leave_out_the_keys_the_schema_does_not_name() -> None:
    scores = {
        "type": "object",
        "properties": {"total": {"type": "integer"}},
        "propertyNames": {"anyOf": [{"categories": ["user-identifier"]}]},
        "additionalProperties": {"type": "integer"},
    }
    document = schema(properties={"scores": scores})
    event = {"scores": {"total": 3, "alice": 2, "bob": 1}}
    assert '"scores":{"total":3}' in record(document, event)
    assert '"scores":{"total":3}' in record(document, event, redaction="drop")
    allowed = {document["$id"]: {"allowed_categories": ["user-identifier"]}}
    sink = Sink()
    log = EventLog(handlers=[sink.handler], allowed_schemas=allowed)
    log.register_schema(document)
    log.record_event(document["$id"], 1, event)
    assert sink.events[0]["scores"] == event["scores"]
    # at the top level too, where the key would otherwise be unrestricted
    top = schema(propertyNames={"categories": ["user-identifier"]})
    assert SECRET not in record(top, {"s": "kept", SECRET: 1})


def test_unevaluated_properties_cover_what_a_failing_branch_names() -> None:
    document = schema(
        **{"$schema": DRAFT2020},
        properties={"kind": {"type": "string"}},
        anyOf=[
            {"properties": {"kind": {"const": "a"}, "s": {"categories": ["unrestricted"]}}},
            {"properties": {"kind": {"const": "b"}}},
        ],
        unevaluatedProperties={"categories": UII},
    )
    # With kind "b" the first branch fails: the validator evaluates `s` by unevaluatedProperties.
    assert SECRET not in record(document, {"kind": "b", "s": SECRET})
    assert '"kind":"b"' in record(document, {"kind": "b", "s": SECRET})


def test_unevaluated_properties_skip_what_is_surely_evaluated() -> None:
    document = schema(
        **{"$schema": DRAFT2020},
        properties={"s": {"categories": ["unrestricted"]}},
        allOf=[{"properties": {"t": {"categories": ["unrestricted"]}}}],
        unevaluatedProperties={"categories": UII},
    )
    written = record(document, {"s": "kept-s", "t": "kept-t", "u": SECRET})
    assert "kept-s" in written
    assert "kept-t" in written
    assert SECRET not in written


def test_several_subschemas_give_the_union() -> None:
    document = schema(
        properties={"s": {"allOf": [{"categories": ["unrestricted"]}, {"categories": UII}]}}
    )
    assert SECRET not in record(document, {"s": SECRET})
    either = schema(properties={"s": {"anyOf": [{"type": "integer"}, SECRET_DEF]}})
    assert SECRET not in record(either, {"s": SECRET})


def test_recursive_schema_redacts_below_the_recursion() -> None:
    document = schema(
        properties={
            "n": {
                "type": "object",
                "properties": {"kid": {"$ref": "#/properties/n"}, "v": {"categories": UII}},
            }
        }
    )
    written = record(document, {"n": {"kid": {"kid": {"kid": {"v": SECRET}}}}})
    assert written
    assert SECRET not in written


def test_reference_bomb_is_refused_quickly() -> None:
    definitions = {"d0": {"type": "string", "categories": UII}}
    for level in range(1, 40):
        below = {"$ref": f"#/definitions/d{level - 1}"}
        definitions[f"d{level}"] = {"type": "object", "properties": {"a": below, "b": below}}
    document = schema(properties={"s": {"$ref": "#/definitions/d39"}}, definitions=definitions)
    started = time.monotonic()
    with pytest.raises(EventSchemaError, match="more than 20000 places"):
        EventLog().register_schema(document)
    assert time.monotonic() - started < 30  # linear in the budget, never 2**39


def test_a_property_named_categories_is_a_property() -> None:
    document = schema(properties={"categories": {"type": "string"}, "s": SECRET_DEF})
    written = record(document, {"categories": "kept", "s": SECRET})
    assert "kept" in written
    assert SECRET not in written


def test_shipped_yaml_scalar_categories_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    document = schema(properties={"s": {"type": "string"}})
    document["properties"]["s"]["categories"] = "user-identifiable-information"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(EventSchemaError, match="categories"):
        EventLog().register_schema_file(path)


def test_the_page_shows_pattern_verdicts() -> None:
    document = schema(
        properties={"s": {"type": "string", "categories": ["unrestricted"]}, "t": {}},
        patternProperties={"^s": {"categories": UII}, "^x-": {"categories": UII}},
    )
    log = EventLog(allowed_schemas=[document["$id"]])
    log.register_schema(document)
    [view] = page_model(log).schemas
    shown = {p.name: (p.mark, p.categories) for p in view.properties}
    assert shown["s"] == ("redact", ("unrestricted", *UII))
    assert shown["t"] == ("keep", ("unrestricted",))
    assert shown["(fields matching ^x-)"] == ("drop", tuple(UII))
    assert shown["(any other field)"] == ("keep", ("unrestricted",))
