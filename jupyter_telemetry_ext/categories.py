"""Privacy categories: their labels and where a schema declares them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

UNRESTRICTED = "unrestricted"
USER_IDENTIFIER = "user-identifier"
USER_IDENTIFIABLE_INFORMATION = "user-identifiable-information"
ACTION_TIMESTAMP = "action-timestamp"

_URI_PREFIXES = (
    "https://category.jupyter.org/",
    "http://category.jupyter.org/",
    "category.jupyter.org/",
)

# Keywords whose subschemas describe the same value: a category in any of them applies to it.
_SAME_VALUE_LISTS = ("allOf", "anyOf", "oneOf")
_SAME_VALUE_ONES = ("if", "then", "else")
_SCHEMA_MAPS = ("dependencies", "dependentSchemas")
_ITEM_ONES = ("items", "additionalItems", "contains", "unevaluatedItems")
_ITEM_LISTS = ("items", "prefixItems")
_OTHER_KEY_ONES = ("additionalProperties", "unevaluatedProperties")


def normalize_label(label: str) -> str:
    """Return the short form of a category label (`category.jupyter.org/x` is `x`)."""
    for prefix in _URI_PREFIXES:
        if label.startswith(prefix):
            return label[len(prefix) :]
    return label


def normalize_labels(labels: Iterable[str]) -> frozenset[str]:
    """Return the short forms of several labels."""
    return frozenset(normalize_label(label) for label in labels)


@dataclass
class CategoryNode:
    """The categories declared for one place in an event, and for the places below it.

    `categories` is None where nothing is declared (the value inherits its parent's).
    `opaque` marks a recursive place: its categories cover its whole subtree.
    """

    categories: frozenset[str] | None = None
    properties: dict[str, CategoryNode] = field(default_factory=dict)
    items: CategoryNode | None = None
    other_keys: CategoryNode | None = None
    opaque: bool = False

    def merge(self, other: CategoryNode) -> None:
        """Fold another description of the same place into this one (union of everything)."""
        self.categories = _union(self.categories, other.categories)
        for name, node in other.properties.items():
            self.properties.setdefault(name, CategoryNode()).merge(node)
        self.items = _merged(self.items, other.items)
        self.other_keys = _merged(self.other_keys, other.other_keys)
        self.opaque = self.opaque or other.opaque

    def has_children(self) -> bool:
        """Return True when some place below this one declares something."""
        return bool(self.properties) or self.items is not None or self.other_keys is not None


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


class _Builder:
    """Walks one schema document and builds its category tree, following local `$ref`s."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.expanding: list[str] = []

    def build(self, schema: Any) -> CategoryNode:
        """Return the category node of one subschema."""
        node = CategoryNode()
        if not isinstance(schema, Mapping):
            return node
        labels = schema.get("categories")
        if isinstance(labels, list):
            node.categories = normalize_labels(str(label) for label in labels)
        for sub in _same_value_subschemas(schema):
            node.merge(self.build(sub))
        ref = schema.get("$ref")
        if isinstance(ref, str):
            node.merge(self._build_ref(ref))
        self._add_children(node, schema)
        return node

    def _add_children(self, node: CategoryNode, schema: Mapping[str, Any]) -> None:
        properties = schema.get("properties")
        if isinstance(properties, Mapping):
            for name, sub in properties.items():
                node.properties.setdefault(str(name), CategoryNode()).merge(self.build(sub))
        for sub in _item_subschemas(schema):
            node.items = _merged(node.items, self.build(sub))
        for sub in _other_key_subschemas(schema):
            node.other_keys = _merged(node.other_keys, self.build(sub))

    def _build_ref(self, ref: str) -> CategoryNode:
        target = resolve_local_ref(self.root, ref)
        if target is None:
            return CategoryNode()
        if ref in self.expanding:
            return CategoryNode(categories=all_categories(self.root, target), opaque=True)
        self.expanding.append(ref)
        try:
            return self.build(target)
        finally:
            self.expanding.pop()


def _same_value_subschemas(schema: Mapping[str, Any]) -> Iterator[Any]:
    for key in _SAME_VALUE_LISTS:
        value = schema.get(key)
        if isinstance(value, list):
            yield from value
    for key in _SAME_VALUE_ONES:
        if key in schema:
            yield schema[key]
    for key in _SCHEMA_MAPS:
        value = schema.get(key)
        if isinstance(value, Mapping):
            yield from (sub for sub in value.values() if isinstance(sub, Mapping))


def _item_subschemas(schema: Mapping[str, Any]) -> Iterator[Any]:
    for key in _ITEM_ONES:
        value = schema.get(key)
        if isinstance(value, Mapping):
            yield value
    for key in _ITEM_LISTS:
        value = schema.get(key)
        if isinstance(value, list):
            yield from value


def _other_key_subschemas(schema: Mapping[str, Any]) -> Iterator[Any]:
    for key in _OTHER_KEY_ONES:
        value = schema.get(key)
        if isinstance(value, Mapping):
            yield value
    patterns = schema.get("patternProperties")
    if isinstance(patterns, Mapping):
        yield from patterns.values()


def resolve_local_ref(root: Mapping[str, Any], ref: str) -> Any:
    """Return the subschema a local `$ref` (`#` or `#/a/b`) points at, or None."""
    if not ref.startswith("#"):
        return None
    target: Any = root
    for part in ref[1:].split("/")[1:]:
        key = part.replace("~1", "/").replace("~0", "~")
        if isinstance(target, Mapping) and key in target:
            target = target[key]
        elif isinstance(target, list) and key.isdigit() and int(key) < len(target):
            target = target[int(key)]
        else:
            return None
    return target


def all_categories(root: Mapping[str, Any], schema: Any) -> frozenset[str] | None:
    """Return every category declared anywhere under a subschema, following local `$ref`s."""
    found: set[str] = set()
    any_declared = False
    seen: set[str] = set()
    stack = [schema]
    while stack:
        current = stack.pop()
        if isinstance(current, list):
            stack.extend(current)
        if not isinstance(current, Mapping):
            continue
        labels = current.get("categories")
        if isinstance(labels, list):
            any_declared = True
            found |= normalize_labels(str(label) for label in labels)
        ref = current.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            seen.add(ref)
            stack.append(resolve_local_ref(root, ref))
        stack.extend(v for k, v in current.items() if k != "categories")
    return frozenset(found) if any_declared else None


def category_tree(schema: Mapping[str, Any]) -> CategoryNode:
    """Return the category tree of a whole event schema."""
    return _Builder(schema).build(schema)
