"""Audit events numbered in one stream and recorded through the server's EventLog.

Every audit event carries `audit_stream`, a random id made when the process starts, and
`audit_seq`, its place in that stream from 1. A number is taken before the event is recorded,
so an event that fails to be recorded leaves a gap that a reader can see.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import traceback
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jupyter_telemetry_ext.core.errors import AuditUnavailableError, QueueFullError
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.outcomes import QUEUE_FULL, REJECTED
from jupyter_telemetry_ext.core.printable import printable


class AuditRecorder:
    """Numbers audit events and records them; a failure is logged once per kind and counted."""

    def __init__(self, eventlog: EventLog, log: logging.Logger) -> None:
        """Record through `eventlog`, in a new stream; report failures on `log`."""
        self.eventlog, self.log = eventlog, log
        self.stream = secrets.token_hex(16)
        self.failures: Counter[str] = Counter()
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self.stopped = False  # once the stream's stop is recorded, nothing more is numbered

    def record(
        self,
        schema_id: str,
        version: int,
        event: Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
        *,
        strict: bool = False,
    ) -> dict[str, Any] | None:
        """Number one audit event and record it; return its capsule (None: not recorded here).

        A failure is counted and logged; it is raised again when `strict` (`audit_required`:
        the caller refuses what the event describes), else swallowed.
        """
        with self._lock:  # numbers are handed out in the order events are recorded
            if self.stopped:  # the stop is the stream's last event (the server is stopping)
                if strict:
                    msg = "the server is stopping"
                    raise AuditUnavailableError(msg)
                return None
            numbered = {**event, "audit_seq": next(self._numbers), "audit_stream": self.stream}
            try:
                return self.eventlog.record_event(schema_id, version, numbered, context=context)
            except Exception as e:  # auditing must never break the kernel's traffic
                outcome = QUEUE_FULL if isinstance(e, QueueFullError) else REJECTED
                where = f"recording {schema_id}"
                self.eventlog.record_failure(outcome, f"{where}: {type(e).__name__}",
                                             schema_id=schema_id, version=version)  # fmt: skip
                self.failed(where, e)
                if strict:
                    raise
                return None

    def failed(self, where: str, error: BaseException) -> None:
        """Count a failure of the audit; log the first of each kind, and where it happened.

        The error's message is never logged: it may quote the code or the message it failed on.
        """
        kind = f"{where}: {type(error).__name__}"
        self.failures[kind] += 1
        if self.failures[kind] == 1:
            self.log.error(
                "Audit: %s failed with %s at %s (logged once, counted; the kernel message "
                "went through, unless audit_required refused it)",
                printable(where),
                type(error).__name__,
                _place(error),
            )


def _place(error: BaseException) -> str:
    """Return where an error was raised (file, line, function), without its message."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "an unknown place"
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
