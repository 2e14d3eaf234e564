"""A `$ref` to a plain-name fragment reaches the same subschema for the validator and redaction.

Whatever the schema's `$id` looks like (no scheme as the seed's, `urn:`, `https:`), and whether
the anchor is a `$anchor` or a draft 7 `$id: "#name"`: the validator checks a value against the
subschema the anchor names, and the categories declared there decide its redaction.
"""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_telemetry_ext import EventLog, EventSchemaError
from jupyter_telemetry_ext.core.validation import EventValidationError
from tests.conftest import Sink

UII = ["user-identifiable-information"]
SECRET = "alice@example.com"
ID_FORMS = {
    "no scheme (the seed's)": "my.url.to.schema/actions",
    "no scheme": "x.events/anchor",
    "urn": "urn:x-events:anchor",  # relative URIs mean nothing against a urn: `inner` is absolute
    "https": "https://x.events/anchor",
}
# (the `$schema`, how a subschema is named `sec`, the keyword holding subschemas by name).
DIALECTS = {
    "2020-12 $anchor": ("https://json-schema.org/draft/2020-12/schema", "$anchor", "sec", "$defs"),
    "2019-09 $anchor": ("https://json-schema.org/draft/2019-09/schema", "$anchor", "sec", "$defs"),
    "draft 7 $id": (None, "$id", "#sec", "definitions"),
    "draft 6 $id": ("http://json-schema.org/draft-06/schema#", "$id", "#sec", "definitions"),
    "draft 4 id": ("http://json-schema.org/draft-04/schema#", "id", "#sec", "definitions"),
}


def anchored(schema_id: str, dialect: str) -> dict[str, Any]:
    """A schema where `#sec` names a personal string at the root, and an integer in `inner`.

    `s` reaches the root's `sec`; `n` reaches `inner`'s by its URI; `w.v` says `#sec` from
    inside `inner`. A resolver that picked the other `sec` would validate the other type.
    """
    dollar_schema, keyword, name, holder = DIALECTS[dialect]
    inner_id = "urn:x-events:inner" if schema_id.startswith("urn:") else "inner"
    inner = {
        "$id" if keyword != "id" else "id": inner_id,
        holder: {
            "sec": {keyword: name, "type": "integer"},
            "wrap": {"type": "object", "properties": {"v": {"$ref": "#sec"}}},
        },
    }
    document: dict[str, Any] = {
        ("id" if keyword == "id" else "$id"): schema_id,
        "version": 1,
        "title": "Anchors",
        "description": "Values reached through plain-name fragments.",
        "type": "object",
        "properties": {
            "s": {"$ref": "#sec"},
            "n": {"$ref": f"{inner_id}#sec"},
            "w": {"$ref": f"{inner_id}#/{holder}/wrap"},
        },
        holder: {"secret": {keyword: name, "type": "string", "categories": UII}, "inner": inner},
    }
    if keyword == "id":  # the event schema's own `$id` is required beside draft 4's `id`
        document["$id"] = schema_id
    if dollar_schema:
        document["$schema"] = dollar_schema
    return document


def record(document: dict[str, Any], event: dict[str, Any], **traits: Any) -> dict[str, Any]:
    """Register `document`, record `event` through a real EventLog; return the line written."""
    sink = Sink()
    log = EventLog(handlers=[sink.handler], **traits)
    log.register_schema(document)
    log.record_event(document["$id"], 1, event)
    [written] = sink.events
    return written


FORMS = [(id_form, dialect) for id_form in ID_FORMS for dialect in DIALECTS]
EVENT = {"s": SECRET, "n": 7, "w": {"v": 8}}


@pytest.mark.parametrize(("id_form", "dialect"), FORMS)
def test_the_validator_checks_the_anchored_subschema(id_form: str, dialect: str) -> None:
    log = EventLog()
    log.register_schema(anchored(ID_FORMS[id_form], dialect))
    [schema] = log.schemas
    schema.validate(EVENT)
    for wrong, field in (({"s": 1}, "s"), ({"n": "7"}, "n"), ({"w": {"v": "8"}}, "w.v")):
        with pytest.raises(EventValidationError) as caught:
            schema.validate(wrong)
        assert caught.value.field == field


@pytest.mark.parametrize("redaction", ["null", "drop"])
@pytest.mark.parametrize(("id_form", "dialect"), FORMS)
def test_a_personal_value_reached_through_an_anchor_is_redacted(
    id_form: str, dialect: str, redaction: str
) -> None:
    document = anchored(ID_FORMS[id_form], dialect)
    written = record(document, EVENT, allowed_schemas=[document["$id"]], redaction=redaction)
    assert SECRET not in str(written)
    assert (written["n"], written["w"]) == (7, {"v": 8})  # `inner`'s `sec` declares nothing


@pytest.mark.parametrize(("id_form", "dialect"), FORMS)
def test_it_is_kept_when_its_category_is_allowed(id_form: str, dialect: str) -> None:
    document = anchored(ID_FORMS[id_form], dialect)
    rule = {document["$id"]: {"allowed_categories": UII}}
    assert record(document, EVENT, allowed_schemas=rule)["s"] == SECRET


@pytest.mark.parametrize("id_form", ID_FORMS)
def test_a_missing_anchor_is_refused(id_form: str) -> None:
    document = anchored(ID_FORMS[id_form], "2020-12 $anchor")
    document["properties"]["s"] = {"$ref": "#nowhere"}
    with pytest.raises(EventSchemaError, match="nowhere"):
        EventLog().register_schema(document)


@pytest.mark.parametrize(
    ("keyword", "dialect", "anchor"),
    [
        ("$dynamicRef", "https://json-schema.org/draft/2020-12/schema", "$dynamicAnchor"),
        ("$recursiveRef", "https://json-schema.org/draft/2019-09/schema", "$recursiveAnchor"),
    ],
)
@pytest.mark.parametrize("id_form", ID_FORMS)
def test_dynamic_references_are_still_refused(
    id_form: str, keyword: str, dialect: str, anchor: str
) -> None:
    document = anchored(ID_FORMS[id_form], "2020-12 $anchor")
    document["$schema"] = dialect
    target = "#sec" if keyword == "$dynamicRef" else "#"
    document["properties"]["s"] = {keyword: target}
    document["$defs"]["secret"][anchor] = "sec" if keyword == "$dynamicRef" else True
    with pytest.raises(EventSchemaError, match=f"\\{keyword}: not supported"):
        EventLog().register_schema(document)
