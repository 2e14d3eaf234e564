"""The collector remembers: a user's erasure (late events of hers are dropped) and the ids it
recorded (a resend after a restart or a crash is a duplicate). A real JupyterHub, a real
collector (`jupyter telemetry collect`, an external service the tests start and stop) writing a
JSON-lines log, and the real `jupyter telemetry erase`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext.core.recorded_user import hashed_user
from tests.conftest import FRONTEND_ID, frontend_schema
from tests.hubserver import EXTERNAL_SERVICE, ExternalCollector, Hub, running_hub
from tests.servers import read_events, wait_until

pytest.importorskip("jupyterhub", reason="the [hub] extra (jupyterhub) is not installed")

pytestmark = pytest.mark.e2e  # starts JupyterHub and collectors

JUPYTER = str(Path(sys.executable).with_name("jupyter"))
EVENTS = f"services/{EXTERNAL_SERVICE}/api/telemetry/events"
SECRET = "e" * 64
CONFIG = """\
from logging.handlers import WatchedFileHandler
c.TelemetryCollector.schema_paths = [{schemas!r}]
c.TelemetryCollector.record_user = "hashed"
c.TelemetryCollector.user_hash_secret = {secret!r}
{journal}# Reopens the log when `erase` replaced it
c.EventLog.handlers = [WatchedFileHandler({sink!r})]
c.EventLog.allowed_schemas = {{
    {frontend!r}: {{"allowed_categories": ["unrestricted", "user-identifier"]}},
}}
"""


@dataclass
class Collecting:
    """The hub, the external collector, its config, log and users' tokens."""

    hub: Hub
    collector: ExternalCollector
    config: Path
    sink: Path
    journal: Path
    alice: str
    bob: str

    def post(self, token: str, client_id: str, when: datetime | None = None) -> Any:
        """Post one event; return the reply's status (an HTTP error fails the test)."""
        event: dict[str, Any] = {"schema_id": FRONTEND_ID, "version": 1, "id": client_id,
                                 "data": {"action": "open"}}  # fmt: skip
        if when is not None:
            event["timestamp"] = when.isoformat().replace("+00:00", "Z")
        code, reply = self.hub.request("POST", EVENTS, event, token=token)
        assert code == 200, (code, reply)
        return reply["status"]

    def ids(self) -> list[str]:
        """Return the client ids written so far, in order."""
        return [e["__client_id__"] for e in read_events(self.sink)]

    def wait_for(self, client_id: str) -> None:
        """Wait until an event is written."""
        wait_until(lambda: client_id in self.ids(), 15, lambda: f"{client_id} not in {self.ids()}")


@pytest.fixture(scope="module")
def collecting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collecting]:
    """A hub and a JSON-lines collector recording users as keyed hashes."""
    tmp = tmp_path_factory.mktemp("erasure-hub")
    schemas = tmp / "schemas"
    schemas.mkdir()
    (schemas / "frontend.json").write_text(json.dumps(frontend_schema()))
    managed = tmp / "managed_config.py"  # the hub's own collector service: not used here
    managed.write_text(CONFIG.format(schemas=str(schemas), secret=SECRET, frontend=FRONTEND_ID,
                                     journal='c.TelemetryCollector.duplicate_journal = ""\n',
                                     sink=str(tmp / "managed.jsonl")))  # fmt: skip
    config, sink = tmp / "telemetry_config.py", tmp / "events.jsonl"
    journal = tmp / "events.jsonl.ids"  # the default: beside the file the collector writes
    config.write_text(CONFIG.format(schemas=str(schemas), secret=SECRET, frontend=FRONTEND_ID,
                                    journal="", sink=str(sink)))  # fmt: skip
    with running_hub(tmp, managed) as hub:
        collector = ExternalCollector(hub, config, tmp)
        collector.start()
        try:
            yield Collecting(hub, collector, config, sink, journal, hub.user_token("alice"),
                             hub.user_token("bob"))  # fmt: skip
        finally:
            collector.kill()


def erase(collecting: Collecting, user: str) -> subprocess.CompletedProcess[str]:
    """Run `jupyter telemetry erase` on the collector's log with its config (the key in it)."""
    data = collecting.sink.parent / "admin-data"
    env = {**os.environ, "JUPYTER_DATA_DIR": str(data), "JUPYTER_CONFIG_DIR": str(data)}
    return subprocess.run(
        [JUPYTER, "telemetry", "erase", "--config", str(collecting.config), "--user", user,
         str(collecting.sink)],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip


def test_late_events_of_an_erased_user_are_dropped_new_ones_recorded(
    collecting: Collecting,
) -> None:
    ago = datetime.now(timezone.utc) - timedelta(minutes=2)
    assert collecting.post(collecting.alice, "alice-1", ago) == "recorded"
    assert collecting.post(collecting.bob, "bob-1", ago) == "recorded"
    collecting.wait_for("bob-1")
    collecting.wait_for("alice-1")
    erased = erase(collecting, "alice")
    assert (erased.returncode, erased.stdout.strip()) == (0, "erased 1 events"), erased.stderr
    # A late event of hers from before the erasure (a spool's resend, a retry): dropped.
    assert collecting.post(collecting.alice, "alice-2", ago) == "filtered"
    assert collecting.post(collecting.alice, "alice-1", ago) == "filtered"
    time.sleep(0.01)
    assert collecting.post(collecting.alice, "alice-3", datetime.now(timezone.utc)) == "recorded"
    assert collecting.post(collecting.alice, "alice-4") == "recorded"  # no time: received now
    assert collecting.post(collecting.bob, "bob-2", ago) == "recorded"  # bob was not erased
    collecting.wait_for("alice-4")
    collecting.wait_for("bob-2")
    assert collecting.ids() == ["bob-1", "alice-3", "alice-4", "bob-2"]
    alice = hashed_user(SECRET.encode(), "alice")
    users = [e["__user__"] for e in read_events(collecting.sink)]
    assert users[1:3] == [alice, alice]


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_a_resend_after_a_restart_is_a_duplicate(collecting: Collecting, how: str) -> None:
    client_id = f"restart-{how}"
    assert collecting.post(collecting.bob, client_id) == "recorded"
    collecting.wait_for(client_id)
    if how == "SIGINT":
        collecting.collector.stop()
    else:
        collecting.collector.kill()  # a crash: nothing is flushed or closed
    collecting.collector.start()
    assert collecting.post(collecting.bob, client_id) == "duplicate"
    assert collecting.post(collecting.alice, client_id) == "recorded"  # ids are per user
    assert collecting.post(collecting.bob, f"{client_id}-end") == "recorded"
    collecting.wait_for(f"{client_id}-end")
    assert collecting.ids().count(client_id) == 2  # bob's once, alice's once
    journals = list(collecting.journal.glob("*.ids"))
    assert journals
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in journals)
