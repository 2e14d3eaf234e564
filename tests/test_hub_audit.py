"""The execution audit under a real JupyterHub: alice's executions reach the collector as hers,
nobody can record them as hers, and a gap in a stream is recorded by the collector and reported
by `jupyter telemetry audit check`; one hub for the module (tests/hubserver.py).

The hub and the collector are configured as docs/jupyterhub.md says (PostgreSQL, hashed users,
the documented allow-list); the users' servers audit execution and forward to the collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext.cli.audit_report import ranges_text
from tests.hubserver import SERVICE, ExternalCollector, Hub, doc_block, running_hub
from tests.pgserver import binaries, running_server
from tests.servers import log_tail, wait_until
from tests.test_hub import collector_config, hashed, stored_events

pytest.importorskip("jupyterhub", reason="the [hub] extra (jupyterhub) is not installed")
pytest.importorskip("psycopg", reason="the documented config stores in PostgreSQL ([postgres])")

pytestmark = pytest.mark.e2e  # starts JupyterHub, PostgreSQL and Jupyter servers with kernels

EVENTS = f"services/{SERVICE}/api/telemetry/events"
FRONTEND = "https://events.jupyter.org/jupyter_telemetry_ext/"
EXECUTION, STREAM, GAP = (FRONTEND + name for name in ("execution", "audit-stream", "audit-gap"))
AUDITED = ("--TelemetryExtension.audit=execution",)
SPOOLED = "spooled"  # alice's named server that forwards through a spool of the test's
TIMEOUT = 60  # seconds for a kernel's reply or a forwarded event on a loaded machine


@dataclass
class Deployment:
    """The module's hub, its database URL and the users' tokens."""

    hub: Hub
    db: str
    alice: str
    bob: str

    def events(self, schema: str) -> list[dict[str, Any]]:
        """Every stored event of `schema`."""
        return [e for e in stored_events(self.db) if e["__schema__"] == schema]

    def post(self, body: Any, token: str) -> tuple[int, Any]:
        """POST to the collector through the proxy."""
        return self.hub.request("POST", EVENTS, body, token=token)

    def wait_for(self, schema: str, **match: Any) -> dict[str, Any]:
        """Return the first stored event of `schema` holding every item of `match`."""

        def found() -> list[dict[str, Any]]:
            return [e for e in self.events(schema) if match.items() <= e.items()]

        failure = f"no {schema} event with {match}: {log_tail(self.hub.log)}"
        return wait_until(found, TIMEOUT, lambda: failure)[0]


@contextlib.contextmanager
def _database() -> Iterator[str]:
    bindir = binaries()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    with running_server(bindir) as server:
        yield server.url(server.create_database())


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A hub as docs/jupyterhub.md says; its collector records a gap as soon as it sees it."""
    tmp = tmp_path_factory.mktemp("hub")
    with _database() as db:
        config = tmp / "telemetry_config.py"
        config.write_text(collector_config(config) + "\nc.TelemetryCollector.audit_gap_grace = 0\n")
        with running_hub(tmp, config, database=db) as hub:
            yield Deployment(hub, db, hub.user_token("alice"), hub.user_token("bob"))


def message(
    session: str, content: dict[str, Any], msg_type: str = "execute_request"
) -> dict[str, Any]:
    """Return a shell request (an execute_request) of the kernel websocket's JSON protocol."""
    header = {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": session,
              "username": "", "date": "2026-01-01T00:00:00Z", "version": "5.4"}  # fmt: skip
    return {"header": header, "parent_header": {}, "metadata": {}, "content": content,
            "channel": "shell", "buffers": []}  # fmt: skip


async def _execute(hub: Hub, user: str, token: str, kernel: str, code: str) -> dict[str, Any]:
    """Send `code` to a kernel through the proxy's websocket; return the execute_reply."""
    return await execute_at(f"ws{hub.url[4:]}user/{user}/api/kernels/{kernel}", token, code)


async def execute_at(kernel_url: str, token: str, code: str) -> dict[str, Any]:
    """Send `code` over the websocket of the kernel at `kernel_url` (ws://.../api/kernels/ID),
    once it answered a kernel_info_request, with a plain token; return the execute_reply."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    session = uuid.uuid4().hex
    url = f"{kernel_url}/channels?session_id={session}"
    request = HTTPRequest(url, headers={"Authorization": f"token {token}"})
    ws = await asyncio.wait_for(websocket_connect(request), TIMEOUT)
    try:
        await _ready(ws, session)
        sent = message(session, {"code": code, "silent": False, "store_history": True})
        await ws.write_message(json.dumps(sent))
        return await _reply_to(ws, sent, "execute_reply", TIMEOUT)
    finally:
        ws.close()


async def _ready(ws: Any, session: str) -> None:
    """Return once the kernel answers a kernel_info_request on `ws`, as JupyterLab asks on
    connecting: one sent while a new kernel's channels are still coming up goes unanswered, so
    it is sent again every few seconds (it is no execution: nothing is audited)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        sent = message(session, {}, "kernel_info_request")
        await ws.write_message(json.dumps(sent))
        try:
            await _reply_to(ws, sent, "kernel_info_reply", 5)
            return
        except asyncio.TimeoutError:
            if time.monotonic() > deadline:
                raise


