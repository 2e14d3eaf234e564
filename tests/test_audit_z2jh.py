"""The zero-to-jupyterhub values of docs/audit.md, as a single-user server of the hub reads them.

The documented `singleuser` values (block `z2jh_audit`) are laid out as z2jh lays them out: the
`data:` mapping as the JSON file at its `mountPath`, the `extraEnv` in the environment, the
folder they name moved into the test's folder. The user's own config (`~/.jupyter`) turns the
extension and the audit off: the documented values must win, and the server audit executions
and terminals, fail closed. The folder must also come first in Jupyter's config path, above the
environment's `etc/jupyter`, which the user can write in the Jupyter docker stacks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jupyter_core.paths import jupyter_config_path

from tests.hubserver import doc_block
from tests.servers import Server

EXECUTION = "https://events.jupyter.org/jupyter_telemetry_ext/execution"
TERMINAL = "https://events.jupyter.org/jupyter_telemetry_ext/terminal"
ETC = "/etc/jupyter-audit"  # where the values mount the file, and the config folder they name
# The sink the hub's servers do not have (they forward to the collector): a file, in the
# admin's folder beside the mounted file.
SINK = """\
import logging
c.EventLog.handlers = [logging.FileHandler({sink!r}, encoding="utf-8")]
c.EventLog.allowed_schemas = {{
    {execution!r}: {{"allowed_categories": ["user-code"]}},
    {terminal!r}: {{"allowed_categories": ["user-code"]}},
}}
"""
USERS_OWN = {
    "ServerApp": {"jpserver_extensions": {"jupyter_telemetry_ext": False}},
    "TelemetryExtension": {"audit": [], "audit_required": False},
}

pytestmark = pytest.mark.e2e


def test_the_documented_values_audit_whatever_the_user_configures(tmp_path: Path) -> None:
    """The server started with the values and a user's config that turns all off audits both."""
    values = yaml.safe_load(doc_block("audit.md", "z2jh_audit"))["singleuser"]
    environment = dict(values["extraEnv"])
    assert environment.pop("JUPYTER_CONFIG_PATH") == ETC
    assert set(environment) == {"JUPYTER_TELEMETRY_COLLECTOR_URL"}  # no collector here
    etc = tmp_path / "etc"
    for extra in values["extraFiles"].values():
        mount = Path(extra["mountPath"])
        assert mount.suffix == ".json"  # z2jh writes `data:` as JSON for a .json mountPath
        path = etc / mount.relative_to(ETC)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(extra["data"]), "utf-8")
    sink = tmp_path / "audit.jsonl"
    config = SINK.format(sink=str(sink), execution=EXECUTION, terminal=TERMINAL)
    (etc / "jupyter_server_config.py").write_text(config, "utf-8")
    writable = tmp_path / "writable"
    writable.mkdir()
    (writable / "jupyter_server_config.json").write_text(json.dumps(USERS_OWN), "utf-8")
    env = {"JUPYTER_CONFIG_PATH": str(etc), "JUPYTER_CONFIG_DIR": str(writable)}
    with Server(tmp_path, env=env) as server:  # answers api/telemetry/schemas: the extension is on
        log = server.log.read_text("utf-8")
    assert "Telemetry: auditing code execution through" in log
    assert "Telemetry: auditing terminal commands" in log
    assert "Telemetry: audit_required: code execution and terminal commands run only once" in log


def test_the_documented_folder_comes_first_in_the_config_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Above the user's folder and the environment's, whichever Jupyter prefers of those two."""
    values = yaml.safe_load(doc_block("audit.md", "z2jh_audit"))["singleuser"]
    for prefer_environment in ("1", "0"):
        monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", prefer_environment)
        monkeypatch.setenv("JUPYTER_CONFIG_PATH", values["extraEnv"]["JUPYTER_CONFIG_PATH"])
        assert jupyter_config_path()[0] == ETC
