"""Schema discovery: the files found, and what a real server registers from the data paths."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.core.discovery import (
    discover,
    register_discovered,
    schema_files,
    schema_folders,
)
from tests.conftest import (
    FRONTEND_ID,
    SHIPPED_SCHEMAS,
    billion_laughs,
    frontend_schema,
    make_schema,
)


def write(path: Path, document: Any) -> Path:
    """Write a schema file (JSON is valid YAML too), creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document), "utf-8")
    return path


def test_schema_files_are_found_in_subfolders_by_suffix(tmp_path: Path) -> None:
    expected = [
        write(tmp_path / "a.yaml", make_schema("a")),
        write(tmp_path / "b" / "v1.yml", make_schema("b")),
        write(tmp_path / "b" / "v2.json", make_schema("b", 2)),
    ]
    write(tmp_path / "notes.txt", "not a schema")
    write(tmp_path / ".hidden.yaml", make_schema("hidden"))
    write(tmp_path / ".ipynb_checkpoints" / "a-checkpoint.yaml", make_schema("a"))
    assert schema_files(tmp_path) == expected
    assert schema_files(tmp_path / "a.yaml") == [expected[0]]
    assert schema_files(tmp_path / "missing") == []


def test_the_same_file_is_found_once(tmp_path: Path) -> None:
    schema = write(tmp_path / "x" / "a.yaml", make_schema("a"))
    assert list(discover([tmp_path, tmp_path / "x", schema])) == [schema]


def test_folders_are_the_jupyter_data_paths_then_the_extra_ones(tmp_path: Path) -> None:
    folders = schema_folders([tmp_path])
    assert folders[-1] == tmp_path
    assert all(folder.parts[-2:] == ("telemetry", "schemas") for folder in folders[:-1])
    assert len(folders) > 1


def test_a_broken_file_is_logged_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "a.yaml", make_schema("a"))
    broken = write(tmp_path / "broken.yaml", "$id: [unclosed")
    invalid = write(tmp_path / "invalid.json", {**make_schema("c"), "version": None})
    eventlog = EventLog()
    with caplog.at_level(logging.WARNING):
        found = register_discovered(eventlog, [tmp_path], logging.getLogger("test"))
    assert [schema.id for schema in found] == ["a"]
    assert str(broken) in caplog.text
    assert f"{invalid}: version" in caplog.text


SERVER_RECORDED = {
    f"https://events.jupyter.org/jupyter_telemetry_ext/{name}"
    for name in ("execution", "terminal", "hub-action", "audit-stream", "audit-gap", "consent")
}


def test_the_shipped_schemas_are_valid_frontend_schemas() -> None:
    eventlog = EventLog()
    found = register_discovered(eventlog, [SHIPPED_SCHEMAS], logging.getLogger("test"))
    assert len(found) == len(schema_files(SHIPPED_SCHEMAS)) >= 4
    for schema in found:
        # The server's and the hub's own records (the audits) must never be posted by a client.
        assert schema.frontend is (schema.id not in SERVER_RECORDED), schema.id
        assert schema.document["additionalProperties"] is False, schema.id
        for name, prop in schema.document["properties"].items():
            assert prop.get("categories"), f"{schema.id}: {name} has no privacy category"


# A real server


Start = Callable[..., Any]


@pytest.fixture
def start_server(jp_configurable_serverapp: Start) -> Callable[[], EventLog]:
    """Start the server (after the test wrote its schema files); return its EventLog."""

    def start() -> EventLog:
        app = jp_configurable_serverapp()
        return app.web_app.settings["telemetry_eventlog"]  # type: ignore[no-any-return]

    return start


def ids(eventlog: EventLog) -> set[str]:
    """Return the registered schema ids."""
    return {schema.id for schema in eventlog.schemas}


def test_schemas_in_the_data_paths_are_registered(
    start_server: Callable[[], EventLog], jp_env_jupyter_path: Path, jp_data_dir: Path
) -> None:
    write(jp_env_jupyter_path / "telemetry" / "schemas" / "ext" / "v1.yaml", make_schema("env.ext"))
    write(jp_data_dir / "telemetry" / "schemas" / "mine.json", frontend_schema("user.ext"))
    assert {"env.ext", "user.ext", FRONTEND_ID} <= ids(start_server())


def test_shipped_schemas_installed_as_data_files_are_registered(
    start_server: Callable[[], EventLog], jp_env_jupyter_path: Path
) -> None:
    installed = jp_env_jupyter_path / "telemetry" / "schemas" / "jupyter_telemetry_ext"
    for path in schema_files(SHIPPED_SCHEMAS):
        write(installed / path.relative_to(SHIPPED_SCHEMAS), path.read_text("utf-8"))
    shipped = {
        schema.id
        for schema in register_discovered(EventLog(), [SHIPPED_SCHEMAS], logging.getLogger())
    }
    assert shipped <= ids(start_server())


def test_a_broken_file_never_stops_the_server(
    start_server: Callable[[], EventLog],
    jp_env_jupyter_path: Path,
    telemetry_schema_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = jp_env_jupyter_path / "telemetry" / "schemas"
    broken = write(folder / "broken.yaml", "title: [unclosed")
    # Found after example/v1.json (a folder's files come before its sub-folders'): the first wins.
    clash = write(telemetry_schema_dir / "zz" / "clash.json", {**frontend_schema(), "title": "X"})
    eventlog = start_server()
    assert FRONTEND_ID in ids(eventlog)
    log = capsys.readouterr().err  # the extension's own log handler writes to stderr
    assert f"Skipped a telemetry schema file: {broken}: not valid YAML" in log
    assert f"{clash}: $id 'test.frontend/example' version 1 is already registered" in log


@pytest.mark.timeout(60)
def test_a_yaml_bomb_is_skipped_at_start(
    start_server: Callable[[], EventLog],
    telemetry_schema_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bomb = write(telemetry_schema_dir / "laughs.yaml", billion_laughs(10))
    eventlog = start_server()
    assert FRONTEND_ID in ids(eventlog)
    assert "test.bomb/laughs" not in ids(eventlog)
    log = capsys.readouterr().err
    assert f"Skipped a telemetry schema file: {bomb}: not valid YAML: an alias (*a0)" in log


@pytest.mark.parametrize("jp_argv", [["--TelemetryExtension.schema_paths=/no/such/folder"]])
def test_a_missing_schema_path_is_a_warning(
    start_server: Callable[[], EventLog], capsys: pytest.CaptureFixture[str]
) -> None:
    start_server()
    assert "schema_paths: /no/such/folder does not exist" in capsys.readouterr().err
