"""The terminal audit: lines typed into a real terminal through its websocket are recorded."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import termios
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from jupyter_server_terminals.handlers import TermSocket
from tornado import web
from tornado.httpclient import HTTPResponse
from tornado.websocket import WebSocketClientConnection
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.server.audit.install import RECORDER_SETTING
from jupyter_telemetry_ext.server.audit.recorder import AuditRecorder
from jupyter_telemetry_ext.server.audit.terminal import TerminalAudit
from jupyter_telemetry_ext.server.audit.terminal_install import TerminalHooks, terminal_rules
from jupyter_telemetry_ext.server.audit.terminal_lines import (
    BULK_LINES,
    COMPLETION,
    CONTROL,
    CURSOR,
    HISTORY,
    SPECIAL_LIMIT,
    Line,
    LineReader,
)
from jupyter_telemetry_ext.server.audit.terminal_socket import AuditedTermSocket
from tests.conftest import FRONTEND_ID, SHIPPED_SCHEMAS, Sink
from tests.test_audit_execution import EXECUTION, KernelSocket

Fetch = Callable[..., Awaitable[HTTPResponse]]
TERMINAL = "https://events.jupyter.org/jupyter_telemetry_ext/terminal"
WITH_TEXT = {
    TERMINAL: {"allowed_categories": ["user-code"]},
    EXECUTION: {"allowed_categories": ["user-code"]},
    FRONTEND_ID: {},
}
TIMEOUT = 15  # seconds the shell may take on a loaded machine; never a speed assertion
SHELL = ["/bin/bash", "--norc", "--noprofile", "-i"]
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
# jupyter_server_terminals' TermSocket checks the user in its own `get` rather than with
# @ws_authenticated, so jupyter_server warns about it (an error here) unless told.
pytestmark = pytest.mark.filterwarnings("ignore:Extension endpoints without[\\s\\S]*of TermSocket")


@pytest.fixture
def audit() -> list[str]:
    return ["terminal"]


@pytest.fixture
def allowed() -> Any:
    return WITH_TEXT


@pytest.fixture
def record_user() -> str:
    return "none"


@pytest.fixture
def jp_server_config(  # type: ignore[no-redef]
    jp_server_config: Config, *, audit: list[str], allowed: Any, record_user: str
) -> Config:
    config = Config(jp_server_config)
    config.TelemetryExtension.record_user = record_user
    config.ServerApp.jpserver_extensions["jupyter_server_terminals"] = True
    config.ServerApp.terminado_settings = {"shell_command": SHELL}
    for name in ("terminal", "execution"):
        config.TelemetryExtension.schema_paths.append(str(SHIPPED_SCHEMAS / name))
    if audit:
        config.TelemetryExtension.audit = audit
    config.EventLog.allowed_schemas = allowed
    return config


class Terminal:
    """A plain websocket client of one terminal, as xterm.js talks to it."""

    def __init__(self, ws: WebSocketClientConnection, name: str) -> None:
        self.ws, self.name, self.output = ws, name, ""

    async def type(self, *keys: str) -> None:
        """Send each of `keys` as one stdin message (a keystroke, or a paste)."""
        for key in keys:
            await self.ws.write_message(json.dumps(["stdin", key]))

    async def until(self, text: str) -> None:
        """Read the terminal's output until `text` appears in it."""
        while text not in self.output:
            try:
                raw = await asyncio.wait_for(self.ws.read_message(), TIMEOUT)
            except TimeoutError:
                pytest.fail(f"{text!r} did not appear in the terminal: {self.output[-500:]!r}")
            assert raw is not None, f"the terminal closed before {text!r} appeared"
            kind, *data = json.loads(raw)
            if kind == "stdout":
                self.output += data[0]

    async def run(self, *keys: str, shows: str) -> None:
        """Type `keys` and wait until the shell shows `shows` (the command ran)."""
        await self.type(*keys)
        await self.until(shows)


Open = Callable[[], Awaitable[Terminal]]


