"""The transparency page's model: its marks agree with what the EventLog records."""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.server.pagerender import render_page
from jupyter_telemetry_ext.server.restapi import schemas_model
from jupyter_telemetry_ext.server.rules import CollectorRules, read_rules
from jupyter_telemetry_ext.server.transparency import (
    EACH_ITEM,
    HUB,
    OTHER_FIELDS,
    HandlerView,
    PropertyView,
    forwarding_model,
    handler_view,
    page_model,
)
from tests.conftest import SHIPPED_SCHEMAS, make_schema

PERSONAL = "user-identifiable-information"
NESTED = "test.nested/example"
Factory = Callable[..., EventLog]


def nested_schema(**extra: Any) -> dict[str, Any]:
    """A schema with personal parts inside an object and inside array items."""
    return {
        **make_schema(
            NESTED,
            action={"type": "string", "categories": ["unrestricted"]},
            model={
                "type": "object",
                "properties": {"owner": {"categories": [PERSONAL]}, "size": {"type": "integer"}},
            },
            cells={
                "type": "array",
                "items": {"type": "object", "properties": {"text": {"categories": [PERSONAL]}}},
            },
        ),
        **extra,
    }


def views(eventlog: EventLog, schema_id: str, version: int = 1) -> dict[str, PropertyView]:
    """Return the top-level property views of one schema version."""
    schemas = page_model(eventlog).schemas
    [schema] = [s for s in schemas if s.id == schema_id and s.version == version]
    return {p.name: p for p in schema.properties}


@pytest.mark.parametrize("redaction", ["null", "drop"])
def test_nested_marks(eventlog_factory: Factory, redaction: str) -> None:
    eventlog = eventlog_factory(allowed_schemas=[NESTED], redaction=redaction)
    eventlog.register_schema(nested_schema())
    shown = views(eventlog, NESTED)
    assert shown["action"].mark == "keep"
    assert shown["model"].mark == "partial"
    assert {c.name: c.mark for c in shown["model"].children} == {
        "owner": redaction.replace("null", "redact"),
        "size": "keep",
    }
    [items] = shown["cells"].children
    assert (items.name, items.mark) == (EACH_ITEM, "partial")
    [text] = items.children
    assert (text.name, text.categories) == ("text", (PERSONAL,))
    assert shown[OTHER_FIELDS].mark == "keep"  # the schema allows more top-level fields


def test_personal_data_schema_defaults_to_personal(eventlog_factory: Factory) -> None:
    eventlog = eventlog_factory(allowed_schemas=[NESTED])
    eventlog.register_schema(nested_schema(**{"personal-data": True}))
    shown = views(eventlog, NESTED)
    assert (shown["model"].categories, shown["model"].mark) == ((PERSONAL,), "redact")
    assert shown["action"].mark == "keep"


def test_not_allowed_is_not_recorded(eventlog_factory: Factory) -> None:
    eventlog = eventlog_factory()
    eventlog.register_schema(nested_schema())
    [schema] = page_model(eventlog).schemas
    assert not schema.allowed
    assert {p.mark for p in schema.properties} == {""}
    assert page_model(eventlog).recorded == ()


SHIPPED = "https://events.jupyter.org/jupyter_telemetry_ext/"
EVENTS = {
    "notebook": {"action": "opened", "path": "a.ipynb", "kernel_name": "python3", "cell_count": 2},
    "cell": {
        "action": "executed", "status": "error", "duration_ms": 1.5, "execution_count": 3,
        "language": "python", "error_name": "NameError", "error_value": "x", "source": "x",
        "notebook_path": "a.ipynb",
    },
    "command": {
        "action": "executed", "command_id": "a:b", "invoked_from": "menu", "success": True,
        "args": {"path": "a.ipynb"},
    },
    "session": {
        "action": "started", "app_name": "JupyterLab", "app_version": "4", "duration_s": 1.0,
        "user_agent": "Mozilla",
    },
}  # fmt: skip
RULES = [
    pytest.param({}, id="defaults"),
    pytest.param({"allowed_categories": [PERSONAL]}, id="personal-category"),
    pytest.param({"allowed_properties": ["path", "args", "source"]}, id="properties"),
]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("redaction", ["null", "drop"])
@pytest.mark.parametrize("unrestricted_only", [False, True])
def test_marks_match_what_is_recorded(
    eventlog_factory: Factory, rule: dict[str, Any], redaction: str, unrestricted_only: bool
) -> None:
    allowed = {SHIPPED + name: rule for name in EVENTS}
    eventlog = eventlog_factory(
        allowed_schemas=allowed, redaction=redaction, unrestricted_only=unrestricted_only
    )
    for path in sorted(SHIPPED_SCHEMAS.rglob("*.yaml")):
        eventlog.register_schema_file(path)
    for name, data in EVENTS.items():
        capsule = eventlog.record_event(SHIPPED + name, 1, data)
        assert capsule is not None
        for field, view in views(eventlog, SHIPPED + name).items():
            expected = {"keep": data[field], "redact": None, "drop": "(absent)"}[view.mark]
            assert capsule.get(field, "(absent)") == expected, (name, field, view.mark)


