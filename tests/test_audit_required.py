"""`audit_required`: code reaches a real ipykernel only once its audit event is on disk.

A real Jupyter server and ipykernel, the kernel websocket in both protocols, real file handlers
(one on a full 64 KiB tmpfs) and a real forwarding spool that fills up. What the kernel did is
proved by a side effect: a file the code creates.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_server.services.kernels.connection.base import serialize_msg_to_ws_v1
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.core.errors import AuditUnavailableError
from jupyter_telemetry_ext.server.audit.durability import Durability
from jupyter_telemetry_ext.server.audit.execution import ExecutionAudit
from jupyter_telemetry_ext.server.audit.outbox import Held, Outbox
from jupyter_telemetry_ext.server.audit.recorder import AuditRecorder
from jupyter_telemetry_ext.server.audit.required import require_audit
from tests.conftest import SHIPPED_SCHEMAS, Sink
from tests.servers import jupyter_environment, refused_start
from tests.test_audit_execution import (  # noqa: F401 - `connect` is a fixture
    EXECUTION,
    TIMEOUT,
    V1,
    WITH_CODE,
    Connect,
    KernelSocket,
    connect,
)
from tests.test_sinks import small_disk  # noqa: F401 - the 64 KiB tmpfs fixture
from tests.test_uplink_hostile import Standin


@pytest.fixture
def kernel(connect: Connect) -> Connect:  # noqa: F811 - the fixture imported above
    """Open a websocket to the test's kernel, as the execution audit's tests do."""
    return connect


@pytest.fixture
def on_small_disk() -> bool:
    """Whether the audit's log file is on the small disk."""
    return False


@pytest.fixture
def forwarding() -> bool:
    """Whether the server forwards to a collector (one that is down) through a small spool."""
    return False


@pytest.fixture
def log_folder(tmp_path: Path, on_small_disk: bool, request: pytest.FixtureRequest) -> Path:
    """Where the audit's log file is: an ordinary disk, or the small one."""
    return Path(request.getfixturevalue("small_disk")) if on_small_disk else tmp_path


@pytest.fixture
def file_handler(log_folder: Path) -> Iterator[logging.FileHandler]:
    """The audit's log file; closed after the server stopped, and not opened again by a write
    of the stopped server's writer thread that comes later (the oldest pytest-jupyter does not
    wait for it)."""
    handler = logging.FileHandler(log_folder / "audit.log", encoding="utf-8", delay=True)
    yield handler
    handler.emit = lambda record: None  # type: ignore[method-assign]
    handler.close()


@pytest.fixture
def collector() -> Iterator[Standin]:
    """A collector that answers nonsense (the spool only fills) until the test says."""
    server = Standin()
    server.mode = "nested"
    yield server
    server.close()


@pytest.fixture
def extra_config(
    tmp_path: Path, forwarding: bool, request: pytest.FixtureRequest
) -> dict[str, Any]:
    """TelemetryExtension options a test adds."""
    if not forwarding:
        return {}
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    port = request.getfixturevalue("collector").port
    return {
        "collector_url": f"http://127.0.0.1:{port}/",
        "forward_spool_dir": str(spool),
        "forward_spool_bytes": 4096,
        "forward_retry_max": 0.2,
    }


@pytest.fixture
def jp_server_config(  # type: ignore[no-redef]
    jp_server_config: Config,
    *,
    sink: Sink,
    file_handler: logging.FileHandler,
    extra_config: dict[str, Any],
) -> Config:
    config = Config(jp_server_config)
    config.TelemetryExtension.schema_paths.append(str(SHIPPED_SCHEMAS / "execution"))
    config.TelemetryExtension.audit = ["execution"]
    config.TelemetryExtension.audit_required = True
    for name, value in extra_config.items():
        setattr(config.TelemetryExtension, name, value)
    config.EventLog.allowed_schemas = WITH_CODE
    config.EventLog.handlers = [sink.handler, file_handler]
    return config


def written(handler: logging.FileHandler) -> list[dict[str, Any]]:
    """Return the execution events in the handler's file."""
    path = Path(handler.baseFilename)
    lines = path.read_text("utf-8").splitlines() if path.exists() else []
    return [e for e in map(json.loads, lines) if e["__schema__"] == EXECUTION]


def creating(marker: Path) -> str:
    """Return code whose only effect is to create `marker`."""
    return f"import pathlib; pathlib.Path({str(marker)!r}).touch()"


async def refused(socket: KernelSocket, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Send `code`; return the reply and the iopub messages answering it (busy to idle)."""
    msg = socket.message("execute_request", {"code": code, "silent": False}, {"cellId": "c-1"})
    msg_id = await socket.send(msg)
    reply, iopub = await socket.reply_to(msg_id)
    while not any(m["header"]["msg_type"] == "status" and
                  m["content"]["execution_state"] == "idle" for m in iopub):  # fmt: skip
        channel, message = await socket.receive()
        if channel == "iopub" and message["parent_header"].get("msg_id") == msg_id:
            iopub.append(message)
    return reply, iopub


def assert_refused(reply: dict[str, Any], iopub: list[dict[str, Any]], why: str) -> None:
    """The client got what a failed cell gets: an error reply and an error output, saying why."""
    content = reply["content"]
    assert (content["status"], content["ename"]) == ("error", "AuditUnavailable")
    assert why in content["evalue"]
    assert "not run" in content["evalue"]
    [error] = [m for m in iopub if m["header"]["msg_type"] == "error"]
    assert error["content"]["ename"] == "AuditUnavailable"
    assert error["content"]["evalue"] == content["evalue"]
    states = [m["content"]["execution_state"] for m in iopub
              if m["header"]["msg_type"] == "status"]  # fmt: skip
    assert states == ["busy", "idle"]


@pytest.mark.parametrize("protocol", [None, V1], ids=["json", "v1"])
async def test_code_runs_only_after_its_event_is_in_the_file(
    kernel: Connect, protocol: str | None, file_handler: logging.FileHandler, tmp_path: Path
) -> None:
    socket = await kernel(protocol)
    marker = tmp_path / "ran"
    log = file_handler.baseFilename
    # The code itself reads the audit file: its own `requested` event must be there already.
    code = (f"import pathlib; text = pathlib.Path({log!r}).read_text()\n"
            f"assert 'requested' in text and 'seen-by-the-kernel' in text\n"
            f"pathlib.Path({str(marker)!r}).touch()  # seen-by-the-kernel")  # fmt: skip
    reply = await socket.execute(code)
    assert reply["content"]["status"] == "ok", reply["content"]
    assert marker.exists()
    for _ in range(TIMEOUT * 10):
        events = written(file_handler)
        if len(events) == 2:
            break
        await asyncio.sleep(0.1)
    requested, completed = events
    assert (requested["status"], completed["status"]) == ("requested", "ok")
    assert requested["msg_id"] == completed["msg_id"] == reply["parent_header"]["msg_id"]
    assert requested["code"] == completed["code"] == code
    assert (requested["audit_seq"], completed["audit_seq"]) == (1, 2)
    assert "execution_count" not in requested
    assert "duration_ms" not in requested


def fill(folder: Path) -> Path:
    """Fill the disk of `folder` with a file; return it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"x" * 1024):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("on_small_disk", [True])
async def test_a_failing_sink_refuses_the_code_until_it_recovers(
    kernel: Connect, log_folder: Path, file_handler: logging.FileHandler, tmp_path: Path
) -> None:
    socket = await kernel(V1)
    filler = fill(log_folder)
    never = tmp_path / "never"
    reply, iopub = await refused(socket, creating(never))
    assert_refused(reply, iopub, "a sink failed to write the audit event to disk")
    assert creating(never) not in json.dumps(reply)  # the message never quotes the code
    filler.unlink()  # the sink recovers: the next request runs
    ran = tmp_path / "ran"
    assert (await socket.execute(creating(ran)))["content"]["status"] == "ok"
    assert ran.exists()
    assert not never.exists()  # the refused code never ran
    assert [e["status"] for e in written(file_handler)][:1] == ["requested"]
    assert written(file_handler)[0]["code"] == creating(ran)


@pytest.mark.parametrize("forwarding", [True])
async def test_a_full_forwarding_spool_refuses_the_code_until_it_drains(
    kernel: Connect, tmp_path: Path, caplog: pytest.LogCaptureFixture, collector: Standin
) -> None:
    socket = await kernel()
    markers = [tmp_path / f"ran-{n}" for n in range(20)]
    for marker in markers:
        reply, iopub = await refused(socket, creating(marker))
        if reply["content"]["status"] != "ok":
            break
        assert marker.exists()
    else:
        pytest.fail("the spool of 4096 bytes never filled")
    assert_refused(reply, iopub, "the forwarding spool is full")
    assert marker is not markers[0]  # the first requests were spooled and ran
    reply, iopub = await refused(socket, creating(tmp_path / "later"))
    assert_refused(reply, iopub, "the forwarding spool is full")
    assert "was NOT passed to its kernel" in caplog.text
    collector.mode = "proper"  # the collector takes the spooled events: the spool drains
    for n in range(TIMEOUT * 5):
        reply, _ = await refused(socket, creating(tmp_path / f"resumed-{n}"))
        if reply["content"]["status"] == "ok":
            break
        await asyncio.sleep(0.2)
    assert (tmp_path / f"resumed-{n}").exists()
    assert not marker.exists()  # the refused code never ran
    assert not (tmp_path / "later").exists()
    assert collector.ids  # what ran was forwarded


async def test_messages_after_a_held_request_keep_their_order(
    kernel: Connect, tmp_path: Path
) -> None:
    socket = await kernel(V1)
    path = tmp_path / "order"
    sent = []
    for n in range(10):  # a burst: requests of one loop turn share one fsync
        code = f"open({str(path)!r}, 'a').write('{n} ')"
        sent.append(await socket.send(socket.message("execute_request", {"code": code})))
        sent.append(await socket.send(socket.message("kernel_info_request", {})))
    replies = []
    while len(replies) < len(sent):
        channel, msg = await socket.receive()
        if channel == "shell":
            replies.append(msg["parent_header"]["msg_id"])
    assert replies == sent
    assert path.read_text().split() == [str(n) for n in range(10)]


async def test_a_message_the_audit_cannot_read_is_not_passed_on(
    kernel: Connect, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    socket = await kernel(V1)
    broken = serialize_msg_to_ws_v1([b"{not json", b"{}", b"{}", b"{}"], "shell")
    await socket.ws.write_message(broken, binary=True)
    ran = tmp_path / "ran"
    assert (await socket.execute(creating(ran)))["content"]["status"] == "ok"  # nothing sticks
    assert ran.exists()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("NOT passed to its kernel" in m and "cannot read" in m for m in errors)


@pytest.mark.parametrize("protocol", [None, V1])
async def test_a_debug_request_is_answered_as_a_failed_debugger_and_never_reaches_the_kernel(
    kernel: Connect, caplog: pytest.LogCaptureFixture, tmp_path: Path, protocol: str | None
) -> None:
    """The debugger's evaluations run code that no execution event records: with a breakpoint
    hit, `evaluate` ran anything unaudited."""
    socket = await kernel(protocol)
    for seq, command in enumerate(["debugInfo", "initialize", "evaluate"], 1):
        content = {"type": "request", "seq": seq, "command": command,
                   "arguments": {"expression": "1 + 1", "context": "repl"}}  # fmt: skip
        sent = await socket.send(socket.message("debug_request", content), "control")
        reply, iopub = await socket.reply_to(sent)
        assert reply["header"]["msg_type"] == "debug_reply"
        answer = reply["content"]
        assert (answer["success"], answer["request_seq"], answer["command"]) == (
            False, seq, command
        )  # fmt: skip
        assert "The debugger is off on this server" in answer["message"]
        assert [m["content"]["execution_state"] for m in iopub] == ["busy"]
    ran = tmp_path / "ran"
    assert (await socket.execute(creating(ran)))["content"]["status"] == "ok"
    assert ran.exists()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len([m for m in errors if "a debug_request" in m]) == 1  # once per reason


# Refusing to start, and the durability on its own with a real EventLog


@pytest.mark.e2e
def test_a_server_without_a_durable_sink_does_not_start(tmp_path: Path) -> None:
    """Only a stream handler: nothing keeps the audit events on disk, so no code may run."""
    environment = jupyter_environment(tmp_path)
    # This repository's schema, found before a copy installed in the environment (maybe older).
    schemas = tmp_path / "jupyter-path" / "telemetry" / "schemas" / "jupyter_telemetry_ext"
    shutil.copytree(SHIPPED_SCHEMAS / "execution", schemas / "execution")
    environment["JUPYTER_PATH"] = str(tmp_path / "jupyter-path")
    config = tmp_path / "config" / "jupyter_server_config.py"
    config.write_text(
        "import logging\n"
        'c.TelemetryExtension.audit = ["execution"]\n'
        "c.TelemetryExtension.audit_required = True\n"
        f"c.TelemetryExtension.schema_paths = [{str(SHIPPED_SCHEMAS / 'execution')!r}]\n"
        f"c.EventLog.allowed_schemas = {WITH_CODE!r}\n"
        "c.EventLog.handlers = [logging.StreamHandler()]\n",
        "utf-8",
    )
    written = refused_start(tmp_path, env=environment)
    assert ("the server stops: TelemetryExtension.audit_required is set, but no sink keeps "
            "audit events on disk") in written  # fmt: skip
    assert "is running at" not in written


@pytest.mark.e2e
def test_a_connection_class_that_cannot_be_audited_put_in_place_later_stops_the_server(
    tmp_path: Path,
) -> None:
    """An extension loaded after this one replaces the audited kernel connection class with one
    the audit cannot wrap: under audit_required the server exits 1 before it serves."""
    environment = jupyter_environment(tmp_path)
    schemas = tmp_path / "jupyter-path" / "telemetry" / "schemas" / "jupyter_telemetry_ext"
    shutil.copytree(SHIPPED_SCHEMAS / "execution", schemas / "execution")
    environment["JUPYTER_PATH"] = str(tmp_path / "jupyter-path")
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "zz_replacer.py").write_text(
        "from jupyter_server.services.kernels.connection.base import "
        "BaseKernelWebsocketConnection\n\n\n"
        "class ForeignConnection(BaseKernelWebsocketConnection):\n"
        "    pass\n\n\n"
        "def _jupyter_server_extension_points():\n"
        '    return [{"module": "zz_replacer"}]\n\n\n'
        "def _load_jupyter_server_extension(serverapp):\n"
        '    serverapp.web_app.settings["kernel_websocket_connection_class"] = ForeignConnection\n',
        "utf-8",
    )
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(modules), *filter(None, [environment.get("PYTHONPATH")])]
    )
    config = tmp_path / "config" / "jupyter_server_config.py"
    config.write_text(
        "import logging\n"
        'c.ServerApp.jpserver_extensions = {"zz_replacer": True}\n'
        'c.TelemetryExtension.audit = ["execution"]\n'
        "c.TelemetryExtension.audit_required = True\n"
        f"c.TelemetryExtension.schema_paths = [{str(SHIPPED_SCHEMAS / 'execution')!r}]\n"
        f"c.EventLog.allowed_schemas = {WITH_CODE!r}\n"
        f"c.EventLog.handlers = [logging.FileHandler({str(tmp_path / 'events.log')!r})]\n",
        "utf-8",
    )
    written = refused_start(tmp_path, env=environment)
    assert (
        "the server stops: TelemetryExtension.audit_required is set, but another extension "
        "replaced the kernel websocket connection class with ForeignConnection"
    ) in written
    assert "Exception in callback" not in written


def audit_of(
    handlers: list[logging.Handler],
    allowed: Any = WITH_CODE,
    schema: Path = SHIPPED_SCHEMAS / "execution" / "v1.yaml",
) -> ExecutionAudit:
    eventlog = EventLog(handlers=handlers, allowed_schemas=allowed, background=True)
    eventlog.register_schema_file(schema)
    return ExecutionAudit(AuditRecorder(eventlog, logging.getLogger("test.audit")))


def test_an_older_execution_schema_stops_the_start(tmp_path: Path) -> None:
    text = (SHIPPED_SCHEMAS / "execution" / "v1.yaml").read_text("utf-8")
    older = tmp_path / "v1.yaml"
    older.write_text(text.replace("no_reply, requested]", "no_reply]"), "utf-8")
    assert older.read_text("utf-8") != text
    file = logging.FileHandler(tmp_path / "a.log", delay=True)
    audit = audit_of([file], schema=older)
    [why] = require_audit({"execution": audit}, None, logging.getLogger("test.audit"))
    assert 'has no status "requested"' in why
    assert audit.durability is None
    file.close()


def test_no_durable_sink_stops_the_start(sink: Sink, tmp_path: Path) -> None:
    log = logging.getLogger("test.audit")
    assert "nothing is audited" in require_audit({}, None, log)[0]
    assert "code execution is not audited" in require_audit({"execution": None}, None, log)[0]
    [why] = require_audit({"execution": audit_of([sink.handler])}, None, log)
    assert "no sink keeps audit events on disk" in why
    file = logging.FileHandler(tmp_path / "a.log", delay=True)
    [why] = require_audit({"execution": audit_of([file], allowed={})}, None, log)
    assert "allowed_schemas" in why
    audit = audit_of([sink.handler, file])
    assert require_audit({"execution": audit}, None, log) == []
    assert audit.durability is not None
    file.close()


async def test_events_of_one_loop_turn_share_one_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real = os.fdatasync

    def counted(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counted)
    file = logging.FileHandler(tmp_path / "a.log", encoding="utf-8")
    audit = audit_of([file])
    durability = Durability(audit.recorder)
    event = {"kernel_id": "k", "channel": "shell", "client": "websocket-v1", "code": "pass",
             "code_sha256": "0" * 64, "code_length": 4, "code_truncated": False,
             "silent": False, "store_history": True, "status": "requested"}  # fmt: skip
    futures = [durability.submit(EXECUTION, 1, event) for _ in range(50)]
    await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT)
    assert len(synced) == 1
    await durability.record(EXECUTION, 1, event)  # the next turn: one more
    assert len(synced) == 2
    lines = Path(file.baseFilename).read_text("utf-8").splitlines()
    assert [json.loads(line)["audit_seq"] for line in lines] == list(range(1, 52))
    audit.recorder.eventlog.close(5)
    file.close()


async def test_an_event_that_cannot_be_recorded_is_refused_at_once(tmp_path: Path) -> None:
    file = logging.FileHandler(tmp_path / "a.log", encoding="utf-8")
    audit = audit_of([file])
    durability = Durability(audit.recorder)
    with pytest.raises(AuditUnavailableError, match="not valid for its schema"):
        await durability.record(EXECUTION, 1, {"status": "requested"})
    [(where, count)] = audit.recorder.failures.items()
    assert (where.startswith("recording"), count) == (True, 1)  # logged and counted: a gap
    audit.recorder.eventlog.close(5)
    file.close()


async def test_a_held_request_is_overtaken_by_nothing_on_its_channel() -> None:
    sent: list[str] = []
    refusals: list[str] = []
    errors: list[str] = []
    outbox = Outbox(lambda where, error: errors.append(where))
    loop = asyncio.get_running_loop()
    first: asyncio.Future[None] = loop.create_future()
    second: asyncio.Future[None] = loop.create_future()
    outbox.put("shell", Held(lambda: sent.append("execute 1"), first, lambda e: None))
    outbox.put("shell", Held(lambda: sent.append("kernel_info")))
    outbox.put("shell", Held(lambda: sent.append("execute 2"), second,
                             lambda e: refusals.append(str(e))))  # fmt: skip
    outbox.put("control", Held(lambda: sent.append("interrupt")))
    assert sent == ["interrupt"]  # another channel goes on
    second.set_exception(AuditUnavailableError("the disk is full"))
    await asyncio.sleep(0)
    assert sent == ["interrupt"]  # the second waits behind the first, refused or not
    first.set_result(None)
    await asyncio.sleep(0)
    assert sent == ["interrupt", "execute 1", "kernel_info"]
    assert refusals == ["the disk is full"]
    assert len(outbox) == 0
    assert errors == []
