"""The allow-list: its three forms, actions, bad shapes, and the admin's value left alone."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from traitlets import TraitError

from jupyter_telemetry_ext import EventLog
from tests.conftest import Sink, make_schema

SCHEMA_ID = "test.events/allow"
PROPS = {
    "action": {"enum": ["open", "close", "save"], "categories": ["unrestricted"]},
    "path": {"type": "string", "categories": ["user-identifiable-information"]},
    "user": {"type": "string", "categories": ["category.jupyter.org/user-identifier"]},
    "size": {"type": "integer"},
}
EVENT = {"action": "open", "path": "/home/ada/secret.ipynb", "user": "ada", "size": 3}


def record(allowed: Any, event: dict[str, Any] = EVENT, **kwargs: Any) -> dict[str, Any] | None:
    log = EventLog(allowed_schemas=allowed, **kwargs)
    log.register_schema(make_schema(SCHEMA_ID, **PROPS))
    return log.record_event(SCHEMA_ID, 1, event)


def test_default_records_nothing() -> None:
    assert record([]) is None
    assert EventLog().allowed_schemas == []


def test_list_of_ids_keeps_unrestricted_only() -> None:
    capsule = record([SCHEMA_ID])
    assert capsule is not None
    assert (capsule["action"], capsule["path"], capsule["user"], capsule["size"]) == (
        "open",
        None,
        None,
        3,
    )


@pytest.mark.parametrize(
    ("actions", "action", "recorded"),
    [([], "save", True), (["open"], "open", True), (["open"], "close", False)],
)
def test_tuples_filter_actions(actions: list[str], action: str, recorded: bool) -> None:
    capsule = record([(SCHEMA_ID, actions, [])], {**EVENT, "action": action})
    assert (capsule is not None) is recorded


def test_tuples_keep_listed_properties() -> None:
    capsule = record([(SCHEMA_ID, [], ["path"])])
    assert capsule is not None
    assert (capsule["path"], capsule["user"]) == (EVENT["path"], None)


def test_event_without_action_is_filtered_when_actions_are_listed() -> None:
    assert record([(SCHEMA_ID, ["open"], [])], {"size": 1}) is None


@pytest.mark.parametrize(
    ("rule", "path", "user"),
    [
        ({}, None, None),
        (None, None, None),
        ({"allowed_categories": ["user-identifiable-information"]}, EVENT["path"], None),
        ({"allowed_categories": ["category.jupyter.org/user-identifier"]}, None, "ada"),
        ({"allowed_properties": ["user"]}, None, "ada"),
        (
            {"allowed_categories": ["user-identifier", "user-identifiable-information"]},
            EVENT["path"],
            "ada",
        ),
    ],
)
def test_dict_form(rule: Any, path: str | None, user: str | None) -> None:
    capsule = record({SCHEMA_ID: rule})
    assert capsule is not None
    assert (capsule["path"], capsule["user"]) == (path, user)


def test_dict_form_actions() -> None:
    assert record({SCHEMA_ID: {"allowed_actions": ["close"]}}) is None
    assert record({SCHEMA_ID: {"allowed_actions": ["open"]}}) is not None


@pytest.mark.parametrize(
    "bad",
    [
        "test.events/allow",
        42,
        None,
        [42],
        [("only", "two")],
        [(SCHEMA_ID, "open", [])],
        [(SCHEMA_ID, [], [1])],
        {SCHEMA_ID: {"allowed_categoris": ["x"]}},
        {SCHEMA_ID: ["user-identifier"]},
        {SCHEMA_ID: {"allowed_actions": "open"}},
        [SCHEMA_ID, SCHEMA_ID],
        [""],
    ],
)
def test_bad_shapes_raise_trait_error_showing_the_forms(bad: Any) -> None:
    with pytest.raises(TraitError, match="takes one of three forms"):
        EventLog(allowed_schemas=bad)


def test_admin_value_is_not_mutated() -> None:
    value = {SCHEMA_ID: {"allowed_categories": ["category.jupyter.org/user-identifier"]}}
    before = copy.deepcopy(value)
    log = EventLog(allowed_schemas=value)
    log.register_schema(make_schema(SCHEMA_ID, **PROPS))
    log.record_event(SCHEMA_ID, 1, EVENT)
    assert value == before


def test_changing_the_allow_list_takes_effect(sink: Sink) -> None:
    log = EventLog(handlers=[sink.handler], allowed_schemas=[SCHEMA_ID])
    log.register_schema(make_schema(SCHEMA_ID, **PROPS))
    log.record_event(SCHEMA_ID, 1, EVENT)
    log.allowed_schemas = {SCHEMA_ID: {"allowed_categories": ["user-identifier"]}}
    log.record_event(SCHEMA_ID, 1, EVENT)
    log.allowed_schemas = []
    assert log.record_event(SCHEMA_ID, 1, EVENT) is None
    assert [e["user"] for e in sink.events] == [None, "ada"]


def test_is_allowed() -> None:
    log = EventLog(allowed_schemas=[SCHEMA_ID])
    assert log.is_allowed(SCHEMA_ID)
    assert not log.is_allowed("other")