def test_handler_views(tmp_path: Path) -> None:
    rotating = logging.handlers.RotatingFileHandler(tmp_path / "events.jsonl", delay=True)
    secret = ("admin", "pa55word")
    http = logging.handlers.HTTPHandler("user:pw@collector.example", "/in", credentials=secret)
    handlers = [
        rotating,
        logging.StreamHandler(sys.__stderr__),
        logging.StreamHandler(io.StringIO()),
    ]
    eventlog = EventLog(handlers=handlers, failed_handlers=[http])
    model = page_model(eventlog)
    assert model.handlers == (
        HandlerView("logging.handlers.RotatingFileHandler", str(tmp_path / "events.jsonl")),
        HandlerView("logging.StreamHandler", "<stderr>"),
        HandlerView("logging.StreamHandler"),
    )
    assert model.failed_handlers == (HandlerView("logging.handlers.HTTPHandler"),)
    assert handler_view(logging.NullHandler()) == HandlerView("logging.NullHandler")
    eventlog.close()
    rotating.close()


# A server that forwards: its page shows the collector's rules, read from the collector's listing.

COLLECTOR = "http://127.0.0.1:8000/services/telemetry/"
USER_RULES = [
    *RULES,
    pytest.param({"allowed_categories": ["user-identifier"]}, id="user"),
]


def shipped(eventlog: EventLog) -> EventLog:
    """Register the shipped schemas; return the EventLog."""
    for path in sorted(SHIPPED_SCHEMAS.rglob("*.yaml")):
        eventlog.register_schema_file(path)
    return eventlog


def listing(eventlog: EventLog, record_user: str) -> bytes:
    """Return what GET api/telemetry/schemas answers for this EventLog, as sent."""
    return json.dumps(schemas_model(eventlog, record_user)).encode()


@pytest.mark.parametrize("rule", USER_RULES)
@pytest.mark.parametrize("redaction", ["null", "drop"])
@pytest.mark.parametrize("unrestricted_only", [False, True])
def test_a_forwarding_page_shows_what_the_collector_records(
    eventlog_factory: Factory, rule: dict[str, Any], redaction: str, unrestricted_only: bool
) -> None:
    """The marks come from the collector's listing, whatever the server's own allow-list says,
    and agree with what the collector really records."""
    allowed = {SHIPPED + name: rule for name in ("notebook", "cell", "command")}
    collector = shipped(eventlog_factory(
        allowed_schemas=allowed, redaction=redaction, unrestricted_only=unrestricted_only
    ))  # fmt: skip
    server = shipped(eventlog_factory(allowed_schemas=[SHIPPED + "session"]))
    rules = read_rules(listing(collector, "hashed"))
    model = forwarding_model(server, COLLECTOR, rules)
    hub_page = page_model(collector, "hashed", place=HUB)
    assert model.rules_known
    assert model.schemas == hub_page.schemas  # the same marks as the collector's own page
    assert {s.id for s in model.recorded} == set(allowed)
    user_kept = "user-identifier" in rule.get("allowed_categories", ()) and not unrestricted_only
    assert model.record_user == ("hashed" if user_kept else "none")
    assert {s.user_kept for s in model.recorded} == {user_kept}
    for name, data in EVENTS.items():
        capsule = collector.record_event(SHIPPED + name, 1, data, context={"__user__": "h"})
        shown = {s.id: s for s in model.schemas}[SHIPPED + name]
        if capsule is None:
            assert not shown.allowed
            continue
        assert ("__user__" in capsule and capsule["__user__"] == "h") == shown.user_kept
        for view in shown.properties:
            expected = {"keep": data.get(view.name), "redact": None, "drop": "(absent)"}
            if view.name in data:
                assert capsule.get(view.name, "(absent)") == expected[view.mark], view


def test_until_the_listing_is_read_the_page_shows_no_rules(eventlog_factory: Factory) -> None:
    """Never the server's own allow-list as if it applied: nothing, and a flag saying why."""
    server = shipped(eventlog_factory(allowed_schemas=[SHIPPED + "session"]))
    model = forwarding_model(server, COLLECTOR, None)
    assert (model.rules_known, model.schemas, model.recorded, model.live) == (False, (), (), False)
    assert model.collector == COLLECTOR
    assert model.local_recorded == 1  # her server also writes its own copy: said apart


