"""The collector's tornado handlers: the extension's REST API, authenticated by JupyterHub.

Every verb needs a hub user: a token (`Authorization: token ...`, e.g. a single-user server's
$JUPYTERHUB_API_TOKEN) or the collector's OAuth cookie, which HubOAuth accepts on a POST only
with its XSRF token (`X-XSRFToken`, from the `_xsrf` cookie), as jupyter_server does.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from jupyterhub.services.auth import (
    HubOAuthCallbackHandler,
    HubOAuthenticated,
    UserNotAllowed,
)
from tornado import web

from jupyter_telemetry_ext._version import __version__
from jupyter_telemetry_ext.core.schema import EventSchema
from jupyter_telemetry_ext.server.consent import mark_withheld
from jupyter_telemetry_ext.server.pagerender import STATIC, render_page
from jupyter_telemetry_ext.server.reception import Reception
from jupyter_telemetry_ext.server.restapi import (
    EVENTLOG_SETTING,
    POLICY_SETTING,
    RETRY_AFTER_SECONDS,
    PostEvents,
    schema_model,
    schemas_model,
)
from jupyter_telemetry_ext.server.studykinds import with_own_studies
from jupyter_telemetry_ext.server.transparency import HUB, page_model
from jupyter_telemetry_ext.server.wire import Posted

from .access_log import ScrubbedLogs, log_request
from .audit_gaps import AuditGaps, statuses
from .collector import AUDIT_GAPS_SETTING, open_to_users
from .consent_user import hub_caller
from .gated_auth import GatedHubOAuth
from .token_gate import TokenGate

if TYPE_CHECKING:
    from .collector import TelemetryCollector

HUB_AUTH_SETTING = "telemetry_hub_auth"
HUB_SCOPES_SETTING = "telemetry_hub_scopes"
BASE_URL_SETTING = "telemetry_base_url"
# Where a post could name a user: such a post is refused whole (the hub names the user).
USER_KEYS = frozenset({"user", "username", "__user__", "user_name"})
_USER_KEY = re.compile(rb'"(?:user|username|__user__|user_name)"\s*:')
F = TypeVar("F", bound=Callable[..., Awaitable[None]])


def hub_user_required(method: F) -> F:
    """Answer 403 (JSON, never a login redirect) when the request has no allowed hub user."""

    @functools.wraps(method)
    async def wrapper(self: CollectorHandler, *args: Any, **kwargs: Any) -> None:
        if self.current_user is None:
            scopes = " or ".join(sorted(self.hub_scopes))
            msg = (
                f"authenticate with a JupyterHub token (Authorization: token ...) that holds "
                f"{scopes}, or the collector's OAuth cookie with its X-XSRFToken header"
            )
            raise web.HTTPError(403, msg)
        await method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class CollectorHandler(HubOAuthenticated, ScrubbedLogs):  # type: ignore[misc]
    """Base of the collector's routes: the hub user, resolved off the event loop; JSON errors."""

    retry_after: int = RETRY_AFTER_SECONDS

    def initialize(self) -> None:
        """Use the collector's HubOAuth."""
        self.hub_auth = self.settings[HUB_AUTH_SETTING]

    @property
    def record_user(self) -> str:
        """Return how the collector records the user (TelemetryCollector.record_user)."""
        return str(self.settings[POLICY_SETTING].record_user)

    @property
    def hub_scopes(self) -> set[str]:
        """Return the scopes a request needs: the service's access scope, never none."""
        return set(self.settings[HUB_SCOPES_SETTING])

    async def resolve_user(self) -> None:
        """Ask the hub who sent the request (cached by HubAuth), without blocking the loop."""
        model = await self.hub_auth.get_user(self, sync=False)
        try:
            model = self.check_hub_user(model) if model else None
        except UserNotAllowed:
            model = None
        self._hub_auth_user_cache = model

    async def prepare(self) -> None:
        """Resolve the hub user before anything else."""
        await self.resolve_user()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Reply `{"message", "reason"}`; tell clients when to retry a 429 or a 503."""
        if status_code in (429, 503):
            self.set_header("Retry-After", str(self.retry_after))
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        message, reason = self._reason, None
        if isinstance(error, web.HTTPError):
            reason = error.reason
            if error.log_message:
                message = error.log_message % error.args if error.args else error.log_message
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": message, "reason": reason}))


@web.stream_request_body
class EventsHandler(PostEvents, CollectorHandler):
    """POST api/telemetry/events: the extension's API; the poster is the token's hub user."""

    options_class = "TelemetryCollector"
    accepts_gzip = True

    async def prepare(self) -> None:
        """Resolve the hub user; refuse a query naming a user, a flood, an oversized body."""
        await self.resolve_user()
        if self.current_user is not None and USER_KEYS & set(self.request.query_arguments):
            raise web.HTTPError(403, _NAMES_USER)
        self.check_post()

    def poster(self) -> tuple[str, str]:
        """Return the hub user's name, and the principal `user:<name>`."""
        name = str(self.current_user["name"])
        return name, f"user:{name}"

    def open_to(self) -> Callable[[EventSchema], bool]:
        """Hub users may post any registered schema but the hub's own (see README)."""
        return open_to_users

    @hub_user_required
    async def post(self) -> None:
        """Record the posted event(s) as the hub user's; a body naming a user is refused."""
        if self.current_user.get("kind", "user") != "user":
            msg = "events are posted with a hub user's token (a server's or a user's)"
            raise web.HTTPError(403, msg)
        with self.settings[EVENTLOG_SETTING].consent.acting_for(*hub_caller(self.current_user)):
            await self.post_and_reply()

    async def _parse(self, body: bytes, inspect: Callable[[Any], None] | None = None) -> Posted:
        """Refuse a body that names a user (403, nothing recorded) before any other check.

        The check looks at the document read once for parsing (off the event loop for a large
        body), and only when the raw body has a user key somewhere, or an escape (`\\u0075ser`
        is read as `user`).
        """
        names = _USER_KEY.search(body) is not None or b"\\u" in body
        return await super()._parse(body, _refuse_user if names else inspect)

    def check_posted(self, posted: Posted) -> None:
        """Nothing more: the user was checked on the raw body."""

    async def _reply(
        self,
        posted: Posted,
        reception: Reception,
        tracker: Callable[[], AbstractContextManager[Any]],
    ) -> dict[str, Any]:
        """Record the post, then note its audit events under the poster (see audit_gaps)."""
        reply = await super()._reply(posted, reception, tracker)
        gaps: AuditGaps = self.settings[AUDIT_GAPS_SETTING]
        gaps.observe(self.poster()[0], reception.recorded_user, posted.events,
                     statuses(reply, len(posted.events)))  # fmt: skip
        return reply


