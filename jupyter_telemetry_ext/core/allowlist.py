"""The admin's allow-list: which schemas, actions, categories and properties are recorded."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .categories import UNRESTRICTED, normalize_labels
from .errors import AllowListError

RULE_KEYS = ("allowed_actions", "allowed_categories", "allowed_properties")


@dataclass(frozen=True)
class SchemaRule:
    """What the allow-list lets through for one schema id."""

    actions: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset({UNRESTRICTED})
    properties: frozenset[str] = frozenset()

    def allows_action(self, event: Mapping[str, Any]) -> bool:
        """Return True when the event's `action` is allowed (an empty list allows every one)."""
        return not self.actions or event.get("action") in self.actions

    def restricted_to_unrestricted(self) -> SchemaRule:
        """Return this rule with every category but `unrestricted` and every property removed."""
        return SchemaRule(self.actions, frozenset({UNRESTRICTED}), frozenset())


def parse_allowed_schemas(value: Any) -> dict[str, SchemaRule]:
    """Return the rule for every allowed schema id, or raise AllowListError."""
    if isinstance(value, Mapping):
        return {_schema_id(key): _dict_rule(key, rule) for key, rule in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return _entries_rules(value)
    msg = f"got a {type(value).__name__}"
    raise AllowListError(msg)


def _entries_rules(entries: Iterable[Any]) -> dict[str, SchemaRule]:
    rules: dict[str, SchemaRule] = {}
    for entry in entries:
        schema_id, rule = _entry_rule(entry)
        if schema_id in rules:
            msg = f"schema id {schema_id!r} is listed twice"
            raise AllowListError(msg)
        rules[schema_id] = rule
    return rules


def _entry_rule(entry: Any) -> tuple[str, SchemaRule]:
    if isinstance(entry, str):
        return _schema_id(entry), SchemaRule()
    if isinstance(entry, (list, tuple)) and len(entry) == 3:
        schema_id = _schema_id(entry[0])
        actions = _strings(entry[1], f"{schema_id!r}: allowed actions")
        properties = _strings(entry[2], f"{schema_id!r}: allowed properties")
        return schema_id, SchemaRule(actions=actions, properties=properties)
    msg = f"the list entry {entry!r} is neither a schema id nor a 3-tuple"
    raise AllowListError(msg)


def _dict_rule(schema_id: str, rule: Any) -> SchemaRule:
    if rule is None:
        return SchemaRule()
    if not isinstance(rule, Mapping):
        msg = f"the rule for {schema_id!r} is a {type(rule).__name__}, not a dict"
        raise AllowListError(msg)
    unknown = sorted(set(rule) - set(RULE_KEYS))
    if unknown:
        msg = f"the rule for {schema_id!r} has unknown keys {unknown}"
        raise AllowListError(msg)
    categories = _strings(rule.get("allowed_categories"), f"{schema_id!r}: allowed_categories")
    return SchemaRule(
        actions=_strings(rule.get("allowed_actions"), f"{schema_id!r}: allowed_actions"),
        categories=normalize_labels(categories) | {UNRESTRICTED},
        properties=_strings(rule.get("allowed_properties"), f"{schema_id!r}: allowed_properties"),
    )


def _schema_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        msg = f"a schema id must be a non-empty string, got {value!r}"
        raise AllowListError(msg)
    return value


def _strings(value: Any, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        msg = f"{where} must be a list of strings, got {type(value).__name__}"
        raise AllowListError(msg)
    if not all(isinstance(item, str) for item in value):
        msg = f"{where} must be a list of strings, got {list(value)!r}"
        raise AllowListError(msg)
    return frozenset(value)
