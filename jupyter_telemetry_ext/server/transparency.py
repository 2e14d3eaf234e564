"""The transparency page's model: what each schema records, where it goes, what the server adds.

Nothing here imports tornado: the server's page handler and the collector's root render this
model with one Jinja template. Marks come from the plan the events are recorded by: the
EventLog's own (`EventLog.plan`: its rule, as `unrestricted_only` narrows it, and its redaction
plan) or, on a server that forwards its events, the collector's rules from its schema listing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from jupyter_telemetry_ext.core import capsule
from jupyter_telemetry_ext.core.capsule import Plan
from jupyter_telemetry_ext.core.categories import CategoryNode, OtherKeys
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.redaction import (
    KEEP,
    REDACT,
    Descend,
    KeySteps,
    Step,
    default_categories,
    plan_step,
)
from jupyter_telemetry_ext.core.schema import EventSchema, schema_order

from .rules import CollectorRules
from .studyview import StudyMark, StudyView

KEEP_MARK, REDACT_MARK, DROP_MARK, PARTIAL_MARK, OFF_MARK = "keep", "redact", "drop", "partial", ""
OTHER_FIELDS = "(any other field)"
EACH_ITEM = "(each item)"
MATCHING = "(fields matching {})"
_STANDARD_STREAMS = {"<stderr>", "<stdout>"}
SERVER, FORWARDING, HUB = "server", "forwarding", "hub"  # whose rules the page shows


@dataclass(frozen=True)
class PropertyView:
    """One property: its categories and what is recorded of it (a mark; "" when not recorded)."""

    name: str
    description: str
    categories: tuple[str, ...]
    mark: str
    children: tuple[PropertyView, ...] = ()


@dataclass(frozen=True)
class SchemaView:
    """One schema version as the page shows it."""

    id: str
    version: str | int
    title: str
    description: str
    frontend: bool
    allowed: bool
    actions: tuple[str, ...]
    user_kept: bool
    properties: tuple[PropertyView, ...]
    studies: tuple[StudyMark, ...] = ()  # the viewing user's studies covering it

    @property
    def held_back(self) -> tuple[StudyMark, ...]:
        """Return the studies that keep the viewing user's events of this kind out."""
        return tuple(study for study in self.studies if study.held_back is not None)

    @property
    def recorded(self) -> bool:
        """Return whether the viewing user's events of this kind are recorded."""
        return self.allowed and not self.held_back


@dataclass(frozen=True)
class HandlerView:
    """Where events go: a handler's class and, for a file, its path (never anything else)."""

    kind: str
    path: str | None = None


@dataclass(frozen=True)
class PageModel:
    """Everything the transparency page shows.

    `place`: SERVER (a server's own rules), FORWARDING (a server that sends every event to a
    collector: the collector's rules, `rules_known` once its listing was read) or HUB (the
    collector's page).
    """

    schemas: tuple[SchemaView, ...]
    handlers: tuple[HandlerView, ...]
    failed_handlers: tuple[HandlerView, ...]
    record_user: str  # how the user is recorded where a schema keeps it
    redaction: str
    unrestricted_only: bool
    collector: str | None = None  # where every accepted event is forwarded (no credentials)
    place: str = SERVER
    rules_known: bool = True
    local_recorded: int = 0  # FORWARDING: schemas the server's own allow-list also records
    studies: tuple[StudyView, ...] = ()  # the viewing user's studies and decisions
    studies_unknown: str | None = None  # why the studies could not be read (the collector's)

    @property
    def live(self) -> bool:
        """Return whether the live view applies: it shows what this server itself records."""
        return self.place == SERVER

    @property
    def recorded(self) -> tuple[SchemaView, ...]:
        """Return the schema versions recorded for the viewing user: allowed, and no study
        keeps them out."""
        return tuple(schema for schema in self.schemas if schema.recorded)

    @property
    def held_back(self) -> tuple[SchemaView, ...]:
        """Return the schema versions allowed but kept out for the viewing user by a study."""
        return tuple(schema for schema in self.schemas if schema.allowed and schema.held_back)


def page_model(eventlog: EventLog, record_user: str = "none", *, place: str = SERVER) -> PageModel:
    """Return the page's model of the EventLog's own rules (a server's, or the collector's)."""
    schemas = sorted(eventlog.schemas, key=schema_order)
    return PageModel(
        schemas=tuple(schema_view(eventlog.plan(s), eventlog.redaction) for s in schemas),
        handlers=tuple(handler_view(h) for h in eventlog.handlers),
        failed_handlers=tuple(handler_view(h) for h in eventlog.failed_handlers),
        record_user=str(record_user),
        redaction=eventlog.redaction,
        unrestricted_only=eventlog.unrestricted_only,
        place=place,
    )


def forwarding_model(
    eventlog: EventLog, collector_url: str, rules: CollectorRules | None
) -> PageModel:
    """Return the page's model of a server that forwards every event: the collector's rules
    for the schemas the server knows (None: its listing was not read yet, nothing is shown)."""
    own = page_model(eventlog)
    schemas = sorted(eventlog.schemas, key=schema_order)
    views = _collector_views(schemas, rules) if rules is not None else ()
    policies = rules.policies.values() if rules is not None else ()
    return dataclasses.replace(
        own,
        schemas=views,
        record_user=rules.record_user if rules is not None else "none",
        redaction=next((p.redaction for p in policies), "null"),
        unrestricted_only=False,  # the collector's listing has it applied to each rule
        collector=shown_url(collector_url),
        place=FORWARDING,
        rules_known=rules is not None,
        local_recorded=len(own.recorded) if own.handlers else 0,
    )


