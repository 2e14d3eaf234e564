"""The audit as docs/audit.md turns it on, in a real `jupyter server` with a real kernel: the
documented config starts, records who ran what in a stream that `audit check` passes; a config
that drops the stream's start and stop, or the user, is named at start; no study's consent
turns the audit off."""

from __future__ import annotations

import asyncio
import getpass
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.hubserver import doc_block
from tests.servers import TOKEN, Server, log_tail, read_events
from tests.test_hub_audit import execute_at

pytestmark = pytest.mark.e2e  # starts servers and kernels

EXECUTION = "https://events.jupyter.org/jupyter_telemetry_ext/execution"
STREAM = "https://events.jupyter.org/jupyter_telemetry_ext/audit-stream"
NOT_KEPT = "but the allow-list does not keep the category user-identifier"
NO_STREAM = "the audit streams' start and stop are NOT recorded"


def documented(log: Path) -> str:
    """Return the block `audit_config` of docs/audit.md, writing to `log`."""
    return doc_block("audit.md", "audit_config",
                     {'"/var/log/jupyter/execution-audit.log"': repr(str(log))})  # fmt: skip


async def run_code(server: Server, code: str) -> dict[str, Any]:
    """Run `code` in a new kernel of `server` through its websocket; return the reply."""
    status, kernel = server.request("POST", "/api/kernels", {"name": "python3"})
    assert status == 201, kernel
    return await execute_at(f"ws://127.0.0.1:{server.port}/api/kernels/{kernel['id']}", TOKEN, code)


def audit_check(log: Path) -> subprocess.CompletedProcess[str]:
    """Run `jupyter telemetry audit check LOG --json`."""
    command = [sys.executable, "-m", "jupyter_telemetry_ext.cli.main", "audit", "check",
               str(log), "--json"]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def start(tmp_path: Path, config: str) -> Server:
    """Start a server in `tmp_path` whose jupyter_server_config.py is `config`."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "jupyter_server_config.py").write_text(config, "utf-8")
    return Server(tmp_path)


def test_the_documented_audit_records_who_ran_what_in_a_stream_the_check_passes(
    tmp_path: Path,
) -> None:
    """The block lacked `import logging` (the server stopped with a NameError) and the
    audit-stream schema (every stream showed number 1 missing, and never stopped)."""
    log = tmp_path / "execution-audit.log"
    config = documented(log) + 'c.TelemetryExtension.record_user = "username"\n'
    with start(tmp_path, config) as server:
        reply = asyncio.run(run_code(server, "audited = 6 * 7"))
        assert reply["status"] == "ok", reply
    written = server.log.read_text("utf-8")
    assert NOT_KEPT not in written
    assert NO_STREAM not in written
    events = read_events(log)
    [execution] = [e for e in events if e["__schema__"] == EXECUTION]
    assert (execution["code"], execution["__user__"]) == ("audited = 6 * 7", getpass.getuser())
    assert [e["action"] for e in events if e["__schema__"] == STREAM] == ["start", "stop"]
    result = audit_check(log)
    assert result.returncode == 0, result.stderr
    [stream] = map(json.loads, result.stdout.splitlines())
    assert (stream["missing"], stream["end"], stream["events"]) == ("", "stopped", 3)


def test_an_audit_whose_stream_or_user_is_not_kept_is_named_at_start(tmp_path: Path) -> None:
    """Both were silent: the stream's start and stop went nowhere, and the executions were
    stored without the user that record_user asks for."""
    log = tmp_path / "execution-audit.log"
    config = f"""\
import logging
c.TelemetryExtension.audit = ["execution"]
c.TelemetryExtension.record_user = "username"
c.EventLog.allowed_schemas = {{"{EXECUTION}": {{"allowed_categories": ["user-code"]}}}}
c.EventLog.handlers = [logging.FileHandler({str(log)!r})]
"""
    with start(tmp_path, config) as server:
        pass
    written = server.log.read_text("utf-8")
    [not_kept] = [line for line in written.splitlines() if NOT_KEPT in line]
    assert not_kept.endswith(": " + EXECUTION), log_tail(server.log)
    [no_stream] = [line for line in written.splitlines() if NO_STREAM in line]
    assert no_stream.startswith("[E ")
    assert STREAM in no_stream


def test_declining_a_study_of_user_code_leaves_the_audit_on(tmp_path: Path) -> None:
    """A study by category `user-code` covered the execution audit: a user who declined it (or
    had not granted it) ran code that was recorded nowhere, or, with audit_required, could run
    no code until they granted a research study."""
    log = tmp_path / "execution-audit.log"
    study = {"title": "Code", "text": "We keep your code for research.", "version": 1,
             "mode": "opt-in", "categories": ["user-code"]}  # fmt: skip
    config = documented(log) + f"c.EventLog.studies = {{'code': {study!r}}}\n"
    with start(tmp_path, config + "c.TelemetryExtension.audit_required = True\n") as server:
        assert asyncio.run(run_code(server, "before = 1"))["status"] == "ok"  # not granted
        status, _ = server.request("PUT", "/api/telemetry/consent/code",
                                   {"decision": "declined", "version": 1})  # fmt: skip
        assert status == 200
        assert asyncio.run(run_code(server, "after = 2"))["status"] == "ok"
    codes = [e["code"] for e in read_events(log) if e["__schema__"] == EXECUTION]
    assert codes == ["before = 1", "before = 1", "after = 2", "after = 2"]  # requested, then ok
    assert audit_check(log).returncode == 0
