"""The fast validator and jsonschema give the same verdict on generated events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_telemetry_ext import EventLog, EventSchema
from jupyter_telemetry_ext.core.validation import describing_document, slow_validator
from tests.conftest import make_schema

ROOT = Path(__file__).parent.parent


def shipped_schemas() -> list[EventSchema]:
    from jupyter_server import DEFAULT_EVENTS_SCHEMA_PATH

    log = EventLog()
    files = [
        *ROOT.joinpath("schemas").rglob("*.yaml"),
        *Path(DEFAULT_EVENTS_SCHEMA_PATH).rglob("*.yaml"),
    ]
    return [log.register_schema_file(path) for path in files]


HANDMADE = [
    EventSchema(
        {
            **make_schema(
                "diff/one",
                action={"enum": ["a", "b"]},
                n={"type": "integer", "minimum": 0, "maximum": 10},
                s={"type": "string", "maxLength": 5, "pattern": "^[a-z]*$"},
                o={
                    "type": "object",
                    "properties": {"x": {"type": "boolean"}},
                    "additionalProperties": False,
                },
                arr={"type": "array", "items": {"type": "number"}, "maxItems": 3},
                either={"anyOf": [{"type": "string"}, {"type": "null"}]},
                one={"oneOf": [{"type": "integer"}, {"type": "number", "multipleOf": 0.5}]},
            ),
            "required": ["action"],
            "if": {"properties": {"action": {"const": "a"}}},
            "then": {"required": ["n"]},
        }
    )
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-20, 20)
    | st.floats(-20, 20, allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=10,
)


def events_for(schema: EventSchema) -> st.SearchStrategy[dict[str, Any]]:
    names = [*list(schema.document["properties"]), "__x", "extra"]
    enums = [v for p in schema.document["properties"].values() for v in p.get("enum", [])]
    values = json_values | (st.sampled_from(enums) if enums else st.nothing())
    return st.dictionaries(st.sampled_from(names), values, max_size=len(names))


ALL = HANDMADE + shipped_schemas()


@settings(max_examples=400, deadline=None)
@given(data=st.data(), index=st.integers(0, len(ALL) - 1))
def test_same_verdict_as_jsonschema(data: st.DataObject, index: int) -> None:
    schema = ALL[index]
    event = data.draw(events_for(schema))
    slow = slow_validator(schema._validation_document)
    assert schema.is_valid(event) == slow.is_valid(event), event


@settings(max_examples=300, deadline=None)
@given(data=st.data(), index=st.integers(0, len(ALL) - 1))
def test_the_describing_copy_gives_the_same_verdict(data: st.DataObject, index: int) -> None:
    schema = ALL[index]
    event = data.draw(events_for(schema))
    describer = EventSchema(describing_document(schema._validation_document))
    assert schema.is_valid(event) == describer.is_valid(event), event
