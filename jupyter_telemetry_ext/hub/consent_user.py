"""Whose consent applies to a collector request: the hub user's name and groups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def hub_caller(model: Mapping[str, Any]) -> tuple[str, frozenset[str] | None]:
    """Return a hub user model's name and groups (None when the hub did not give them)."""
    groups = model.get("groups")
    known = frozenset(str(g) for g in groups) if isinstance(groups, list) else None
    return str(model["name"]), known
