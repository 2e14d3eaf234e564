"""The hub's own events (jupyter_events, `c.EventLogger.handlers`) recorded through an EventLog.

JupyterHub emits its events (e.g. "a user's server was started") through a jupyter_events
EventLogger, whose handlers get each event's capsule. `HubEventHandler` is such a handler: it
records the event through one of our EventLogs, so that the allow-list, the redaction, the
capsule and the sinks (JSON-lines file, PostgreSQL, OTLP) are those of the users' events.
In `jupyterhub_config.py`:

    from jupyter_telemetry_ext.hub.events import HubEventHandler
    c.EventLogger.handlers = [HubEventHandler(handlers=[...], allowed_schemas={...})]
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from jupyter_telemetry_ext.core.categories import USER_IDENTIFIER
from jupyter_telemetry_ext.core.discovery import register_discovered
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.recorded_user import (
    checked_secret,
    recorded_user,
    warn_user_not_kept,
)
from jupyter_telemetry_ext.core.schema import EventSchema

from .hub_log import log_through_the_hub

# The field of the hub's events that names the user they are about (server-action's).
USER_FIELD = "username"
CLOSE_TIMEOUT = 10.0  # seconds the hub's exit waits for queued events to be written


def hub_schema_folder() -> Path | None:
    """Return jupyterhub's `event-schemas` folder, without importing jupyterhub."""
    spec = importlib.util.find_spec("jupyterhub")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "event-schemas"


def hub_schemas() -> list[dict[str, Any]]:
    """Return jupyterhub's event schemas, their user field labelled `user-identifier`.

    The hub's schemas carry no privacy categories; unlabelled, the user name would count as
    `unrestricted` and be kept by any allow-list that names the schema.
    """
    folder = hub_schema_folder()
    documents = []
    for path in sorted(folder.glob("**/*.yaml")) if folder is not None else ():
        document = yaml.safe_load(path.read_text("utf-8"))
        user = document.get("properties", {}).get(USER_FIELD)
        if isinstance(user, dict):
            user.setdefault("categories", [USER_IDENTIFIER])
        documents.append(document)
    return documents


def _about_a_user(schema: EventSchema) -> bool:
    """Return whether the schema's events name the user they are about (`record_user` adds it)."""
    return USER_FIELD in schema.document.get("properties", {})


class HubEventHandler(logging.Handler):
    """A `logging.Handler` for jupyter_events that records each event through an EventLog.

    Parameters
    ----------
    eventlog
        The EventLog to record through; None (the default) creates one, writing from a
        background thread, from `eventlog_options` (`handlers`, `allowed_schemas`,
        `redaction`, ...: the traits of `c.EventLog`).
    record_user
        "none" (the default), "hashed" or "username": adds the user the event is about (its
        `username` field) as `__user__`, as the collector does for the users' events; use the
        collector's `user_hash_secret` so the hashes match. With "hashed", the event's own
        `username` is that hash too: the name is written nowhere.
    user_hash_secret
        The key of the "hashed" mode.
    schema_paths
        Further schema folders or files; jupyterhub's own schemas are always registered.
    """

    def __init__(
        self,
        eventlog: EventLog | None = None,
        *,
        record_user: str = "none",
        user_hash_secret: str = "",
        schema_paths: tuple[str | Path, ...] = (),
        **eventlog_options: Any,
    ) -> None:
        """Register the hub's schemas in the EventLog (created unless given)."""
        # Everything that can fail comes before logging.Handler.__init__, which registers the
        # handler for logging.shutdown: a failed construction leaves no half-built handler.
        if record_user not in ("none", "hashed", "username"):
            msg = f"record_user: must be 'none', 'hashed' or 'username' (got {record_user!r})"
            raise ValueError(msg)
        if record_user == "hashed" and not user_hash_secret:
            msg = "record_user='hashed' needs user_hash_secret (the collector's)"
            raise ValueError(msg)
        checked_secret(user_hash_secret)
        log_through_the_hub()
        if eventlog is None:
            eventlog = EventLog(background=True, **eventlog_options)
        log = logging.getLogger("jupyter_telemetry_ext.hub.events")
        for document in hub_schemas():
            eventlog.register_schema(document)
        register_discovered(eventlog, [Path(p) for p in schema_paths], log)
        warn_user_not_kept(log, eventlog, record_user, _about_a_user)
        super().__init__()
        self.eventlog = eventlog
        self.record_user, self.secret = record_user, user_hash_secret.encode()

    def emit(self, record: logging.LogRecord) -> None:
        """Record the jupyter_events capsule in `record.msg` through the EventLog."""
        capsule = record.msg
        if not isinstance(capsule, Mapping) or "__schema__" not in capsule:
            return  # not an event: jupyter_events logs only capsules here
        data = {k: v for k, v in capsule.items() if not k.startswith("__")}
        context = self._context(capsule)
        if self.record_user == "hashed" and USER_FIELD in data:
            # The user is recorded hashed: the name is never written, in the event either.
            data[USER_FIELD] = context["__user__"] if context else None
        try:
            self.eventlog.record_event(
                capsule["__schema__"], capsule.get("__schema_version__"), data, context=context
            )
        except Exception:  # logging's contract: a handler reports, never raises
            self.handleError(record)

    def _context(self, capsule: Mapping[str, Any]) -> dict[str, Any] | None:
        username = capsule.get(USER_FIELD)
        if not isinstance(username, str):
            return None
        user = recorded_user(self.record_user, self.secret, username)
        return None if user is None else {"__user__": user}

    def flush(self) -> None:
        """Wait until the EventLog's handlers wrote every event recorded so far."""
        self.eventlog.flush()

    def close(self) -> None:
        """Write what is queued, then close the EventLog's handlers (at the hub's exit)."""
        self.eventlog.close(CLOSE_TIMEOUT)
        super().close()
