"""Property-based: no value under a disallowed category ever reaches a handler."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyter_telemetry_ext import EventLog
from tests.conftest import Sink, make_schema

LABELS = ["unrestricted", "user-identifier", "user-identifiable-information", "action-timestamp"]
URI = "category.jupyter.org/"
UNRESTRICTED = frozenset({"unrestricted"})


class Node:
    """A generated schema place: its declared categories and its children."""

    def __init__(
        self, categories: list[str] | None, kind: str, children: Any = None, wrap: bool = False
    ):
        self.categories, self.kind, self.children, self.wrap = categories, kind, children, wrap

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind}
        if self.kind == "object":
            out["properties"] = {name: child.schema() for name, child in self.children.items()}
        elif self.kind == "array":
            out["items"] = self.children.schema()
        if self.categories is not None:
            out["categories"] = self.categories
        return {"anyOf": [out, {"type": "null"}]} if self.wrap else out


def short(labels: list[str] | None) -> frozenset[str] | None:
    return None if labels is None else frozenset(label.removeprefix(URI) for label in labels)


categories = st.none() | st.lists(
    st.sampled_from(LABELS).flatmap(lambda label: st.sampled_from([label, URI + label])),
    min_size=1,
    max_size=2,
)


def nodes(depth: int) -> st.SearchStrategy[Node]:
    leaf = st.builds(lambda c, w: Node(c, "string", wrap=w), categories, st.booleans())
    if depth == 0:
        return leaf
    names = st.sampled_from(["a", "b", "c", "d"])
    obj = st.builds(
        lambda c, kids, w: Node(c, "object", kids, w),
        categories,
        st.dictionaries(names, st.deferred(lambda: nodes(depth - 1)), min_size=1, max_size=3),
        st.booleans(),
    )
    arr = st.builds(
        lambda c, kid, w: Node(c, "array", kid, w),
        categories,
        st.deferred(lambda: nodes(depth - 1)),
        st.booleans(),
    )
    return st.one_of(leaf, obj, arr)


class Oracle:
    """Builds an event for generated schema places, noting which of its values must not leak."""

    def __init__(self, allowed: frozenset[str], tokens: itertools.count[int]) -> None:
        self.allowed = allowed
        self.tokens = tokens
        self.found: list[tuple[str, bool]] = []

    def event(self, node: Node, inherited: frozenset[str], secret: bool = False) -> Any:
        effective = short(node.categories) if node.categories is not None else inherited
        secret = secret or not effective <= self.allowed
        if node.kind == "string":
            token = f"<tok{next(self.tokens)}>"
            self.found.append((token, secret))
            return token
        if node.kind == "object":
            return {n: self.event(c, effective, secret) for n, c in node.children.items()}
        return [self.event(node.children, effective, secret) for _ in range(2)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    top=st.dictionaries(
        st.sampled_from(["p", "q", "r", "s", "t"]), nodes(3), min_size=1, max_size=4
    ),
    allowed_labels=st.lists(st.sampled_from(LABELS), max_size=3),
    allowed_properties=st.lists(st.sampled_from(["p", "q", "r", "s", "t"]), max_size=2),
    personal_data=st.booleans(),
    redaction=st.sampled_from(["null", "drop"]),
)
def test_no_disallowed_value_reaches_a_handler(
    top: dict[str, Node],
    allowed_labels: list[str],
    allowed_properties: list[str],
    personal_data: bool,
    redaction: str,
) -> None:
    schema = {
        **make_schema("prop.test/schema", **{name: node.schema() for name, node in top.items()}),
        "personal-data": personal_data,
    }
    allowed = frozenset(allowed_labels) | UNRESTRICTED
    default = frozenset({"user-identifiable-information"}) if personal_data else UNRESTRICTED
    tokens = itertools.count()
    oracle, kept_whole = Oracle(allowed, tokens), Oracle(frozenset(LABELS), tokens)
    event = {
        name: (kept_whole if name in allowed_properties else oracle).event(node, default)
        for name, node in top.items()
    }
    sink = Sink()
    log = EventLog(
        handlers=[sink.handler],
        allowed_schemas={
            "prop.test/schema": {
                "allowed_categories": allowed_labels,
                "allowed_properties": allowed_properties,
            }
        },
        redaction=redaction,
    )
    log.register_schema(schema)
    log.record_event("prop.test/schema", 1, event)
    written = sink.stream.getvalue()
    for token, secret in oracle.found + kept_whole.found:
        assert (token in written) is not secret, (token, secret, written)
