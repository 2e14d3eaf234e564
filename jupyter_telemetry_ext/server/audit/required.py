"""`audit_required` at start: code and terminal lines run only once their audit events are
durable, or not at all.

The server refuses to start (exit 1, as for a config it cannot use) rather than run what it
cannot audit: when nothing is audited or a kind named in `audit` could not be, when the events of
an audited kind are recorded nowhere, when the registered execution schema cannot take a
`requested` event (an older copy), or when no sink keeps them on disk. One Durability serves
every audited kind, so that the events of one loop turn share one fsync.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import jsonschema

from jupyter_telemetry_ext.core.errors import UnknownSchemaError
from jupyter_telemetry_ext.core.eventlog import EventLog

from . import execution, terminal
from .durability import Durability, Spool
from .execution import REQUESTED, ExecutionAudit
from .install import AUDIT_SETTING
from .terminal import TerminalAudit
from .terminal_install import TERMINAL_AUDIT_SETTING

OPTION = "TelemetryExtension.audit_required"
Audit = ExecutionAudit | TerminalAudit
SCHEMAS = {"execution": execution.SCHEMA_ID, "terminal": terminal.SCHEMA_ID}
WHAT = {"execution": "code execution", "terminal": "terminal commands"}


def audits_of(kinds: list[str], settings: Mapping[str, Any]) -> dict[str, Audit | None]:
    """Return the audit installed for each kind `kinds` names (None: it is not audited)."""
    installed = {"execution": AUDIT_SETTING, "terminal": TERMINAL_AUDIT_SETTING}
    return {kind: settings.get(installed[kind]) for kind in kinds}


def require_audit(
    audits: Mapping[str, Audit | None], spool: Spool | None, log: logging.Logger
) -> list[str]:
    """Have each of `audits` pass what it audits on only once its event is durable (in the
    EventLog's handlers and `spool`, the forwarder); return why it cannot (empty: it does)."""
    if not audits:
        nothing = (f'{OPTION} is set, but nothing is audited: set TelemetryExtension.audit (to '
                   '["execution"], ["terminal"] or both)')  # fmt: skip
        return [nothing]
    missing = [kind for kind, audit in audits.items() if audit is None]
    if missing:
        return [f"{OPTION} is set, but {WHAT[kind]} is not audited although "
                f'TelemetryExtension.audit includes "{kind}" (see the errors above for why)'
                for kind in missing]  # fmt: skip
    recorder = next(a for a in audits.values() if a is not None).recorder
    durability = Durability(recorder, spool)
    why = why_not_durable(durability, list(audits))
    if why is not None:
        return [f"{OPTION} is set, but {why}"]
    for audit in audits.values():
        if audit is not None:
            audit.durability = durability
    log.info("Telemetry: audit_required: %s run only once their audit events are on disk "
             "(%s); otherwise they are refused", " and ".join(WHAT[kind] for kind in audits),
             ", ".join(durability.durable_sinks()))  # fmt: skip
    return []


def why_not_durable(durability: Durability, kinds: list[str]) -> str | None:
    """Return why the audit events of `kinds` could never be durable (None: they can be)."""
    eventlog = durability.eventlog
    if not eventlog.background:  # a sync ticket is synced by the writer threads
        return "the EventLog does not write in the background"
    for kind in kinds:
        schema_id = SCHEMAS[kind]
        if not eventlog.is_allowed(schema_id) and durability.spool is None:
            return (
                f"{schema_id} is not in c.EventLog.allowed_schemas and nothing is forwarded: "
                f"no event of {WHAT[kind]} could be recorded"
            )
    if "execution" in kinds and not _knows_requested(eventlog):
        return (
            f"the registered {execution.SCHEMA_ID} version {execution.VERSION} has no status "
            f'"{REQUESTED}" (an older copy of the schema, found first in the Jupyter data '
            "paths?): no request could be recorded before it runs"
        )
    if not durability.durable_sinks():
        return (
            "no sink keeps audit events on disk: add a logging.FileHandler (or a PostgreSQL "
            "handler) to c.EventLog.handlers, or forward them to a collector "
            "(TelemetryExtension.collector_url)"
        )
    return None


def _knows_requested(eventlog: EventLog) -> bool:
    """Return True when the registered execution schema takes a `requested` event."""
    sample = {"audit_seq": 1, "audit_stream": "0" * 32, "kernel_id": "k", "channel": "shell",
              "client": "websocket-v1", "code_sha256": "0" * 64, "code_length": 0,
              "code_truncated": False, "silent": False, "store_history": True,
              "status": REQUESTED}  # fmt: skip
    try:
        eventlog.check_event(execution.SCHEMA_ID, execution.VERSION, sample)
    except (UnknownSchemaError, jsonschema.ValidationError):
        return False
    return True
