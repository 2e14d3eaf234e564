"""`jupyter telemetry`: the real command, run as a user would."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from jupyter_telemetry_ext.cli.validate import RC
from tests.conftest import billion_laughs, make_schema

JUPYTER = str(Path(sys.executable).with_name("jupyter"))


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JUPYTER, "telemetry", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def capsule(stamp: str, schema: str = "a/b", **data: Any) -> str:
    head = {
        "__timestamp__": stamp,
        "__schema__": schema,
        "__schema_version__": 1,
        "__metadata_version__": 1,
    }
    return json.dumps({**head, **data}) + "\n"


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    (tmp_path / "events.log.2").write_text(capsule("2026-11-25T09:00:00.000000Z", action="open"))
    (tmp_path / "events.log.1").write_text(capsule("2026-11-26T09:00:00.000000Z", action="save"))
    (tmp_path / "events.log").write_text(
        capsule("2026-11-27T09:00:00.000000Z", action="close", path=None)
        + "{broken json\n"
        + capsule("2026-11-27T10:30:00.000000Z", "c/d", n=3)
    )
    return tmp_path / "events.log"


def test_validate_exit_codes(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.json"
    good.write_text(yaml.safe_dump(make_schema("x/good")))
    bad.write_text(json.dumps({**make_schema("x/bad"), "title": ""}))
    ok = run("validate", str(good), cwd=tmp_path)
    assert (ok.returncode, "1 valid, 0 with problems" in ok.stdout) == (0, True)
    invalid = run("validate", str(good), str(bad), cwd=tmp_path)
    assert invalid.returncode == 1
    assert f"{bad}: The schema failed to validate: title: is required" in invalid.stderr
    missing = run("validate", str(good), str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert missing.returncode == 2
    assert "nope.yaml: Schema file not present" in missing.stderr
    assert "Traceback" not in invalid.stderr + missing.stderr


UNTITLED = {k: v for k, v in make_schema("https://example.org/untitled").items() if k != "title"}


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        (None, RC.UNPARSABLE, "x.yaml: Schema file not present"),
        ("$id: [open\n", RC.UNPARSABLE, "x.yaml: Could not deserialize the schema: not valid YAML"),
        ("418 i'm a teapot\n", RC.UNPARSABLE, "schema into a mapping: got str"),
        (yaml.safe_dump(UNTITLED), RC.INVALID, "failed to validate: title: is required"),
        (yaml.safe_dump(make_schema(__secret={"type": "string"})), RC.INVALID,
         "x.yaml: The schema failed to validate: properties.__secret: property names starting"),
    ],
)  # fmt: skip
def test_validate_bad_input_names_the_file_and_the_key(
    tmp_path: Path, content: str | None, code: int, message: str
) -> None:
    if content is not None:
        (tmp_path / "x.yaml").write_text(content)
    result = run("validate", "x.yaml", cwd=tmp_path)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "0 valid, 1 with problems" in result.stdout


def test_validate_takes_schema_text_and_never_echoes_the_schema(tmp_path: Path) -> None:
    document = make_schema("https://example.org/text", email={"type": "string"})
    document["properties"]["email"]["examples"] = ["ada@example.org"]
    result = run("validate", yaml.safe_dump(document), cwd=tmp_path)
    assert result.returncode == RC.OK, result.stderr
    assert "<text>: This schema is valid (https://example.org/text version 1)" in result.stdout
    assert not result.stderr
    assert "ada@example.org" not in result.stdout
    broken = run("validate", '{"$id": ', cwd=tmp_path)
    assert broken.returncode == RC.UNPARSABLE
    assert "<text>: Could not deserialize the schema: not valid YAML" in broken.stderr


def test_validate_with_eventlogger_rules(tmp_path: Path) -> None:
    (tmp_path / "untitled.yaml").write_text(yaml.safe_dump(UNTITLED))
    (tmp_path / "plain-id.yaml").write_text(yaml.safe_dump(make_schema("x/plain")))
    untitled = run("validate", "untitled.yaml", cwd=tmp_path)
    assert untitled.returncode == RC.INVALID
    assert untitled.stderr.strip().endswith(
        "title: is required and must be a non-empty string (for jupyter_events' EventLogger, "
        "where it is optional, add --eventlogger)"
    )
    logger = run("validate", "--eventlogger", "untitled.yaml", "plain-id.yaml", cwd=tmp_path)
    assert logger.returncode == RC.INVALID
    assert "untitled.yaml: This schema is valid" in logger.stdout
    assert "plain-id.yaml: The schema failed to validate: $id: " in logger.stderr


def test_help_starts_with_the_usage(tmp_path: Path) -> None:
    result = run("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: jupyter-telemetry SUBCOMMAND [OPTIONS]\n")


@pytest.mark.timeout(90)
def test_validate_reports_a_yaml_bomb_at_once(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(make_schema("x/good")))
    (tmp_path / "laughs.yaml").write_text(billion_laughs(10))
    result = run("validate", "good.yaml", "laughs.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "laughs.yaml: Could not deserialize the schema: not valid YAML: an alias (*a0)" in (
        result.stderr
    )
    assert "1 valid, 1 with problems" in result.stdout


def test_validate_refuses_conflicting_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(make_schema("x/same")))
    (tmp_path / "b.yaml").write_text(
        yaml.safe_dump(make_schema("x/same", other={"type": "string"}))
    )
    result = run("validate", "a.yaml", "b.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "already registered" in result.stderr


def test_events_table_in_order_across_rotated_files(logs: Path) -> None:
    result = run("events", str(logs), cwd=logs.parent)
    rows = result.stdout.splitlines()[2:]
    assert [r.split()[3] for r in rows[:3]] == ["open", "save", "close"]
    assert "n=3" in rows[3]
    assert result.returncode == 1
    assert f"{logs}:2: not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_events_filters_and_json(logs: Path) -> None:
    result = run(
        "events", str(logs), "--schema", "a/b", "--since", "2026-11-26", "--json", cwd=logs.parent
    )
    actions = [json.loads(line)["action"] for line in result.stdout.splitlines()]
    assert actions == ["save", "close"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["events", "missing.log"], "missing.log: cannot read"),
        (["events", "events.log", "--since", "yesterday"], "--since 'yesterday'"),
        (["events"], "name exactly one event log file"),
        (["stats"], "name exactly one event log file"),
        (["validate"], "name one or more schema files"),
        ([], "name a subcommand"),
        (["stats", "--bogus", "1", "events.log"], "unknown option --bogus"),
        (["erase", "--user", "ada", "--confg", "x.py"], "unknown option --confg"),
        (["stats", "."], ".: cannot read: a directory"),
        (["events", "."], ".: cannot read: a directory"),
        (["audit", "check", "."], ".: cannot read: a directory"),
        # A bad value names its own option, and exits 2 as every bad option does.
        (["prune", "--older-than", "9x", "events.log"], "--older-than '9x'"),
        (["audit", "check", "--idle", "5q", "events.log"], "--idle '5q'"),
        (["export", "--format", "csv", "--out", "x", "--until", "?", "events.log"], "--until '?'"),
        (["stats", "--by", "week", "events.log"], "stats: The 'by' trait"),
    ],
)
def test_bad_input_is_one_line_not_a_traceback(logs: Path, args: list[str], message: str) -> None:
    result = run(*args, cwd=logs.parent)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_stats_per_period_schema_version_action(logs: Path) -> None:
    result = run("stats", str(logs), "--json", cwd=logs.parent)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {(r["period"], r["schema"], r["action"], r["count"]) for r in rows} == {
        ("2026-11-25", "a/b", "open", 1),
        ("2026-11-26", "a/b", "save", 1),
        ("2026-11-27", "a/b", "close", 1),
        ("2026-11-27", "c/d", "", 1),
    }
    table = run("stats", str(logs), "--by", "all", cwd=logs.parent)
    assert "all     a/b     1        close   1" in table.stdout


TERMINAL = "\x1b]0;owned\x07\x1b[2J\x9b31m\x7f\nforged"
RAW = ("\x1b", "\x07", "\x9b", "\x7f")


@pytest.mark.parametrize("command", [["events"], ["stats"], ["stats", "--by", "all"]])
def test_recorded_text_cannot_drive_the_terminal(tmp_path: Path, command: list[str]) -> None:
    log = tmp_path / "events.log"
    log.write_text(
        capsule("2026-11-27T09:00:00.000000Z", "x/" + TERMINAL, action="go" + TERMINAL,
                **{"key" + TERMINAL: "value" + TERMINAL})
    )  # fmt: skip
    result = run(*command, str(log), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not any(char in result.stdout for char in RAW), repr(result.stdout)
    assert "go\\x1b]0;owned\\x07" in result.stdout  # shown escaped, not dropped
    assert len(result.stdout.strip().splitlines()) == 3  # header, rule, one row
    as_json = run(*command, "--json", str(log), cwd=tmp_path)
    assert not any(char in as_json.stdout for char in RAW)


def test_validate_prints_a_property_name_escaped(tmp_path: Path) -> None:
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(make_schema("x/odd", **{"k" + TERMINAL: {"type": "nonsense"}})))
    result = run("validate", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert not any(char in result.stderr for char in RAW), repr(result.stderr)
    assert "properties.k\\x1b]0;owned" in result.stderr


def test_help_for_every_command(tmp_path: Path) -> None:
    for command in ("validate", "schemas", "events", "stats"):
        result = run(command, "--help", cwd=tmp_path)
        assert result.returncode == 0
        assert "Traceback" not in result.stderr


def next_action(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """Read the next JSON line the command prints, failing after `timeout` seconds."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), "no output in time"
    return str(json.loads(proc.stdout.readline())["action"])


