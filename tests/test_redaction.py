"""Privacy redaction: categories wherever a schema can declare them, and both redaction modes."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_telemetry_ext import EventLog
from tests.conftest import make_schema

SCHEMA_ID = "test.events/redact"
UII = "user-identifiable-information"


def record(
    properties: dict[str, Any],
    event: dict[str, Any],
    categories: list[str] | None = None,
    extra: dict[str, Any] | None = None,
    redaction: str = "null",
) -> dict[str, Any]:
    log = EventLog(
        allowed_schemas={SCHEMA_ID: {"allowed_categories": categories or []}}, redaction=redaction
    )
    log.register_schema({**make_schema(SCHEMA_ID, **properties), **(extra or {})})
    capsule = log.record_event(SCHEMA_ID, 1, event)
    assert capsule is not None
    return {k: v for k, v in capsule.items() if not k.startswith("__")}


NESTED = {
    "model": {
        "type": "object",
        "categories": ["unrestricted"],
        "properties": {
            "name": {"type": "string"},
            "path": {"type": "string", "categories": [UII]},
        },
    },
}


def test_nested_property_redacted_parent_kept() -> None:
    out = record(NESTED, {"model": {"name": "n", "path": "/p"}})
    assert out == {"model": {"name": "n", "path": None}}


def test_nested_property_kept_when_category_allowed() -> None:
    out = record(NESTED, {"model": {"name": "n", "path": "/p"}}, [UII])
    assert out == {"model": {"name": "n", "path": "/p"}}


def test_whole_subtree_nulled() -> None:
    props = {
        "owner": {"type": "object", "categories": ["user-identifier"], "properties": {"id": {}}}
    }
    assert record(props, {"owner": {"id": "u1", "undeclared": 2}}) == {"owner": None}


def test_child_without_categories_inherits_parents() -> None:
    props = {
        "owner": {"type": "object", "categories": ["user-identifier"], "properties": {"id": {}}}
    }
    out = record(props, {"owner": {"id": "u1"}}, ["user-identifier"])
    assert out == {"owner": {"id": "u1"}}


def test_array_items() -> None:
    props = {"paths": {"type": "array", "items": {"type": "string", "categories": [UII]}}}
    assert record(props, {"paths": ["/a", "/b"]}) == {"paths": [None, None]}
    objects = {
        "cells": {
            "type": "array",
            "items": {"type": "object", "properties": {"source": {"categories": [UII]}, "n": {}}},
        }
    }
    assert record(objects, {"cells": [{"source": "x", "n": 1}]}) == {
        "cells": [{"source": None, "n": 1}]
    }


def test_all_of_and_ref() -> None:
    props = {
        "a": {"allOf": [{"type": "string"}, {"categories": [UII]}]},
        "b": {"$ref": "#/definitions/secret"},
    }
    extra = {"definitions": {"secret": {"type": "string", "categories": ["user-identifier"]}}}
    assert record(props, {"a": "x", "b": "y"}, extra=extra) == {"a": None, "b": None}


@pytest.mark.parametrize(
    "declaration",
    [
        {"anyOf": [{"type": "string", "categories": [UII]}, {"type": "null"}]},
        {"oneOf": [{"type": "integer"}, {"type": "string", "categories": [UII]}]},
    ],
)
def test_any_of_and_one_of_are_conservative(declaration: dict[str, Any]) -> None:
    assert record({"p": declaration}, {"p": "x"}) == {"p": None}


def test_if_then_else_are_conservative() -> None:
    extra = {
        "if": {"properties": {"kind": {"const": "file"}}},
        "then": {"properties": {"target": {"categories": [UII]}}},
        "else": {"properties": {"other": {"categories": ["user-identifier"]}}},
    }
    props = {"kind": {"type": "string"}, "target": {}, "other": {}}
    out = record(props, {"kind": "dir", "target": "t", "other": "o"}, extra=extra)
    assert out == {"kind": "dir", "target": None, "other": None}


def test_personal_data_schema_fails_closed() -> None:
    props = {"action": {"enum": ["a"], "categories": ["unrestricted"]}, "path": {"type": "string"}}
    extra = {"personal-data": True}
    assert record(props, {"action": "a", "path": "/p"}, extra=extra) == {
        "action": "a",
        "path": None,
    }
    assert record(props, {"action": "a", "path": "/p"}, [UII], extra=extra) == {
        "action": "a",
        "path": "/p",
    }


def test_undeclared_keys_inherit_their_place() -> None:
    assert record({"a": {}}, {"a": 1, "extra": 2}) == {"a": 1, "extra": 2}
    personal = record(
        {"a": {"categories": ["unrestricted"]}}, {"a": 1, "extra": 2}, extra={"personal-data": True}
    )
    # A key the schema does not name is left out when redacted, even with "null": its name
    # may itself be data (an e-mail address as a key, say).
    assert personal == {"a": 1}
    labelled = {"additionalProperties": {"categories": ["user-identifier"]}}
    assert record({"a": {}}, {"a": 1, "extra": 2}, extra=labelled) == {"a": 1}


def test_drop_mode_removes_keys() -> None:
    out = record(NESTED, {"model": {"name": "n", "path": "/p"}}, redaction="drop")
    assert out == {"model": {"name": "n"}}
    props = {"secret": {"categories": ["user-identifier"]}, "ok": {}}
    assert record(props, {"secret": 1, "ok": 2}, redaction="drop") == {"ok": 2}


def test_recursive_ref_redacts_at_every_depth() -> None:
    extra = {
        "definitions": {
            "node": {
                "type": "object",
                "properties": {
                    "owner": {"type": "string", "categories": ["user-identifier"]},
                    "children": {"type": "array", "items": {"$ref": "#/definitions/node"}},
                },
            }
        }
    }
    tree = {
        "owner": "a",
        "children": [{"owner": "b", "children": [{"owner": "c", "children": []}]}],
    }
    out = record({"tree": {"$ref": "#/definitions/node"}}, {"tree": tree}, extra=extra)
    assert "'a'" not in repr(out)
    assert "'b'" not in repr(out)
    assert "'c'" not in repr(out)


def test_message_property_is_kept() -> None:
    assert record({"message": {"type": "string"}}, {"message": "hello"}) == {"message": "hello"}


@pytest.mark.parametrize(
    ("categories", "keeps_all"),
    [([UII], True), ([], False)],
)
def test_a_plan_that_keeps_everything_copies_the_event_whole(
    categories: list[str], keeps_all: bool
) -> None:
    """The redactor says when it cannot change an event; the capsule is the same either way."""
    log = EventLog(allowed_schemas={SCHEMA_ID: {"allowed_categories": categories}})
    schema = log.register_schema(make_schema(SCHEMA_ID, **NESTED))
    redactor = log.plan(schema).redactor
    assert redactor is not None
    assert redactor.keeps_all is keeps_all
    event = {"model": {"name": "n", "path": "/p"}}
    kept = log.record_event(SCHEMA_ID, 1, event, context={"__client_id__": "c1"})
    user = log.record_event(SCHEMA_ID, 1, event, context={"__client_id__": "c1", "__user__": "u"})
    assert kept is not None
    assert user is not None
    path = "/p" if keeps_all else None
    for capsule in (kept, user):
        assert capsule["model"] == {"name": "n", "path": path}
        assert capsule["__client_id__"] == "c1"
        assert list(capsule)[:4] == ["__timestamp__", "__schema__", "__schema_version__",
                                     "__metadata_version__"]  # fmt: skip
    assert "__user__" not in kept
    assert user["__user__"] is None  # a user-identifier is not allowed here