@pytest.fixture
def open_terminal(jp_fetch: Fetch, jp_ws_fetch: Any) -> Open:
    """Create a terminal through the REST API and connect to it (with the server's token)."""

    async def create() -> Terminal:
        reply = await jp_fetch("api", "terminals", method="POST", body="{}")
        name = json.loads(reply.body)["name"]
        terminal = Terminal(await jp_ws_fetch("terminals", "websocket", name), name)
        await terminal.run(" echo rea''dy\r", shows="ready")  # the shell reads its input
        return terminal

    return create


async def recorded(
    server_eventlog: EventLog, sink: Sink, count: int, schema: str = TERMINAL
) -> list[dict[str, Any]]:
    """Return the events of `schema` once `count` were recorded."""
    for _ in range(TIMEOUT * 10):
        assert server_eventlog.flush(5)
        events = [e for e in sink.events if e["__schema__"] == schema]
        if len(events) >= count:
            return events
        await asyncio.sleep(0.1)
    pytest.fail(f"{count} events of {schema} were not recorded: {sink.events}")


def lines_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["action"] == "line" and "rea''dy" not in (e["text"] or "")]


async def test_each_line_is_recorded_once_and_clean(
    open_terminal: Open, jp_fetch: Fetch, server_eventlog: EventLog, sink: Sink
) -> None:
    terminal = await open_terminal()
    await terminal.run(*"echo one", "\r", shows="\rone\r\n")
    await terminal.run(f"{PASTE_START}echo two\recho three{PASTE_END}", "\r", shows="\nthree\r\n")
    await terminal.type(*"echo \x1b[1;31mred\x1b[0m", "\r")  # readline reads keys in colors
    await terminal.run(*"echo aceX", "\x1b[D", "\x1b[D", "b", "\r", shows="\racbeX\r\n")
    await terminal.run(*"echo wrong", *"\x7f" * 5, *"fixed", "\r", shows="\rfixed\r\n")
    long = "echo " + "x" * 5000 + " | wc -c"
    await terminal.run(long, "\r", shows="\r5001\r\n")
    await jp_fetch("api", "terminals", terminal.name, method="DELETE")
    events = await recorded(server_eventlog, sink, 10)

    assert [(e["action"], e["terminal"]) for e in events[:1] + events[-1:]] == [
        ("created", terminal.name), ("closed", terminal.name)]  # fmt: skip
    assert events[0]["shell"] == " ".join(SHELL)
    lines = lines_of(events)
    assert [e["text"] for e in lines[:4]] == [
        "echo one", "echo two", "echo three", "echo red"]  # fmt: skip
    assert [e["pasted"] for e in lines[:4]] == [False, True, True, False]
    assert [e["edits"] for e in lines[:4]] == [[], [], [], [CONTROL]]
    edited = lines[4]
    assert (edited["text"], edited["edited"], edited["edits"]) == ("echo aceXb", True, [CURSOR])
    assert (lines[5]["text"], lines[5]["edited"]) == ("echo fixed", False)
    cut = lines[6]
    assert cut["truncated"] is True
    assert 4000 < len(cut["text"]) <= 4096 - 2
    assert long.startswith(cut["text"])
    assert cut["text_length"] == len(long)
    assert cut["text_sha256"] == hashlib.sha256(long.encode()).hexdigest()
    assert len(lines) == 7  # each once
    assert all(e["text_sha256"] == hashlib.sha256(e["text"].encode()).hexdigest()
               for e in lines[:6])  # fmt: skip
    assert all(e["hidden"] is False for e in lines)
    assert "\x1b" not in "\n".join(sink.lines)
    assert "\\u001b" not in "\n".join(sink.lines)
    assert [e["audit_seq"] for e in events] == list(range(1, len(events) + 1))


@pytest.mark.parametrize("allowed", [{TERMINAL: {}, FRONTEND_ID: {}}])
async def test_the_text_is_null_unless_user_code_is_allowed(
    open_terminal: Open, server_eventlog: EventLog, sink: Sink
) -> None:
    terminal = await open_terminal()
    await terminal.run(*"echo sec''ret-value", "\r", shows="secret-value")
    events = await recorded(server_eventlog, sink, 3)
    [line] = [e for e in events if e["action"] == "line" and e["text_length"] == 19]
    assert line["text"] is None
    assert line["text_sha256"] == hashlib.sha256(b"echo sec''ret-value").hexdigest()
    assert "sec''ret" not in "\n".join(sink.lines)


