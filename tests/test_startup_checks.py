"""What the collector, the extension and the handlers check at start: a config that fails stops
them with where and why; an allow-list that drops the user `record_user` asks for is named in
one WARNING; a handler that cannot be built leaves nothing behind for `logging.shutdown`."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from traitlets.config import Config

from jupyter_telemetry_ext import HubEventHandler
from jupyter_telemetry_ext.hub.collector import TelemetryCollector
from tests.servers import (
    Process,
    Server,
    free_port,
    jupyter_environment,
    log_tail,
    refused_start,
    wait_until,
)

NOTEBOOK = "https://events.jupyter.org/jupyter_telemetry_ext/notebook"
CELL = "https://events.jupyter.org/jupyter_telemetry_ext/cell"
CONTENTS = "https://events.jupyter.org/jupyter_server/contents_service/v1"
HUB_ACTION = "https://schema.jupyter.org/jupyterhub/events/server-action"
UNSET = "TELEMETRY_TEST_UNSET_DB"  # a variable no test sets
NOT_KEPT = "but the allow-list does not keep the category user-identifier"
FAILING_HANDLER = f"""\
from jupyter_telemetry_ext import PostgresEventHandler
c.TelemetryCollector.record_user = "hashed"
c.EventLog.handlers = [PostgresEventHandler("env:{UNSET}")]
c.EventLog.allowed_schemas = {{"{NOTEBOOK}": {{}}}}
"""


def collect(tmp_path: Path, config: str) -> subprocess.CompletedProcess[str]:
    """Run `jupyter telemetry collect` with `config` (on a free port, were it to start)."""
    path = tmp_path / "telemetry_config.py"
    path.write_text(config, "utf-8")
    command = [sys.executable, "-m", "jupyter_telemetry_ext.cli.main", "collect", "--config",
               str(path), "--url", f"http://127.0.0.1:{free_port()}"]  # fmt: skip
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip


@pytest.mark.parametrize(
    ("config", "line", "error"),
    [
        (FAILING_HANDLER, 3, f"StoreError: no PostgreSQL URL: the environment variable {UNSET}"),
        ("c.EventLog.allowed_schemas = {}\nc.EventLog.handlers = [handler]\n", 2, "NameError"),
    ],
)
def test_a_config_that_raises_stops_the_collector(
    tmp_path: Path, config: str, line: int, error: str
) -> None:
    """It used to log the traceback and serve without the file: every event "filtered"."""
    result = collect(tmp_path, config)
    assert result.returncode == 2, result.stderr
    path = tmp_path / "telemetry_config.py"
    failed = f"the config file failed, so nothing would be recorded: {path}, line {line}: {error}"
    assert failed in result.stderr
    assert "listening" not in result.stderr


def test_an_eventlog_that_cannot_be_built_stops_the_collector(tmp_path: Path) -> None:
    result = collect(tmp_path, 'c.EventLog.handlers = ["not a handler"]\n')
    assert result.returncode == 2, result.stderr
    assert "the EventLog cannot be built from the config" in result.stderr
    assert "listening" not in result.stderr


def test_an_invalid_option_stops_the_collector(tmp_path: Path) -> None:
    result = collect(tmp_path, 'c.TelemetryCollector.rate_limit = "fast"\n')
    assert result.returncode == 1, result.stderr
    assert "Bad config encountered during initialization: The 'rate_limit' trait" in result.stderr
    assert "listening" not in result.stderr


def test_a_handler_that_cannot_be_built_leaves_nothing_for_logging_shutdown() -> None:
    """A failed PostgresEventHandler crashed `logging.shutdown` at exit (no `_cond`)."""
    code = f"""
from jupyter_telemetry_ext import HubEventHandler, PostgresEventHandler
for build in (lambda: PostgresEventHandler("env:{UNSET}"),
              lambda: HubEventHandler(record_user="hashed")):
    try:
        build()
    except Exception as e:
        kept = e  # the traceback keeps the half-built object alive until the exit
        print(type(e).__name__)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert result.stdout.split() == ["StoreError", "ValueError"]
    assert result.returncode == 0
    assert result.stderr == ""


def collector_warnings(config: Config) -> list[str]:
    """Return the WARNING lines the collector logs while it builds its EventLog."""
    collector = TelemetryCollector(config=config)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    collector.log.addHandler(handler)
    try:
        collector._eventlog().close()
    finally:
        collector.log.removeHandler(handler)
    return stream.getvalue().splitlines()


USER = {"allowed_categories": ["unrestricted", "user-identifier"]}


