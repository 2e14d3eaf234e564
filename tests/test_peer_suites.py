"""jupyter_events' and jupyter-telemetry's own test suites, run against this package.

Their sdists are downloaded with pip (nothing of theirs is vendored), their `tests/` run through
`tests/peers/peer_shim.py`, which only maps their module names to ours and marks the expected
failures, each with its reason (strict: one that starts passing fails the run).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.peers.peer_expected import EXPECTED_FAILURES, NOT_RUN

ROOT = Path(__file__).resolve().parent.parent
PEERS = {
    "jupyter_events==0.12.1": ("jupyter_events-0.12.1", 50),
    "jupyter-telemetry==0.1.0": ("jupyter_telemetry-0.1.0", 14),
}
# How many of each suite's tests pass: all but the expected failures and the files not run.
GOALS = {"jupyter_events==0.12.1": 47, "jupyter-telemetry==0.1.0": 14}
# The peers' tests' own dependencies (not ours): jupyter-telemetry's read YAML with
# ruamel.yaml; jupyter_events' run its command with pytest-console-scripts.
PEER_TEST_DEPENDENCIES = ["ruamel.yaml==0.18.6", "pytest-console-scripts==1.4.1"]


def pip(*args: str) -> None:
    """Run pip; skip (fail on CI) when it cannot reach the package index."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        reason = f"pip {args[0]} failed (no package index?): {done.stderr.strip()[-400:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the peers' test suites: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Download and unpack the peers' sdists, and their tests' own dependencies."""
    cache = tmp_path_factory.mktemp("peers")
    pip("download", "--no-deps", "--no-binary", ":all:", "-d", str(cache), *PEERS)
    pip("install", "--no-deps", "--target", str(cache / "site"), *PEER_TEST_DEPENDENCIES)
    for archive in cache.glob("*.tar.gz"):
        with tarfile.open(archive) as tar:
            tar.extractall(cache, filter="data")
    return cache


def run_suite(folder: Path, site: Path) -> dict[str, str]:
    """Run a peer's `tests/` through the shim; return each test's outcome."""
    ini = folder / "shim.ini"
    ini.write_text("[pytest]\nxfail_strict = true\n", "utf-8")
    report = folder / "report.xml"
    paths = [str(ROOT), str(ROOT / "tests" / "peers"), str(site)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(paths),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    command = [
        sys.executable, "-m", "pytest", "-c", str(ini), "--rootdir", str(folder), "-q",
        "-p", "peer_shim", "-p", "pytest_jupyter.jupyter_core", "-p", "pytest_console_scripts",
        f"--junitxml={report}", "tests",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert report.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    outcomes = {}
    tree = ET.parse(report)  # noqa: S314 - the report of a run we started
    for case in tree.getroot().iter("testcase"):
        module = (case.get("classname") or "").rpartition(".")[2]
        name = f"{module}.py::{case.get('name')}"
        kinds = [child.tag for child in case]
        outcomes[name] = "xfailed" if "skipped" in kinds else ("failed" if kinds else "passed")
    assert done.returncode == 0, done.stdout[-5000:]
    return outcomes


@pytest.mark.e2e
@pytest.mark.parametrize(("requirement", "goal"), list(GOALS.items()))
def test_peer_suite_passes_but_for_the_expected_failures(
    peers: Path, requirement: str, goal: int
) -> None:
    folder_name, total = PEERS[requirement]
    folder = peers / folder_name
    outcomes = run_suite(folder, peers / "site")
    not_run = {path.name for path in (folder / "tests").glob("test_*.py")} & set(NOT_RUN)
    expected = {
        name.split("[")[0]
        for name in EXPECTED_FAILURES
        if name.split("::")[0] in {path.name for path in (folder / "tests").glob("test_*.py")}
    }
    failed = {name for name, outcome in outcomes.items() if outcome != "passed"}
    assert {name.split("[")[0] for name in failed} == expected
    passed = len(outcomes) - len(failed)
    assert passed >= goal
    assert passed + len(failed) + sum(_count(folder / "tests" / f) for f in not_run) == total


def _count(path: Path) -> int:
    """Return how many tests a file not run holds (its `def test_` functions)."""
    return path.read_text("utf-8").count("\ndef test_")
