"""The answer to a request refused because its audit event could not be made durable.

The client gets what a kernel sends for a failed cell, made and signed by the connection's
session: on iopub `busy`, an `error` (which JupyterLab and Notebook show in the cell's output)
and `idle` (without which the cell would stay busy), and on the request's channel an
`execute_reply` with `status: "error"` and `ename: "AuditUnavailable"`. The message says why,
never the code. A debug_request is answered as a debugger that failed: a `debug_reply` with
`success: false`, between `busy` and `idle`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jupyter_client.session import Session

from jupyter_telemetry_ext.core.errors import AuditUnavailableError

from .durability import ENAME
from .requests import DebugRequest

Frames = list[bytes]


def refusal_text(error: AuditUnavailableError) -> str:
    """Return what the user reads: the code was not run, and why."""
    return (
        f"This code was not run: the server records every execution before it runs "
        f"(audit_required) and could not record this one: {error}. Try again later, or ask "
        f"the server's administrator."
    )


def refusal_frames(
    session: Session, header: Mapping[str, Any] | None, channel: str, text: str
) -> list[tuple[str, Frames]]:
    """Return the messages that refuse a request (its `header`, sent on `channel`), as
    (channel, signed frames) in the order a kernel would send them."""
    parent = dict(header) if isinstance(header, Mapping) else {}
    error = {"ename": ENAME, "evalue": text, "traceback": [f"{ENAME}: {text}"]}
    reply = {"status": "error", "execution_count": None, **error}
    messages = [
        ("iopub", session.msg("status", {"execution_state": "busy"}, parent=parent)),
        ("iopub", session.msg("error", error, parent=parent)),
        (channel, session.msg("execute_reply", reply, parent=parent)),
        ("iopub", session.msg("status", {"execution_state": "idle"}, parent=parent)),
    ]
    return [(name, session.serialize(msg)) for name, msg in messages]


DEBUGGER_OFF = (
    "The debugger is off on this server: it records every execution before it runs "
    "(audit_required), and what the debugger evaluates would run without a record."
)


def debug_refusal_frames(
    session: Session, request: DebugRequest, channel: str
) -> list[tuple[str, Frames]]:
    """Return the messages that refuse a debug_request, as (channel, signed frames)."""
    parent = dict(request.header)
    reply: dict[str, Any] = {"type": "response", "request_seq": request.seq, "success": False,
             "command": request.command, "message": DEBUGGER_OFF, "body": {}}  # fmt: skip
    messages = [
        ("iopub", session.msg("status", {"execution_state": "busy"}, parent=parent)),
        (channel, session.msg("debug_reply", reply, parent=parent)),
        ("iopub", session.msg("status", {"execution_state": "idle"}, parent=parent)),
    ]
    return [(name, session.serialize(msg)) for name, msg in messages]
