"""Run jupyter_events' and jupyter-telemetry's own tests against this package.

A pytest plugin (`-p peer_shim`) that only maps names: each module the peers' tests import is
the module of ours that provides the same API, and each command they run is our command (as a
console script, for pytest-console-scripts' in-process launch, and on PATH, for its subprocess
launch). The tests known to fail are marked `xfail(strict=True)` with the deliberate reason, so
one that starts passing fails the run.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from peer_expected import EXPECTED_FAILURES, NOT_RUN

MODULES = {
    "jupyter_events": "jupyter_telemetry_ext.core.eventlogger",
    "jupyter_events.logger": "jupyter_telemetry_ext.core.eventlogger",
    "jupyter_events.schema_registry": "jupyter_telemetry_ext.core.eventlogger",
    "jupyter_events.traits": "jupyter_telemetry_ext.core.eventlogger",
    "jupyter_events.schema": "jupyter_telemetry_ext.core.events_schema",
    "jupyter_events.validators": "jupyter_telemetry_ext.core.events_schema",
    "jupyter_events.yaml": "jupyter_telemetry_ext.core.events_yaml",
    "jupyter_events.pytest_plugin": "jupyter_telemetry_ext.core.pytest_plugin",
    "jupyter_events.cli": "jupyter_telemetry_ext.cli.validate",
    "jupyter_telemetry": "jupyter_telemetry_ext.compat.jupyter_telemetry",
    "jupyter_telemetry.eventlog": "jupyter_telemetry_ext.compat.jupyter_telemetry",
    "jupyter_telemetry.traits": "jupyter_telemetry_ext.compat.jupyter_telemetry",
}

# Console scripts the peers' tests run -> ours.
COMMANDS = {"jupyter-events": "jupyter-telemetry"}

for alias, target in MODULES.items():
    sys.modules[alias] = importlib.import_module(target)


def pytest_configure(config: pytest.Config) -> None:
    """Make each command name in COMMANDS run ours, for this test run only."""
    folder = Path(tempfile.mkdtemp(prefix="peer-commands-"))
    config.add_cleanup(lambda: shutil.rmtree(folder))
    ours = {name: _console_script(name) for name in COMMANDS.values()}
    metadata = folder / "peer_command_names-0.dist-info"
    metadata.mkdir()
    (metadata / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: peer-command-names\nVersion: 0\n", "utf-8"
    )
    lines = ["[console_scripts]", *(f"{alias} = {ours[name]}" for alias, name in COMMANDS.items())]
    (metadata / "entry_points.txt").write_text("\n".join([*lines, ""]), "utf-8")
    sys.path.insert(0, str(folder))
    scripts = folder / "bin"
    scripts.mkdir()
    for alias, name in COMMANDS.items():
        script = shutil.which(name)
        assert script, f"{name} is not on PATH: is this package installed?"
        (scripts / alias).symlink_to(script)
    os.environ["PATH"] = f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"
    for alias, name in COMMANDS.items():
        # The first entry point of a name is the one run: ours, not an installed peer's.
        assert _console_script(alias) == ours[name], alias
        assert shutil.which(alias) == str(scripts / alias), alias


def _console_script(name: str) -> str:
    """Return what the first console script of that name runs (`module:function`)."""
    found = tuple(entry_points(group="console_scripts", name=name))
    assert found, f"no console script {name!r}: is this package installed?"
    return str(found[0].value)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the expected failures (strict: an expected failure that passes fails the run)."""
    for item in items:
        key = item.nodeid.rpartition("tests/")[2]
        reason = EXPECTED_FAILURES.get(key)
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    """Leave out the files listed in NOT_RUN."""
    return True if collection_path.name in NOT_RUN else None
