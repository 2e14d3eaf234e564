"""The transparency page's model: its marks agree with what the EventLog records."""

from __future__ import annotations

import io
import logging
import logging.handlers
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.server.transparency import (
    EACH_ITEM,
    OTHER_FIELDS,
    HandlerView,
    PropertyView,
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
