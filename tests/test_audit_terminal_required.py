"""`audit_required` for terminals: a line reaches a real bash only once its event is on disk.

A real Jupyter server with jupyter_server_terminals, real bash over the terminal websocket, a real
file handler (on a full 64 KiB tmpfs, or held shut by a gate the test opens). What the shell did
is proved by side effects: a file a line creates, or the shell reading the audit file itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado import web
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.server.audit.execution import ExecutionAudit
from jupyter_telemetry_ext.server.audit.recorder import AuditRecorder
from jupyter_telemetry_ext.server.audit.required import require_audit
from jupyter_telemetry_ext.server.audit.terminal import TerminalAudit
from jupyter_telemetry_ext.server.audit.terminal_install import TerminalHooks
from tests.conftest import SHIPPED_SCHEMAS, Sink
from tests.test_audit_required import (  # noqa: F401 - fixtures
    fill,
    log_folder,
    on_small_disk,
    small_disk,
)
from tests.test_audit_terminal import (  # noqa: F401 - `open_terminal` is a fixture
    SHELL,
    TERMINAL,
    TIMEOUT,
    WITH_TEXT,
    Manager,
    Open,
    OtherSocket,
    open_terminal,
)

pytestmark = pytest.mark.filterwarnings("ignore:Extension endpoints without[\\s\\S]*of TermSocket")
NOT_RUN = "this line was not run]"


class GatedFileHandler(logging.FileHandler):
    """A real file handler whose writes wait while its gate is shut (a sink that is slow)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)
        self.gate, self.held = threading.Event(), threading.Event()
        self.gate.set()

    def emit(self, record: logging.LogRecord) -> None:
        if not self.gate.is_set():
            self.held.set()
            self.gate.wait(TIMEOUT * 2)
        super().emit(record)


@pytest.fixture
def file_handler(log_folder: Path) -> Iterator[GatedFileHandler]:  # noqa: F811
    """The audit's log file; closed after the server stopped."""
    handler = GatedFileHandler(log_folder / "audit.log")
    yield handler
    handler.gate.set()
    handler.close()


@pytest.fixture
def jp_server_config(  # type: ignore[no-redef]
    jp_server_config: Config, *, sink: Sink, file_handler: GatedFileHandler
) -> Config:
    config = Config(jp_server_config)
    config.ServerApp.jpserver_extensions["jupyter_server_terminals"] = True
    config.ServerApp.terminado_settings = {"shell_command": SHELL}
    config.TelemetryExtension.schema_paths.append(str(SHIPPED_SCHEMAS / "terminal"))
    config.TelemetryExtension.audit = ["terminal"]  # alone: no kernel is audited
    config.TelemetryExtension.audit_required = True
    config.EventLog.allowed_schemas = WITH_TEXT
    config.EventLog.handlers = [sink.handler, file_handler]
    return config


def lines_in(handler: logging.FileHandler) -> list[dict[str, Any]]:
    """Return the terminal line events in the handler's file."""
    path = Path(handler.baseFilename)
    written = path.read_text("utf-8").splitlines() if path.exists() else []
    events = [e for e in map(json.loads, written) if e["__schema__"] == TERMINAL]
    return [e for e in events if e["action"] == "line"]


async def test_a_line_runs_only_after_its_event_is_in_the_file(
    open_terminal: Open,  # noqa: F811
    file_handler: GatedFileHandler,
) -> None:
    terminal = await open_terminal()
    log = file_handler.baseFilename
    # The line reads the audit file: its own event (with this text) must be there already.
    await terminal.run(f"test $(grep -c 'own-line-mark[e]r' {log}) = 1 && echo found-its-own''"
                       "-event # own-line-marker", "\r", shows="found-its-own-event")  # fmt: skip
    # A hidden line (a password: no text recorded) is durable before the program reads it;
    # `read -s` turns echo off before it shows its prompt.
    await terminal.run(f"read -s -p pass''word: secret && grep -c 'hidden\": *true' {log}",
                       "\r", shows="password:")  # fmt: skip
    await terminal.run("pass-word", "\r", shows="password:1\r\n")
    hidden = [e for e in lines_in(file_handler) if e["hidden"]]
    assert [(e["text"], e["text_sha256"], e["text_length"]) for e in hidden] == [(None,) * 3]
    assert "pass-word" not in Path(log).read_text("utf-8")