_NAMES_USER = (
    "a post cannot name its user: the user of an event is the hub user whose token or cookie "
    "posted it (remove 'user', 'username', 'user_name' and '__user__')"
)


def _refuse_user(document: Any) -> None:
    """Answer 403 when the document names a user (orjson's reading; else parsing says why)."""
    if _names_user(document):
        raise web.HTTPError(403, _NAMES_USER)


def _names_user(document: Any) -> bool:
    """Return True when the document's top level or one of its events has a user key."""
    if not isinstance(document, dict):
        return False
    if not USER_KEYS.isdisjoint(document):
        return True
    events = document.get("events")
    if not isinstance(events, list):
        return False
    return any(type(e) is dict and not USER_KEYS.isdisjoint(e) for e in events)


class SchemasHandler(CollectorHandler):
    """GET api/telemetry/schemas: every registered schema version, in short."""

    @hub_user_required
    async def get(self) -> None:
        """List each schema version, whether the hub's allow-list records it and its policy."""
        self.set_header("Content-Type", "application/json")
        eventlog = self.settings[EVENTLOG_SETTING]
        model = schemas_model(eventlog, self.record_user)
        with eventlog.consent.acting_for(*hub_caller(self.current_user)):
            mark_withheld(eventlog, model)
        self.finish(json.dumps(model))


