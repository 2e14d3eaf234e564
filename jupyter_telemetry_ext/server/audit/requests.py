"""Execute requests and their replies, read off the kernel protocol the way the kernel reads them.

Everything a client wrote is checked before it is recorded: an id that is not one is left out,
code that is not text is recorded as its JSON, so that a hostile message cannot make its audit
event invalid (and so unrecorded) while the kernel still runs it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .code import Code, code_of, cut, encodable

Unpack = Callable[[Any], Any]

EXECUTE_REQUEST = "execute_request"
EXECUTE_REPLY = "execute_reply"
DEBUG_REQUEST = "debug_request"
STATUSES = frozenset({"ok", "error", "aborted"})
_ID = re.compile(r"[\x21-\x7e]{1,128}")
_CELL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
NAME_LIMIT = 128
# user_expressions are code the kernel evaluates too: at most this much JSON of them is recorded.
EXPRESSIONS_LIMIT = 8 << 10


@dataclass(frozen=True)
class ExecuteRequest:
    """What the audit keeps of one execute_request."""

    key: str  # the session and msg_id, as the kernel's reply will quote them (see match_key)
    msg_id: str | None
    cell_id: str | None
    code: Code
    user_expressions: dict[str, str] | None
    expressions_cut: bool
    silent: bool
    store_history: bool
    header: Mapping[str, Any] | None = None  # the request's header, as a reply's parent


@dataclass(frozen=True)
class DebugRequest:
    """A debug_request: what the kernel's debugger evaluates runs code the audit cannot see."""

    header: Mapping[str, Any]
    seq: int | None  # the request's DAP sequence number and command, which its reply quotes
    command: str | None


@dataclass(frozen=True)
class ExecuteReply:
    """What the audit keeps of one execute_reply (never outputs, the error's message, traceback)."""

    key: str  # the session and msg_id of the request it answers (see match_key)
    status: str
    ename: str | None
    execution_count: int | None


def request_from_frames(
    frames: Sequence[Any], unpack: Unpack, *, debug: bool = False
) -> ExecuteRequest | DebugRequest | None:
    """Return the execute_request (with `debug`, or the debug_request) in raw frames
    [header, parent, metadata, content, ...], its header unpacked once."""
    if len(frames) < 4:
        return None
    header = unpack(frames[0])
    if _is(header, EXECUTE_REQUEST):
        return _request(header, unpack(frames[2]), unpack(frames[3]))
    if debug and _is(header, DEBUG_REQUEST):
        return _debug(header, unpack(frames[3]))
    return None


def request_from_message(
    msg: Mapping[str, Any], unpack: Unpack, *, debug: bool = False
) -> ExecuteRequest | DebugRequest | None:
    """Return the execute_request (with `debug`, or the debug_request) in a message dict,
    whose content may still be packed."""
    header = msg.get("header")
    if not isinstance(header, Mapping):
        return None
    execute = _is(header, EXECUTE_REQUEST)
    if not execute and not (debug and _is(header, DEBUG_REQUEST)):
        return None
    content = msg.get("content")
    if isinstance(content, (bytes, str)):  # the session sends packed content as it is
        content = unpack(content)
    return _request(header, msg.get("metadata"), content) if execute else _debug(header, content)


def _debug(header: Mapping[str, Any], content: Any) -> DebugRequest:
    content = content if isinstance(content, Mapping) else {}
    seq, command = content.get("seq"), content.get("command")
    return DebugRequest(
        header=header,
        seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
        command=cut(encodable(command), NAME_LIMIT) if isinstance(command, str) else None,
    )


def reply_from_frames(frames: Sequence[Any], unpack: Unpack) -> ExecuteReply | None:
    """Return the execute_reply in frames after the identities: [signature, header, parent, ...]."""
    if len(frames) < 5:
        return None
    header = unpack(frames[1])
    if not _is(header, EXECUTE_REPLY):
        return None
    parent, content = unpack(frames[2]), unpack(frames[4])
    parent = parent if isinstance(parent, Mapping) else {}
    content = content if isinstance(content, Mapping) else {}
    status = content.get("status")
    status = "aborted" if status == "abort" else status
    ename = content.get("ename")
    count = content.get("execution_count")
    return ExecuteReply(
        key=match_key(parent),
        status=status if status in STATUSES else "error",
        ename=cut(encodable(ename), NAME_LIMIT) if isinstance(ename, str) else None,
        execution_count=count if isinstance(count, int) and not isinstance(count, bool) else None,
    )


def match_key(header: Mapping[str, Any]) -> str:
    """Return the key that matches a reply to its request: the session and msg_id of the
    request's header, which the reply quotes as its parent header (one client cannot take
    another's reply by reusing its msg_id)."""
    session, msg_id = header.get("session"), header.get("msg_id")
    if isinstance(session, str) and isinstance(msg_id, str):
        return f"{session}\x00{msg_id}"
    return json.dumps([session, msg_id], sort_keys=True, default=str)


def _is(header: Any, msg_type: str) -> bool:
    return isinstance(header, Mapping) and header.get("msg_type") == msg_type


def _request(header: Mapping[str, Any], metadata: Any, content: Any) -> ExecuteRequest:
    content = content if isinstance(content, Mapping) else {}
    metadata = metadata if isinstance(metadata, Mapping) else {}
    silent = bool(content.get("silent", False))
    expressions, expressions_cut = _expressions(content.get("user_expressions"))
    return ExecuteRequest(
        key=match_key(header),
        msg_id=an_id(header.get("msg_id")),
        cell_id=_matching(_CELL_ID, metadata.get("cellId")),
        code=code_of(_text(content.get("code", ""))),
        user_expressions=expressions,
        expressions_cut=expressions_cut,
        silent=silent,
        store_history=bool(content.get("store_history", not silent)),
        header=header,
    )


def an_id(value: Any) -> str | None:
    """Return `value` when it looks like an id (printable ASCII, no space, 1 to 128), else None."""
    return _matching(_ID, value)


def _matching(pattern: re.Pattern[str], value: Any) -> str | None:
    return value if isinstance(value, str) and pattern.fullmatch(value) else None


def _text(value: Any) -> str:
    """Return code as text: what is not a string is recorded as its JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _expressions(value: Any) -> tuple[dict[str, str] | None, bool]:
    """Return the user_expressions as recorded (None when there are none) and whether cut."""
    if not isinstance(value, Mapping) or not value:  # the kernel evaluates only a mapping
        return None, False
    kept: dict[str, str] = {}
    room = EXPRESSIONS_LIMIT
    for name, expression in sorted(value.items(), key=lambda item: str(item[0])):
        key, text = cut(encodable(str(name)), NAME_LIMIT), encodable(_text(expression))
        size = len(json.dumps([key, text]))
        if size > room:
            return kept, True
        kept[key], room = text, room - size
    return kept, False
