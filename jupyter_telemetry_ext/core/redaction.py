"""Redaction: a plan, made once per schema and allow-list, of which values an event may keep."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from .allowlist import SchemaRule
from .categories import UNRESTRICTED, USER_IDENTIFIABLE_INFORMATION, CategoryNode
from .jsonline import check


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
    """Copy a container, deciding for each key (or array item) on its own.

    `other_keys` is the step of a key not in `properties`: a Step, or a KeySteps that asks which
    `patternProperties` the key matches.
    """

    properties: dict[str, Step] = field(default_factory=dict)
    other_keys: Step | KeySteps = KEEP
    items: Step = KEEP


Step = Union[_Mark, Descend]  # noqa: UP007 - a runtime alias
KEY_CACHE = 1024  # keys whose step a KeySteps remembers


class KeySteps:
    """The step of each key that no property names, by the patterns it matches."""

    def __init__(self, node: CategoryNode, inherited: frozenset[str], allowed: frozenset[str]):
        """Plan keys of the object described by `node`, whose categories are `inherited`."""
        self.node, self.inherited, self.allowed = node, inherited, allowed
        self._steps: dict[str, Step] = {}

    def __call__(self, key: str) -> Step:
        """Return the step of one key."""
        step = self._steps.get(key)
        if step is None:
            step = _node_step(self.node.key(key), self.inherited, self.allowed)
            if len(self._steps) < KEY_CACHE:
                self._steps[key] = step
        return step


def plan_step(node: CategoryNode, inherited: frozenset[str], allowed: frozenset[str]) -> Step:
    """Return what to do with a value described by `node` whose parent has `inherited`."""
    effective = node.categories if node.categories is not None else inherited
    if not effective <= allowed:
        return REDACT
    if node.opaque or not node.has_children():
        return KEEP
    step = plan_keys(node, effective, allowed)
    step.items = _node_step(node.items, effective, allowed)
    return KEEP if _keeps_everything(step) else step


def plan_keys(
    node: CategoryNode,
    inherited: frozenset[str],
    allowed: frozenset[str],
    kept: frozenset[str] = frozenset(),
) -> Descend:
    """Return the steps of an object's keys (`kept`: names kept whatever their categories)."""
    properties = {
        name: KEEP if name in kept else _node_step(node.key(name), inherited, allowed)
        for name in node.properties
    }
    if node.by_pattern():
        return Descend(properties, KeySteps(node, inherited, allowed))
    return Descend(properties, _node_step(node.other_keys(), inherited, allowed))


def _node_step(
    node: CategoryNode | None, inherited: frozenset[str], allowed: frozenset[str]
) -> Step:
    """Plan a place; one that nothing describes has the categories it inherits."""
    if node is None:
        return KEEP if inherited <= allowed else REDACT
    return plan_step(node, inherited, allowed)


def _keeps_everything(step: Descend) -> bool:
    steps = [*step.properties.values(), step.other_keys, step.items]
    return all(s is KEEP for s in steps)


def _keeps_every_key(top: Descend) -> bool:
    """Return True when every key of an event object is kept whole, named or not."""
    return top.other_keys is KEEP and all(s is KEEP for s in top.properties.values())


def default_categories(*, personal_data: bool) -> frozenset[str]:
    """Return the categories of a top-level key that names none: by the schema's
    `personal-data` mark, `user-identifiable-information` or else `unrestricted`."""
    return frozenset({USER_IDENTIFIABLE_INFORMATION if personal_data else UNRESTRICTED})


@dataclass(frozen=True)
class Redactor:
    """Copies an event's top-level keys into a capsule, redacting what the rule does not allow."""

    top: Descend
    drop: bool
    # True when the plan keeps every key at every depth: redacting cannot change an event.
    keeps_all: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Note whether the plan keeps everything (then an event is copied as it is)."""
        object.__setattr__(self, "keeps_all", _keeps_every_key(self.top))

    @classmethod
    def plan(
        cls, tree: CategoryNode, rule: SchemaRule, *, personal_data: bool, drop: bool
    ) -> Redactor:
        """Plan the redaction of one schema's events under one allow-list rule."""
        default = default_categories(personal_data=personal_data)
        return cls(plan_keys(tree, default, rule.categories, rule.properties), drop)

    def copy_into(self, out: dict[str, Any], event: Mapping[str, Any]) -> None:
        """Copy the event's keys into `out`, redacted; raise NotJSONError when a value it
        redacts could not be written as JSON (a kept one fails when the capsule is written)."""
        if self.keeps_all:
            out.update(event)
            return
        self._copy_keys(self.top, out, event)

    def _copy_keys(self, step: Descend, out: dict[str, Any], value: Mapping[str, Any]) -> None:
        properties, other = step.properties, step.other_keys
        for key, sub in value.items():
            verdict = properties.get(key, other)
            if verdict.__class__ is KeySteps:
                verdict = verdict(key)
            if verdict is KEEP:
                out[key] = sub
            elif verdict is not REDACT:
                out[key] = self._apply(verdict, sub)  # type: ignore[arg-type]
            else:
                if sub.__class__ is not str or not sub.isascii():
                    check(sub)  # not recorded, it must still be JSON: the event is refused whole
                if not self.drop and key in properties:
                    out[key] = None  # a key the schema does not name may itself be data: left out

    def _apply(self, step: Step, value: Any) -> Any:
        if step is KEEP:
            return value
        if not isinstance(step, Descend):
            check(value)
            return None
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            self._copy_keys(step, out, value)
            return out
        if isinstance(value, list):
            return [self._apply(step.items, item) for item in value]
        return value