async def _reply_to(ws: Any, sent: dict[str, Any], msg_type: str, seconds: float) -> dict[str, Any]:
    """Return the content of the `msg_type` reply to `sent`, read within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise asyncio.TimeoutError
        raw = await asyncio.wait_for(ws.read_message(), left)
        assert raw is not None, "the kernel websocket closed"
        reply = json.loads(raw)
        if (reply["parent_header"].get("msg_id") == sent["header"]["msg_id"]
                and reply["msg_type"] == msg_type):  # fmt: skip
            return dict(reply["content"])


def execute(
    deployment: Deployment, *codes: str, server: str = "", args: tuple[str, ...] = AUDITED
) -> None:
    """Run each code in a kernel of alice's audited server (`server`: a named one), as a client
    with her token does."""
    hub, prefix = deployment.hub, f"alice/{server}".rstrip("/")
    hub.spawn("alice", server, args=args)
    status, kernel = hub.request("POST", f"user/{prefix}/api/kernels", {"name": "python3"},
                                 token=deployment.alice)  # fmt: skip
    assert status == 201, kernel
    try:
        for code in codes:
            reply = asyncio.run(_execute(hub, prefix, deployment.alice, kernel["id"], code))
            assert reply["status"] == "ok", reply
    finally:
        hub.request("DELETE", f"user/{prefix}/api/kernels/{kernel['id']}", token=deployment.alice)


def sha256(code: str) -> str:
    """Return the hash the audit records of `code`."""
    return hashlib.sha256(code.encode()).hexdigest()


def audit_check(db: str) -> tuple[int, dict[tuple[str, str], dict[str, Any]], str]:
    """Run `jupyter telemetry audit check` as docs/audit.md writes it (its database in
    $TELEMETRY_DB); return its status, reports by (user, stream), and what it said on stderr."""
    documented = shlex.split(doc_block("audit.md", "audit-check"))
    assert documented[:4] == ["jupyter", "telemetry", "audit", "check"], documented
    command = [sys.executable, "-m", "jupyter_telemetry_ext.cli.main", *documented[2:]]
    env = {**os.environ, "TELEMETRY_DB": db}
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False,
                          env=env)  # fmt: skip
    found = {(r["user"], r["stream"]): r for r in map(json.loads, done.stdout.splitlines())}
    return done.returncode, found, done.stderr


def test_alices_executions_reach_the_collector_as_hers(deployment: Deployment) -> None:
    code = "audited = 41 + 1"
    execute(deployment, code)
    event = deployment.wait_for(EXECUTION, code_sha256=sha256(code))
    assert event["__user__"] == hashed("alice")
    assert (event["status"], event["code_length"]) == ("ok", len(code))
    assert event["code"] is None  # the documented allow-list keeps no user-code
    start = deployment.wait_for(STREAM, audit_stream=event["audit_stream"], action="start")
    assert (start["__user__"], start["audit_seq"]) == (hashed("alice"), 1)


def test_bob_cannot_record_executions_as_alice(deployment: Deployment) -> None:
    code = "as_alice = 1"
    execute(deployment, code)
    hers = deployment.wait_for(EXECUTION, code_sha256=sha256(code))
    stream = hers["audit_stream"]
    # bob posts an execution of her stream, next in line: it is his, and fills nothing of hers
    forged = {key: hers[key] for key in hers if not key.startswith("__")}
    forged.update(audit_seq=hers["audit_seq"] + 1, code_sha256=sha256("forged"))
    status, reply = deployment.post({"schema_id": EXECUTION, "version": 1, "data": forged},
                                    deployment.bob)  # fmt: skip
    assert (status, reply) == (200, {"status": "recorded"})
    stored = deployment.wait_for(EXECUTION, code_sha256=sha256("forged"))
    assert stored["__user__"] == hashed("bob")
    # naming alice in the post is refused whole; bob's token on her server is refused
    named = {"schema_id": EXECUTION, "version": 1, "data": forged, "user": "alice"}
    assert deployment.post(named, deployment.bob)[0] == 403
    status, _ = deployment.hub.request("POST", "user/alice/api/kernels", {"name": "python3"},
                                       token=deployment.bob)  # fmt: skip
    assert status == 403
    # and nobody posts the collector's own gap event
    gap = {"stream": stream, "first_missing": 1, "last_missing": 1, "missing": 1}
    status, reply = deployment.post({"schema_id": GAP, "version": 1, "data": gap},
                                    deployment.alice)  # fmt: skip
    assert status == 403, reply
    _, reports, _ = audit_check(deployment.db)
    hers_reported = reports[hashed("alice"), stream]
    assert (hers_reported["missing"], hers_reported["repeated"]) == ("", 0)
    # bob's copy is a stream of his own, which shows as one without its beginning
    his = reports[hashed("bob"), stream]
    assert his["missing"] == ranges_text([(1, hers["audit_seq"])])


def test_an_injected_gap_is_recorded_and_reported(deployment: Deployment) -> None:
    """alice's server (its token) posts a stream whose numbers 3 and 4 never come."""
    hub = deployment.hub
    hub.spawn("alice", args=AUDITED)
    token = hub.server_env("alice")["JUPYTERHUB_API_TOKEN"]
    stream = uuid.uuid4().hex
    first = {"audit_seq": 1, "audit_stream": stream, "action": "start"}
    executions = [{"audit_seq": n, "audit_stream": stream, "kernel_id": "k", "channel": "shell",
                   "client": "websocket-json", "code_sha256": sha256(str(n)), "code_length": 1,
                   "code_truncated": False, "silent": False, "store_history": True,
                   "status": "ok"} for n in (2, 5)]  # fmt: skip
    batch = {"events": [{"schema_id": STREAM, "version": 1, "data": first, "id": f"{stream}-1"},
                        *({"schema_id": EXECUTION, "version": 1, "data": e,
                           "id": f"{stream}-{e['audit_seq']}"} for e in executions)]}  # fmt: skip
    status, reply = deployment.post(batch, token)
    assert (status, reply["recorded"]) == (200, 3), reply
    status, reply = deployment.post(batch, token)  # a retry: duplicates, no new gap
    assert (status, reply["duplicate"]) == (200, 3), reply
    gap = deployment.wait_for(GAP, stream=stream)
    assert gap["__user__"] == hashed("alice")
    assert (gap["first_missing"], gap["last_missing"], gap["missing"]) == (3, 4, 2)
    assert gap["schema"] == EXECUTION
    assert len(deployment.events(GAP)) == 1
    code, reports, stderr = audit_check(deployment.db)
    assert code == 1, stderr
    report = reports[hashed("alice"), stream]
    assert (report["missing"], report["collector_gaps"], report["end"]) == ("3-4", 1, "running")


