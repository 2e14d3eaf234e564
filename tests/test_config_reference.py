"""The README's Configuration section matches the traits' help text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_readme_configuration_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, "tools/config_reference.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_option_has_help() -> None:
    from jupyter_telemetry_ext.app import TelemetryExtension
    from jupyter_telemetry_ext.eventlog import EventLog

    for cls in (EventLog, TelemetryExtension):
        for name, trait in cls.class_own_traits(config=True).items():
            assert len((trait.help or "").split()) >= 8, f"{cls.__name__}.{name} needs help text"
