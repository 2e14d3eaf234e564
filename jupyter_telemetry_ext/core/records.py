"""The log records that carry events to `logging` handlers: a capsule and its JSON line."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any, Union, cast

from .event_keys import EventKey
from .jsonline import encode as encode_line

RECORD_NAME = "jupyter_telemetry_ext.events"
FAILED_RECORD_NAME = "jupyter_telemetry_ext.failed"  # a failure description
_PROCESS = os.getpid()
_START: float = getattr(logging, "_startTime", time.time())


# What every record shares, set in one step rather than attribute by attribute.
_FIXED_FIELDS: dict[str, Any] = {
    "args": None, "levelname": "INFO", "levelno": logging.INFO, "pathname": "", "filename": "",
    "module": "", "funcName": "", "lineno": 0, "exc_info": None, "exc_text": None,
    "stack_info": None, "threadName": None, "processName": None, "taskName": None,
    "process": _PROCESS,
}  # fmt: skip


class CapsuleRecord(logging.LogRecord):
    """A log record whose `msg` is the capsule (a dict) and whose message is its JSON line.

    Formatters that use `%(message)s` (and handlers without a formatter) write the JSON line;
    handlers that read `record.msg` (as OpenTelemetry's does) get the structured capsule.
    Without a capsule (None), `msg` is read back from the line when first asked for: a record
    waiting for a writer thread then holds no dict for the garbage collector to go through.
    `key` is the event's store key (see `event_keys`), kept out of the capsule and its line.
    """

    key: bytes | None = None

    def __init__(
        self,
        logger_name: str,
        capsule: Mapping[str, Any] | None,
        line: str,
        key: bytes | None = None,
    ) -> None:
        """Fill in what formatters read, without the stack inspection of `Logger.makeRecord`."""
        self.__dict__.update(_FIXED_FIELDS)
        self.name = logger_name
        if capsule is not None:
            self.msg = capsule
        if key is not None:
            self.key = key
        self.line = line
        self.created = created = time.time()
        self.msecs = (created - int(created)) * 1000.0
        self.relativeCreated = (created - _START) * 1000.0
        self.thread = threading.get_ident()

    def __getattr__(self, name: str) -> Any:
        """Read `msg` back from the JSON line when the record was made without its capsule."""
        if name != "msg":
            raise AttributeError(name)
        self.msg = json.loads(self.line)
        return self.msg

    @property
    def schema_id(self) -> str:
        """Return the id of the event's schema ("" for other records)."""
        capsule = self.msg
        return str(capsule.get("__schema__", "")) if isinstance(capsule, Mapping) else ""

    def getMessage(self) -> str:  # noqa: N802 (logging's name)
        """Return the capsule as one line of JSON."""
        return self.line


class HeldEvent:
    """An event on its way to handlers that take events in batches (see `takes_batches`): its
    capsule (`msg`, as on its record), JSON line and store key, without a log record.

    Made without its line when no handler writes lines: the line is then written when first
    asked for (a failure description measures it, a spool keeps it). A client id's key is
    hashed when first asked for too (by the writer thread that makes its row).
    """

    __slots__ = ("_key", "_line", "msg")
    name = RECORD_NAME

    def __init__(self, capsule: dict[str, Any], line: str | None, key: EventKey | None) -> None:
        """Hold an event's capsule, line (None: written when asked for) and key."""
        self.msg, self._line, self._key = capsule, line, key

    @property
    def key(self) -> bytes | None:
        """Return the event's store key (None: none was made at reception)."""
        key = self._key
        if key is None or isinstance(key, bytes):
            return key
        poster, client_id = key  # hashed as `key_bytes` does, without a call per event
        hashed = poster.copy()
        hashed.update(client_id.encode())
        digest: bytes = hashed.digest()
        self._key = digest
        return digest

    @property
    def line(self) -> str:
        """Return the capsule as one line of JSON."""
        line = self._line
        if line is None:
            line = self._line = encode_line(self.msg)
        return line


# A queued event: its record; only its JSON line when every handler writes lines (a string is no
# work for the garbage collector, and needs no record until a handler wants one); or a HeldEvent
# when every handler writes lines or takes batches.
Queued = Union[CapsuleRecord, HeldEvent, str]  # noqa: UP007 - a runtime alias


def as_record(item: Queued) -> CapsuleRecord:
    """Return the record of a queued event."""
    if isinstance(item, CapsuleRecord):
        return item
    if type(item) is HeldEvent:
        return CapsuleRecord(RECORD_NAME, item.msg, item.line, item.key)
    return CapsuleRecord(RECORD_NAME, None, cast(str, item))


class LinesRecord(CapsuleRecord):
    """Several events written at once: their JSON lines, one after the other."""

    def __init__(self, items: list[Queued]) -> None:
        """Join the events' lines (the last one gives the name and `msg`)."""
        lines = [item if type(item) is str else cast(HeldEvent, item).line for item in items]
        last = items[-1]
        super().__init__(last.name if isinstance(last, CapsuleRecord) else RECORD_NAME, None,
                         "\n".join(lines))  # fmt: skip
        self.items = items

    def __getattr__(self, name: str) -> Any:
        """Give the last event's `msg`."""
        if name != "msg":
            raise AttributeError(name)
        return as_record(self.items[-1]).msg


def writes_lines(handler: logging.Handler) -> bool:
    """Return True for a stream handler that writes each record's JSON line and nothing else."""
    return (
        isinstance(handler, logging.StreamHandler)
        and handler.formatter is LINE_FORMATTER
        and not handler.filters
    )


# What `handle_batch` gets for each event: `msg` (the capsule), `line` and `key` on either.
BatchEvent = Union[HeldEvent, CapsuleRecord]  # noqa: UP007 - a runtime alias


def takes_batches(handler: logging.Handler) -> bool:
    """Return True for a handler that takes the events of one write in one call:
    `handle_batch(events)`, a list of BatchEvent (as PostgresEventHandler does)."""
    return callable(getattr(handler, "handle_batch", None))


class LineFormatter(logging.Formatter):
    """Formats a record as its message alone: the event's JSON line, with no other work."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record's message."""
        return record.getMessage()


LINE_FORMATTER = LineFormatter()