@pytest.mark.parametrize("record_user", ["username"])
@pytest.mark.parametrize("allowed", [{TERMINAL: {"allowed_categories": ["user-identifier"]}}])
async def test_the_user_who_typed_is_recorded_as_for_any_event(
    open_terminal: Open, server_eventlog: EventLog, sink: Sink
) -> None:
    terminal = await open_terminal()
    await terminal.run(*"echo one", "\r", shows="\rone\r\n")
    events = await recorded(server_eventlog, sink, 3)
    [line] = [e for e in events if e["action"] == "line" and e["text_length"] == len("echo one")]
    assert isinstance(line["__user__"], str)
    assert line["__user__"]
    assert line["text"] is None
    assert "__user__" not in events[0]  # created: by the terminal manager, for no user


async def test_a_line_typed_without_echo_is_hidden(
    open_terminal: Open, jp_serverapp: Any, server_eventlog: EventLog, sink: Sink
) -> None:
    terminal = await open_terminal()
    await terminal.type(*"read -s pw; echo got-${#pw}", "\r")
    pty = jp_serverapp.web_app.settings["terminal_manager"].terminals[terminal.name].ptyproc
    for _ in range(TIMEOUT * 10):  # until bash's `read -s` turned echo off
        if not termios.tcgetattr(pty.fd)[3] & termios.ECHO:
            flags = termios.tcgetattr(pty.fd)[3]
            if flags & termios.ICANON:
                break
        await asyncio.sleep(0.1)
    await terminal.run(*"hunter2", "\r", shows="got-7")
    events = lines_of(await recorded(server_eventlog, sink, 4))
    assert [e["text"] for e in events] == ["read -s pw; echo got-${#pw}", None]
    hidden = events[1]
    assert hidden["hidden"] is True
    assert (hidden["text_sha256"], hidden["text_length"]) == (None, None)
    assert "hunter2" not in "\n".join(sink.lines)
    assert hashlib.sha256(b"hunter2").hexdigest() not in "\n".join(sink.lines)


@pytest.mark.parametrize("audit", [[]])
async def test_nothing_is_audited_by_default(
    jp_serverapp: Any, open_terminal: Open, server_eventlog: EventLog, sink: Sink
) -> None:
    terminal = await open_terminal()
    await terminal.run(*"echo one", "\r", shows="\rone\r\n")
    assert server_eventlog.flush(5)
    assert not [e for e in sink.events if e["__schema__"] == TERMINAL]
    assert not any(issubclass(r.target, AuditedTermSocket)
                   for r in terminal_rules(jp_serverapp.web_app))  # fmt: skip


@pytest.mark.parametrize("audit", [["execution", "terminal"]])
async def test_terminal_and_execution_events_are_numbered_in_one_stream(
    open_terminal: Open, jp_fetch: Fetch, jp_ws_fetch: Any, server_eventlog: EventLog, sink: Sink
) -> None:
    terminal = await open_terminal()  # created, and the line that checks the shell is ready
    reply = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kernel_id = json.loads(reply.body)["id"]
    ws = await jp_ws_fetch("api", "kernels", kernel_id, "channels", params={"session_id": "s1"})
    kernel = KernelSocket(ws, None, "s1", kernel_id)
    assert (await kernel.execute("x = 1"))["content"]["status"] == "ok"
    await recorded(server_eventlog, sink, 1, EXECUTION)
    await terminal.run(*"echo after", "\r", shows="\rafter\r\n")
    await recorded(server_eventlog, sink, 3)
    events = [e for e in sink.events if e["__schema__"] in (TERMINAL, EXECUTION)]
    assert [e["__schema__"] for e in events] == [TERMINAL, TERMINAL, EXECUTION, TERMINAL]
    assert [e["audit_seq"] for e in events] == [1, 2, 3, 4]
    assert len({e["audit_stream"] for e in events}) == 1


