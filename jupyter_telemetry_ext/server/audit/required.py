"""`audit_required` at start: code runs only once its audit event is durable, or not at all.

The server refuses to start (exit 1, as for a config it cannot use) rather than run code it
cannot audit: when execution is not audited, when its events are recorded nowhere, when the
registered schema cannot take a `requested` event (an older copy), or when no sink keeps them
on disk.
"""

from __future__ import annotations

import logging

import jsonschema

from jupyter_telemetry_ext.core.errors import UnknownSchemaError
from jupyter_telemetry_ext.core.eventlog import EventLog

from .durability import Durability, Spool
from .execution import REQUESTED, SCHEMA_ID, VERSION, ExecutionAudit

OPTION = "TelemetryExtension.audit_required"


def require_audit(
    audit: ExecutionAudit | None, spool: Spool | None, log: logging.Logger
) -> list[str]:
    """Have `audit` pass each request on only once its event is durable (in the EventLog's
    handlers and `spool`, the forwarder); return why it cannot (empty: it does)."""
    if audit is None:
        not_audited = (
            f"{OPTION} is set, but code execution is not audited: TelemetryExtension.audit "
            'must include "execution" (see the errors above for why it is not)'
        )
        return [not_audited]
    durability = Durability(audit.recorder, spool)
    why = why_not_durable(durability)
    if why is not None:
        return [f"{OPTION} is set, but {why}"]
    audit.durability = durability
    log.info("Telemetry: audit_required: code runs only once its audit event is on disk "
             "(%s); otherwise it is refused", ", ".join(durability.durable_sinks()))  # fmt: skip
    return []


def why_not_durable(durability: Durability) -> str | None:
    """Return why no audit event could ever be durable (None: they can be)."""
    eventlog = durability.eventlog
    if not eventlog.background:  # a sync ticket is synced by the writer threads
        return "the EventLog does not write in the background"
    if not eventlog.is_allowed(SCHEMA_ID) and durability.spool is None:
        return (
            f"{SCHEMA_ID} is not in c.EventLog.allowed_schemas and nothing is forwarded: "
            "no execution could be recorded"
        )
    if not _knows_requested(eventlog):
        return (
            f"the registered {SCHEMA_ID} version {VERSION} has no status "
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
        eventlog.check_event(SCHEMA_ID, VERSION, sample)
    except (UnknownSchemaError, jsonschema.ValidationError):
        return False
    return True
