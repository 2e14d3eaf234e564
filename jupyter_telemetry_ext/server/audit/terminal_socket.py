"""The terminal websocket, audited: the lines typed into it are recorded before they reach the pty.

The audited class is made from the server's terminal websocket handler (jupyter_server_terminals'
TermSocket, or any terminado TermSocket). Each stdin message is read into lines; a message that
completes lines has them recorded (`audit_lines`) before it is passed on to the terminal. Whatever
the audit does, the keystrokes reach the pty: a failure is logged once and counted.

With `audit_required` it is the other way round: a message that completes lines is passed on only
once their events are durable. Tornado reads no further message of a websocket until `on_message`
returned, so the keystrokes typed after a held Enter wait behind it, in order, in the socket's
buffers (the client is slowed down, the server's memory does not grow); other terminals and the
event loop go on. A line whose event cannot be made durable is not run: nothing of its message
reaches the pty, the line typed so far is erased (CLEAR_LINE), and the client reads why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from terminado.websocket import TermSocket
from tornado.websocket import WebSocketClosedError

from jupyter_telemetry_ext.core.errors import AuditUnavailableError

from .terminal import TerminalAudit
from .terminal_lines import Line, LineReader

try:
    import termios

    ECHO_READABLE = True
except ImportError:  # Windows: the echo mode of a terminal cannot be read
    termios = None  # type: ignore[assignment]
    ECHO_READABLE = False

UserContext = Callable[[Any], Mapping[str, Any] | None]
# Sent to the pty in place of a refused line: Ctrl-E (end of line) then Ctrl-U (erase to its
# start) empty bash's readline line (and a REPL's), and Ctrl-U (VKILL) the line a program reads
# in canonical mode. Not Ctrl-C: it interrupts the program in the foreground, and bash, cleaning
# up after it, discards keys typed right after it (the next line would lose its first keys).
CLEAR_LINE = "\x05\x15"
UNREAD = "the audit could not read this input"


def refusal_notice(error: AuditUnavailableError) -> str:
    """Return what the terminal shows in place of a line that was not run (never the line)."""
    return f"\r\n[audit unavailable: {error}; this line was not run]\r\n"


class AuditedTermSocket(TermSocket):
    """A terminal websocket whose typed lines the terminal audit records."""

    terminal_audit: ClassVar[TerminalAudit]
    _audit_reader: LineReader | None = None
    _audit_user: Mapping[str, Any] | None = None

    async def on_message(self, message: Any) -> None:  # type: ignore[override]
        """Record the lines a stdin message completes, then pass the message on."""
        lines = self.audit_input(message)
        if self.terminal_audit.durability is not None:
            error = await self.audit_durable(lines)
            if error is not None:
                await self.audit_refuse(error)
                return
            if self.terminal is None:  # the websocket closed while the line was made durable
                return
        elif lines:
            self.audit_lines(lines)
        sent = super().on_message(message)
        if sent is not None:  # terminado's coroutine (a Future), or a plain call in older ones
            await sent

    def audit_input(self, message: Any) -> tuple[Line, ...] | None:
        """Return the lines a websocket message completes (none unless it is stdin; None: the
        audit failed to read it)."""
        try:
            command = json.loads(message)  # as terminado reads it: no prefix it could skip
        except (ValueError, TypeError):  # terminado refuses it too: nothing reaches the pty
            return ()
        try:
            if not (isinstance(command, list) and len(command) > 1 and command[0] == "stdin"):
                return ()
            data = command[1]
            if not isinstance(data, str):
                return ()
            if self._audit_reader is None:
                self._audit_reader = LineReader()
            return self._audit_reader.feed(data)
        except Exception as e:  # passed on all the same, unless audit_required refuses it
            self.terminal_audit.recorder.failed("reading terminal input", e)
            return None

    async def audit_durable(self, lines: tuple[Line, ...] | None) -> AuditUnavailableError | None:
        """Record the lines one stdin message completed; return once their events are durable
        (None), or why they cannot be (`audit_required`: the message is not passed on)."""
        if lines is None:  # fail closed: what the audit cannot read does not run
            return AuditUnavailableError(UNREAD)
        if not lines:
            return None
        durability = self.terminal_audit.durability
        try:
            hidden = self.input_hidden()
            if self._audit_user is None:
                self._audit_user = self.audit_context(self) or {}
            futures = [self.terminal_audit.line_durable(durability, self.term_name, line, hidden,
                                                        self._audit_user or None)
                       for line in lines] if durability is not None else []  # fmt: skip
            outcomes = await asyncio.gather(*futures, return_exceptions=True)
        except Exception as e:  # fail closed: a line that cannot be recorded does not run
            self.terminal_audit.recorder.failed("recording a terminal line", e)
            return AuditUnavailableError(f"the audit failed ({type(e).__name__})")
        return next((_unavailable(o) for o in outcomes if isinstance(o, BaseException)), None)

    async def audit_refuse(self, error: AuditUnavailableError) -> None:
        """Run nothing of a refused message: erase the line typed so far, tell the client."""
        self.terminal_audit.refused(str(error))
        self._audit_reader = None  # the pty's line is empty again, and so is the reader's
        # First: the shell's redraw of its emptied line then comes below the notice.
        with contextlib.suppress(WebSocketClosedError):  # the client left: nobody to tell
            self.write_message(json.dumps(["stdout", refusal_notice(error)]))
        try:  # off the event loop, as terminado writes keystrokes: a full pty blocks
            await self.stdin_to_ptyproc(CLEAR_LINE)
        except OSError as e:  # the terminal ended meanwhile
            self.terminal_audit.recorder.failed("erasing a refused terminal line", e)

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


def _unavailable(error: BaseException) -> AuditUnavailableError:
    """Return why a line's event is not durable, as the user reads it."""
    if isinstance(error, AuditUnavailableError):
        return error
    return AuditUnavailableError(f"the audit failed ({type(error).__name__})")


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