@pytest.mark.parametrize(
    ("record_user", "allowed", "named"),
    [
        (
            "hashed",
            {NOTEBOOK: {}, CELL: USER, CONTENTS: {"allowed_properties": ["action"]}},
            [CONTENTS, NOTEBOOK],
        ),
        ("username", [NOTEBOOK, CELL], [CELL, NOTEBOOK]),  # a list of ids: unrestricted only
        ("hashed", {NOTEBOOK: USER, CELL: USER}, []),
        ("none", {NOTEBOOK: {}}, []),  # no user asked for: nothing lost
    ],
)
def test_the_collector_names_the_allowed_schemas_whose_user_is_not_kept(
    record_user: str, allowed: object, named: list[str]
) -> None:
    config = Config()
    config.TelemetryCollector.record_user = record_user
    config.TelemetryCollector.user_hash_secret = "key-of-the-tests"
    config.EventLog.allowed_schemas = allowed
    warnings = [line for line in collector_warnings(config) if NOT_KEPT in line]
    if not named:
        assert warnings == []
        return
    [warning] = warnings
    assert warning.endswith(": " + ", ".join(named))
    assert f"record_user = {record_user!r}" in warning


def test_unrestricted_only_drops_the_user_and_the_collector_says_so() -> None:
    config = Config()
    config.TelemetryCollector.record_user = "username"
    config.EventLog.allowed_schemas = {NOTEBOOK: USER}
    config.EventLog.unrestricted_only = True
    [warning] = [line for line in collector_warnings(config) if NOT_KEPT in line]
    assert warning.endswith(": " + NOTEBOOK)


def test_hub_event_handler_names_the_hub_schemas_whose_user_is_not_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("jupyterhub")
    from jupyter_telemetry_ext.hub.events import HubEventHandler

    with caplog.at_level(logging.WARNING, "jupyter_telemetry_ext.hub.events"):
        HubEventHandler(record_user="username", allowed_schemas=[HUB_ACTION]).close()
        HubEventHandler(record_user="username", allowed_schemas={HUB_ACTION: USER}).close()
    [warning] = [r.getMessage() for r in caplog.records if NOT_KEPT in r.getMessage()]
    assert warning.endswith(": " + HUB_ACTION)


def test_the_collector_passes_auth_cache_max_age_to_hubauth() -> None:
    pytest.importorskip("jupyterhub")
    from jupyter_telemetry_ext.core.eventlog import EventLog
    from jupyter_telemetry_ext.hub.collector_routes import HUB_AUTH_SETTING, make_app

    assert TelemetryCollector().auth_cache_max_age == 60  # JupyterHub's HubAuth: 300
    collector = TelemetryCollector(auth_cache_max_age=5, url="http://127.0.0.1:1")
    collector.eventlog = EventLog()
    hub_auth = make_app(collector).settings[HUB_AUTH_SETTING]
    assert (hub_auth.cache_max_age, hub_auth.cache.max_age) == (5, 5)


# The extension, in a real `jupyter server`.

SERVER_FAILING = f"""\
from jupyter_telemetry_ext import PostgresEventHandler
c.EventLog.handlers = [PostgresEventHandler("env:{UNSET}")]
"""


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("name", "config", "error"),
    [
        ("jupyter_server_config.py", SERVER_FAILING,
         f"line 2: StoreError: no PostgreSQL URL: the environment variable {UNSET} is empty"),
        ("jupyter_jupyter_telemetry_ext_config.py", "c.EventLog.allowed_schemas = [\n  1 / 0]\n",
         "line 2: ZeroDivisionError: division by zero"),
    ],
)  # fmt: skip
def test_a_server_whose_config_raises_exits_non_zero(
    tmp_path: Path, name: str, config: str, error: str
) -> None:
    """jupyter_server logs the traceback and starts without the file; the extension stops it."""
    jupyter_environment(tmp_path)  # makes the config folder
    path = tmp_path / "config" / name
    path.write_text(config, "utf-8")
    written = refused_start(tmp_path)
    assert f"Telemetry: the config cannot be used, the server stops: {path}, {error}" in written
    assert "is running at" not in written


@pytest.mark.e2e
def test_a_server_with_an_invalid_telemetry_option_exits_non_zero(tmp_path: Path) -> None:
    """jupyter_server logs the TraitError and loads the extension with part of its config."""
    written = refused_start(tmp_path, "--TelemetryExtension.rate_limit=fast")
    assert "the server stops: an option is invalid: The 'rate_limit' trait" in written
    assert "is running at" not in written


EXTENSION_CONFIG = f"""\
import logging
c.EventLog.handlers = [logging.FileHandler("events.jsonl")]
c.TelemetryExtension.record_user = "hashed"
c.TelemetryExtension.user_hash_secret = "key-of-the-tests"
c.EventLog.allowed_schemas = {{"{NOTEBOOK}": {{}}, "{CELL}": {USER!r}}}
"""


