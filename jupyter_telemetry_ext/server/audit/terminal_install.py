"""Turning the terminal audit on: the terminal websocket route and the terminal manager, hooked.

The terminals extension (jupyter_server_terminals) adds its websocket route and its terminal
manager when it loads, before or after this extension. The hooks are put in place at once and
again when the server's event loop starts; then each is checked, and what is not in place is said
loudly: terminal commands are NOT audited (with `audit_required`, the server stops instead).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from terminado.websocket import TermSocket
from tornado.routing import Rule

from jupyter_telemetry_ext.core.errors import UnknownSchemaError
from jupyter_telemetry_ext.core.eventlog import EventLog

from .recorder import AuditRecorder
from .terminal import SCHEMA_ID, VERSION, TerminalAudit
from .terminal_socket import (
    ECHO_READABLE,
    AuditedTermSocket,
    UserContext,
    audited_socket_class,
)

TERMINAL_AUDIT_SETTING = "telemetry_terminal_audit"
MANAGER_SETTING = "terminal_manager"
_HOOKED = "_telemetry_audit_hooked"


def install_terminal_audit(
    recorder: AuditRecorder, serverapp: Any, context: UserContext, log: logging.Logger
) -> TerminalAudit | None:
    """Audit the server's terminals through `recorder`; say at start what is not audited."""
    if not _schema_ready(recorder.eventlog, log):
        return None
    if not ECHO_READABLE:
        log.warning("TelemetryExtension.audit: the echo mode of a terminal cannot be read on "
                    "this platform: every terminal line is recorded without its text")  # fmt: skip
    hooks = TerminalHooks(TerminalAudit(recorder), context, log)
    hooks.install(serverapp.web_app)
    serverapp.io_loop.add_callback(hooks.check, serverapp.web_app)
    return hooks.audit


def _schema_ready(eventlog: EventLog, log: logging.Logger) -> bool:
    """Return True when the terminal schema is registered; say what is recorded of it."""
    try:
        eventlog.get_schema(SCHEMA_ID, VERSION)
    except UnknownSchemaError:
        log.error("TelemetryExtension.audit: the schema %s is not registered (is "
                  "jupyter_telemetry_ext installed with its schemas?): terminal commands are "
                  "NOT audited", SCHEMA_ID)  # fmt: skip
        return False
    if not eventlog.is_allowed(SCHEMA_ID) and not eventlog.tapped:
        log.error("TelemetryExtension.audit: %s is not in c.EventLog.allowed_schemas and nothing "
                  "is forwarded: terminal commands are audited but NOT recorded anywhere",
                  SCHEMA_ID)  # fmt: skip
    return True


class TerminalHooks:
    """Puts the terminal audit into a web application's terminal route and terminal manager."""

    def __init__(self, audit: TerminalAudit, context: UserContext, log: logging.Logger) -> None:
        """Hook `audit` in; `context` gives the capsule fields of a websocket's user."""
        self.audit, self.context, self.log = audit, context, log
        self._classes: dict[type[Any], type[AuditedTermSocket]] = {}

    def install(self, web_app: Any) -> tuple[int, bool]:
        """Hook every terminal websocket route and the terminal manager not hooked yet; return
        how many routes are audited and whether the manager is."""
        audited = 0
        for rule in terminal_rules(web_app):
            if not issubclass(rule.target, AuditedTermSocket):
                rule.target = self._audited(rule.target)
            audited += 1
        manager = web_app.settings.get(MANAGER_SETTING)
        return audited, manager is not None and self._hook_manager(manager)

    def check(self, web_app: Any) -> None:
        """Hook what loaded after this extension, then say what is not audited."""
        if not web_app.settings.get("terminals_available"):
            self.log.warning("TelemetryExtension.audit: terminals are not enabled on this server "
                             "(ServerApp.terminals_enabled, jupyter_server_terminals): there are "
                             "no terminal commands to audit")  # fmt: skip
            return
        routes, manager = self.install(web_app)
        if not routes and self.audit.durability is not None:
            self.log.critical("Telemetry: the config cannot be used, the server stops: "
                              "TelemetryExtension.audit_required is set, but no terminal "
                              "websocket route could be hooked (another extension replaced "
                              "jupyter_server_terminals' TermSocket?): terminal commands would "
                              "run unaudited")  # fmt: skip
            raise SystemExit(1)  # as at start: the terminals load after this extension
        if not routes:
            self.log.error("TelemetryExtension.audit: no terminal websocket route could be "
                           "hooked (another extension replaced jupyter_server_terminals' "
                           "TermSocket?): terminal commands are NOT audited")  # fmt: skip
        if not manager:
            self.log.error("TelemetryExtension.audit: the terminal manager could not be hooked: "
                           "terminals created and closed are NOT audited")  # fmt: skip
        if routes and manager:
            self.log.info("Telemetry: auditing terminal commands (stream %s)",
                          self.audit.recorder.stream)  # fmt: skip

    def _audited(self, base: type[Any]) -> type[AuditedTermSocket]:
        if base not in self._classes:
            self._classes[base] = audited_socket_class(base, self.audit, self.context)
        return self._classes[base]

    def _hook_manager(self, manager: Any) -> bool:
        """Record terminals started and ended, wherever the terminal manager starts and ends them.

        terminado starts reading every terminal it makes (by name or by the REST API) through
        `start_reading`, and sees every end (exit, kill, cull, shutdown) through `on_eof`: the
        manager's own methods are wrapped on the instance, so any manager class is covered.
        """
        if getattr(manager, _HOOKED, False):
            return True
        if not (callable(getattr(manager, "start_reading", None)) and
                callable(getattr(manager, "on_eof", None))):  # fmt: skip
            return False
        manager.start_reading = _started(manager, manager.start_reading, self.audit)
        manager.on_eof = _ended(manager.on_eof, self.audit)
        setattr(manager, _HOOKED, True)
        return True


def terminal_rules(web_app: Any) -> Iterator[Rule]:
    """Yield the web application's routing rules that lead to a terminal websocket handler."""
    pending = [web_app.default_router]
    while pending:
        router = pending.pop()
        for rule in getattr(router, "rules", ()):
            target = rule.target
            if isinstance(target, type) and issubclass(target, TermSocket):
                yield rule
            elif hasattr(target, "rules"):
                pending.append(target)


def _started(manager: Any, start_reading: Any, audit: TerminalAudit) -> Any:
    def start_reading_audited(terminal: Any, *args: Any, **kwargs: Any) -> Any:
        started = start_reading(terminal, *args, **kwargs)
        name, shell = getattr(terminal, "term_name", ""), getattr(manager, "shell_command", None)
        _safely(audit, "recording a terminal created", lambda: audit.created(name, shell))
        return started

    return start_reading_audited


def _ended(on_eof: Any, audit: TerminalAudit) -> Any:
    def on_eof_audited(terminal: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return on_eof(terminal, *args, **kwargs)
        finally:
            _safely(audit, "recording a terminal closed",
                    lambda: audit.closed(getattr(terminal, "term_name", "")))  # fmt: skip

    return on_eof_audited


def _safely(audit: TerminalAudit, where: str, record: Any) -> None:
    """Run `record`; a failure is logged once and counted, never raised into terminado."""
    try:
        record()
    except Exception as e:
        audit.recorder.failed(where, e)
