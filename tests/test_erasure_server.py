"""A single server writing a JSON-lines log drops an erased user's late events, as the
collector does: `jupyter telemetry erase` leaves a tombstone beside the log, read per request."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FRONTEND_ID
from tests.servers import Server, jupyter_environment, read_events, write_config

CONFIG = """
import logging
c.ServerApp.jpserver_extensions = {{"jupyter_telemetry_ext": True}}
c.TelemetryExtension.schema_paths = [{schemas!r}]
c.TelemetryExtension.rate_limit = 0
c.TelemetryExtension.reply_after_write = True
c.TelemetryExtension.record_user = "username"
c.EventLog.handlers = [logging.FileHandler({events!r})]
c.EventLog.allowed_schemas = {{{schema!r}: {{"allowed_categories": ["user-identifier"]}}}}
"""
USER = "erin"


def post(server: Server, client_id: str, when: datetime | None = None) -> str:
    """Post one event (with its time, if given); return its status."""
    event: dict[str, Any] = {"schema_id": FRONTEND_ID, "version": 1, "data": {"action": "open"},
                             "id": client_id}  # fmt: skip
    if when is not None:
        event["timestamp"] = when.isoformat().replace("+00:00", "Z")
    status, reply = server.request("POST", "/api/telemetry/events", event)
    assert status == 200, reply
    return str(reply["status"])


@pytest.mark.e2e
def test_late_events_of_an_erased_user_are_dropped_new_ones_recorded(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    write_config(tmp_path, CONFIG, events=str(events), schema=FRONTEND_ID)
    ago = datetime.now(timezone.utc) - timedelta(minutes=2)
    with Server(tmp_path, env={"JUPYTERHUB_USER": USER}) as server:
        assert post(server, "before1", ago) == "recorded"
        erased = subprocess.run(
            ["jupyter", "telemetry", "erase", "--user", USER, str(events)],
            capture_output=True, text=True, timeout=60, check=False,
            env=jupyter_environment(tmp_path),
        )  # fmt: skip
        assert (erased.returncode, erased.stdout.strip()) == (0, "erased 1 events"), erased.stderr
        # Her late events from before the erasure (a client's retry, a resend): dropped.
        assert post(server, "before2", ago) == "filtered"
        assert post(server, "before1", ago) == "filtered"
        assert post(server, "after1", datetime.now(timezone.utc)) == "recorded"
        assert post(server, "after2") == "recorded"  # no time: received now
    assert [(e["__client_id__"], e["__user__"]) for e in read_events(events)] == [
        ("after1", USER), ("after2", USER)]  # fmt: skip