def test_follow_prints_new_events_across_rotation(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    path.write_text(capsule("2026-11-27T09:00:00.000000Z", action="old"))
    proc = subprocess.Popen(
        [JUPYTER, "telemetry", "events", str(path), "--follow", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert next_action(proc) == "old"
        with path.open("a") as f:
            f.write(capsule("2026-11-27T09:01:00.000000Z", action="appended"))
        assert next_action(proc) == "appended"
        path.rename(tmp_path / "events.log.1")
        time.sleep(0.7)
        path.write_text(capsule("2026-11-27T09:02:00.000000Z", action="after-rotation"))
        assert next_action(proc) == "after-rotation"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_schemas_lists_discovered_with_allowed_from_config(tmp_path: Path) -> None:
    data = tmp_path / "data" / "telemetry" / "schemas" / "mine"
    data.mkdir(parents=True)
    (data / "v1.yaml").write_text(
        yaml.safe_dump({**make_schema("my.ext/clicks"), "frontend": True})
    )
    (data / "broken.yaml").write_text("title: [")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "other.json").write_text(json.dumps(make_schema("my.ext/other")))
    config = tmp_path / "config"
    config.mkdir()
    (config / "jupyter_server_config.py").write_text(
        'c.EventLog.allowed_schemas = ["my.ext/clicks"]\n'
        f"c.TelemetryExtension.schema_paths = [{str(extra)!r}]\n"
    )
    env = {
        **os.environ,
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_CONFIG_DIR": str(config),
    }
    result = run("schemas", "--json", cwd=tmp_path, env=env)
    rows = {r["id"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert (rows["my.ext/clicks"]["allowed"], rows["my.ext/clicks"]["frontend"]) == (True, True)
    assert (rows["my.ext/other"]["allowed"], rows["my.ext/other"]["frontend"]) == (False, False)
    assert "broken.yaml" in result.stderr


@pytest.mark.parametrize(
    ("config", "said"),
    [
        (None, "no such config file (--config)"),
        ('raise RuntimeError("boom")\n', "the config file cannot be loaded: RuntimeError: boom"),
        ('c.EventLog.allowed_schemas = {"my.ext/a": {"actions": []}}\n',
         "the config cannot be used: the rule for 'my.ext/a' has unknown keys ['actions']"),
    ],
    ids=["missing", "raises", "bad-allow-list"],
)  # fmt: skip
def test_schemas_stops_on_a_config_the_server_could_not_use(
    tmp_path: Path, config: str | None, said: str
) -> None:
    path = tmp_path / "jupyter_server_config.py"
    if config is not None:
        path.write_text(config)
    env = {**os.environ, "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    result = run("schemas", f"--config={path}", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("jupyter telemetry: ")
    assert f"{path}: " in line
    assert said in line
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["stats", "--by", "week"],
         ("The 'by' trait of a StatsCommand instance expected any of ['day', 'hour', 'all', "
         "'user', 'schema'], not the str 'week'.")),
        (["events", "--LogCommand.json_output=maybe"],
         ("The 'json_output' trait of an EventsCommand instance expected a boolean, not the str "
         "'maybe'.")),
        (["validate", "--ValidateCommand.eventlogger=maybe"],
         ("The 'eventlogger' trait of a ValidateCommand instance expected a boolean, not the str "
         "'maybe'.")),
    ],
    ids=["stats-by", "events-bool", "validate-bool"],
)  # fmt: skip
def test_a_bad_option_value_is_one_line_and_exit_status_2(
    logs: Path, args: list[str], said: str
) -> None:
    result = run(*args, str(logs), cwd=logs.parent)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == f"jupyter telemetry: {args[0]}: {said}\n"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["prune", "--older-than", "banana"], "--older-than 'banana': use"),
        (["audit", "check", "--idle", "banana"], "--idle 'banana': use"),
        (["export", "--format", "csv", "--out", "ds", "--until", "banana"],
         "export: --until 'banana': use"),
        (["export", "--format", "csv", "--out", "ds", "--since", "banana"],
         "export: --since 'banana': use"),
    ],
    ids=["prune", "audit-idle", "export-until", "export-since"],
)  # fmt: skip
def test_a_bad_time_names_its_own_option(logs: Path, args: list[str], said: str) -> None:
    result = run(*args, str(logs), cwd=logs.parent)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("jupyter telemetry: ")
    assert said in result.stderr
    assert result.stdout == ""


