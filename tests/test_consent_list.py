"""`jupyter telemetry consent list` without PostgreSQL: decisions taken on a real server,
counted from its JSON-lines log and from its decisions file; and every command on a PostgreSQL
store stops with one line, never a traceback, when psycopg cannot be imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.servers import jupyter_environment
from tests.test_consent import decide, start

# `jupyter telemetry` as run where the [postgres] extra is not installed: `import psycopg`
# raises ModuleNotFoundError, as it does there.
WITHOUT_PSYCOPG = (
    "import sys; sys.modules['psycopg'] = None\n"
    "from jupyter_telemetry_ext.cli.main import main; main()"
)
INSTALL = 'pip install "jupyter_telemetry_ext[postgres]"'
DB = "postgresql://nobody@127.0.0.1:9/nowhere"


def telemetry(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `jupyter telemetry ARGS` in a process where psycopg cannot be imported."""
    env = {k: v for k, v in jupyter_environment(cwd).items() if k != "JUPYTER_TELEMETRY_DB"}
    return subprocess.run([sys.executable, "-c", WITHOUT_PSYCOPG, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def rows(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """Return the JSON lines a command printed."""
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def decided(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A server's folder after its user decided: intro granted then declined, habits
    declined, notice shown; its log holds the consent events."""
    tmp = tmp_path_factory.mktemp("consent-list")
    with start(tmp) as server:
        for study, word in (("intro", "granted"), ("habits", "declined"),
                            ("notice", "shown"), ("intro", "declined")):  # fmt: skip
            status, reply = decide(server, study, word)
            assert status == 200, reply
    return tmp


EXPECTED = [
    {"study": "habits", "version": 1, "decision": "declined", "users": 1},
    {"study": "intro", "version": 1, "decision": "declined", "users": 1},
    {"study": "notice", "version": 1, "decision": "shown", "users": 1},
]


@pytest.mark.e2e
def test_the_python_cannot_import_psycopg(tmp_path: Path) -> None:
    """The wrapper stands for an install without the extra (else the tests below prove nothing)."""
    probe = "import sys; sys.modules['psycopg'] = None\nimport psycopg"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert "ModuleNotFoundError" in result.stderr


@pytest.mark.e2e
def test_consent_list_counts_the_latest_decisions_in_a_log(decided: Path) -> None:
    assert rows(telemetry(decided, "consent", "list", "events.jsonl", "--json")) == EXPECTED
    only = telemetry(decided, "consent", "list", "events.jsonl", "--json", "--study", "intro")
    assert rows(only) == EXPECTED[1:2]
    table = telemetry(decided, "consent", "list", "events.jsonl")
    assert table.returncode == 0, table.stderr
    assert "consenting-user" not in table.stdout  # counts only, never a name


@pytest.mark.e2e
def test_consent_list_counts_a_decisions_file(decided: Path) -> None:
    decisions = decided / "data" / "jupyter_telemetry_ext_consent.json"
    assert rows(telemetry(decided, "consent", "list", str(decisions), "--json")) == EXPECTED


@pytest.mark.e2e
def test_consent_list_says_when_there_is_no_decision(decided: Path) -> None:
    none = telemetry(decided, "consent", "list", "events.jsonl", "--study", "nosuch")
    assert (none.returncode, none.stdout) == (1, "")
    said = "jupyter telemetry: consent list: events.jsonl holds no decision on study 'nosuch'\n"
    assert none.stderr == said
    (decided / "other.jsonl").write_text("")
    empty = telemetry(decided, "consent", "list", "other.jsonl")
    assert empty.returncode == 1
    assert "holds no decision on any study" in empty.stderr
    bare = telemetry(decided, "consent", "list")
    assert bare.returncode == 2
    assert bare.stderr == "jupyter telemetry: consent list: name one event log file, or --db URL\n"


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "verb"),
    [
        (["consent", "list", "--db", DB], "consent list"),
        (["events", "--db", DB], "events"),
        (["stats", "--db", DB], "stats"),
        (["sql", "--db", DB, "SELECT 1"], "sql"),
        (["export", "--db", DB, "--user", "ann"], "export"),
        (["export", "--db", DB, "--format", "csv", "--out", "dataset"], "export"),
        (["erase", "--db", DB, "--user", "ann"], "erase"),
        (["prune", "--db", DB, "--older-than", "90d"], "prune"),
        (["audit", "check", "--db", DB], "audit check"),
    ],
)
def test_a_store_command_without_psycopg_says_which_extra(
    tmp_path: Path, args: list[str], verb: str
) -> None:
    result = telemetry(tmp_path, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    said = f"{verb}: a PostgreSQL store needs the [postgres] extra, and psycopg cannot be imported"
    assert result.stderr == f"jupyter telemetry: {said}: {INSTALL}\n"
