"""Privacy categories: their labels and where a schema declares them.

The category tree says, for each place an event value can be, which categories apply to it. It
follows every reference the way the validator does (through `referencing`, the resolver of
jsonschema), and when a reference cannot be followed the schema is refused: a value is never
kept because its description could not be found.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import EventSchemaError
from .patterns import pattern_matches

UNRESTRICTED = "unrestricted"
USER_IDENTIFIER = "user-identifier"
USER_IDENTIFIABLE_INFORMATION = "user-identifiable-information"
ACTION_TIMESTAMP = "action-timestamp"
# Code sent to a kernel and commands typed in a terminal: allowed on its own, so that an admin
# may record what ran without allowing other personal data.
USER_CODE = "user-code"

_URI_PREFIXES = (
    "https://category.jupyter.org/",
    "http://category.jupyter.org/",
    "category.jupyter.org/",
)

# Subschemas applied to the same value. Those of `allOf` (and `$ref`) always apply to a valid
# value; the others may or may not, so they count when it comes to categories but do not count
# as having evaluated a property (which `unevaluatedProperties` asks).
_ALWAYS_LISTS = ("allOf",)
_MAYBE_LISTS = ("anyOf", "oneOf")
_MAYBE_ONES = ("not", "if", "then", "else", "contentSchema")
_SCHEMA_MAPS = ("dependencies", "dependentSchemas")
_ITEM_ONES = ("items", "additionalItems", "contains", "unevaluatedItems")
_ITEM_LISTS = ("items", "prefixItems")
# Keywords whose values are data, not subschemas, and keywords that map names to subschemas.
_DATA_KEYWORDS = frozenset({"categories", "const", "default", "enum", "examples", "required"})
_SUBSCHEMA_MAPS = frozenset({"$defs", "definitions", "dependencies", "dependentSchemas",
                             "patternProperties", "properties"})  # fmt: skip
# References whose target depends on the path taken at validation time: not followed, refused.
UNSUPPORTED_REFERENCES = ("$dynamicRef", "$recursiveRef")
# Places a schema may describe once its references are expanded; a larger schema is refused,
# so that registering a schema stays linear in its size.
MAX_PLACES = 20_000


def normalize_label(label: str) -> str:
    """Return the short form of a category label (`category.jupyter.org/x` is `x`)."""
    for prefix in _URI_PREFIXES:
        if label.startswith(prefix):
            return label[len(prefix) :]
    return label


def normalize_labels(labels: Iterable[str]) -> frozenset[str]:
    """Return the short forms of several labels."""
    return frozenset(normalize_label(label) for label in labels)


def check_labels(labels: Any, where: str) -> frozenset[str]:
    """Return a `categories` value's labels; raise EventSchemaError unless a list of strings."""
    if (
        not isinstance(labels, list)
        or not labels
        or not all(isinstance(label, str) and label for label in labels)
    ):
        msg = f"{where}: categories: must be a non-empty list of category names (strings)"
        raise EventSchemaError(msg)
    return normalize_labels(labels)


@dataclass(frozen=True)
class OtherKeys:
    """A subschema for the keys that one schema object does not evaluate itself.

    `additionalProperties` applies to the keys not named in the same object's `properties` nor
    matched by its `patternProperties`; `unevaluatedProperties` to those that no subschema
    surely applied to the same value evaluated (`everything`: all keys were evaluated).
    """

    node: CategoryNode
    names: frozenset[str] = frozenset()
    patterns: tuple[str, ...] = ()
    everything: bool = False

    def applies_to(self, key: str) -> bool:
        """Return True when this subschema applies to the value of `key`."""
        if self.everything or key in self.names:
            return False
        return not any(pattern_matches(pattern, key) for pattern in self.patterns)


