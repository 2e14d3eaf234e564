"""The example queries of docs/audit.md, run with `jupyter telemetry sql` on a real PostgreSQL
store that the execution schema's events were written to by PostgresEventHandler."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext import EventLog
from tests.conftest import SHIPPED_SCHEMAS
from tests.hubserver import doc_block
from tests.pgserver import PostgresServer, server_for_tests
from tests.test_postgres import PASSWORD, cli, make_handler

psycopg = pytest.importorskip("psycopg", reason="the [postgres] extra (psycopg) is not installed")

from jupyter_telemetry_ext.sinks.postgres import PostgresEventHandler  # noqa: E402

EXECUTION = "https://events.jupyter.org/jupyter_telemetry_ext/execution"
CODE = "df = load('patients.csv')"
NOW = datetime.now(timezone.utc)
# user, code, status, ename, days ago
RUNS = [
    ("alice", CODE, "requested", None, 1),
    ("alice", CODE, "ok", None, 1),
    ("bob", "df = load('patients.csv')\ndf.agg()", "error", "TypeError", 2),
    ("carol", "print('hello')", "ok", None, 0),
    ("dave", CODE, "ok", None, 30),  # older than the week asked for
]


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the module."""
    yield from server_for_tests()


@pytest.fixture
def store(pg: PostgresServer, tmp_path: Path) -> Iterator[str]:
    """A store holding the execution events of RUNS, code allowed, users by name."""
    url = pg.url(pg.create_database(), password=PASSWORD)
    made: list[PostgresEventHandler] = []
    allowed = {EXECUTION: {"allowed_categories": ["user-code", "user-identifier"]}}
    handler = make_handler(url, made, tmp_path)
    eventlog = EventLog(handlers=[handler], allowed_schemas=allowed, background=True)
    eventlog.register_schema_file(SHIPPED_SCHEMAS / "execution" / "v1.yaml")
    for seq, (user, code, status, ename, days) in enumerate(RUNS, start=1):
        event: dict[str, Any] = {
            "kernel_id": "k1", "kernel_name": "python3", "session_id": None, "msg_id": None,
            "cell_id": None, "channel": "shell", "client": "websocket-v1", "code": code,
            "code_sha256": hashlib.sha256(code.encode()).hexdigest(), "code_length": len(code),
            "code_truncated": False, "silent": False, "store_history": True, "status": status,
            "audit_seq": seq, "audit_stream": "0" * 32,
        }  # fmt: skip
        if ename:
            event["ename"] = ename
        when = NOW - timedelta(days=days)
        eventlog.record_event(EXECUTION, 1, event, context={"__user__": user},
                              timestamp_override=when)  # fmt: skip
    assert eventlog.flush(10)
    yield url
    for made_handler in made:
        made_handler.close()


def sql(store: str, query: str) -> list[dict[str, Any]]:
    """Run `query` as the docs say, with --json; return its rows."""
    result = cli("sql", "--db", store, "--full", "--json", query)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.mark.e2e
def test_who_ran_what(store: str) -> None:
    """The week's runs mentioning the file, newest first, without the requested duplicate."""
    found = sql(store, doc_block("audit.md", "who_ran_what"))
    assert [(row["username"], row["status"], row["error"]) for row in found] == [
        ("alice", "ok", None),
        ("bob", "error", "TypeError"),
    ]
    assert found[0]["code"] == CODE
    assert found[0]["kernel"] == "python3"


@pytest.mark.e2e
def test_was_this_run(store: str) -> None:
    """The hash of a copy of the cell finds every run of that exact code, old ones too."""
    found = sql(store, doc_block("audit.md", "was_this_run"))
    assert sorted((row["username"], row["status"]) for row in found) == [
        ("alice", "ok"),
        ("alice", "requested"),
        ("dave", "ok"),
    ]
