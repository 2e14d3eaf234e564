"""The terminal audit: terminals created and closed, and one event per line entered."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from .code import code_of
from .durability import Durability
from .recorder import AuditRecorder
from .terminal_lines import Line

SCHEMA_ID = "https://events.jupyter.org/jupyter_telemetry_ext/terminal"
VERSION = 1
TEXT_LIMIT = 4 << 10  # bytes of JSON a line's text takes at most in its event
NAME_LIMIT = 128
SHELL_LIMIT = 512


class TerminalAudit:
    """Builds the terminal events and records them, numbered with every other audit event."""

    def __init__(self, recorder: AuditRecorder) -> None:
        """Record through `recorder` (shared by every audit of the process)."""
        self.recorder = recorder
        self.durability: Durability | None = None  # set by `audit_required`
        self.refusals: Counter[str] = Counter()  # lines not run, by reason

    def created(self, name: str, shell: Sequence[str] | None) -> None:
        """Record a terminal started, with the shell command it runs."""
        command = None if shell is None else " ".join(shell)[:SHELL_LIMIT]
        self._record({"action": "created", "terminal": _name(name), "shell": command})

    def closed(self, name: str) -> None:
        """Record a terminal whose process ended (exited, was shut down or culled)."""
        self._record({"action": "closed", "terminal": _name(name)})

    def line(
        self, name: str, line: Line, hidden: bool, context: Mapping[str, Any] | None = None
    ) -> None:
        """Record one line entered in terminal `name`; `hidden`: the terminal did not echo it."""
        self._record(line_event(name, line, hidden), context)

    def line_durable(
        self,
        durability: Durability,
        name: str,
        line: Line,
        hidden: bool,
        context: Mapping[str, Any] | None = None,
    ) -> asyncio.Future[None]:
        """Record a line before it reaches the terminal; return a future done once its event
        is durable, failed with AuditUnavailableError when it cannot be."""
        event = line_event(name, line, hidden)
        return durability.submit(SCHEMA_ID, VERSION, event, context)

    def refused(self, reason: str) -> None:
        """Count a line that was not run; log the first of each reason (never the line)."""
        self.refusals[reason] += 1
        if self.refusals[reason] == 1:
            self.recorder.log.error(
                "Audit: a terminal line was NOT run (audit_required): %s "
                "(logged once per reason, counted)",
                reason,
            )

    def _record(self, event: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> None:
        self.recorder.record(SCHEMA_ID, VERSION, event, context)


def line_event(name: str, line: Line, hidden: bool) -> dict[str, Any]:
    """Return the event of one line entered in terminal `name`."""
    event: dict[str, Any] = {
        "action": "line",
        "terminal": _name(name),
        "hidden": hidden,
        "edited": bool(line.edits),
        "edits": sorted(line.edits),
        "pasted": line.pasted,
    }
    event.update(_text_fields(line, hidden))
    return event


def _text_fields(line: Line, hidden: bool) -> dict[str, Any]:
    """Return the text of a line as recorded: cut, hashed and measured; nothing of it if hidden."""
    if hidden:  # a password prompt: even a hash of it could be guessed
        return {"text": None, "text_sha256": None, "text_length": None, "truncated": False}
    text = code_of(line.text, TEXT_LIMIT)
    return {
        "text": text.text,
        "text_sha256": text.sha256,
        "text_length": line.length,
        "truncated": text.truncated or line.length > len(line.text),
    }


def _name(name: object) -> str:
    """Return a terminal's name as recorded (terminado names are short; a long one is cut)."""
    return str(name)[:NAME_LIMIT]
