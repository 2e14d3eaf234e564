"""Turning the audit on at start: `TelemetryExtension.audit`, checked and said out loud."""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

from jupyter_telemetry_ext.core.errors import UnknownSchemaError
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.recorded_user import recorded_user
from jupyter_telemetry_ext.server.principal import person
from jupyter_telemetry_ext.server.reception import Policy
from jupyter_telemetry_ext.server.restapi import EVENTLOG_SETTING, POLICY_SETTING

from .connection import AuditedConnection, UserContext, audited_class
from .execution import SCHEMA_ID, VERSION, ExecutionAudit
from .recorder import AuditRecorder
from .stream import SCHEMA_ID as STREAM_SCHEMA_ID
from .stream import START, STOP, record_stream
from .terminal_install import TERMINAL_AUDIT_SETTING, install_terminal_audit

AUDIT_KINDS = ("execution", "terminal")
AUDIT_SETTING = "telemetry_audit"
RECORDER_SETTING = "telemetry_audit_recorder"
CONNECTION_SETTING = "kernel_websocket_connection_class"
KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
KERNEL_GONE = frozenset({"restart", "shutdown"})  # the requests of the old process get no reply


def install_audit(
    kinds: list[str], settings: MutableMapping[str, Any], serverapp: Any, log: logging.Logger
) -> ExecutionAudit | None:
    """Audit what `kinds` name, through the server's `settings`; return the execution audit.

    Say at start what is not audited and why: the schema missing or not allowed, another
    extension's kernel connection class that cannot be wrapped, terminals that cannot be hooked.
    """
    eventlog: EventLog = settings[EVENTLOG_SETTING]
    if kinds:  # one stream numbers every audit event of the process, from its start
        _stream_kept(eventlog, log)
        settings[RECORDER_SETTING] = AuditRecorder(eventlog, log)
        record_stream(settings[RECORDER_SETTING], START, sorted(set(AUDIT_KINDS) & set(kinds)))
    if "terminal" in kinds:
        context = user_context(settings[POLICY_SETTING])
        terminal = install_terminal_audit(settings[RECORDER_SETTING], serverapp, context, log)
        settings[TERMINAL_AUDIT_SETTING] = terminal
    if "execution" not in kinds:
        return None
    if not _schema_ready(eventlog, log):
        return None
    base: Any = settings.get(CONNECTION_SETTING)
    if not _can_wrap(base, log):
        return None
    audit = ExecutionAudit(settings[RECORDER_SETTING])
    context = user_context(settings[POLICY_SETTING])
    settings[CONNECTION_SETTING] = audited_class(base, audit, context)
    settings[AUDIT_SETTING] = audit
    serverapp.event_logger.add_listener(schema_id=KERNEL_ACTIONS, listener=KernelGone(audit))
    serverapp.io_loop.add_callback(keep_installed, serverapp.web_app.settings, audit, context, log)
    log.info("Telemetry: auditing code execution through %s (stream %s)",
             base.__name__, audit.recorder.stream)  # fmt: skip
    return audit


def stop_audit(settings: Mapping[str, Any]) -> None:
    """Record the requests still waiting for a reply as no_reply, then the stream's stop."""
    audit = settings.get(AUDIT_SETTING)
    if isinstance(audit, ExecutionAudit):
        audit.close()
    recorder = settings.get(RECORDER_SETTING)
    if isinstance(recorder, AuditRecorder):
        record_stream(recorder, STOP)


def _schema_ready(eventlog: EventLog, log: logging.Logger) -> bool:
    """Return True when the execution schema is registered; say what is recorded of it."""
    try:
        eventlog.get_schema(SCHEMA_ID, VERSION)
    except UnknownSchemaError:
        log.error(
            "TelemetryExtension.audit: the schema %s is not registered (is jupyter_telemetry_ext "
            "installed with its schemas?): code execution is NOT audited",
            SCHEMA_ID,
        )
        return False
    if not eventlog.is_allowed(SCHEMA_ID) and not eventlog.tapped:
        log.error(
            "TelemetryExtension.audit: %s is not in c.EventLog.allowed_schemas and nothing is "
            "forwarded: executions are audited but NOT recorded anywhere",
            SCHEMA_ID,
        )
    return True


