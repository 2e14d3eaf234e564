"""The hub's own actions (schema hub-action): who changed what through the hub, recorded by the hub.

JupyterHub hands every finished request to tornado's `log_function`, with its handler (the
current user, the token, the route's values) and its status. `HubAuditHandler.log_request` is
such a function: it calls JupyterHub's own (its access log and metrics are kept), then records
every state-changing request (POST, PUT, PATCH, DELETE) and every OAuth authorization of a
user's server for someone else than its owner (an admin opening alice's server) through an
EventLog, whose handlers write on their own thread. In `jupyterhub_config.py`:

    audit = HubAuditHandler(events.eventlog, record_user="hashed", user_hash_secret="...")
    c.JupyterHub.tornado_settings.update({"log_function": audit.log_request})

Never recorded: request bodies (passwords, tokens), query strings, token values or prefixes, a
path's values but those the route names (a token id only when it is one).
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tornado import web

from jupyter_telemetry_ext.core.discovery import register_discovered, schema_folders
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.recorded_user import (
    checked_secret,
    recorded_user,
    warn_user_not_kept,
)
from jupyter_telemetry_ext.core.schema import EventSchema

from .actor import actor_of, others_server
from .hub_log import log_through_the_hub
from .routes_named import (
    AUTHORIZE,
    NAMED,
    SERVER_ACCESS,
    STATE_CHANGING,
    RouteIndex,
    naming,
    targets_of,
)

HUB_ACTION = "https://events.jupyter.org/jupyter_telemetry_ext/hub-action"
CLOSE_TIMEOUT = 10.0  # seconds the hub's exit waits for queued actions to be written
LogFunction = Callable[[web.RequestHandler], None]
log = logging.getLogger("jupyter_telemetry_ext.hub.actions")
ACTIONS = (
    frozenset(n.action for n in NAMED.values())
    | {SERVER_ACCESS.action}
    | {f"request.{m.lower()}" for m in STATE_CHANGING}
)


class HubAuditHandler:
    """Records the hub's state-changing requests and others' access to users' servers.

    Parameters
    ----------
    eventlog
        The EventLog to record through, e.g. `HubEventHandler`'s (`events.eventlog`); None (the
        default) creates one, writing from a background thread, from `eventlog_options`
        (`handlers`, `allowed_schemas`, ...: the traits of `c.EventLog`), closed at exit.
    record_user
        "none" (the default), "hashed" or "username": adds the acting user as `__user__`; with
        "hashed" the actor and the target user are written as the keyed hash (the collector's
        `user_hash_secret`), never as names.
    user_hash_secret
        The key of the "hashed" mode.
    chain
        The log function called first for each request; None: JupyterHub's own
        (`jupyterhub.log.log_request`), so the hub's access log and metrics are kept.
    skip_actions
        Action names not to record (e.g. `("user.activity",)`, the servers' activity reports);
        empty (the default): every action.
    schema_paths
        Further schema folders; the shipped hub-action schema is found in the Jupyter data path.
    """

    def __init__(
        self,
        eventlog: EventLog | None = None,
        *,
        record_user: str = "none",
        user_hash_secret: str = "",
        chain: LogFunction | None = None,
        skip_actions: Iterable[str] = (),
        schema_paths: tuple[str | Path, ...] = (),
        **eventlog_options: Any,
    ) -> None:
        """Check the options and the allow-list; raise ValueError naming what is wrong."""
        _check_mode(record_user, user_hash_secret)
        self.skip = _checked_actions(skip_actions)
        log_through_the_hub()
        owned = eventlog is None
        if eventlog is None:
            eventlog = EventLog(background=True, **eventlog_options)
        _register(eventlog, schema_paths)
        if not eventlog.is_allowed(HUB_ACTION):
            msg = f"HubAuditHandler: the EventLog's allowed_schemas does not allow {HUB_ACTION}"
            raise ValueError(msg)
        warn_user_not_kept(log, eventlog, record_user, _is_hub_action)
        self.eventlog, self.record_user = eventlog, record_user
        self.secret = user_hash_secret.encode()
        self.chain = chain if chain is not None else _jupyterhub_log_function()
        self.routes = RouteIndex()
        if owned:
            atexit.register(self.close)
        self._owned = owned

    def __deepcopy__(self, memo: dict[int, Any]) -> HubAuditHandler:
        """Return itself: the config copies its values, and there is one live handler."""
        return self

    def log_request(self, handler: web.RequestHandler) -> None:
        """Log the request as `chain` does, then record it when it is a hub action."""
        try:
            self.chain(handler)
        finally:
            self._record(handler)

    def _record(self, handler: web.RequestHandler) -> None:
        try:
            data = self.action(handler)
            if data is not None and data["action"] not in self.skip:
                event, context = self._recorded(data)
                self.eventlog.record_event(HUB_ACTION, 1, event, context=context)
        except Exception:  # a log function must never break the hub's answer: say so, loudly
            log.exception("Hub action not recorded (%s request)", handler.request.method)

    def action(self, handler: web.RequestHandler) -> dict[str, Any] | None:
        """Return the hub-action event of a finished request (names in clear), or None."""
        method = handler.request.method or ""
        if method not in STATE_CHANGING and method != "GET":
            return None
        route = self.routes.route(handler)
        if route != AUTHORIZE and method not in STATE_CHANGING:
            return None  # a GET: it changes nothing
        actor = actor_of(handler)
        if route == AUTHORIZE:
            targets = others_server(handler, actor)
            if targets is None:
                return None
            named = SERVER_ACCESS
        else:
            named = naming(method, route)
            targets = targets_of(named, handler.path_args)
        request = handler.request
        return {"action": named.action, "method": method, "route": route,
                "status": handler.get_status(), "duration_ms": 1000.0 * request.request_time(),
                **actor, **targets}  # fmt: skip

    def _recorded(self, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Return the event as recorded (users hashed with "hashed") and its capsule context."""
        user = data.get("actor")
        context = None
        if isinstance(user, str) and self.record_user != "none":
            context = {"__user__": recorded_user(self.record_user, self.secret, user)}
        if self.record_user == "hashed":
            for field in ("actor", "target_user"):
                if isinstance(data.get(field), str):
                    data[field] = recorded_user("hashed", self.secret, data[field])
        return data, context

    def flush(self) -> None:
        """Wait until the EventLog's handlers wrote every action recorded so far."""
        self.eventlog.flush()

    def close(self) -> None:
        """Write what is queued and stop the EventLog it created (not one it was given)."""
        if self._owned:
            self.eventlog.close(CLOSE_TIMEOUT)


def _check_mode(record_user: str, secret: str) -> None:
    if record_user not in ("none", "hashed", "username"):
        msg = f"record_user: must be 'none', 'hashed' or 'username' (got {record_user!r})"
        raise ValueError(msg)
    if record_user == "hashed" and not secret:
        msg = "record_user='hashed' needs user_hash_secret (the collector's)"
        raise ValueError(msg)
    checked_secret(secret)


def _checked_actions(actions: Iterable[str]) -> frozenset[str]:
    names = frozenset([actions] if isinstance(actions, str) else actions)
    unknown = sorted(names - ACTIONS)
    if unknown:
        msg = f"skip_actions: unknown action names {unknown} (known: {sorted(ACTIONS)})"
        raise ValueError(msg)
    return names


def _register(eventlog: EventLog, schema_paths: tuple[str | Path, ...]) -> None:
    """Register the hub-action schema (found in the Jupyter data path) unless it is there."""
    if not any(s.id == HUB_ACTION for s in eventlog.schemas):
        register_discovered(eventlog, schema_folders(schema_paths), log)
    if not any(s.id == HUB_ACTION for s in eventlog.schemas):
        msg = (f"HubAuditHandler: the schema {HUB_ACTION} is not installed (telemetry/schemas/"
               "jupyter_telemetry_ext/hub-action in the Jupyter data path): reinstall "
               "jupyter_telemetry_ext")  # fmt: skip
        raise LookupError(msg)


def _is_hub_action(schema: EventSchema) -> bool:
    return schema.id == HUB_ACTION


def _jupyterhub_log_function() -> LogFunction:
    from jupyterhub.log import log_request

    function: LogFunction = log_request
    return function
