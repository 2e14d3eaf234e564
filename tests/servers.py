"""Helpers for the tests that run `jupyter server` or `jupyter lab` as a subprocess."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import pytest

from tests.conftest import FRONTEND_ID, frontend_schema

T = TypeVar("T")
Event = dict[str, Any]
TOKEN = "shutdown-test-token"
EXAMPLE: Event = {"schema_id": FRONTEND_ID, "version": 1}


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def jupyter_environment(tmp: Path, *, lab: bool = False) -> dict[str, str]:
    """Return os.environ with Jupyter's (for `lab`, also JupyterLab's) user folders in `tmp`."""
    folders = {
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_DATA_DIR": "data",
        "JUPYTER_RUNTIME_DIR": "runtime",
    }
    if lab:
        folders |= {
            "JUPYTERLAB_SETTINGS_DIR": "settings",
            "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
        }
    for name in folders.values():
        (tmp / name).mkdir(exist_ok=True)
    return {**os.environ, **{variable: str(tmp / name) for variable, name in folders.items()}}


def jupyter_command(
    app: str, config: Path, port: int, root: Path, token: str, *args: str
) -> list[str]:
    """Return the command line of `jupyter <app>` on 127.0.0.1:`port` with a config and token."""
    return [
        sys.executable, "-m", "jupyter", app, "--no-browser",
        f"--config={config}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        "--ServerApp.allow_root=True",  # CI runs as root
        *args,
    ]  # fmt: skip


def write_config(tmp: Path, template: str, **values: object) -> None:
    """Write the frontend test schema to tmp/schemas and `template` as the server's config."""
    schemas = tmp / "schemas"
    schemas.mkdir()
    (schemas / "example.json").write_text(json.dumps(frontend_schema()), "utf-8")
    (tmp / "config").mkdir()
    config = template.format(schemas=str(schemas), **values)
    (tmp / "config" / "jupyter_server_config.py").write_text(config, "utf-8")


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    failure: Callable[[], str] | None = None,
    interval: float = 0.1,
) -> T:
    """Return the condition's first truthy value; fail (with `failure()`) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(failure() if failure else f"still not true after {timeout} s: {condition}")
        time.sleep(interval)
    return value


def answers(url: str, headers: dict[str, str] | None = None) -> bool:
    """Return whether a GET of the (http://127.0.0.1) `url` succeeds."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310
            return True
    except OSError:
        return False


def log_tail(log: Path) -> str:
    """Return the end of a server's log."""
    return log.read_text(encoding="utf-8", errors="replace")[-3000:]


def read_events(path: Path) -> list[Event]:
    """Return the JSON lines of an events file (none if it does not exist yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


@dataclass
class SinkFile:
    """The JSON-lines file a running server's EventLog writes to, and the server's log."""

    sink: Path
    log: Path
    wait: ClassVar[float] = 20.0
    interval: ClassVar[float] = 0.1

    def events(self) -> list[Event]:
        """Every event the server wrote so far."""
        return read_events(self.sink)

    def wait_for(self, match: Callable[[Event], bool], what: str = "matching event") -> Event:
        """Return the first written event that matches; fail after `wait` seconds."""
        found = wait_until(
            lambda: [event for event in self.events() if match(event)],
            self.wait,
            lambda: (
                f"no {what} in the sink after {self.wait} s: {self.events()}\n"
                f"--- server log\n{log_tail(self.log)}"
            ),
            self.interval,
        )
        return found[0]


class Process:
    """A server subprocess writing its output to a log; as a context manager, stopped at exit."""

    def __init__(self, command: Sequence[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        """Start `command` in `cwd`, its stdout and stderr into `log`."""
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_until_up(
        self, url: str, headers: dict[str, str] | None, timeout: float, interval: float
    ) -> None:
        """Poll `url` until it answers; fail if the process exits or after `timeout` s."""

        def up() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited ({self.process.returncode}): {log_tail(self.log)}")
            return answers(url, headers)

        wait_until(up, timeout, lambda: f"the server did not start: {log_tail(self.log)}", interval)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send a signal and return the exit code (within 30 s)."""
        self.process.send_signal(sig)
        return self.process.wait(30)

    def kill(self) -> None:
        """Kill the process if it is still running."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> Process:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """SIGTERM, then SIGKILL if the process has not exited within 30 s."""
        try:
            self.stop()
        except subprocess.TimeoutExpired:
            pass
        finally:
            self.kill()


def refused_start(tmp: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Start `jupyter server` in `tmp` (its own Jupyter folders, `env` added), which must stop
    at start with exit status 1; return what it logged."""
    command = [sys.executable, "-m", "jupyter_server", "--ip=127.0.0.1",
               f"--port={free_port()}", "--no-browser", "--allow-root", *args]  # fmt: skip
    environment = {**jupyter_environment(tmp), **(env or {})}
    server = Process(command, tmp, environment, tmp / "server.log")
    try:
        assert server.process.wait(60) == 1, log_tail(server.log)
    finally:
        server.kill()
    return server.log.read_text("utf-8")


class Server(Process):
    """`jupyter server` in `tmp` with its own Jupyter folders, on a free port, with TOKEN."""

    def __init__(
        self, tmp: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None
    ) -> None:
        """Start the server in `tmp` (on `port`, else a free one, with `env` added to the
        environment) and wait until it answers."""
        self.port = port or free_port()
        command = [sys.executable, "-m", "jupyter_server", "--ip=127.0.0.1", f"--port={self.port}",
                   "--ServerApp.port_retries=0", "--no-browser", "--allow-root",
                   f"--IdentityProvider.token={TOKEN}", *args]  # fmt: skip
        environment = {**jupyter_environment(tmp), **(env or {})}
        log = tmp / "server.log"  # a restart in the same folder logs to server-1.log, ...
        if log.exists():
            log = tmp / f"server-{len(list(tmp.glob('server*.log')))}.log"
        super().__init__(command, tmp, environment, log)
        url = f"http://127.0.0.1:{self.port}/api/telemetry/schemas"
        try:
            self.wait_until_up(url, {"Authorization": f"token {TOKEN}"}, 30, 0.1)
        except BaseException:
            self.kill()
            raise

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send a token-authenticated request; return its status and its JSON reply."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            payload = None if body is None else json.dumps(body)
            connection.request(method, path, payload, {"Authorization": f"token {TOKEN}"})
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            connection.close()
