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


ROOT = "https://x.events/prop"
DRAFT2020 = "https://json-schema.org/draft/2020-12/schema"
# How a generated place is reached from its parent: inline, or through each form of reference.
FORMS = ["inline", "pointer", "absolute", "relative", "anchor", "embedded"]


class Node:
    """A generated schema place: its declared categories and its children.

    `form` says how the parent reaches it; `patterns` gives, for some children of an object, the
    categories of a `patternProperties` entry that also matches that child's name.
    """

    def __init__(
        self,
        categories: list[str] | None,
        kind: str,
        children: Any = None,
        *,
        wrap: bool = False,
        form: str = "inline",
        patterns: dict[str, list[str]] | None = None,
    ):
        self.categories, self.kind, self.children, self.wrap = categories, kind, children, wrap
        self.form = form if kind == "string" or form != "embedded" else "inline"
        self.patterns = patterns or {}


class Writer:
    """Writes generated places into one schema document, with its definitions."""

    def __init__(self, draft2020: bool) -> None:
        self.draft2020 = draft2020
        self.definitions: dict[str, Any] = {}

    def place(self, node: Node) -> dict[str, Any]:
        """Return the subschema by which a parent reaches `node`."""
        body = self.body(node)
        if node.form == "inline":
            return body
        name = f"def {len(self.definitions)}"  # a space: pointers to it are percent-encoded
        pointer = f"#/{'$defs' if self.draft2020 else 'definitions'}/{name.replace(' ', '%20')}"
        anchor = f"a{len(self.definitions)}"
        if node.form == "anchor":
            body = {**body, **({"$anchor": anchor} if self.draft2020 else {"$id": f"#{anchor}"})}
        if node.form == "embedded":
            body = {**body, "$id": f"{ROOT}-{anchor}"}
        self.definitions[name] = body
        return {
            "pointer": {"$ref": pointer},
            "absolute": {"$ref": ROOT + pointer},
            "relative": {"$ref": "prop" + pointer},
            "anchor": {"$ref": f"#{anchor}"},
            "embedded": {"$ref": f"prop-{anchor}"},
        }[node.form]

    def body(self, node: Node) -> dict[str, Any]:
        """Return the schema of the node itself."""
        out: dict[str, Any] = {"type": node.kind}
        if node.kind == "object":
            out["properties"] = {name: self.place(child) for name, child in node.children.items()}
            if node.patterns:
                out["patternProperties"] = {
                    f"^{name}$": {"categories": labels} for name, labels in node.patterns.items()
                }
        elif node.kind == "array":
            out["items"] = self.place(node.children)
        if node.categories is not None:
            out["categories"] = node.categories
        return {"anyOf": [out, {"type": "null"}]} if node.wrap else out


def short(labels: list[str] | None) -> frozenset[str] | None:
    return None if labels is None else frozenset(label.removeprefix(URI) for label in labels)


def union(*labels: list[str] | None) -> frozenset[str] | None:
    declared = [short(one) for one in labels if one is not None]
    return frozenset().union(*declared) if declared else None


categories = st.none() | st.lists(
    st.sampled_from(LABELS).flatmap(lambda label: st.sampled_from([label, URI + label])),
    min_size=1,
    max_size=2,
)


forms = st.sampled_from(FORMS)
labels = st.lists(st.sampled_from(LABELS), min_size=1, max_size=2)


def nodes(depth: int) -> st.SearchStrategy[Node]:
    leaf = st.builds(
        lambda c, w, f: Node(c, "string", wrap=w, form=f), categories, st.booleans(), forms
    )
    if depth == 0:
        return leaf
    names = st.sampled_from(["a", "b", "c", "d"])
    obj = st.builds(
        lambda c, kids, w, f, p: Node(
            c, "object", kids, wrap=w, form=f, patterns={k: v for k, v in p.items() if k in kids}
        ),
        categories,
        st.dictionaries(names, st.deferred(lambda: nodes(depth - 1)), min_size=1, max_size=3),
        st.booleans(),
        forms,
        st.dictionaries(names, labels, max_size=2),
    )
    arr = st.builds(
        lambda c, kid, w, f: Node(c, "array", kid, wrap=w, form=f),
        categories,
        st.deferred(lambda: nodes(depth - 1)),
        st.booleans(),
        forms,
    )
    return st.one_of(leaf, obj, arr)


class Oracle:
    """Builds an event for generated schema places, noting which of its values must not leak."""

    def __init__(self, allowed: frozenset[str], tokens: itertools.count[int]) -> None:
        self.allowed = allowed
        self.tokens = tokens
        self.found: list[tuple[str, bool]] = []

    def event(
        self, node: Node, inherited: frozenset[str], secret: bool = False, pattern: Any = None
    ) -> Any:
        declared = union(node.categories, pattern)
        effective = declared if declared is not None else inherited
        secret = secret or not effective <= self.allowed
        if node.kind == "string":
            token = f"<tok{next(self.tokens)}>"
            self.found.append((token, secret))
            return token
        if node.kind == "object":
            return {
                n: self.event(c, effective, secret, node.patterns.get(n))
                for n, c in node.children.items()
            }
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
    draft2020=st.booleans(),
)
def test_no_disallowed_value_reaches_a_handler(
    *,
    top: dict[str, Node],
    allowed_labels: list[str],
    allowed_properties: list[str],
    personal_data: bool,
    redaction: str,
    draft2020: bool,
) -> None:
    writer = Writer(draft2020)
    properties = {name: writer.place(node) for name, node in top.items()}
    schema = {
        **make_schema(ROOT, **properties),
        "personal-data": personal_data,
        ("$defs" if draft2020 else "definitions"): writer.definitions,
        **({"$schema": DRAFT2020} if draft2020 else {}),
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
            ROOT: {
                "allowed_categories": allowed_labels,
                "allowed_properties": allowed_properties,
            }
        },
        redaction=redaction,
    )
    log.register_schema(schema)
    log.record_event(ROOT, 1, event)
    written = sink.stream.getvalue()
    for token, secret in oracle.found + kept_whole.found:
        assert (token in written) is not secret, (token, secret, written)
