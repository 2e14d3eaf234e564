"""TelemetryExtension: entry point, published EventLog, config, traits and packaging."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomllib
from traitlets import Bool, Enum, Float, Int, List, Unicode

from jupyter_telemetry_ext import EventLog, __version__, _jupyter_server_extension_points
from jupyter_telemetry_ext.server.app import TelemetryExtension
from tests.conftest import FRONTEND_ID, Sink, frontend_schema

ROOT = Path(__file__).resolve().parent.parent
NAME = "jupyter_telemetry_ext"


def test_extension_point() -> None:
    [point] = _jupyter_server_extension_points()
    assert point["app"] is TelemetryExtension
    assert TelemetryExtension.name == NAME


def test_the_server_publishes_a_background_eventlog(
    jp_serverapp: Any, server_eventlog: EventLog
) -> None:
    [extension] = jp_serverapp.extension_manager.extension_apps[NAME]
    assert extension.eventlog is server_eventlog
    assert server_eventlog.background


async def test_other_extensions_register_and_record(
    server_eventlog: EventLog, sink: Sink, jp_fetch: Any
) -> None:
    schema_id = "other.extension/thing"
    server_eventlog.register_schema({**frontend_schema(schema_id), "frontend": False})
    server_eventlog.allowed_schemas = {**server_eventlog.allowed_schemas, schema_id: {}}
    server_eventlog.record_event(schema_id, 1, {"action": "open", "count": 5})
    assert server_eventlog.flush(5)
    assert [(e["__schema__"], e["count"]) for e in sink.events] == [(schema_id, 5)]
    response = await jp_fetch("api", "telemetry", "schemas")
    assert schema_id in {s["id"] for s in json.loads(response.body)["schemas"]}


@pytest.mark.parametrize("jp_argv", [["--EventLog.redaction=drop"]])
async def test_eventlog_is_configured_by_c_eventlog(
    jp_fetch: Any, sink: Sink, server_eventlog: EventLog
) -> None:
    body = {"schema_id": FRONTEND_ID, "version": 1, "data": {"action": "open", "path": "secret"}}
    await jp_fetch("api", "telemetry", "events", method="POST", body=json.dumps(body))
    assert server_eventlog.flush(5)
    [capsule] = sink.events
    assert "path" not in capsule


def test_every_option_is_configurable_and_documented() -> None:
    traits = TelemetryExtension.class_own_traits(config=True)
    assert set(traits) == {
        "schema_paths", "max_body_size", "max_batch_events", "max_event_size",
        "subscriber_buffer", "shutdown_timeout", "server_events", "rate_limit", "rate_burst",
        "duplicate_window", "duplicate_capacity", "event_time_window", "record_user",
        "user_hash_secret", "reply_after_write", "duplicate_capacity_per_user",
        "max_subscribers", "max_subscribers_per_user", "collector_url", "collector_token_env",
        "forward_spool_dir", "forward_spool_bytes", "forward_when_full", "forward_retry_max",
        "accept_all_schemas", "audit", "audit_required", "consent_file",
        "forward_timeout",
    }  # fmt: skip
    for name, trait in traits.items():
        assert isinstance(trait, (Int, Float, List, Bool, Enum, Unicode))
        assert "default" in (trait.help or ""), name
        assert len(trait.help) > 80, name


def test_limit_defaults() -> None:
    app = TelemetryExtension()
    assert (app.max_body_size, app.max_batch_events, app.max_event_size) == (1 << 20, 500, 32 << 10)


def test_packaging_installs_the_schemas_and_enables_the_extension() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    shared = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["schemas"] == f"share/jupyter/telemetry/schemas/{NAME}"
    assert shared["jupyter-config/jupyter_server_config.d"] == "etc/jupyter/jupyter_server_config.d"
    enabling = json.loads(
        (ROOT / "jupyter-config/jupyter_server_config.d" / f"{NAME}.json").read_text()
    )
    assert enabling == {"ServerApp": {"jpserver_extensions": {NAME: True}}}


def jupyter_server_extension(tmp_path: Path, *args: str) -> str:
    """Run `jupyter server extension ...` with a private user config dir; return its output."""
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path), "JUPYTER_PLATFORM_DIRS": "0"}
    command = [sys.executable, "-m", "jupyter_server", "extension", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)  # without colours


@pytest.mark.e2e  # four runs of jupyter_server's command line, each loads every extension
def test_jupyter_server_extension_enable_disable_list(tmp_path: Path) -> None:
    listed = jupyter_server_extension(tmp_path, "list")
    assert f"{NAME} enabled" in listed
    assert f"{NAME} {__version__} OK" in listed
    # jupyter_server toggles --user only what the user config already names (true of any extension)
    user_config = tmp_path / "jupyter_server_config.d" / f"{NAME}.json"
    user_config.parent.mkdir()
    user_config.write_text(json.dumps({"ServerApp": {"jpserver_extensions": {NAME: True}}}))
    jupyter_server_extension(tmp_path, "disable", "--user", NAME)
    assert json.loads(user_config.read_text())["ServerApp"]["jpserver_extensions"] == {NAME: False}
    assert f"{NAME} disabled" in jupyter_server_extension(tmp_path, "list")
    jupyter_server_extension(tmp_path, "enable", "--user", NAME)
    assert json.loads(user_config.read_text())["ServerApp"]["jpserver_extensions"] == {NAME: True}