def _stream_kept(eventlog: EventLog, log: logging.Logger) -> None:
    """Say when the stream's start and stop are recorded nowhere: every stream then looks cut."""
    if eventlog.is_allowed(STREAM_SCHEMA_ID) or eventlog.tapped:
        return
    log.error(
        "TelemetryExtension.audit: %s is not in c.EventLog.allowed_schemas and nothing is "
        "forwarded: the audit streams' start and stop are NOT recorded, so `jupyter telemetry "
        "audit check` reports every stream as missing its number 1 and never stopped. Allow it "
        "wherever the execution and terminal schemas are allowed",
        STREAM_SCHEMA_ID,
    )


def _can_wrap(base: Any, log: logging.Logger) -> bool:
    """Return True when the server's kernel connection class can be audited."""
    if isinstance(base, type) and issubclass(base, AuditedConnection):
        log.warning("TelemetryExtension.audit: the kernel connection is already audited")
        return False
    if isinstance(base, type) and issubclass(base, ZMQChannelsWebsocketConnection):
        return True
    log.warning(
        "TelemetryExtension.audit: the kernel websocket connection class %s (ServerApp."
        "kernel_websocket_connection_class, or another extension's) is not a "
        "ZMQChannelsWebsocketConnection: code execution is NOT audited",
        getattr(base, "__qualname__", base),
    )
    return False


def keep_installed(
    settings: MutableMapping[str, Any],
    audit: ExecutionAudit,
    context: UserContext,
    log: logging.Logger,
) -> None:
    """Once every extension is loaded, audit the kernel connection class another extension put
    in place of the audited one, when it can be audited; when it cannot, say so, and under
    `audit_required` stop the server (exit 1) rather than run code unaudited."""
    current = settings.get(CONNECTION_SETTING)
    if isinstance(current, type) and issubclass(current, AuditedConnection):
        return
    replaced = ("another extension replaced the kernel websocket connection class with "
                f"{getattr(current, '__qualname__', current)}")  # fmt: skip
    if isinstance(current, type) and issubclass(current, ZMQChannelsWebsocketConnection):
        settings[CONNECTION_SETTING] = audited_class(current, audit, context)
        log.warning("TelemetryExtension.audit: %s after the audit was installed: it is audited "
                    "in its turn", replaced)  # fmt: skip
        return
    unaudited = "which is not a ZMQChannelsWebsocketConnection, after the audit was installed"
    if audit.durability is not None:  # audit_required: never run code unaudited
        log.critical("Telemetry: the config cannot be used, the server stops: "
                     "TelemetryExtension.audit_required is set, but %s, %s: code execution "
                     "could not be audited", replaced, unaudited)  # fmt: skip
        raise SystemExit(1)  # out of the event loop: the server exits before it serves
    log.warning("TelemetryExtension.audit: %s, %s: code execution is NOT audited",
                replaced, unaudited)  # fmt: skip


class KernelGone:
    """A jupyter_events listener: a kernel restarted or shut down answers no pending request."""

    def __init__(self, audit: ExecutionAudit) -> None:
        """Tell `audit` about kernels restarted or shut down."""
        self.audit = audit

    async def __call__(self, logger: Any, schema_id: str, data: Mapping[str, Any]) -> None:
        """Record the kernel's pending requests as no_reply."""
        kernel_id = data.get("kernel_id")
        if data.get("action") in KERNEL_GONE and isinstance(kernel_id, str):
            self.audit.kernel_gone(kernel_id)


def user_context(policy: Policy) -> UserContext:
    """Return the capsule fields of a connection's user, as `record_user` says (`__user__`)."""

    def context(handler: Any) -> Mapping[str, Any] | None:
        user = getattr(handler, "current_user", None)
        name = getattr(user, "username", None)
        if not isinstance(name, str):
            return None
        value = recorded_user(policy.record_user, policy.secret, person(handler))
        return None if value is None else {"__user__": value}

    return context
