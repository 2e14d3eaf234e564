"""The collector answers "recorded" only once its handlers wrote the event (its default): a
forwarder deletes what the collector acknowledged, so an acknowledgement of an event still
queued would be lost to a SIGKILL of the collector. A real JupyterHub, a real collector
(`jupyter telemetry collect`) with its default settings, writing to a file on a full 64 KiB disk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FRONTEND_ID, frontend_schema
from tests.hubserver import ExternalCollector, running_hub
from tests.servers import read_events
from tests.test_erasure_hub import CONFIG, EVENTS, SECRET
from tests.test_sinks import small_disk  # noqa: F401 - the 64 KiB tmpfs fixture

pytest.importorskip("jupyterhub", reason="the [hub] extra (jupyterhub) is not installed")

pytestmark = pytest.mark.e2e  # starts JupyterHub and a collector

NO_JOURNAL = 'c.TelemetryCollector.duplicate_journal = ""\n'


def test_a_post_the_collector_could_not_write_is_not_acknowledged(
    tmp_path: Path,
    small_disk: Path,  # noqa: F811 - the fixture imported above
) -> None:
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "frontend.json").write_text(json.dumps(frontend_schema()))
    managed = tmp_path / "managed_config.py"  # the hub's own collector service: not used here
    fill = {"schemas": str(schemas), "secret": SECRET, "frontend": FRONTEND_ID,
            "journal": NO_JOURNAL}  # fmt: skip
    managed.write_text(CONFIG.format(sink=str(tmp_path / "managed.jsonl"), **fill))
    sink = small_disk / "events.jsonl"
    config = tmp_path / "telemetry_config.py"
    config.write_text(CONFIG.format(sink=str(sink), **fill))
    (small_disk / "filler").write_bytes(b"x" * (63 << 10))  # no room for an event
    with running_hub(tmp_path, managed) as hub:
        collector = ExternalCollector(hub, config, tmp_path)
        collector.start()
        try:
            alice = hub.user_token("alice")
            event: dict[str, Any] = {"schema_id": FRONTEND_ID, "version": 1, "id": "full-1",
                                     "data": {"action": "open"}}  # fmt: skip
            code, reply = hub.request("POST", EVENTS, event, token=alice)
            assert code == 503, reply  # not written: not acknowledged, the sender keeps it
            (small_disk / "filler").unlink()
            assert hub.request("POST", EVENTS, event, token=alice) == (200, {"status": "recorded"})
            assert [e["__client_id__"] for e in read_events(sink)] == ["full-1"]  # written
        finally:
            collector.kill()