@dataclass
class CategoryNode:
    """The categories declared for one place in an event, and for the places below it.

    `categories` is None where nothing is declared (the value inherits its parent's).
    `opaque` marks a recursive place: its categories cover its whole subtree.
    """

    categories: frozenset[str] | None = None
    properties: dict[str, CategoryNode] = field(default_factory=dict)
    patterns: dict[str, CategoryNode] = field(default_factory=dict)
    other: list[OtherKeys] = field(default_factory=list)
    items: CategoryNode | None = None
    opaque: bool = False

    def merge(self, other: CategoryNode) -> None:
        """Fold another description of the same place into this one (union of everything)."""
        self.categories = _union(self.categories, other.categories)
        for name, node in other.properties.items():
            self.properties.setdefault(name, CategoryNode()).merge(node)
        for pattern, node in other.patterns.items():
            self.patterns.setdefault(pattern, CategoryNode()).merge(node)
        self.other.extend(other.other)
        self.items = _merged(self.items, other.items)
        self.opaque = self.opaque or other.opaque

    def has_children(self) -> bool:
        """Return True when some place below this one declares something."""
        return bool(self.properties or self.patterns or self.other) or self.items is not None

    def by_pattern(self) -> bool:
        """Return True when which subschemas apply to a key depends on regular expressions."""
        return bool(self.patterns) or any(o.patterns for o in self.other)

    def key(self, name: str) -> CategoryNode | None:
        """Return the union of every subschema that applies to the value of key `name`."""
        parts = [self.properties.get(name)]
        parts += [node for pattern, node in self.patterns.items() if pattern_matches(pattern, name)]
        parts += [o.node for o in self.other if o.applies_to(name)]
        return _union_of(parts)

    def other_keys(self) -> CategoryNode | None:
        """Return the union of what applies to a key named nowhere and matching no pattern."""
        return _union_of([o.node for o in self.other if not o.everything])

    def pattern_keys(self) -> Iterator[tuple[str, CategoryNode]]:
        """Yield each pattern with what applies to a key that matches it (and no name)."""
        for pattern, node in self.patterns.items():
            others = [o.node for o in self.other if not o.everything and pattern not in o.patterns]
            yield pattern, _union_of([node, *others]) or node


