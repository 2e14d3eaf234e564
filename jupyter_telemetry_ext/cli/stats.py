"""`jupyter telemetry stats` on a log: counts per period, per recorded user or per schema."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

PER_PERIOD = ("period", "schema", "version", "action")
GROUPS = {
    "day": PER_PERIOD,
    "hour": PER_PERIOD,
    "all": PER_PERIOD,
    "user": ("user",),  # as recorded: a keyed hash or a name, never resolved
    "schema": ("schema", "version"),
}

Key = tuple[str | None, ...]


def count_capsules(capsules: Iterable[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """Count the capsules per `by` (a key of GROUPS): periods in order, others most first."""
    counts = Counter(_key(capsule, by) for capsule in capsules)
    if by in ("user", "schema"):
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], [k or "" for k in kv[0]]))
    else:
        ordered = sorted(counts.items(), key=lambda kv: tuple(map(str, kv[0])))
    return [{**dict(zip(GROUPS[by], key, strict=True)), "count": n} for key, n in ordered]


def _key(capsule: dict[str, Any], by: str) -> Key:
    schema, version = str(capsule.get("__schema__")), str(capsule.get("__schema_version__"))
    if by == "user":
        user = capsule.get("__user__")
        return (None if user is None else str(user),)
    if by == "schema":
        return (schema, version)
    stamp = str(capsule.get("__timestamp__", ""))
    period = {"day": stamp[:10], "hour": stamp[:13].replace("T", " ") + "h", "all": "all"}[by]
    action = capsule.get("action")
    return (period, schema, version, "" if action is None else str(action))
