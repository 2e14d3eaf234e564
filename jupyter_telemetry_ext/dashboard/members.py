"""The recorded ids of a hub group's members: asked of the hub's API, kept for a while."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from urllib.parse import quote

from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from jupyter_telemetry_ext.core.recorded_user import recorded_user

READ_GROUPS = (
    "the collector cannot read the members of group {group!r} from the hub (HTTP {code}): "
    "give its service the scope read:groups (see docs/dashboard.md)"
)


class Members:
    """Group members' names, from the hub's API, each group's kept `max_age` seconds."""

    def __init__(self, api_url: str, api_token: str, max_age: float) -> None:
        """Ask the hub at `api_url` with the collector's own token."""
        self.api_url, self.api_token, self.max_age = api_url.rstrip("/"), api_token, max_age
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def of(self, group: str) -> frozenset[str]:
        """Return the names of a group's members; 503 when the hub does not tell (fail closed)."""
        cached = self._cache.get(group)
        if cached is not None and time.monotonic() - cached[0] < self.max_age:
            return cached[1]
        url = f"{self.api_url}/groups/{quote(group, safe='')}"
        headers = {"Authorization": f"token {self.api_token}"}
        try:
            response = await AsyncHTTPClient().fetch(url, headers=headers)
        except HTTPClientError as e:
            if e.code == 404:  # a group that does not exist has no members
                return frozenset()
            raise web.HTTPError(503, READ_GROUPS.format(group=group, code=e.code)) from None
        names = json.loads(response.body).get("users")
        if not isinstance(names, list):
            raise web.HTTPError(503, READ_GROUPS.format(group=group, code=response.code))
        found = frozenset(str(n) for n in names)
        self._cache[group] = (time.monotonic(), found)
        return found


def recorded_ids(mode: str, secret: bytes, names: Iterable[str]) -> tuple[str, ...]:
    """Return the `__user__` values the store holds for these users (none for mode "none")."""
    return tuple(sorted({u for n in names if (u := recorded_user(mode, secret, n)) is not None}))