def _union(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def _merged(a: CategoryNode | None, b: CategoryNode | None) -> CategoryNode | None:
    if b is None:
        return a
    if a is None:
        a = CategoryNode()
    a.merge(b)
    return a


def _union_of(nodes: list[CategoryNode | None]) -> CategoryNode | None:
    present = [node for node in nodes if node is not None]
    if len(present) <= 1:
        return present[0] if present else None
    union = CategoryNode()
    for node in present:
        union.merge(node)
    return union


@dataclass
class _Evaluated:
    """The keys of an object that subschemas surely applied to it evaluate."""

    names: set[str] = field(default_factory=set)
    patterns: set[str] = field(default_factory=set)
    everything: bool = False

    def add(self, other: _Evaluated) -> None:
        """Count what another surely-applied subschema evaluates."""
        self.names |= other.names
        self.patterns |= other.patterns
        self.everything = self.everything or other.everything


class _Builder:
    """Walks one schema document and builds its category tree, following its references."""

    def __init__(self, references: Any) -> None:
        self.references = references
        self.places = 0
        self.expanding: set[int] = set()

    def build(self, schema: Any, scope: Any) -> tuple[CategoryNode, _Evaluated]:
        """Return the category node of one subschema and the keys it surely evaluates."""
        node, evaluated = CategoryNode(), _Evaluated()
        if not isinstance(schema, Mapping):
            return node, evaluated
        self._count()
        _check_references(schema)
        if "categories" in schema:
            node.categories = check_labels(schema["categories"], self.references.where)
        self._add_same_value(node, evaluated, schema, scope)
        self._add_object(node, evaluated, schema, scope)
        for sub in _item_subschemas(schema):
            node.items = _merged(node.items, self._child(sub, scope)[0])
        return node, evaluated

    def _child(self, schema: Any, scope: Any) -> tuple[CategoryNode, _Evaluated]:
        """Build a subschema of the current one (its own `$id` may change the base URI)."""
        return self.build(schema, self.references.enter(schema, scope))

    def _count(self) -> None:
        self.places += 1
        if self.places > MAX_PLACES:
            msg = (
                f"the schema describes more than {MAX_PLACES} places once its $refs are "
                "expanded: simplify it"
            )
            raise EventSchemaError(msg)

    def _add_same_value(
        self, node: CategoryNode, evaluated: _Evaluated, schema: Mapping[str, Any], scope: Any
    ) -> None:
        for sub, always in _same_value_subschemas(schema):
            sub_node, sub_evaluated = self._child(sub, scope)
            node.merge(sub_node)
            if always:
                evaluated.add(sub_evaluated)
        ref = schema.get("$ref")
        if ref is not None:
            ref_node, ref_evaluated = self._build_ref(ref, scope)
            node.merge(ref_node)
            evaluated.add(ref_evaluated)

    def _add_object(
        self, node: CategoryNode, evaluated: _Evaluated, schema: Mapping[str, Any], scope: Any
    ) -> None:
        properties = _subschema_map(schema.get("properties"))
        patterns = _subschema_map(schema.get("patternProperties"))
        for name, sub in properties.items():
            node.properties.setdefault(name, CategoryNode()).merge(self._child(sub, scope)[0])
        for pattern, sub in patterns.items():
            node.patterns.setdefault(pattern, CategoryNode()).merge(self._child(sub, scope)[0])
        evaluated.names |= set(properties)
        evaluated.patterns |= set(patterns)
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            sub_node = self._child(additional, scope)[0]
            node.other.append(OtherKeys(sub_node, frozenset(properties), tuple(patterns)))
        unevaluated = schema.get("unevaluatedProperties")
        if isinstance(unevaluated, Mapping):
            sub_node = self._child(unevaluated, scope)[0]
            done = OtherKeys(sub_node, frozenset(evaluated.names), tuple(evaluated.patterns),
                             evaluated.everything or additional is not None)  # fmt: skip
            node.other.append(done)
        if additional is not None or unevaluated is not None:
            evaluated.everything = True
        self._add_key_names(node, schema, frozenset(properties), scope)

    def _add_key_names(
        self, node: CategoryNode, schema: Mapping[str, Any], named: frozenset[str], scope: Any
    ) -> None:
        """Categories under `propertyNames` say the keys' names are personal: they apply to each
        key that `properties` does not name (its name is data), and so to its value."""
        names = schema.get("propertyNames")
        if not isinstance(names, Mapping):
            return
        categories = self._all_categories(names, self.references.enter(names, scope))
        if categories is not None:
            node.other.append(OtherKeys(CategoryNode(categories=categories), named))

    def _build_ref(self, ref: Any, scope: Any) -> tuple[CategoryNode, _Evaluated]:
        target, target_scope = self.references.lookup(ref, scope)
        key = id(target)
        if key in self.expanding:  # recursive: one opaque place with every category below
            categories = self._all_categories(target, target_scope)
            return CategoryNode(categories=categories, opaque=True), _Evaluated(everything=True)
        self.expanding.add(key)
        try:
            return self.build(target, target_scope)
        finally:
            self.expanding.discard(key)

    def _all_categories(self, schema: Any, scope: Any) -> frozenset[str] | None:
        """Return every category declared anywhere under a subschema, following references."""
        found: set[str] = set()
        declared = False
        seen: set[int] = set()
        stack = [(schema, scope)]
        while stack:
            current, where = stack.pop()
            if not isinstance(current, Mapping) or id(current) in seen:
                continue
            seen.add(id(current))
            self._count()
            if "categories" in current:
                declared = True
                found |= check_labels(current["categories"], self.references.where)
            if "$ref" in current:
                stack.append(self.references.lookup(current["$ref"], where))
            stack.extend(
                (sub, self.references.enter(sub, where)) for sub in _nested_schemas(current)
            )
        return frozenset(found) if declared else None


def _check_references(schema: Mapping[str, Any]) -> None:
    for keyword in UNSUPPORTED_REFERENCES:
        if keyword in schema:
            msg = (
                f"{keyword}: not supported in event schemas (the privacy categories of what it "
                "points at cannot be known before validation); use $ref"
            )
            raise EventSchemaError(msg)


def _subschema_map(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def _same_value_subschemas(schema: Mapping[str, Any]) -> Iterator[tuple[Any, bool]]:
    """Yield each subschema applied to the same value, and whether it always applies."""
    for keys, always in ((_ALWAYS_LISTS, True), (_MAYBE_LISTS, False)):
        for key in keys:
            value = schema.get(key)
            if isinstance(value, list):
                yield from ((sub, always) for sub in value)
    for key in _MAYBE_ONES:
        if key in schema:
            yield schema[key], False
    for key in _SCHEMA_MAPS:
        value = schema.get(key)
        if isinstance(value, Mapping):
            yield from ((sub, False) for sub in value.values() if isinstance(sub, Mapping))


def _item_subschemas(schema: Mapping[str, Any]) -> Iterator[Any]:
    for key in _ITEM_ONES:
        value = schema.get(key)
        if isinstance(value, Mapping):
            yield value
    for key in _ITEM_LISTS:
        value = schema.get(key)
        if isinstance(value, list):
            yield from value


def _nested_schemas(schema: Mapping[str, Any]) -> Iterator[Any]:
    """Yield every value below a schema that may be a subschema (never data such as `enum`)."""
    for key, value in schema.items():
        if key in _DATA_KEYWORDS:
            continue
        if key in _SUBSCHEMA_MAPS and isinstance(value, Mapping):
            yield from value.values()
        elif isinstance(value, list):
            yield from value
        elif isinstance(value, Mapping):
            yield value


def category_tree(schema: Mapping[str, Any], *, where: str = "schema") -> CategoryNode:
    """Return the category tree of a whole event schema; raise EventSchemaError if unsure."""
    from .references import References

    references = References(schema, where)
    return _Builder(references).build(references.document, references.root)[0]