def test_a_schema_the_collector_does_not_list_is_not_recorded(eventlog_factory: Factory) -> None:
    collector = shipped(eventlog_factory(allowed_schemas=[SHIPPED + "cell"]))
    server = shipped(eventlog_factory())
    server.register_schema(nested_schema())
    model = forwarding_model(server, COLLECTOR, read_rules(listing(collector, "none")))
    assert {s.id for s in model.recorded} == {SHIPPED + "cell"}
    [nested] = [s for s in model.schemas if s.id == NESTED]
    assert not nested.allowed


def test_the_listing_says_each_schemas_policy(eventlog_factory: Factory) -> None:
    eventlog = shipped(eventlog_factory(allowed_schemas={
        SHIPPED + "cell": {"allowed_categories": ["user-identifier"], "allowed_actions": ["x"]},
        SHIPPED + "notebook": {"allowed_properties": ["path"]},
    }, redaction="drop"))  # fmt: skip
    policies = {s["id"]: s["policy"] for s in schemas_model(eventlog, "hashed")["schemas"]}
    assert policies[SHIPPED + "cell"] == {
        "actions": ["x"], "categories": ["unrestricted", "user-identifier"], "properties": [],
        "user": "hashed", "redaction": "drop",
    }  # fmt: skip
    assert policies[SHIPPED + "notebook"] == {
        "actions": [], "categories": ["unrestricted"], "properties": ["path"], "user": "none",
        "redaction": "drop",
    }  # fmt: skip
    assert policies[SHIPPED + "session"] is None
    assert {s["policy"]["user"] for s in schemas_model(eventlog)["schemas"] if s["policy"]} == {
        "none"
    }


GOOD_POLICY = {"actions": [], "categories": ["unrestricted"], "properties": [], "user": "none",
               "redaction": "null"}  # fmt: skip


def one_schema(**fields: Any) -> bytes:
    """Return a listing of one schema version, with `fields` over a good entry."""
    entry = {"id": "a/b", "version": 1, "allowed": True, "policy": GOOD_POLICY, **fields}
    return json.dumps({"schemas": [entry]}).encode()


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"<html>proxy error</html>", id="not-json"),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(b'{"schemas": {}}', id="schemas-not-a-list"),
        pytest.param(json.dumps({"schemas": [{"id": "a/b", "version": 1}]}).encode(),
                     id="older-collector-without-policy"),
        pytest.param(one_schema(id=7), id="id-not-a-string"),
        pytest.param(one_schema(version=1.5), id="version-a-float"),
        pytest.param(one_schema(policy={**GOOD_POLICY, "extra": 1}), id="unknown-key"),
        pytest.param(one_schema(policy={**GOOD_POLICY, "user": "root"}), id="unknown-user-mode"),
        pytest.param(one_schema(policy={**GOOD_POLICY, "redaction": "x"}), id="bad-redaction"),
        pytest.param(one_schema(policy={**GOOD_POLICY, "categories": "all"}), id="not-a-list"),
        pytest.param(one_schema(policy={**GOOD_POLICY, "properties": [1]}), id="not-a-name"),
        pytest.param(one_schema(policy={**GOOD_POLICY, "actions": ["x" * 513]}), id="too-long"),
        pytest.param(one_schema(policy=[]), id="policy-not-an-object"),
        pytest.param(json.dumps({"schemas": [{}] * 10_001}).encode(), id="too-many"),
    ],
)  # fmt: skip
def test_a_malformed_listing_is_not_read(payload: bytes) -> None:
    """Any entry it cannot read makes the whole listing unknown: the page then says so."""
    assert read_rules(payload) is None


def test_a_listing_is_read() -> None:
    rules = read_rules(one_schema(policy={**GOOD_POLICY, "categories": [
        "category.jupyter.org/user-identifier"], "user": "username"}))  # fmt: skip
    assert rules is not None
    [(key, policy)] = rules.policies.items()
    assert key == ("a/b", "1")
    assert policy.rule.categories == {"unrestricted", "user-identifier"}
    assert rules.record_user == "username"
    assert read_rules(one_schema(policy=None)) == CollectorRules({})


def test_the_rendered_page_escapes_what_schemas_say(eventlog_factory: Factory) -> None:
    """The collector renders the page itself: every value is escaped, no script runs."""
    eventlog = eventlog_factory(allowed_schemas=[NESTED])
    eventlog.register_schema(nested_schema(title="<script>alert(1)</script>"))
    model = page_model(eventlog, "hashed", place=HUB)
    html = render_page(model, static_url=lambda name: f"/s/{name}", base_url="/services/t/")
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "What this JupyterHub records" in html
    assert 'href="/s/telemetry.css"' in html
    assert "telemetry.js" not in html  # no live view at the collector: no script at all
