"""The hub's routes: which one a request matched, its action's stable name, and which target
each of the route's values names.

Keyed by method and route pattern relative to the hub's base URL, as JupyterHub declares its
handlers (the same in JupyterHub 5 and 6). A state-changing request to a route not listed here
is still recorded, as `request.<method>` with its pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from tornado import web
from tornado.routing import PathMatches

NAME_LIMIT = 255  # the schema's maxLength of names
ROUTE_LIMIT = 256  # and of a route pattern (an extra handler's may be longer)
TOKEN_ID = re.compile(r"[a-z][0-9]{1,18}")  # a token's id (a12); a token is 32 characters


class Naming(NamedTuple):
    """An action's name, and the target field each of the route's values fills, in order ("":
    none)."""

    action: str
    targets: tuple[str, ...] = ()


USER, SERVER, GROUP, TOKEN, SERVICE = (
    "target_user",
    "target_server",
    "target_group",
    "target_token_id",
    "target_service",
)
_USERS = "/api/users/([^/]+)"
_SERVER = _USERS + "/server"
_SERVERS = _USERS + "/servers/([^/]*)"
_GROUP = "/api/groups/([^/]+)"

NAMED: dict[tuple[str, str], Naming] = {
    ("POST", "/api/users"): Naming("users.create"),
    ("POST", _USERS): Naming("user.create", (USER,)),
    ("PATCH", _USERS): Naming("user.modify", (USER,)),
    ("DELETE", _USERS): Naming("user.delete", (USER,)),
    ("POST", _SERVER): Naming("server.start", (USER,)),
    ("DELETE", _SERVER): Naming("server.stop", (USER,)),
    ("POST", _SERVERS): Naming("server.start", (USER, SERVER)),
    ("PUT", _SERVERS): Naming("server.create", (USER, SERVER)),
    ("PATCH", _SERVERS): Naming("server.modify", (USER, SERVER)),
    ("DELETE", _SERVERS): Naming("server.stop", (USER, SERVER)),
    ("POST", _USERS + "/tokens"): Naming("token.create", (USER,)),
    ("DELETE", _USERS + "/tokens/([^/]*)"): Naming("token.delete", (USER, TOKEN)),
    ("POST", _USERS + "/activity"): Naming("user.activity", (USER,)),
    ("POST", _USERS + "/admin-access"): Naming("user.admin_access", (USER,)),
    ("POST", "/api/groups"): Naming("groups.create"),
    ("POST", _GROUP): Naming("group.create", (GROUP,)),
    ("DELETE", _GROUP): Naming("group.delete", (GROUP,)),
    ("POST", _GROUP + "/users"): Naming("group.add_users", (GROUP,)),
    ("DELETE", _GROUP + "/users"): Naming("group.remove_users", (GROUP,)),
    ("PUT", _GROUP + "/properties"): Naming("group.set_properties", (GROUP,)),
    ("POST", "/api/services/([^/]+)"): Naming("service.create", (SERVICE,)),
    ("DELETE", "/api/services/([^/]+)"): Naming("service.delete", (SERVICE,)),
    ("POST", "/api/proxy"): Naming("proxy.sync"),
    ("PATCH", "/api/proxy"): Naming("proxy.update"),
    ("POST", "/api/shutdown"): Naming("hub.shutdown"),
    ("POST", "/api/shares/([^/]+)"): Naming("share.create", (USER,)),
    ("POST", "/api/shares/([^/]+)/([^/]*)"): Naming("share.create", (USER, SERVER)),
    ("PATCH", "/api/shares/([^/]+)"): Naming("share.revoke", (USER,)),
    ("PATCH", "/api/shares/([^/]+)/([^/]*)"): Naming("share.revoke", (USER, SERVER)),
    ("DELETE", "/api/shares/([^/]+)"): Naming("share.delete_all", (USER,)),
    ("DELETE", "/api/shares/([^/]+)/([^/]*)"): Naming("share.delete_all", (USER, SERVER)),
    ("POST", "/api/share-codes/([^/]+)"): Naming("share_code.create", (USER,)),
    ("POST", "/api/share-codes/([^/]+)/([^/]*)"): Naming("share_code.create", (USER, SERVER)),
    ("DELETE", "/api/share-codes/([^/]+)"): Naming("share_code.delete", (USER,)),
    ("DELETE", "/api/share-codes/([^/]+)/([^/]*)"): Naming("share_code.delete", (USER, SERVER)),
    # A user (or a group) leaving a share of the owner's server: the target is the owner's.
    ("DELETE", _USERS + "/shared/([^/]+)/([^/]*)"): Naming("share.leave", ("", USER, SERVER)),
    ("DELETE", _GROUP + "/shared/([^/]+)/([^/]*)"): Naming("share.leave", (GROUP, USER, SERVER)),
    ("POST", "/api/authorizations/token"): Naming("token.create"),
    ("POST", "/api/oauth2/token"): Naming("oauth.token"),
    ("POST", "/login"): Naming("user.login"),
    ("POST", "/spawn"): Naming("server.start"),
    ("POST", "/spawn/([^/]+)"): Naming("server.start", (USER,)),
    ("POST", "/spawn/([^/]+)/([^/]+)"): Naming("server.start", (USER, SERVER)),
    ("POST", "/accept-share"): Naming("share.accept"),
}
# An OAuth authorization of a server's client (GET: granted at once or the confirmation page;
# POST: the confirmation), recorded when the actor is not the server's owner.
AUTHORIZE = "/api/oauth2/authorize"
SERVER_ACCESS = Naming("server.access", (USER, SERVER))
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def naming(method: str, route: str) -> Naming:
    """Return the name of a state-changing request's action (generic for an unlisted route)."""
    return NAMED.get((method, route)) or Naming(f"request.{method.lower()}")


def targets_of(named: Naming, values: Iterable[str | None]) -> dict[str, Any]:
    """Return the targets the route's values name (a token id only when it is one)."""
    targets: dict[str, Any] = {}
    for field, value in zip(named.targets, values, strict=False):
        if not field or not isinstance(value, str):
            continue
        if field == "target_token_id":
            targets[field] = value if TOKEN_ID.fullmatch(value) else None
        else:
            targets[field] = value[:NAME_LIMIT]
    return targets


class RouteIndex:
    """The route pattern each request matched, relative to the hub's base URL."""

    def __init__(self) -> None:
        """Index nothing until the first request (the application exists by then)."""
        self._app: web.Application | None = None
        self._patterns: dict[type, list[re.Pattern[str]]] = {}

    def route(self, handler: web.RequestHandler) -> str:
        """Return the pattern of the handler's route (without `$`), or "" when none matches."""
        if handler.application is not self._app:
            self._app, self._patterns = handler.application, _patterns(handler.application)
        path = handler.request.path
        for regex in self._patterns.get(type(handler), ()):
            if regex.match(path):
                return _relative(regex.pattern.removesuffix("$"), handler)[:ROUTE_LIMIT]
        return ""


def _patterns(app: web.Application) -> dict[type, list[re.Pattern[str]]]:
    found: dict[type, list[re.Pattern[str]]] = {}
    for rule in app.wildcard_router.rules:
        if isinstance(rule.matcher, PathMatches) and isinstance(rule.target, type):
            found.setdefault(rule.target, []).append(rule.matcher.regex)
    return found


def _relative(pattern: str, handler: web.RequestHandler) -> str:
    hub = handler.settings.get("hub")
    base = str(getattr(hub, "base_url", "/hub/")).rstrip("/")
    return pattern.removeprefix(base) if pattern.startswith(base + "/") else pattern
