"""The terminal websocket, audited: the lines typed into it are recorded before they reach the pty.

The audited class is made from the server's terminal websocket handler (jupyter_server_terminals'
TermSocket, or any terminado TermSocket). Each stdin message is read into lines; a message that
completes lines has them recorded (`audit_lines`) before it is passed on to the terminal, so that
the recording could be made to wait for the events to be durable. Whatever the audit does, the
keystrokes reach the pty: a failure is logged once and counted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from terminado.websocket import TermSocket

from .terminal import TerminalAudit
from .terminal_lines import Line, LineReader

try:
    import termios

    ECHO_READABLE = True
except ImportError:  # Windows: the echo mode of a terminal cannot be read
    termios = None  # type: ignore[assignment]
    ECHO_READABLE = False

UserContext = Callable[[Any], Mapping[str, Any] | None]


class AuditedTermSocket(TermSocket):
    """A terminal websocket whose typed lines the terminal audit records."""

    terminal_audit: ClassVar[TerminalAudit]
    _audit_reader: LineReader | None = None
    _audit_user: Mapping[str, Any] | None = None

    async def on_message(self, message: Any) -> None:  # type: ignore[override]
        """Record the lines a stdin message completes, then pass the message on."""
        lines = self.audit_input(message)
        if lines:
            self.audit_lines(lines)
        sent = super().on_message(message)
        if sent is not None:  # terminado's coroutine (a Future), or a plain call in older ones
            await sent

    def audit_input(self, message: Any) -> tuple[Line, ...]:
        """Return the lines a websocket message completes (none unless it is stdin)."""
        try:
            command = json.loads(message)  # as terminado reads it: no prefix it could skip
            if not (isinstance(command, list) and len(command) > 1 and command[0] == "stdin"):
                return ()
            data = command[1]
            if not isinstance(data, str):
                return ()
            if self._audit_reader is None:
                self._audit_reader = LineReader()
            return self._audit_reader.feed(data)
        except Exception as e:  # the keystrokes reach the terminal whatever happens
            self.terminal_audit.recorder.failed("reading terminal input", e)
            return ()

    def audit_lines(self, lines: tuple[Line, ...]) -> None:
        """Record the lines one stdin message completed, before the message goes on."""
        try:
            hidden = self.input_hidden()
            if self._audit_user is None:
                self._audit_user = self.audit_context(self) or {}
            for line in lines:
                self.terminal_audit.line(self.term_name, line, hidden, self._audit_user or None)
        except Exception as e:  # the keystrokes reach the terminal whatever happens
            self.terminal_audit.recorder.failed("recording a terminal line", e)

    def input_hidden(self) -> bool:
        """Return True unless the terminal is known to echo what is typed.

        A program reading a password (sudo, ssh, getpass) turns echo off and reads whole lines
        (canonical mode): such a line is recorded without its text, hash or length. A shell's
        readline and full-screen programs turn both off and echo themselves: their lines are
        text. When the mode cannot be read, the line is hidden.
        """
        terminal = self.terminal
        if terminal is None or not ECHO_READABLE:
            return True
        try:
            flags = termios.tcgetattr(terminal.ptyproc.fd)[3]
        except (termios.error, OSError, ValueError) as e:
            self.terminal_audit.recorder.failed("reading the terminal's echo mode", e)
            return True
        return bool(flags & termios.ICANON) and not flags & termios.ECHO

    @staticmethod
    def audit_context(handler: Any) -> Mapping[str, Any] | None:
        """Return the capsule fields the audit adds for the user of a websocket handler."""
        return None


def audited_socket_class(
    base: type[Any], audit: TerminalAudit, context: UserContext
) -> type[AuditedTermSocket]:
    """Return a subclass of the terminal websocket handler `base` whose lines `audit` records,
    with the capsule fields `context` returns for the user of each connection."""
    namespace = {
        "terminal_audit": audit,
        "audit_context": staticmethod(context),
        "__module__": __name__,
    }
    return type(f"Audited{base.__name__}", (AuditedTermSocket, base), namespace)
