"""Redaction: a plan, made once per schema and allow-list, of which values an event may keep."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from .allowlist import SchemaRule
from .categories import UNRESTRICTED, USER_IDENTIFIABLE_INFORMATION, CategoryNode


class _Mark:
    """A leaf verdict: keep the value as it is, or redact it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


KEEP = _Mark("KEEP")
REDACT = _Mark("REDACT")


@dataclass
class Descend:
    """Copy a container, deciding for each key (or array item) on its own."""

    properties: dict[str, Step] = field(default_factory=dict)
    other_keys: Step = KEEP
    items: Step = KEEP


Step = Union[_Mark, Descend]  # noqa: UP007 - a runtime alias


def plan_step(node: CategoryNode, inherited: frozenset[str], allowed: frozenset[str]) -> Step:
    """Return what to do with a value described by `node` whose parent has `inherited`."""
    effective = node.categories if node.categories is not None else inherited
    if not effective <= allowed:
        return REDACT
    if node.opaque or not node.has_children():
        return KEEP
    step = Descend(
        properties={
            name: plan_step(sub, effective, allowed) for name, sub in node.properties.items()
        },
        other_keys=plan_step(node.other_keys, effective, allowed) if node.other_keys else KEEP,
        items=plan_step(node.items, effective, allowed) if node.items else KEEP,
    )
    return KEEP if _keeps_everything(step) else step


def _keeps_everything(step: Descend) -> bool:
    steps = [*step.properties.values(), step.other_keys, step.items]
    return all(s is KEEP for s in steps)


@dataclass(frozen=True)
class Redactor:
    """Copies an event's top-level keys into a capsule, redacting what the rule does not allow."""

    top: Descend
    drop: bool

    @classmethod
    def plan(
        cls, tree: CategoryNode, rule: SchemaRule, *, personal_data: bool, drop: bool
    ) -> Redactor:
        """Plan the redaction of one schema's events under one allow-list rule."""
        default = frozenset({USER_IDENTIFIABLE_INFORMATION if personal_data else UNRESTRICTED})
        allowed = rule.categories
        top = Descend(
            properties={
                name: KEEP if name in rule.properties else plan_step(sub, default, allowed)
                for name, sub in tree.properties.items()
            },
            other_keys=plan_step(tree.other_keys or CategoryNode(), default, allowed),
        )
        return cls(top, drop)

    def copy_into(self, out: dict[str, Any], event: Mapping[str, Any]) -> None:
        """Copy the event's keys into `out`, redacted."""
        self._copy_keys(self.top, out, event)

    def _copy_keys(self, step: Descend, out: dict[str, Any], value: Mapping[str, Any]) -> None:
        properties, other = step.properties, step.other_keys
        for key, sub in value.items():
            verdict = properties.get(key, other)
            if verdict is KEEP:
                out[key] = sub
            elif verdict is not REDACT:
                out[key] = self._apply(verdict, sub)
            elif not self.drop:
                out[key] = None

    def _apply(self, step: Step, value: Any) -> Any:
        if step is KEEP:
            return value
        if not isinstance(step, Descend):
            return None
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            self._copy_keys(step, out, value)
            return out
        if isinstance(value, list):
            return [self._apply(step.items, item) for item in value]
        return value