async def test_the_audit_is_said_to_be_in_place(
    capsys: pytest.CaptureFixture[str], jp_serverapp: Any, open_terminal: Open
) -> None:
    await open_terminal()  # the event loop ran the check
    assert "Telemetry: auditing terminal commands (stream " in capsys.readouterr().err
    [rule] = list(terminal_rules(jp_serverapp.web_app))
    assert issubclass(rule.target, AuditedTermSocket)
    assert issubclass(rule.target, TermSocket)


async def test_a_failing_audit_never_stops_the_keystrokes(
    open_terminal: Open,
    jp_serverapp: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any) -> None:
        message = "the sink is on fire"
        raise RuntimeError(message)

    monkeypatch.setattr(TerminalAudit, "line", broken)
    terminal = await open_terminal()
    await terminal.type(*"echo st''ill", "\r")
    await terminal.ws.write_message('["set_size", 24, 80]')
    await terminal.run(*"echo go''ing", "\r", shows="going")
    assert "still" in terminal.output
    recorder: AuditRecorder = jp_serverapp.web_app.settings[RECORDER_SETTING]
    assert recorder.failures["recording a terminal line: RuntimeError"] >= 2
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len([m for m in errors if "recording a terminal line" in m]) == 1  # logged once
    assert not any("on fire" in m for m in errors)


# The hooks, on a real tornado application: a route added later, and one that cannot be hooked.


class OtherSocket(web.RequestHandler):
    """Another extension's handler on the terminal route: not a terminado TermSocket."""


def hooks_for(audit_log: EventLog) -> TerminalHooks:
    recorder = AuditRecorder(audit_log, logging.getLogger("test"))
    return TerminalHooks(TerminalAudit(recorder), lambda handler: None, logging.getLogger("test"))


@pytest.fixture
def audit_log(eventlog_factory: Callable[..., EventLog]) -> EventLog:
    log = eventlog_factory(allowed_schemas=WITH_TEXT)
    log.register_schema_file(SHIPPED_SCHEMAS / "terminal" / "v1.yaml")
    return log


class Manager:
    """The two terminado methods the audit wraps."""

    shell_command = ("/bin/sh",)

    def start_reading(self, terminal: Any) -> None:
        pass

    def on_eof(self, terminal: Any) -> None:
        pass