@pytest.fixture
def clean_log(tmp_path: Path) -> Path:
    """A log of two good events (no bad line: the exit status is about what matched)."""
    path = tmp_path / "clean.log"
    path.write_text(capsule("2026-11-26T09:00:00.000000Z", action="open")
                    + capsule("2026-11-27T09:00:00.000000Z", "c/d", action="save"))  # fmt: skip
    return path


@pytest.mark.parametrize("command", ["events", "stats"])
@pytest.mark.parametrize("output", [[], ["--json"]], ids=["table", "json"])
def test_events_and_stats_exit_1_when_the_schema_matches_nothing(
    clean_log: Path, command: str, output: list[str]
) -> None:
    result = run(command, str(clean_log), "--schema", "nosuch", *output, cwd=clean_log.parent)
    assert result.returncode == 1, result.stderr
    assert (
        result.stderr
        == f"jupyter telemetry: {command}: no events of schema 'nosuch' in {clean_log}\n"
    )
    assert "nosuch" not in result.stdout


@pytest.mark.parametrize("command", ["events", "stats"])
def test_events_and_stats_exit_1_when_since_matches_nothing(clean_log: Path, command: str) -> None:
    result = run(command, str(clean_log), "--since", "2h", "--schema", "a/b", "--schema", "c/d",
                 cwd=clean_log.parent)  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert f"{command}: no events of schemas 'a/b', 'c/d' at or after " in result.stderr
    assert result.stderr.rstrip().endswith(f" in {clean_log}")
    found = run(command, str(clean_log), "--schema", "c/d", cwd=clean_log.parent)
    assert (found.returncode, found.stderr) == (0, "")


@pytest.mark.parametrize("command", ["events", "stats"])
def test_events_and_stats_of_an_empty_log_say_so_and_exit_0(tmp_path: Path, command: str) -> None:
    (tmp_path / "new.log").write_text("")
    result = run(command, "new.log", "--json", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == f"jupyter telemetry: {command}: new.log holds no events\n"


def test_prune_exits_1_when_no_event_is_that_old(clean_log: Path) -> None:
    before = clean_log.read_bytes()
    result = run("prune", "--older-than", "2026-01-01", str(clean_log), cwd=clean_log.parent)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "jupyter telemetry: prune: no events received before 2026-01-01T00:00:00+00:00 in "
        f"{clean_log}: nothing was removed\n"
    )
    assert clean_log.read_bytes() == before
    pruned = run("prune", "--older-than", "2026-11-27", str(clean_log), cwd=clean_log.parent)
    assert (pruned.returncode, pruned.stdout.split()[:2]) == (0, ["removed", "1"])
