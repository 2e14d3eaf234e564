"""End to end: JupyterLab with the telemetry client, the server extension and headless Chromium.

A real `jupyter lab` runs on 127.0.0.1 with a token, a temporary root and a file sink; Debian's
Chromium (driven by Playwright, whose own browsers are never downloaded) opens a notebook and
runs its cell, and the test reads what the server wrote.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.servers import (
    Process,
    SinkFile,
    free_port,
    jupyter_command,
    jupyter_environment,
    log_tail,
    wait_until,
)

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
class Lab(SinkFile):
    """A running `jupyter lab`: its sink file, its log, its URL and its root."""

    url: str
    root: Path
    wait: ClassVar[float] = WAIT
    interval: ClassVar[float] = 0.2


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


def wait_for_kernel(lab: Lab) -> None:
    """Wait until a kernel is idle with a client connected: the page can run cells."""

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{lab.url}api/kernels?token={TOKEN}", timeout=5) as r:  # noqa: S310
                kernels = json.load(r)
        except urllib.error.HTTPError as e:
            # jupyter_server answers 500 while listing a kernel that is still starting (its
            # last_activity is not set yet): not ready yet, ask again.
            if e.code == 500:
                return False
            raise
        return any(k["execution_state"] == "idle" and k["connections"] > 0 for k in kernels)

    wait_until(ready, 90, lambda: f"no kernel ready: {log_tail(lab.log)}", 0.2)


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
    command = jupyter_command(
        "lab", config, port, root, TOKEN,
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    )  # fmt: skip
    log = tmp / "server.log"
    url = f"http://127.0.0.1:{port}/"
    with Process(command, tmp, jupyter_environment(tmp, lab=True), log) as process:
        process.wait_until_up(f"{url}api/status?token={TOKEN}", None, 90, 0.5)
        yield Lab(sink, log, url, root)


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
    first = lab.wait_for(cell_event(1), "cell-executed event")
    assert first["action"] == "executed"
    assert first["status"] == "ok"
    assert first["source"] is None  # personal: the allow-list keeps unrestricted fields only
    opened = lab.wait_for(lambda e: e["__schema__"] == NOTEBOOK, "notebook-opened event")
    assert opened["action"] == "opened"
    assert opened["cell_count"] == 2

    # The second run and a save are queued (the batch is not full, the interval not over) when
    # the page goes: they are sent on pagehide.
    run_cell(page, 1, "keepalive")
    page.keyboard.press("Control+s")
    wait_until(lambda: "keepalive" in (lab.root / "e2e.ipynb").read_text(encoding="utf-8"), WAIT)
    assert not [e for e in lab.events() if cell_event(2)(e) or e.get("action") == "saved"]
    page.goto("about:blank")
    second = lab.wait_for(cell_event(2), "cell-executed event sent on pagehide")
    assert second["status"] == "ok"
    lab.wait_for(lambda e: e.get("action") == "saved", "notebook-saved event")
    command = lab.wait_for(lambda e: e["__schema__"] == COMMAND, "command-executed event")
    assert command["invoked_from"] == "keyboard"
