"""End to end: JupyterLab with the telemetry client, the server extension and headless Chromium.

A real `jupyter lab` runs on 127.0.0.1 with a token, a temporary root and a file sink; Debian's
Chromium (driven by Playwright, whose own browsers are never downloaded) opens a notebook and
runs its cell, and the test reads what the server wrote.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TOKEN = "e2e-telemetry-token"
SCHEMAS = "https://events.jupyter.org/jupyter_telemetry_ext/"
CELL = SCHEMAS + "cell"
NOTEBOOK = SCHEMAS + "notebook"
COMMAND = SCHEMAS + "command"
# The client's default flush interval is 5 s: the first event arrives within it.
WAIT = 30.0

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"
)

SERVER_CONFIG = """
import logging

c.EventLog.handlers = [logging.FileHandler({sink!r})]
c.EventLog.allowed_schemas = {schemas!r}
"""


@dataclass
class Lab:
    """A running `jupyter lab`: its URL, its root, its log and the file its EventLog writes to."""

    url: str
    root: Path
    log: Path
    sink: Path

    def events(self) -> list[dict[str, Any]]:
        """Every event the server wrote so far."""
        if not self.sink.exists():
            return []
        lines = self.sink.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def wait_for(self, what: str, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Return the first written event that matches; fail after WAIT seconds."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            found = [event for event in self.events() if match(event)]
            if found:
                return found[0]
            time.sleep(0.2)
        log = self.log.read_text(encoding="utf-8", errors="replace")[-3000:]
        pytest.fail(f"no {what} in the sink after {WAIT} s: {self.events()}\n--- server log\n{log}")


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll the condition until it holds; fail after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still not true after {WAIT} s: {condition}")
        time.sleep(0.1)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def notebook(*sources: str) -> str:
    """A notebook document with a python3 kernelspec and one code cell per source."""
    cells = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"cell-{i}",
            "metadata": {},
            "outputs": [],
            "source": source,
        }
        for i, source in enumerate(sources)
    ]
    kernelspec = {"display_name": "Python 3", "language": "python", "name": "python3"}
    document = {
        "cells": cells,
        "metadata": {"kernelspec": kernelspec},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(document)


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll the server's status route until it answers; fail if the process exits."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"jupyter lab exited: {log.read_text(encoding='utf-8')[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}api/status?token={TOKEN}", timeout=5):  # noqa: S310
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"jupyter lab did not start: {log.read_text(encoding='utf-8')[-3000:]}")


def wait_for_kernel(lab: Lab) -> None:
    """Wait until a kernel is idle with a client connected: the page can run cells."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{lab.url}api/kernels?token={TOKEN}", timeout=5) as r:  # noqa: S310
            kernels = json.load(r)
        if any(k["execution_state"] == "idle" and k["connections"] > 0 for k in kernels):
            return
        time.sleep(0.2)
    pytest.fail(f"no kernel ready: {lab.log.read_text(encoding='utf-8')[-3000:]}")


def lab_environment(tmp: Path) -> dict[str, str]:
    """The environment of the server: its own user config, data, runtime and settings folders."""
    env = dict(os.environ)
    for name in ("config", "data", "runtime", "settings", "workspaces"):
        (tmp / name).mkdir()
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
    )
    return env


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """`jupyter lab` on 127.0.0.1 recording the shipped frontend schemas into a file."""
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    root.mkdir()
    (root / "e2e.ipynb").write_text(notebook("40 + 2", "'keep' + 'alive'"), encoding="utf-8")
    sink = tmp / "events.jsonl"
    config = tmp / "jupyter_lab_config.py"
    config.write_text(SERVER_CONFIG.format(sink=str(sink), schemas=[NOTEBOOK, CELL, COMMAND]))
    port = free_port()
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser",
        f"--config={config}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={TOKEN}",
        "--ServerApp.allow_root=True",  # CI runs as root
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]  # fmt: skip
    log = tmp / "server.log"
    url = f"http://127.0.0.1:{port}/"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=tmp, env=lab_environment(tmp)
        )
        try:
            wait_until_up(url, process, log)
            yield Lab(url, root, log, sink)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def page() -> Iterator[Any]:
    """A page of Debian's headless Chromium with a fresh profile."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def run_cell(page: Any, index: int, output: str) -> None:
    """Run the index-th cell with Shift+Enter and wait for its output."""
    page.locator(".jp-Notebook .jp-Cell .cm-content").nth(index).click()
    page.keyboard.press("Shift+Enter")
    page.locator(".jp-OutputArea-output", has_text=output).wait_for(timeout=WAIT * 1000)


def cell_event(count: int) -> Callable[[dict[str, Any]], bool]:
    """Match the cell-executed event of a given execution count."""
    return lambda e: e["__schema__"] == CELL and e.get("execution_count") == count


def test_events_reach_the_sink_batched_then_with_keepalive(lab: Lab, page: Any) -> None:
    """A cell run arrives with the next batch; one queued when the page goes, with keepalive."""
    page.goto(f"{lab.url}lab/tree/e2e.ipynb?token={TOKEN}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=90_000)
    wait_for_kernel(lab)

    run_cell(page, 0, "42")
    first = lab.wait_for("cell-executed event", cell_event(1))
    assert first["action"] == "executed"
    assert first["status"] == "ok"
    assert first["source"] is None  # personal: the allow-list keeps unrestricted fields only
    opened = lab.wait_for("notebook-opened event", lambda e: e["__schema__"] == NOTEBOOK)
    assert opened["action"] == "opened"
    assert opened["cell_count"] == 2

    # The second run and a save are queued (the batch is not full, the interval not over) when
    # the page goes: they are sent on pagehide.
    run_cell(page, 1, "keepalive")
    page.keyboard.press("Control+s")
    wait_until(lambda: "keepalive" in (lab.root / "e2e.ipynb").read_text(encoding="utf-8"))
    assert not [e for e in lab.events() if cell_event(2)(e) or e.get("action") == "saved"]
    page.goto("about:blank")
    second = lab.wait_for("cell-executed event sent on pagehide", cell_event(2))
    assert second["status"] == "ok"
    lab.wait_for("notebook-saved event", lambda e: e.get("action") == "saved")
    command = lab.wait_for("command-executed event", lambda e: e["__schema__"] == COMMAND)
    assert command["invoked_from"] == "keyboard"
