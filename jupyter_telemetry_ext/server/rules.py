"""What a schema listing says is recorded of each schema: written by every listing, read back by a
server that forwards, so that its transparency page shows the collector's rules.

`policy_model` is the `policy` of one schema version in `GET api/telemetry/schemas`: the actions,
privacy categories and top-level properties kept, how the user is recorded and the redaction
mode; only the rules, never any user's data. `read_rules` reads a collector's listing back and
refuses it whole when any entry is malformed: the page then says the rules are not known, rather
than show rules that may not apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from jupyter_telemetry_ext.core.allowlist import SchemaRule
from jupyter_telemetry_ext.core.capsule import Plan
from jupyter_telemetry_ext.core.categories import UNRESTRICTED, normalize_labels
from jupyter_telemetry_ext.core.schema import EventSchema

USER_FIELD = "__user__"
USER_MODES = frozenset({"none", "hashed", "username"})
REDACTIONS = frozenset({"null", "drop"})
POLICY_KEYS = frozenset({"actions", "categories", "properties", "user", "redaction"})
# Bounds on what a listing may hold: more is taken as malformed, not shown.
MAX_SCHEMAS = 10_000
MAX_NAMES = 1_000
MAX_NAME_CHARS = 512


@dataclass(frozen=True)
class SchemaPolicy:
    """What a collector records of one schema version: its rule, the user, the redaction mode."""

    rule: SchemaRule
    user: str  # "none", "hashed" or "username"
    redaction: str  # "null" or "drop"

    def model(self) -> dict[str, Any]:
        """Return the policy as a listing says it."""
        rule = self.rule
        return {
            "actions": sorted(rule.actions),
            "categories": sorted(rule.categories),
            "properties": sorted(rule.properties),
            "user": self.user,
            "redaction": self.redaction,
        }


@dataclass(frozen=True)
class CollectorRules:
    """A collector's listing, read: the policy of each schema version it records."""

    policies: Mapping[tuple[str, str], SchemaPolicy]

    def policy(self, schema: EventSchema) -> SchemaPolicy | None:
        """Return the collector's policy for a schema version; None when it does not record it."""
        return self.policies.get((schema.id, str(schema.version)))

    @property
    def record_user(self) -> str:
        """Return how the collector records the user where it does ("none" when nowhere)."""
        modes = {p.user for p in self.policies.values()} - {"none"}
        if len(modes) > 1:  # not from one collector: say the most that may be recorded
            return "username"
        return next(iter(modes), "none")


def user_mode(plan: Plan, record_user: str) -> str:
    """Return how the user is recorded with events of a planned schema ("none": not at all)."""
    return record_user if plan.rule is not None and USER_FIELD in plan.context_kept else "none"


def policy_model(plan: Plan, record_user: str, redaction: str) -> dict[str, Any] | None:
    """Return the listing's `policy` of a planned schema version (None when not recorded)."""
    if plan.rule is None:
        return None
    return SchemaPolicy(plan.rule, user_mode(plan, record_user), redaction).model()


def collector_policy(rules: CollectorRules | None, summary: Mapping[str, Any]) -> Any:
    """Return the collector's `policy` of a listed schema version: None when the collector
    does not record it, or (`rules` None) when its listing was not read yet."""
    policy = rules.policies.get((summary["id"], str(summary["version"]))) if rules else None
    return policy.model() if policy is not None else None


def read_rules(payload: bytes) -> CollectorRules | None:
    """Return the rules of a collector's schema listing; None when it is malformed or says
    nothing of its rules (a collector older than the `policy` field)."""
    try:
        listing = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    schemas = listing.get("schemas") if isinstance(listing, dict) else None
    if not isinstance(schemas, list) or len(schemas) > MAX_SCHEMAS:
        return None
    policies: dict[tuple[str, str], SchemaPolicy] = {}
    for summary in schemas:
        key = _key(summary)
        if key is None or "policy" not in summary:
            return None
        if summary["policy"] is None:
            continue
        policy = _policy(summary["policy"])
        if policy is None:
            return None
        policies[key] = policy
    return CollectorRules(policies)


def _key(summary: Any) -> tuple[str, str] | None:
    if not isinstance(summary, dict):
        return None
    schema_id, version = summary.get("id"), summary.get("version")
    if not _is_name(schema_id) or not (_is_name(version) or type(version) is int):
        return None
    return str(schema_id), str(version)


def _policy(model: Any) -> SchemaPolicy | None:
    if not isinstance(model, dict) or set(model) != POLICY_KEYS:
        return None
    names = [_names(model[key]) for key in ("actions", "categories", "properties")]
    user, redaction = model["user"], model["redaction"]
    if any(n is None for n in names) or user not in USER_MODES or redaction not in REDACTIONS:
        return None
    actions, categories, properties = (n or frozenset() for n in names)
    rule = SchemaRule(actions, normalize_labels(categories) | {UNRESTRICTED}, properties)
    return SchemaPolicy(rule, str(user), str(redaction))


def _names(value: Any) -> frozenset[str] | None:
    if not isinstance(value, list) or len(value) > MAX_NAMES:
        return None
    if not all(_is_name(item) for item in value):
        return None
    return frozenset(value)


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS
