"""The execution audit: code sent to a real ipykernel through the kernel websocket is recorded."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_server.services.kernels.connection.base import (
    BaseKernelWebsocketConnection,
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from tornado.httpclient import HTTPClientError, HTTPResponse
from tornado.websocket import WebSocketClientConnection
from traitlets import TraitError
from traitlets.config import Config

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.server.app import TelemetryExtension
from jupyter_telemetry_ext.server.audit.code import CODE_LIMIT, code_of, json_size
from jupyter_telemetry_ext.server.audit.connection import AuditedConnection
from jupyter_telemetry_ext.server.audit.execution import Client, ExecutionAudit
from jupyter_telemetry_ext.server.audit.install import keep_installed, stop_audit
from jupyter_telemetry_ext.server.audit.pending import Pending
from jupyter_telemetry_ext.server.audit.recorder import AuditRecorder
from jupyter_telemetry_ext.server.audit.requests import ExecuteRequest, request_from_message
from tests.conftest import FRONTEND_ID, SHIPPED_SCHEMAS, Sink

Fetch = Callable[..., Awaitable[HTTPResponse]]
EXECUTION = "https://events.jupyter.org/jupyter_telemetry_ext/execution"
V1 = "v1.kernel.websocket.jupyter.org"
WITH_CODE = {EXECUTION: {"allowed_categories": ["user-code"]}, FRONTEND_ID: {}}
TIMEOUT = 60  # seconds a reply may take on a loaded machine; never a speed assertion


@pytest.fixture
def audit() -> list[str]:
    return ["execution"]


@pytest.fixture
def allowed() -> Any:
    return WITH_CODE


@pytest.fixture
def record_user() -> str:
    return "none"


@pytest.fixture
def connection_class() -> type[Any] | None:
    """The kernel websocket connection class another extension installed (None: the default)."""
    return None


@pytest.fixture
def file_handler(tmp_path: Path) -> Iterator[logging.FileHandler]:
    """A real log file that the server's EventLog writes to, beside the in-memory sink; closed
    after the server stopped, whether or not the server closed its handlers."""
    handler = logging.FileHandler(tmp_path / "events.log", encoding="utf-8")
    yield handler
    handler.close()


@pytest.fixture
def sink_file(file_handler: logging.FileHandler) -> Path:
    """The file `file_handler` writes."""
    return Path(file_handler.baseFilename)


@pytest.fixture
def jp_server_config(  # type: ignore[no-redef]
    jp_server_config: Config,
    *,
    audit: list[str],
    allowed: Any,
    sink: Sink,
    file_handler: logging.FileHandler,
    connection_class: type[Any] | None,
    record_user: str,
) -> Config:
    config = Config(jp_server_config)
    config.TelemetryExtension.schema_paths.append(str(SHIPPED_SCHEMAS / "execution"))
    if audit:
        config.TelemetryExtension.audit = audit
    config.EventLog.allowed_schemas = allowed
    config.EventLog.handlers = [sink.handler, file_handler]
    if connection_class is not None:
        config.ServerApp.kernel_websocket_connection_class = connection_class
    config.TelemetryExtension.record_user = record_user
    return config


class KernelSocket:
    """A plain websocket client of one kernel: the legacy JSON protocol or the v1 binary one."""

    def __init__(
        self, ws: WebSocketClientConnection, protocol: str | None, session: str, kernel_id: str
    ) -> None:
        self.ws, self.protocol, self.session, self.kernel_id = ws, protocol, session, kernel_id

    def message(
        self, msg_type: str, content: Any, metadata: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        header = {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "session": self.session,
            "username": "test",
            "date": "2026-01-01T00:00:00Z",
            "version": "5.4",
        }
        return {"header": header, "parent_header": {}, "metadata": metadata or {},
                "content": content}  # fmt: skip

    async def send(self, msg: dict[str, Any], channel: str = "shell") -> str:
        if self.protocol == V1:
            parts = [json.dumps(msg[k]).encode() for k in
                     ("header", "parent_header", "metadata", "content")]  # fmt: skip
            await self.ws.write_message(serialize_msg_to_ws_v1(parts, channel), binary=True)
        else:
            await self.ws.write_message(json.dumps({**msg, "channel": channel}))
        return str(msg["header"]["msg_id"])

    async def receive(self) -> tuple[str, dict[str, Any]]:
        """Return the next message from the kernel: its channel and the message."""
        raw = await asyncio.wait_for(self.ws.read_message(), TIMEOUT)
        assert raw is not None, "the websocket closed"
        if isinstance(raw, bytes):
            channel, parts = deserialize_msg_from_ws_v1(raw)
            keys = ("header", "parent_header", "metadata", "content")
            return channel, {k: json.loads(p) for k, p in zip(keys, parts, strict=False)}
        msg = json.loads(raw)
        return msg.get("channel", ""), msg

    async def reply_to(self, msg_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Return the reply to `msg_id`, and the iopub messages that came before it."""
        iopub = []
        while True:
            channel, msg = await self.receive()
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if channel == "iopub":
                iopub.append(msg)
            elif msg["header"]["msg_type"].endswith("_reply"):
                return msg, iopub

    async def execute(self, code: str, **content: Any) -> dict[str, Any]:
        msg = self.message("execute_request", {"code": code, "silent": False, **content},
                           {"cellId": "cell-1"})  # fmt: skip
        return (await self.reply_to(await self.send(msg)))[0]

    async def wait_busy(self, msg_id: str) -> None:
        while True:
            channel, msg = await self.receive()
            ours = msg["parent_header"].get("msg_id") == msg_id
            if channel == "iopub" and ours and msg["header"]["msg_type"] == "execute_input":
                return


Connect = Callable[..., Awaitable[KernelSocket]]


@pytest.fixture
def connect(jp_fetch: Fetch, jp_ws_fetch: Any) -> Connect:
    """Open a websocket to the test's kernel (started by the first call)."""
    kernels: list[str] = []

    async def open_socket(protocol: str | None = None) -> KernelSocket:
        if not kernels:
            body = json.dumps({"name": "python3"})
            reply = await jp_fetch("api", "kernels", method="POST", body=body)
            kernels.append(json.loads(reply.body)["id"])
        session = uuid.uuid4().hex
        subprotocols = [protocol] if protocol else None
        params = {"session_id": session}
        path = ("api", "kernels", kernels[0], "channels")
        ws = await jp_ws_fetch(*path, params=params, subprotocols=subprotocols)
        if protocol and ws.selected_subprotocol is None:  # jupyter_server 2.10 (the minimum)
            ws.close()
            pytest.skip(f"this jupyter_server does not offer the {protocol} kernel protocol")
        assert ws.selected_subprotocol == protocol
        return KernelSocket(ws, protocol, session, kernels[0])

    return open_socket


async def audited(
    server_eventlog: EventLog, sink: Sink, count: int, wait: float = TIMEOUT
) -> list[dict[str, Any]]:
    """Return the execution events once `count` were recorded (listeners run as tasks)."""
    for _ in range(int(wait * 10)):
        assert server_eventlog.flush(5)
        events = [e for e in sink.events if e["__schema__"] == EXECUTION]
        if len(events) >= count:
            return events
        await asyncio.sleep(0.1)
    pytest.fail(f"{count} execution events were not recorded: {sink.events}")


@pytest.mark.parametrize("protocol", [None, V1], ids=["json", "v1"])
async def test_each_request_is_recorded_once_with_code_and_outcome(
    connect: Connect, protocol: str | None, server_eventlog: EventLog, sink: Sink
) -> None:
    socket = await connect(protocol)
    code = "print('-'.join(['shown', 'output']))\nanswer = 6 * 7"
    reply = await socket.execute(code)
    assert reply["content"]["status"] == "ok"
    [event] = await audited(server_eventlog, sink, 1)
    assert event["code"] == code
    assert event["code_sha256"] == hashlib.sha256(code.encode()).hexdigest()
    assert event["code_length"] == len(code)
    assert event["code_truncated"] is False
    assert event["status"] == "ok"
    assert event["execution_count"] == reply["content"]["execution_count"]
    assert event["duration_ms"] >= 0
    assert event["kernel_id"] == socket.kernel_id
    assert event["kernel_name"] == "python3"
    assert event["session_id"] == socket.session
    assert event["msg_id"] == reply["parent_header"]["msg_id"]
    assert event["cell_id"] == "cell-1"
    assert event["channel"] == "shell"
    assert event["client"] == ("websocket-v1" if protocol else "websocket-json")
    assert (event["silent"], event["store_history"]) == (False, True)
    assert event["audit_seq"] == 1
    assert len(event["audit_stream"]) == 32
    assert "ename" not in event
    assert "__user__" not in event
    assert "shown-output" not in "\n".join(sink.lines)  # outputs are never recorded


async def test_an_error_records_its_name_only(
    connect: Connect, server_eventlog: EventLog, sink: Sink, sink_file: Path
) -> None:
    socket = await connect(V1)
    reply = await socket.execute("raise ValueError('-'.join(['secret', 'message']))")
    assert reply["content"]["evalue"] == "secret-message"
    [event] = await audited(server_eventlog, sink, 1)
    assert (event["status"], event["ename"]) == ("error", "ValueError")
    written = sink_file.read_text("utf-8")
    assert '"ename": "ValueError"' in written or '"ename":"ValueError"' in written
    assert "secret-message" not in written
    assert "secret-message" not in "\n".join(sink.lines)
    assert "Traceback" not in written


@pytest.mark.parametrize("allowed", [{EXECUTION: {}}])
async def test_code_is_redacted_unless_user_code_is_allowed(
    connect: Connect, server_eventlog: EventLog, sink: Sink
) -> None:
    socket = await connect()
    code = "private_value = 'kept-out-of-the-log'"
    await socket.execute(code, user_expressions={"v": "private_value"})
    [event] = await audited(server_eventlog, sink, 1)
    assert event["code"] is None
    assert event["user_expressions"] is None
    assert event["code_sha256"] == hashlib.sha256(code.encode()).hexdigest()
    assert "kept-out-of-the-log" not in "\n".join(sink.lines)


@pytest.mark.parametrize("action", ["restart", "shutdown"])
async def test_a_request_whose_kernel_goes_away_is_recorded_without_reply(
    connect: Connect,
    jp_fetch: Fetch,
    action: str,
    server_eventlog: EventLog,
    sink: Sink,
) -> None:
    socket = await connect(V1)
    msg = socket.message("execute_request", {"code": "import time; time.sleep(60)"})
    msg_id = await socket.send(msg)
    await socket.wait_busy(msg_id)
    kernel_id = socket.kernel_id
    if action == "restart":
        await jp_fetch("api", "kernels", kernel_id, "restart", method="POST", body="")
    else:
        await jp_fetch("api", "kernels", kernel_id, method="DELETE")
    [event] = await audited(server_eventlog, sink, 1)
    assert event["status"] == "no_reply"
    assert event["code"] == "import time; time.sleep(60)"
    assert event["msg_id"] == msg_id
    assert "duration_ms" not in event


async def test_requests_waiting_when_the_server_stops_are_recorded_without_reply(
    jp_serverapp: Any, connect: Connect, server_eventlog: EventLog, sink: Sink
) -> None:
    socket = await connect()
    msg_id = await socket.send(
        socket.message("execute_request", {"code": "import time; time.sleep(60)"})
    )
    await socket.wait_busy(msg_id)
    stop_audit(jp_serverapp.web_app.settings)  # what the extension's stop does first
    [event] = await audited(server_eventlog, sink, 1)
    assert (event["status"], event["msg_id"]) == ("no_reply", msg_id)


@pytest.mark.parametrize("record_user", ["username"])
@pytest.mark.parametrize("allowed", [{EXECUTION: {"allowed_categories": ["user-identifier"]}}])
async def test_the_user_is_recorded_as_for_any_event(
    connect: Connect, server_eventlog: EventLog, sink: Sink
) -> None:
    await (await connect()).execute("f = 6")
    [event] = await audited(server_eventlog, sink, 1)
    assert isinstance(event["__user__"], str)
    assert event["__user__"]
    assert event["code"] is None


async def test_a_client_cannot_post_an_execution_event(
    jp_fetch: Fetch, server_eventlog: EventLog, sink: Sink
) -> None:
    forged = {"schema_id": EXECUTION, "version": 1, "data": {"status": "ok"}}
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("api", "telemetry", "events", method="POST", body=json.dumps(forged))
    assert e.value.code == 403
    assert server_eventlog.flush(5)
    assert not [e for e in sink.events if e["__schema__"] == EXECUTION]


@pytest.mark.parametrize("audit", [[]])
async def test_nothing_is_audited_by_default(
    jp_serverapp: Any, connect: Connect, server_eventlog: EventLog, sink: Sink
) -> None:
    assert jp_serverapp.web_app.settings["kernel_websocket_connection_class"] is (
        ZMQChannelsWebsocketConnection
    )
    socket = await connect()
    assert (await socket.execute("x = 1"))["content"]["status"] == "ok"
    assert server_eventlog.flush(5)
    assert not [e for e in sink.events if e["__schema__"] == EXECUTION]


async def test_audit_events_are_numbered_in_one_stream_without_gaps(
    connect: Connect, server_eventlog: EventLog, sink: Sink
) -> None:
    first, second = await connect(), await connect(V1)
    for socket in (first, second, first):
        await socket.execute("pass")
    events = await audited(server_eventlog, sink, 3)
    assert [e["audit_seq"] for e in events] == [1, 2, 3]
    assert len({e["audit_stream"] for e in events}) == 1


async def test_every_way_a_kernel_reads_code_is_recorded(
    connect: Connect, server_eventlog: EventLog, sink: Sink
) -> None:
    socket = await connect()
    # content sent packed (a JSON string), which the session passes on as it is
    packed = socket.message("execute_request", json.dumps({"code": "a = 1", "silent": True}))
    await socket.reply_to(await socket.send(packed))
    # the control channel, which ipykernel also executes on
    control = socket.message("execute_request", {"code": "b = 2"})
    await socket.reply_to(await socket.send(control, "control"))
    # expressions evaluated after the code, and ids that are not ids
    hostile = socket.message("execute_request", {"code": "c = 3", "user_expressions":
                             {"e": "a + b"}}, {"cellId": "x" * 10_000})  # fmt: skip
    hostile["header"]["msg_id"] = "m" * 10_000
    await socket.reply_to(await socket.send(hostile))
    packed_event, control_event, hostile_event = await audited(server_eventlog, sink, 3)
    assert (packed_event["code"], packed_event["silent"]) == ("a = 1", True)
    assert packed_event["store_history"] is False
    assert (control_event["code"], control_event["channel"]) == ("b = 2", "control")
    assert control_event["status"] == "ok"
    assert hostile_event["user_expressions"] == {"e": "a + b"}
    assert (hostile_event["msg_id"], hostile_event["cell_id"]) == (None, None)
    assert hostile_event["status"] == "ok"


async def test_a_reused_msg_id_does_not_take_another_requests_reply(
    connect: Connect, server_eventlog: EventLog, sink: Sink
) -> None:
    first, second = await connect(), await connect(V1)
    slow = first.message("execute_request", {"code": "import time; time.sleep(1)"})
    quick = second.message("execute_request", {"code": "raise KeyError"})
    quick["header"]["msg_id"] = slow["header"]["msg_id"]
    await first.send(slow)
    await first.wait_busy(slow["header"]["msg_id"])
    await second.send(quick, "control")  # the control channel answers while shell is busy
    events = await audited(server_eventlog, sink, 2)
    by_code = {e["code"]: e for e in events}
    assert by_code["raise KeyError"]["status"] == "error"
    assert by_code["raise KeyError"]["channel"] == "control"
    assert by_code["import time; time.sleep(1)"]["status"] == "ok"


async def test_a_message_the_audit_cannot_read_still_reaches_the_kernel(
    connect: Connect, server_eventlog: EventLog, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    socket = await connect(V1)
    broken = serialize_msg_to_ws_v1([b"{not json", b"{}", b"{}", b"{}"], "shell")
    await socket.ws.write_message(broken, binary=True)
    assert (await socket.execute("d = 4"))["content"]["status"] == "ok"
    [event] = await audited(server_eventlog, sink, 1)
    assert event["code"] == "d = 4"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("reading a request" in m for m in errors)


class OtherConnection(ZMQChannelsWebsocketConnection):  # type: ignore[misc]
    """Another extension's connection class, built on jupyter_server's."""


class ForeignConnection(BaseKernelWebsocketConnection):  # type: ignore[misc]
    """Another extension's connection class that does not talk ZMQ the way the audit knows."""


@pytest.mark.parametrize("connection_class", [OtherConnection])
async def test_another_extensions_connection_class_is_wrapped(
    jp_serverapp: Any, connect: Connect, server_eventlog: EventLog, sink: Sink
) -> None:
    installed = jp_serverapp.web_app.settings["kernel_websocket_connection_class"]
    assert issubclass(installed, OtherConnection)
    assert issubclass(installed, AuditedConnection)
    await (await connect()).execute("e = 5")
    [event] = await audited(server_eventlog, sink, 1)
    assert event["code"] == "e = 5"


@pytest.mark.parametrize("connection_class", [ForeignConnection])
async def test_a_connection_class_that_cannot_be_audited_is_said(
    capsys: pytest.CaptureFixture[str], jp_serverapp: Any
) -> None:
    assert jp_serverapp.web_app.settings["kernel_websocket_connection_class"] is ForeignConnection
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[W ")]
    assert any("ForeignConnection" in line and "NOT audited" in line for line in warnings)


@pytest.mark.parametrize("allowed", [{FRONTEND_ID: {}}])
async def test_an_audit_the_allow_list_does_not_record_is_said(
    capsys: pytest.CaptureFixture[str], jp_serverapp: Any
) -> None:
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[E ")]
    assert any("allowed_schemas" in line and "NOT recorded" in line for line in errors)


def test_code_is_cut_to_fit_an_event_and_hashed_whole() -> None:
    source = "é" * CODE_LIMIT + "\ud800"
    code = code_of(source)
    assert code.truncated
    assert json_size(code.text) <= CODE_LIMIT
    assert code.length == len(source)
    assert code.sha256 == hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
    small = code_of("x = '\ud800'")
    assert not small.truncated
    assert small.text == "x = '\ufffd'"
    assert AuditedConnection.__mro__[1] is ZMQChannelsWebsocketConnection


# The parts on their own, with a real EventLog


@pytest.fixture
def audit_log(eventlog_factory: Callable[..., EventLog]) -> EventLog:
    log = eventlog_factory(allowed_schemas=WITH_CODE)
    log.register_schema_file(SHIPPED_SCHEMAS / "execution" / "v1.yaml")
    return log


def request(code: str, msg_id: str) -> ExecuteRequest:
    msg = {"header": {"msg_type": "execute_request", "msg_id": msg_id}, "content": {"code": code}}
    found = request_from_message(msg, json.loads)
    assert found is not None
    return found


CLIENT = Client("k1", "python3", "s1", "websocket-json")


def test_a_failed_record_leaves_a_gap_in_the_numbers(
    audit_log: EventLog, sink: Sink, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = AuditRecorder(audit_log, logging.getLogger("test.audit"))
    execution = ExecutionAudit(recorder)
    execution.sent(CLIENT, "shell", request("a = 1", "m1"))
    execution.sent(CLIENT, "nowhere", request("b = 2", "m2"))  # not a channel: invalid event
    execution.sent(CLIENT, "shell", request("c = 3", "m3"))
    execution.close()
    assert audit_log.flush(5)
    assert [(e["code"], e["audit_seq"]) for e in sink.events] == [("a = 1", 1), ("c = 3", 3)]
    assert sum(recorder.failures.values()) == 1
    assert audit_log.outcomes()[(EXECUTION, "rejected")] == 1  # on /metrics
    assert "recording https://events.jupyter.org" in caplog.text
    assert "ValidationError" in caplog.text
    assert "nowhere" not in caplog.text  # the value it failed on is never logged


def test_past_the_limit_the_oldest_request_is_given_up(audit_log: EventLog, sink: Sink) -> None:
    recorder = AuditRecorder(audit_log, logging.getLogger("test.audit"))
    execution = ExecutionAudit(recorder, Pending(limit=2))
    for n in range(3):
        execution.sent(CLIENT, "shell", request(f"x = {n}", f"m{n}"))
    assert audit_log.flush(5)
    [given_up] = sink.events
    assert (given_up["code"], given_up["status"]) == ("x = 0", "no_reply")
    assert len(execution.pending) == 2


def put_in_place_later(
    connection_class: type[Any], audit_log: EventLog, caplog: pytest.LogCaptureFixture
) -> tuple[ExecutionAudit, dict[str, Any]]:
    """Run the check that follows the extensions' loading, `connection_class` having replaced
    the audited class; return the audit and the server's settings after it."""
    log = logging.getLogger("test.audit")
    audit = ExecutionAudit(AuditRecorder(audit_log, log))
    settings: dict[str, Any] = {"kernel_websocket_connection_class": connection_class}
    with caplog.at_level(logging.WARNING, "test.audit"):
        keep_installed(settings, audit, lambda handler: None, log)
    return audit, settings


def test_a_connection_class_put_in_place_later_is_audited_in_its_turn(
    audit_log: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    """Another extension loaded after this one replaced the audited class with its own."""
    audit, settings = put_in_place_later(OtherConnection, audit_log, caplog)
    installed = settings["kernel_websocket_connection_class"]
    assert issubclass(installed, OtherConnection)
    assert issubclass(installed, AuditedConnection)
    assert installed.audit is audit
    assert "OtherConnection" in caplog.text
    assert "audited in its turn" in caplog.text
    caplog.clear()
    keep_installed(settings, audit, lambda handler: None, logging.getLogger("test.audit"))
    # audited already: nothing to say
    assert settings["kernel_websocket_connection_class"] is installed
    assert caplog.text == ""


def test_a_connection_class_that_cannot_be_audited_put_in_place_later_is_said(
    audit_log: EventLog, caplog: pytest.LogCaptureFixture
) -> None:
    _, settings = put_in_place_later(ForeignConnection, audit_log, caplog)
    assert settings["kernel_websocket_connection_class"] is ForeignConnection
    assert "ForeignConnection" in caplog.text
    assert "NOT audited" in caplog.text


@pytest.mark.parametrize("value", [["bogus"], ["execution", "kernels"]])
def test_an_unknown_audit_kind_is_refused_naming_the_option(value: Any) -> None:
    with pytest.raises(TraitError, match="'audit' trait"):
        TelemetryExtension(audit=value)