def test_a_terminal_route_added_later_is_hooked_when_the_loop_starts(
    audit_log: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    app = web.Application([], terminals_available=True, terminal_manager=Manager())
    hooks = hooks_for(audit_log)
    assert hooks.install(app) == (0, True)
    app.add_handlers(".*$", [(r"/terminals/websocket/(\w+)", TermSocket, {"term_manager": None})])
    caplog.set_level(logging.INFO)
    hooks.check(app)
    [rule] = list(terminal_rules(app))
    assert issubclass(rule.target, AuditedTermSocket)
    assert hooks.install(app) == (1, True)  # twice is once
    assert [r.levelno for r in caplog.records] == [logging.INFO]


@pytest.mark.parametrize(
    ("handlers", "manager", "said"),
    [
        ([(r"/terminals/websocket/(\w+)", OtherSocket)], Manager(), "terminal commands are NOT"),
        ([(r"/terminals/websocket/(\w+)", TermSocket, {"term_manager": None})], object(),
         "terminals created and closed are NOT audited"),
    ],
    ids=["foreign-route", "foreign-manager"],
)  # fmt: skip
def test_what_cannot_be_hooked_is_said(
    audit_log: EventLog,
    caplog: pytest.LogCaptureFixture,
    handlers: list[Any],
    manager: Any,
    said: str,
) -> None:
    app = web.Application(handlers, terminals_available=True, terminal_manager=manager)
    hooks_for(audit_log).check(app)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(said in m for m in errors)


def test_terminals_not_enabled_are_said(
    audit_log: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    hooks_for(audit_log).check(web.Application([], terminals_available=False))
    assert any("terminals are not enabled" in r.getMessage() for r in caplog.records)


def test_created_and_closed_are_recorded_whatever_the_manager_does(
    audit_log: EventLog, sink: Sink
) -> None:
    class Terminal:
        term_name = "7"

    manager = Manager()
    hooks_for(audit_log).install(web.Application([], terminal_manager=manager))
    manager.start_reading(Terminal())
    manager.on_eof(Terminal())
    assert audit_log.flush(5)
    assert [(e["action"], e["terminal"]) for e in sink.events] == [
        ("created", "7"),
        ("closed", "7"),
    ]


# The line reader: keystrokes in, lines out.


def read(*messages: str) -> list[Line]:
    reader = LineReader()
    return [line for message in messages for line in reader.feed(message)]


@pytest.mark.parametrize(
    ("messages", "texts", "edits"),
    [
        (["l", "s", "\r"], ["ls"], [[]]),
        (["ls\r\n", "pwd\n"], ["ls", "pwd"], [[], []]),  # CRLF is one Enter
        (["\r", "\r\n", "\n"], [], []),  # Enter alone runs nothing
        (["abc\x7f\x7fd\x08e\r"], ["ae"], [[]]),
        (["\x7f\x7fok\r"], ["ok"], [[]]),
        (["\x1b", "[", "1;5", "D", "x\r"], ["x"], [[CURSOR]]),  # a key split over messages
        (["\x1b[A\r"], [""], [[HISTORY]]),  # history recall: the shell runs another line
        (["\x1bOA\r"], [""], [[HISTORY]]),
        (["ls\t\r"], ["ls"], [[COMPLETION]]),
        (["a\x15b\r"], ["ab"], [[CONTROL]]),  # ^U is not applied: flagged
        (["\x1bbx\r"], ["x"], [[CONTROL]]),  # a Meta key
        (["\x1b]11;rgb:0/0/0\x07hi\r"], ["hi"], [[CONTROL]]),
        (["\x1b]0;title\x1b\\hi\r"], ["hi"], [[CONTROL]]),
        (["\x1b[3~\x1b[5~x\r"], ["x"], [[CURSOR, HISTORY]]),
        (["\x1b[Iecho\x1b[O\r"], ["echo"], [[CONTROL]]),  # readline reads them as keys
        (["rm -rf x\x03", "ls\r"], ["ls"], [[]]),  # ^C abandons the line
        ([f"{PASTE_START}a\tb\r\nc{PASTE_END}", "\r"], ["a\tb", "c"], [[], []]),
        (["\x1b]" + "x" * 600 + "\r"], ["x" * 87], [[CONTROL]]),  # no string hides a line
        (["\x1b[" + "1" * 100 + "mok\r"], ["ok"], [[CONTROL]]),
    ],
)
def test_keystrokes_are_read_into_lines(
    messages: list[str], texts: list[str], edits: list[list[str]]
) -> None:
    lines = read(*messages)
    assert [line.text for line in lines] == texts
    assert [sorted(line.edits) for line in lines] == edits


def test_a_line_longer_than_kept_is_counted() -> None:
    reader = LineReader(keep=10)
    [line] = reader.feed("x" * 25 + "\x7f" + "\r")
    assert (line.text, line.length) == ("x" * 10, 24)
    assert reader.feed("next\r") == (Line("next", 4, frozenset(), False),)


def test_a_message_of_many_keys_is_read_in_bulk_and_marked() -> None:
    keys = "\x7f" * SPECIAL_LIMIT + "\x1b[31mec\x1b]0;t\x07ho\x1b[D x\r\n" + PASTE_START + "a\rb"
    lines = read(keys, PASTE_END, "\r")
    assert [(line.text, line.pasted) for line in lines] == [
        ("echo x", False), ("a", True), ("b", True)]  # fmt: skip
    assert [sorted(line.edits) for line in lines] == [[CONTROL], [], []]


def test_a_huge_paste_keeps_every_line_in_its_events() -> None:
    count = SPECIAL_LIMIT + BULK_LINES + 500
    lines = read("".join(f"{n}\r" for n in range(count)))
    assert len(lines) == SPECIAL_LIMIT + BULK_LINES + 1
    assert lines[-1].text == "\n".join(str(n) for n in range(count - 500, count))
    assert [line.text for line in lines[:-1]] == [str(n) for n in range(count - 500)]