class SchemaHandler(CollectorHandler):
    """GET api/telemetry/schemas/<id>: every version's full schema document."""

    @hub_user_required
    async def get(self, schema_id: str) -> None:
        """Reply with every version of a schema id (URL-decoded); 404 if none."""
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(schema_model(self.settings[EVENTLOG_SETTING], schema_id)))


class RootHandler(CollectorHandler):
    """GET <base_url>: the transparency page of the hub's rules for a browser, who the collector
    is and who you are for any other client; a browser logs in here (OAuth)."""

    @web.authenticated
    async def get(self) -> None:
        """Reply the page to a client that accepts HTML, else the collector's name, version and
        the hub user as JSON (a login redirect without a user)."""
        if "text/html" in self.request.headers.get("Accept", ""):
            eventlog = self.settings[EVENTLOG_SETTING]
            page = page_model(eventlog, self.record_user, place=HUB)
            if self.current_user.get("kind", "user") == "user":  # her studies, decided elsewhere
                name, groups = hub_caller(self.current_user)
                page = with_own_studies(page, eventlog, name, groups, decide_here=False)
            base_url = self.settings[BASE_URL_SETTING]
            self.finish(render_page(page, static_url=self.static_url, base_url=base_url))
            return
        self.set_header("Content-Type", "application/json")
        model = {"service": "jupyter_telemetry_ext collector", "version": __version__,
                 "user": self.current_user["name"], "events": "api/telemetry/events"}  # fmt: skip
        self.finish(json.dumps(model))


class OAuthCallbackHandler(HubOAuthCallbackHandler, ScrubbedLogs):  # type: ignore[misc]
    """Where the hub sends the browser back after login: sets the collector's OAuth cookie."""

    def initialize(self) -> None:
        """Use the collector's HubOAuth."""
        self.hub_auth = self.settings[HUB_AUTH_SETTING]


def make_app(collector: TelemetryCollector) -> web.Application:
    """Return the collector's tornado application, its routes under the collector's base_url."""
    from .consent_routes import consent_routes  # its handlers are built on this module's

    base = "/" + collector.base_url.strip("/") + "/"
    if base == "//":
        base = "/"
    age = collector.auth_cache_max_age
    hub_auth = GatedHubOAuth(parent=collector, base_url=base, cache_max_age=age)
    hub_auth.gate = TokenGate(age, collector.refused_tokens, collector.hub_lookup_concurrency,
                              collector.hub_lookup_timeout)  # fmt: skip
    callback = _path(hub_auth.oauth_redirect_uri) or base + "oauth_callback"
    routes: list[tuple[str, type[web.RequestHandler]]] = [
        (base + "api/telemetry/events", EventsHandler),
        (base + "api/telemetry/schemas", SchemasHandler),
        (base + "api/telemetry/schemas/(?P<schema_id>.+)", SchemaHandler),
        *_dashboard_routes(base),
        *consent_routes(base),
        (callback, OAuthCallbackHandler),
        (base, RootHandler),
        (base.rstrip("/"), RootHandler),
    ]
    scopes = set(hub_auth.access_scopes or ()) or {
        f"access:services!service={collector.service_name}"
    }
    # The page's style sheet and script: public files, served without a login.
    static = {"static_path": str(STATIC), "static_url_prefix": base + "static/"}
    settings = {**collector.settings(), **static, BASE_URL_SETTING: base,
                HUB_AUTH_SETTING: hub_auth, HUB_SCOPES_SETTING: scopes,
                "log_function": log_request}  # fmt: skip
    return web.Application(routes, **settings)


def _dashboard_routes(base: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """Return the dashboard's routes (its handlers build on CollectorHandler, above)."""
    from jupyter_telemetry_ext.dashboard.hub_handlers import dashboard_routes

    return dashboard_routes(base)


def _path(url: str) -> str:
    return urlsplit(url).path if url else ""