@pytest.mark.e2e
def test_the_extension_names_the_allowed_schemas_whose_user_is_not_kept(tmp_path: Path) -> None:
    """Also: a config file that sets nothing (all commented out) is not a failure."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "jupyter_server_config.py").write_text(EXTENSION_CONFIG, "utf-8")
    (tmp_path / "config" / "jupyter_config.py").write_text("# c.ServerApp.port = 8888\n")
    with Server(tmp_path) as server:
        lines = wait_until(
            lambda: [line for line in server.log.read_text("utf-8").splitlines()
                     if NOT_KEPT in line],
            20,
            lambda: log_tail(server.log),
        )  # fmt: skip
    [warning] = lines
    assert "WARNING" in warning or "[W " in warning
    assert warning.endswith(": " + NOTEBOOK)


@pytest.mark.e2e
def test_the_start_log_counts_only_the_allowed_server_schemas_as_recorded(tmp_path: Path) -> None:
    """jupyter_server's own schemas are listened to, but recorded only when allowed."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "jupyter_server_config.py").write_text(
        "import logging\n"
        'c.EventLog.handlers = [logging.FileHandler("events.jsonl")]\n'
        'c.EventLog.allowed_schemas = ["https://events.jupyter.org/jupyter_server/kernel_actions/v1"]\n'
    )
    with Server(tmp_path) as server:
        [line] = wait_until(
            lambda: [line for line in server.log.read_text("utf-8").splitlines()
                     if "server's" in line and "event schemas" in line],
            20,
            lambda: log_tail(server.log),
        )  # fmt: skip
    assert "recording 1 of the server's" in line
    assert "(those in c.EventLog.allowed_schemas)" in line


@pytest.mark.e2e
@pytest.mark.parametrize("handlers", ["[]", '[logging.FileHandler("events.jsonl")]'])
def test_allowed_events_written_nowhere_stop_the_server(tmp_path: Path, handlers: str) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "jupyter_server_config.py").write_text(
        "import logging\n"
        'c.EventLog.allowed_schemas = ["https://events.jupyter.org/jupyter_telemetry_ext/notebook"]\n'
        f"c.EventLog.handlers = {handlers}\n"
    )
    if handlers != "[]":
        with Server(tmp_path) as server:
            assert server.request("GET", "/api/telemetry/schemas")[0] == 200
            assert "written nowhere" not in server.log.read_text("utf-8")
        return
    written = refused_start(tmp_path)
    assert "the server stops: c.EventLog.allowed_schemas allows events, but" in written
    assert "c.EventLog.handlers is empty" in written
    assert "Traceback" not in written


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every user may enter (as /tmp is), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="telemetry-open-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def _start_warnings(tmp_path: Path, log: Path) -> list[str]:
    """Start a server writing `log`; return its start-up lines about who can read the log."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "jupyter_server_config.py").write_text(
        "import logging\n"
        'c.EventLog.allowed_schemas = ["https://events.jupyter.org/jupyter_telemetry_ext/notebook"]\n'
        f"c.EventLog.handlers = [logging.FileHandler({str(log)!r})]\n"
    )
    with Server(tmp_path) as server:
        # the start hooks run in the event loop's first pass, before any request is served
        assert server.request("GET", "/api/telemetry/schemas")[0] == 200
        text = server.log.read_text("utf-8")
    return [line for line in text.splitlines() if "Telemetry:" in line and str(log) in line]


@pytest.mark.e2e
@pytest.mark.parametrize("mode", [0o644, 0o600])
def test_a_log_every_user_can_read_is_warned_of_at_start(
    tmp_path: Path, open_folder: Path, mode: int
) -> None:
    log = open_folder / "events.jsonl"
    log.touch(mode)
    log.chmod(mode)
    warned = _start_warnings(tmp_path, log)
    if mode == 0o600:
        assert warned == []
    else:
        [line] = warned
        assert "[W " in line
        assert "every user of this machine can read the log" in line
        assert "(mode 644," in line


@pytest.mark.e2e
@pytest.mark.skipif(os.geteuid() != 0, reason="gives a folder to another user")
def test_a_log_in_a_folder_of_another_user_is_warned_of_at_start(
    tmp_path: Path, open_folder: Path
) -> None:
    theirs = open_folder / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)  # nobody's
    [line] = _start_warnings(tmp_path, theirs / "events.jsonl")
    assert "belongs to user id 65534, who can read the log or replace it" in line


def test_a_placeholder_key_stops_the_collector(tmp_path: Path) -> None:
    """The docs' `user_hash_secret = "..."`, copied as is, is no key: the collector says so."""
    result = collect(tmp_path, 'c.TelemetryCollector.user_hash_secret = "..."\n')
    assert result.returncode == 1, result.stderr
    assert "a key of at least 16 characters is needed (got 3)" in result.stderr
    assert "secrets.token_hex(32)" in result.stderr
    assert "listening" not in result.stderr


def test_a_placeholder_key_is_refused_by_the_hub_event_handler() -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        HubEventHandler(record_user="hashed", user_hash_secret="...")


@pytest.mark.e2e
def test_a_server_with_a_short_key_exits_non_zero(tmp_path: Path) -> None:
    environment = jupyter_environment(tmp_path)
    command = [sys.executable, "-m", "jupyter_server", "--ip=127.0.0.1",
               f"--port={free_port()}", "--no-browser", "--allow-root",
               "--TelemetryExtension.user_hash_secret=short"]  # fmt: skip
    server = Process(command, tmp_path, environment, tmp_path / "server.log")
    try:
        assert server.process.wait(60) == 1, log_tail(server.log)
    finally:
        server.kill()
    assert "a key of at least 16 characters is needed" in server.log.read_text("utf-8")
