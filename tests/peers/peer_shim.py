"""Run jupyter_events' and jupyter-telemetry's own tests against this package.

A pytest plugin (`-p peer_shim`) that only maps module names: each module the peers' tests
import is the module of ours that provides the same API. The tests known to fail are marked
`xfail(strict=True)` with the deliberate reason, so one that starts passing fails the run.
"""

from __future__ import annotations

import importlib
import sys
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
    "jupyter_telemetry": "jupyter_telemetry_ext",
    "jupyter_telemetry.eventlog": "jupyter_telemetry_ext.core.eventlog",
    "jupyter_telemetry.traits": "jupyter_telemetry_ext.core.eventlogger",
}

for alias, target in MODULES.items():
    sys.modules[alias] = importlib.import_module(target)


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
