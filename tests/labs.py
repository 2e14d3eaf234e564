"""Helpers for the tests that run a real `jupyter lab` and drive it with headless Chromium.

Debian's Chromium is driven by Playwright (whose own browsers are never downloaded); the lab runs
on 127.0.0.1 with a token, a temporary root and a file sink the test reads.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
NEEDS_CHROMIUM = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"
)
TOKEN = "e2e-telemetry-token"
SCHEMAS = "https://events.jupyter.org/jupyter_telemetry_ext/"
# The client's default flush interval is 5 s: the first event arrives within it.
WAIT = 30.0

SERVER_CONFIG = """
import logging

c.EventLog.handlers = [logging.FileHandler({sink!r}, encoding="utf-8")]
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


def worktree_data(tmp: Path) -> Path:
    """A Jupyter data folder with this checkout's labextension build and schemas.

    Put first in JUPYTER_PATH, it makes the lab load the client built here (`jlpm build`) and
    the server register the schemas of `schemas/`, whatever the environment has installed.
    """
    data = tmp / "checkout-data"
    (data / "labextensions").mkdir(parents=True)
    (data / "telemetry").mkdir(parents=True)
    (data / "labextensions" / "jupyter-telemetry-ext").symlink_to(
        ROOT / "jupyter_telemetry_ext" / "labextension"
    )
    # A link as the walked folder itself: os.walk follows it there, and only there.
    (data / "telemetry" / "schemas").symlink_to(ROOT / "schemas")
    return data


@contextmanager
def running_lab(
    tmp: Path,
    allowed: object,
    *,
    checkout: bool = False,
    settings: dict[str, dict[str, Any]] | None = None,
    files: dict[str, str] | None = None,
    config_lines: str = "",
    data_paths: Sequence[Path] = (),
) -> Iterator[Lab]:
    """Run `jupyter lab` in `tmp` recording `allowed` schemas into a file; stop it at exit.

    `checkout` loads this checkout's client build and schemas; `settings` maps a plugin id
    (`jupyter-telemetry-ext:plugin`) to the user settings the lab starts with; `files` are
    written into the root before the lab starts; `config_lines` end the server's config file;
    `data_paths` are Jupyter data folders put first in JUPYTER_PATH (their `labextensions`).
    """
    root = tmp / "root"
    root.mkdir()
    for name, text in (files or {}).items():
        (root / name).write_text(text, encoding="utf-8")
    sink = tmp / "events.jsonl"
    config = tmp / "jupyter_lab_config.py"
    text = SERVER_CONFIG.format(sink=str(sink), schemas=allowed) + config_lines
    config.write_text(text, encoding="utf-8")
    port = free_port()
    command = jupyter_command(
        "lab", config, port, root, TOKEN,
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    )  # fmt: skip
    env = jupyter_environment(tmp, lab=True)
    paths = [*map(str, data_paths)]
    if checkout:
        paths.append(str(worktree_data(tmp)))
    if paths:
        env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [*paths, env.get("JUPYTER_PATH", "")]))
    for plugin, values in (settings or {}).items():
        package, name = plugin.split(":")
        folder = tmp / "settings" / package
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.jupyterlab-settings").write_text(json.dumps(values), encoding="utf-8")
    log = tmp / "server.log"
    url = f"http://127.0.0.1:{port}/"
    with Process(command, tmp, env, log) as process:
        process.wait_until_up(f"{url}api/status?token={TOKEN}", None, 90, 0.5)
        yield Lab(sink, log, url, root)


@contextmanager
def chromium_page(playwright: Any) -> Iterator[Any]:
    """A page of Debian's headless Chromium with a fresh profile; closed at exit."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()
