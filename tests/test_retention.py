"""`jupyter telemetry prune|export|erase` on JSON-lines logs, run as an admin would."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext.core.recorded_user import hashed_user, load_or_create_secret

JUPYTER = str(Path(sys.executable).with_name("jupyter"))


def cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JUPYTER_DATA_DIR": str(data_dir), "JUPYTER_CONFIG_DIR": str(data_dir)}
    return subprocess.run([JUPYTER, "telemetry", *args], capture_output=True, text=True,
                          timeout=60, check=False, env=env)  # fmt: skip


def line(age_days: int, user: str | None, n: int) -> str:
    stamp = datetime.now(timezone.utc) - timedelta(days=age_days)
    capsule: dict[str, Any] = {
        "__timestamp__": stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "__schema__": "a/b",
        "__schema_version__": 1,
        "__metadata_version__": 2,
        "n": n,
    }
    if user is not None:
        capsule["__user__"] = user
    return json.dumps(capsule) + "\n"


@pytest.fixture
def logs(tmp_path: Path) -> tuple[Path, bytes]:
    """A log, a rotated file and a gzipped one; alice's and bob's names are hashed."""
    secret = load_or_create_secret(tmp_path / "data")
    alice, bob = hashed_user(secret, "alice"), hashed_user(secret, "bob")
    (tmp_path / "events.log.2.gz").write_bytes(
        gzip.compress((line(200, alice, 0) + line(150, bob, 1)).encode())
    )
    (tmp_path / "events.log.1").write_text(line(100, alice, 2) + line(10, None, 3))
    (tmp_path / "events.log").write_text(line(1, alice, 4) + "{not json\n" + line(0, bob, 5))
    return tmp_path / "events.log", secret


def numbers(stdout: str) -> list[int]:
    return [json.loads(text)["n"] for text in stdout.splitlines()]


def all_numbers(log: Path) -> list[int]:
    found = []
    for path in sorted(log.parent.glob("events.log*"), reverse=True):
        if path.name.endswith(("-erasures.jsonl", "-erased-users.json")):
            continue
        text = (
            gzip.decompress(path.read_bytes()).decode()
            if path.suffix == ".gz"
            else (path.read_text())
        )
        found += [json.loads(t)["n"] for t in text.splitlines() if t.startswith('{"')]
    return found


def test_prune_rewrites_old_events_out_and_deletes_emptied_files(logs: tuple[Path, bytes]) -> None:
    log, _ = logs
    result = cli("prune", "--older-than", "90d", str(log), data_dir=log.parent / "data")
    assert result.stdout.startswith("removed 3 events"), result.stderr
    assert not (log.parent / "events.log.2.gz").exists()  # everything in it was older
    assert all_numbers(log) == [3, 4, 5]
    assert "{not json" in log.read_text()  # a line that is not an event is kept as it is


def test_export_and_erase_find_a_hashed_user(logs: tuple[Path, bytes]) -> None:
    log, _ = logs
    data = log.parent / "data"
    exported = cli("export", "--user", "alice", str(log), data_dir=data)
    assert numbers(exported.stdout) == [0, 2, 4], exported.stderr
    erased = cli("erase", "--user", "alice", str(log), data_dir=data)
    assert erased.stdout.strip() == "erased 3 events", erased.stderr
    assert sorted(all_numbers(log)) == [1, 3, 5]
    again = cli("export", "--user", "alice", str(log), data_dir=data)
    assert (again.returncode, again.stdout) == (1, "")
    assert "no events of this user" in again.stderr
    [entry] = [json.loads(t) for t in (log.parent / "events.log-erasures.jsonl").read_text()
               .splitlines()]  # fmt: skip
    assert entry["events"] == 3
    assert set(entry) == {"at", "operator", "events"}  # who, when, how many; never whose


def test_without_the_key_only_the_plain_name_matches(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    log.write_text(line(0, "alice", 1) + line(0, "bob", 2))
    exported = cli("export", "--user", "alice", str(log), data_dir=tmp_path / "empty")
    assert numbers(exported.stdout) == [1]
    assert "no user hash key found" in exported.stderr


def test_a_hashed_log_without_the_key_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    log.write_text(line(0, "alice", 1) + line(0, hashed_user(b"other", "alice"), 2))
    for command in ("export", "erase"):
        result = cli(command, "--user", "alice", str(log), data_dir=tmp_path / "empty")
        assert (result.returncode, result.stdout) == (2, ""), result.stderr
        assert "no key was found" in result.stderr
    assert len(log.read_text().splitlines()) == 2  # nothing erased