def test_a_clean_stop_ends_the_stream(deployment: Deployment) -> None:
    """alice's server stops cleanly; its stream's stop is sent (at the latest by the next start,
    from the forwarding spool) and the check reports it stopped."""
    code = "before_stop = 1"
    execute(deployment, code)
    stream = deployment.wait_for(EXECUTION, code_sha256=sha256(code))["audit_stream"]
    deployment.hub.stop_server("alice")
    deployment.hub.spawn("alice", args=AUDITED)
    stop = deployment.wait_for(STREAM, audit_stream=stream, action="stop")
    assert stop["__user__"] == hashed("alice")
    _, reports, stderr = audit_check(deployment.db)
    report = reports[hashed("alice"), stream]
    assert (report["end"], report["missing"]) == ("stopped", ""), stderr


def test_events_removed_from_the_forwarding_spool_are_a_gap(
    deployment: Deployment, tmp_path: Path
) -> None:
    """alice's named server forwards to a collector that is down, so its audit events wait in
    its spool; one is removed from the spool file before it is sent. When the collector is up
    and the server restarted (it sends what its spool holds), the collector records the gap and
    the check reports it; the stream still ends with its clean stop."""
    hub, spool = deployment.hub, tmp_path / "spool"
    config = tmp_path / "collector.py"
    config.write_text(collector_config(config) + "\nc.TelemetryCollector.audit_gap_grace = 0\n")
    collector = ExternalCollector(hub, config, tmp_path)
    args = (*AUDITED, f"--TelemetryExtension.collector_url={collector.url}",
            f"--TelemetryExtension.forward_spool_dir={spool}",
            "--TelemetryExtension.forward_retry_max=0.5")  # fmt: skip
    codes = ("kept = 1", "removed = 2", "kept_too = 3")
    try:
        execute(deployment, *codes, server=SPOOLED, args=args)
        hub.stop_server("alice", SPOOLED)  # its stop goes to the spool too
        [line] = remove_spooled(spool, sha256("removed = 2"))
        collector.start()
        hub.spawn("alice", SPOOLED, args=args)
        stream = line["data"]["audit_stream"]
        gap = deployment.wait_for(GAP, stream=stream)
        seq = line["data"]["audit_seq"]
        assert (gap["first_missing"], gap["last_missing"]) == (seq, seq)
        assert gap["__user__"] == hashed("alice")
        deployment.wait_for(STREAM, audit_stream=stream, action="stop")
        code, reports, stderr = audit_check(deployment.db)
        assert code == 1, stderr
        report = reports[hashed("alice"), stream]
        assert (report["missing"], report["end"], report["collector_gaps"]) == (
            str(seq), "stopped", 1
        )  # fmt: skip
    finally:
        hub.stop_server("alice", SPOOLED)
        collector.stop()


def remove_spooled(spool: Path, code_sha256: str) -> list[dict[str, Any]]:
    """Remove the spooled events of this code from the spool's segments; return them."""
    removed = []
    for segment in spool.glob("*.jsonl"):
        kept = []
        for raw in segment.read_bytes().splitlines(keepends=True):
            event = json.loads(raw)
            if event.get("data", {}).get("code_sha256") == code_sha256:
                removed.append(event)
            else:
                kept.append(raw)
        segment.write_bytes(b"".join(kept))
    return removed
