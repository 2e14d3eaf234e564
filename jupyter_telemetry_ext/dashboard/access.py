"""Who may see which events on the hub: admins and `custom:telemetry:read` see all; the scope
filtered by group (or user) sees only those users' events; anyone else nothing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SCOPE = "custom:telemetry:read"
GROUP_FILTER = SCOPE + "!group="
USER_FILTER = SCOPE + "!user="


@dataclass(frozen=True)
class Access:
    """What a viewer may see: everything, or the events of these groups' members and users."""

    everything: bool
    groups: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()


def access_of(user: Mapping[str, Any]) -> Access | None:
    """Return a hub user's (or service's) access from its model, or None: no access."""
    scopes: Iterable[str] = user.get("scopes") or ()
    scopes = set(scopes)
    if user.get("admin") is True or SCOPE in scopes:
        return Access(everything=True)
    groups = frozenset(s[len(GROUP_FILTER) :] for s in scopes if s.startswith(GROUP_FILTER))
    users = frozenset(s[len(USER_FILTER) :] for s in scopes if s.startswith(USER_FILTER))
    if not groups and not users:
        return None
    return Access(everything=False, groups=groups, users=users)
