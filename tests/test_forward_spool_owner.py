"""The forwarding spool with real servers: whose events a server sends, and that it sends them once.

Users' servers share one Jupyter data dir (as the test hub's do, or any deployment that sets
`JUPYTER_DATA_DIR` to a shared path), and so one spool folder; the collector is the stand-in of
test_forwarding (a second `jupyter server` that records what it accepts in a JSON-lines file).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext.core.errors import ForwardingRefusedError
from jupyter_telemetry_ext.server.forwarding.forwarder import SPOOL_FOLDER
from tests.conftest import FRONTEND_ID
from tests.servers import TOKEN, Server, wait_until, write_config
from tests.test_forwarding import USER_CONFIG, Hub, event, forwarded, metric, post

pytestmark = pytest.mark.e2e  # starts `jupyter server` subprocesses


@pytest.fixture
def hub(tmp_path: Path, servers: list[Any]) -> Hub:
    return Hub(tmp_path, servers)


def start(hub: Hub, user: str, data: Path, extra: str = "") -> Server:
    """Start `user`'s server (JUPYTERHUB_USER) forwarding to the collector, with `data` as its
    Jupyter data dir."""
    folder = hub.tmp / user
    if not folder.exists():
        folder.mkdir()
        write_config(folder, USER_CONFIG, local=str(folder / "local.jsonl"), extra=extra)
    env = {
        "JUPYTER_TELEMETRY_COLLECTOR_URL": f"http://127.0.0.1:{hub.port}/",
        "JUPYTERHUB_API_TOKEN": TOKEN,
        "JUPYTERHUB_USER": user,
        "JUPYTERHUB_SERVER_NAME": "",
        "JUPYTER_DATA_DIR": str(data),
    }
    server = Server(folder, env=env)
    hub.servers.append(server)
    return server


def log_of(server: Server) -> str:
    return server.log.read_text("utf-8", errors="replace")


def wait_arrived(hub: Hub, server: Server, ids: set[str]) -> None:
    """Wait until `ids` are at the collector and the server's spool is empty."""
    wait_until(lambda: ids <= set(hub.arrived_ids()), 60, lambda: log_of(server)[-4000:])
    wait_until(lambda: metric(server, "jupyter_telemetry_forward_spool_events") == 0, 60,
               lambda: log_of(server)[-4000:])  # fmt: skip


def spooled_events(spool: Path) -> list[bytes]:
    """Return the event lines in the spool's segments (their stamps skipped)."""
    return [line for path in sorted(spool.glob("*.jsonl"))
            for line in path.read_bytes().splitlines() if b'"__spool__"' not in line]  # fmt: skip


def test_bob_s_leftover_spool_is_not_sent_by_alice_s_server(hub: Hub, tmp_path: Path) -> None:
    shared = tmp_path / "shared-data"
    shared.mkdir()
    bob = start(hub, "bob", shared)  # the collector is down: bob's event stays in the spool
    private = {"action": "open", "count": 1, "path": "/home/bob/private.ipynb"}
    assert post(bob, event(1, id="bob-1", data=private)) == (200, {"status": "recorded"})
    assert bob.stop() == 0
    spool = shared / SPOOL_FOLDER
    left = {path: path.read_bytes() for path in spool.glob("*.jsonl")}
    assert any(b"/home/bob/private.ipynb" in data for data in left.values())

    hub.start_collector()
    alice = start(hub, "alice", shared)
    assert post(alice, event(2, id="alice-2")) == (200, {"status": "recorded"})
    wait_arrived(hub, alice, {"alice-2"})
    arrived = hub.arrived()
    assert "bob-1" not in hub.arrived_ids()
    assert all(e.get("path") != "/home/bob/private.ipynb" for e in arrived)
    assert {path: path.read_bytes() for path in left} == left  # left alone, untouched
    assert log_of(alice).count("left alone") == 1

    bob = start(hub, "bob", shared)  # bob's next server sends it, with bob's token
    wait_arrived(hub, bob, {"bob-1"})
    assert hub.arrived_ids() == Counter({"alice-2": 1, "bob-1": 1})
    assert "events left by a stopped server will be sent" in log_of(bob)


def test_a_clean_restart_sends_nothing_twice_and_keeps_nothing_delivered(
    hub: Hub, tmp_path: Path
) -> None:
    data = tmp_path / "alice-data"
    data.mkdir()
    collector = hub.start_collector()
    alice = start(hub, "alice", data)
    posted = [event(n) for n in range(9)]
    assert post(alice, {"events": posted})[1]["recorded"] == 9
    wait_arrived(hub, alice, {e["id"] for e in posted})
    spool = data / SPOOL_FOLDER
    # Delivered: gone from the user's disk once the collector's reply is read (a moment after
    # the collector has the events).
    wait_until(lambda: spooled_events(spool) == [], 10)
    assert alice.stop() == 0
    assert spooled_events(spool) == []
    assert list(spool.iterdir()) == []  # nor a lock of the stopped server

    again = start(hub, "alice", data)
    assert post(again, event(9)) == (200, {"status": "recorded"})
    wait_arrived(hub, again, {"ev-9"})
    assert hub.arrived_ids() == Counter({f"ev-{n}": 1 for n in range(10)})
    duplicates = metric(collector, "jupyter_telemetry_events_total",
                        f'{{outcome="duplicate",schema="{FRONTEND_ID}"}}')  # fmt: skip
    assert duplicates == 0  # nothing was sent twice (the stand-in would have said so)
    assert forwarded(again, "sent") == 1
    assert "left by a stopped server" not in log_of(again)
    wait_until(lambda: spooled_events(spool) == [], 10)


def test_a_spool_folder_others_may_write_to_stops_forwarding_at_start(
    hub: Hub, tmp_path: Path
) -> None:
    spool = tmp_path / "open-spool"
    spool.mkdir()
    spool.chmod(0o777)
    data = tmp_path / "alice-data"
    data.mkdir()
    alice = start(hub, "alice", data, extra=f"c.TelemetryExtension.forward_spool_dir = "
                  f"{str(spool)!r}")  # fmt: skip
    [error] = [line for line in log_of(alice).splitlines() if "cannot start" in line]
    assert error.startswith("[E ")  # said at start, before any event
    assert f"{spool} may be written by others (mode 0o777" in error
    status, reply = post(alice, event(1))
    assert status == 503
    assert reply["message"] == ForwardingRefusedError.reply
    assert list(spool.iterdir()) == []