def _collector_views(
    schemas: Iterable[EventSchema], rules: CollectorRules
) -> tuple[SchemaView, ...]:
    """Return each schema's view under the collector's policy (not recorded: none listed)."""
    views = []
    for schema in schemas:
        policy = rules.policy(schema)
        if policy is None:
            plan = capsule.plan(schema, None, drop=False, unrestricted_only=False)
            views.append(schema_view(plan, "null"))
            continue
        drop = policy.redaction == "drop"
        plan = capsule.plan(schema, policy.rule, drop=drop, unrestricted_only=False)
        view = schema_view(plan, policy.redaction)
        views.append(dataclasses.replace(view, user_kept=policy.user != "none"))
    return tuple(views)


def shown_url(url: str) -> str:
    """Return a URL without what it may carry besides where it leads (credentials, query)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def schema_view(plan: Plan, redaction: str) -> SchemaView:
    """Return a schema's view: each property's categories and its mark under the plan."""
    schema, rule = plan.schema, plan.rule
    top = plan.redactor.top if plan.redactor is not None else Descend()
    marks = _Marks(redaction, recorded=rule is not None)
    tree = schema.categories
    if schema.document.get("additionalProperties") is not False and tree.other_keys() is None:
        tree = _with_other_keys(tree)  # the page names the top level's other fields anyway
    default = default_categories(personal_data=schema.personal_data)
    properties = marks.children(tree, top, default, _descriptions(schema.document))
    return SchemaView(
        id=schema.id,
        version=schema.version,
        title=schema.title,
        description=schema.description,
        frontend=schema.frontend,
        allowed=rule is not None,
        actions=tuple(sorted(rule.actions)) if rule else (),
        user_kept="__user__" in plan.context_kept,
        properties=properties,
    )


def _with_other_keys(tree: CategoryNode) -> CategoryNode:
    """Return the tree with an empty description of other keys (they inherit the default)."""
    return CategoryNode(
        tree.categories, tree.properties, tree.patterns, [*tree.other, OtherKeys(CategoryNode())],
        tree.items, tree.opaque,
    )  # fmt: skip


def _descriptions(document: Mapping[str, Any]) -> dict[str, str]:
    properties = document.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    return {
        str(name): str(sub.get("description", "")) if isinstance(sub, Mapping) else ""
        for name, sub in properties.items()
    }


class _Marks:
    """Turns a redaction plan into marks, walking it beside the category tree."""

    def __init__(self, redaction: str, *, recorded: bool) -> None:
        self.redacted = DROP_MARK if redaction == "drop" else REDACT_MARK
        self.recorded = recorded

    def mark(self, step: Step, *, item: bool = False, named: bool = True) -> str:
        """Return the mark of one planned step.

        A redacted array item is null, never dropped; a redacted key the schema does not name
        is always dropped (its name may itself be data).
        """
        if not self.recorded:
            return OFF_MARK
        if step is KEEP:
            return KEEP_MARK
        if step is REDACT:
            return REDACT_MARK if item else (self.redacted if named else DROP_MARK)
        return PARTIAL_MARK

    def view(
        self,
        name: str,
        description: str,
        node: CategoryNode,
        step: Step,
        inherited: frozenset[str],
        *,
        named: bool = True,
    ) -> PropertyView:
        """Return the view of one place: its effective categories, mark and planned children."""
        categories = node.categories if node.categories is not None else inherited
        children: tuple[PropertyView, ...] = ()
        if isinstance(step, Descend):
            children = self.children(node, step, categories, {})
            if node.items is not None:
                children += (self.view(EACH_ITEM, "", node.items, step.items, categories),)
        mark = self.mark(step, item=name == EACH_ITEM, named=named)
        return PropertyView(name, description, tuple(sorted(categories)), mark, children)

    def children(
        self, node: CategoryNode, step: Descend, inherited: frozenset[str], text: dict[str, str]
    ) -> tuple[PropertyView, ...]:
        """Return the views of an object's keys: named ones (described by `text`), those
        matching each pattern, and any other."""
        views = [
            self.view(name, text.get(name, ""), node.key(name) or CategoryNode(),
                      step.properties.get(name, KEEP), inherited)
            for name in node.properties
        ]  # fmt: skip
        for pattern, sub in node.pattern_keys():
            views.append(self._other(MATCHING.format(pattern), sub, step, inherited))
        other = node.other_keys()
        if other is not None:
            views.append(self._other(OTHER_FIELDS, other, step, inherited))
        return tuple(views)

    def _other(
        self, name: str, node: CategoryNode, step: Descend, inherited: frozenset[str]
    ) -> PropertyView:
        """Return the view of keys the schema does not name, as the plan decides them."""
        other = step.other_keys
        sub_step = (
            plan_step(node, other.inherited, other.allowed)
            if isinstance(other, KeySteps)
            else other
        )
        return self.view(name, "", node, sub_step, inherited, named=False)


def handler_view(handler: logging.Handler) -> HandlerView:
    """Describe a handler by its class; only a file's path, or a standard stream, is shown."""
    cls = type(handler)
    kind = cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"
    if isinstance(handler, logging.FileHandler):
        return HandlerView(kind, handler.baseFilename)
    name = getattr(getattr(handler, "stream", None), "name", None)
    return HandlerView(kind, name if name in _STANDARD_STREAMS else None)