@pytest.mark.parametrize("on_small_disk", [True])
async def test_a_full_disk_refuses_the_line_until_it_recovers(
    open_terminal: Open,  # noqa: F811
    log_folder: Path,  # noqa: F811
    file_handler: GatedFileHandler,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    terminal = await open_terminal()
    marker = tmp_path / "ran" / "marker"
    marker.parent.mkdir()
    filler = fill(log_folder)
    # Long enough to need a page of the disk that the file's last page has no room for.
    await terminal.type(*"echo half-", f"typed; touch {marker} # {'x' * 4000}", "\r", "echo ")
    await terminal.until(NOT_RUN)
    notice = terminal.output[terminal.output.index("[audit unavailable: ") :]
    assert "a sink failed to write the audit event to disk" in notice
    assert str(marker) not in notice
    filler.unlink()
    # The half-typed line was erased: what is typed next is a line of its own, and runs.
    await terminal.run(*"recov''ered", "\r", shows="\rrecovered\r\n")
    assert list(marker.parent.iterdir()) == []  # the refused line never ran
    texts = [e["text"] for e in lines_in(file_handler)]
    assert texts[-1] == "echo recov''ered"  # typed right after the refused line: kept whole
    refused = [r.getMessage() for r in caplog.records if "was NOT run" in r.getMessage()]
    assert len(refused) == 1
    assert "half-" not in caplog.text
    assert str(marker) not in caplog.text


async def test_keystrokes_after_a_held_enter_keep_their_order(
    open_terminal: Open,  # noqa: F811
    file_handler: GatedFileHandler,
    tmp_path: Path,
) -> None:
    first, other = await open_terminal(), await open_terminal()
    marker = tmp_path / "first"
    file_handler.gate.clear()  # the sink takes no event until the test says
    await first.type(*f"touch {marker}", "\r", *"echo second", "\r")
    assert await asyncio.to_thread(file_handler.held.wait, TIMEOUT)
    # Another terminal is not blocked: its keystrokes reach its shell, which echoes them.
    await other.type(*"echo typed-else''where")
    await other.until("typed-else''where")
    assert not marker.exists()  # the line waits for its event, which waits behind the gate
    file_handler.gate.set()
    await first.until("\rsecond\r\n")
    assert marker.exists()
    assert not Path(f"{marker}echo").exists()  # no keystroke overtook the held Enter
    texts = [e["text"] for e in lines_in(file_handler)]
    assert texts[-2:] == [f"touch {marker}", "echo second"]
    await other.run("\r", shows="\rtyped-elsewhere\r\n")


@pytest.mark.parametrize("on_small_disk", [True])
async def test_a_refused_line_is_erased_without_interrupting_the_program(
    open_terminal: Open,  # noqa: F811
    log_folder: Path,  # noqa: F811
    file_handler: GatedFileHandler,
    tmp_path: Path,
) -> None:
    terminal = await open_terminal()
    out = tmp_path / "out.txt"
    await terminal.run(f"echo cat-st''arted; cat > {out}; echo cat-end''ed $?", "\r",
                       shows="\rcat-started\r\n")  # fmt: skip
    filler = fill(log_folder)
    await terminal.type(f"refused {'x' * 4000}", "\r")  # cat reads it in canonical mode
    await terminal.until(NOT_RUN)
    filler.unlink()
    await terminal.run(*"next", "\r", "\x04", shows="cat-ended 0")  # not interrupted
    assert out.read_text("utf-8") == "next\n"  # the refused line was erased, unread


# Refusing to start: each audited kind must be durable


def audits_over(
    handlers: list[logging.Handler], allowed: Any
) -> tuple[TerminalAudit, ExecutionAudit]:
    """Return a terminal and an execution audit sharing one recorder over a real EventLog."""
    eventlog = EventLog(handlers=handlers, allowed_schemas=allowed, background=True)
    for name in ("terminal", "execution"):
        eventlog.register_schema_file(SHIPPED_SCHEMAS / name / "v1.yaml")
    recorder = AuditRecorder(eventlog, logging.getLogger("test.audit"))
    return TerminalAudit(recorder), ExecutionAudit(recorder)


def test_terminal_alone_needs_its_schema_and_a_durable_sink(sink: Sink, tmp_path: Path) -> None:
    log = logging.getLogger("test.audit")
    file = logging.FileHandler(tmp_path / "a.log", delay=True)
    terminal, _ = audits_over([file], {})
    [why] = require_audit({"terminal": terminal}, None, log)
    assert TERMINAL in why
    assert "allowed_schemas" in why
    terminal, _ = audits_over([sink.handler], WITH_TEXT)
    [why] = require_audit({"terminal": terminal}, None, log)
    assert "no sink keeps audit events on disk" in why
    assert "terminal commands is not audited" in require_audit({"terminal": None}, None, log)[0]
    terminal, _ = audits_over([sink.handler, file], WITH_TEXT)
    assert require_audit({"terminal": terminal}, None, log) == []
    assert terminal.durability is not None
    file.close()


def test_both_kinds_share_one_durability(sink: Sink, tmp_path: Path) -> None:
    log = logging.getLogger("test.audit")
    file = logging.FileHandler(tmp_path / "a.log", delay=True)
    terminal, execution = audits_over([file], {TERMINAL: {}})  # execution events kept nowhere
    [why] = require_audit({"execution": execution, "terminal": terminal}, None, log)
    assert "execution is not in c.EventLog.allowed_schemas" in why
    assert (terminal.durability, execution.durability) == (None, None)
    terminal, execution = audits_over([file], WITH_TEXT)
    assert require_audit({"execution": execution, "terminal": terminal}, None, log) == []
    assert terminal.durability is execution.durability is not None
    file.close()


def test_a_terminal_route_that_cannot_be_hooked_stops_the_server(
    sink: Sink, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = logging.FileHandler(tmp_path / "a.log", delay=True)
    terminal, _ = audits_over([file], WITH_TEXT)
    assert require_audit({"terminal": terminal}, None, logging.getLogger("test.audit")) == []
    hooks = TerminalHooks(terminal, lambda handler: None, logging.getLogger("test.audit"))
    foreign = [(r"/terminals/websocket/(\w+)", OtherSocket)]
    app = web.Application(foreign, terminals_available=True, terminal_manager=Manager())
    with pytest.raises(SystemExit) as stopped:
        hooks.check(app)  # as when the event loop starts
    assert stopped.value.code == 1
    assert "terminal commands would run unaudited" in caplog.text
    file.close()
