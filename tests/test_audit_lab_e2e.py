"""End to end: JupyterLab in headless Chromium runs cells, and the server's audit records them.

A real `jupyter lab` with the execution audit on (the documented allow-list: the execution
schema with `user-code`) and Debian's Chromium: the browser runs a cell that works and one that
raises, and the test reads the server's sink. The browser sends nothing the audit relies on:
what is recorded is what went to the kernel.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.labs import (
    NEEDS_CHROMIUM,
    TOKEN,
    WAIT,
    Lab,
    chromium_page,
    notebook,
    running_lab,
    wait_for_kernel,
)

EXECUTION = "https://events.jupyter.org/jupyter_telemetry_ext/execution"
SECRET = "the-message-of-this-error-is-never-recorded"

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.e2e,
    NEEDS_CHROMIUM,
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """`jupyter lab` on 127.0.0.1 auditing executions into a file."""
    tmp = tmp_path_factory.mktemp("audit-lab")
    files = {"audited.ipynb": notebook("40 + 2", f"raise KeyError({SECRET!r})")}
    allowed = {EXECUTION: {"allowed_categories": ["user-code"]}}
    extra = '\nc.TelemetryExtension.audit = ["execution"]\n'
    with running_lab(tmp, allowed, files=files, config_lines=extra) as lab:
        yield lab


def run_cell(page: Any, index: int, output: str) -> None:
    """Run the index-th cell with Shift+Enter and wait for its output."""
    page.locator(".jp-Notebook .jp-Cell .cm-content").nth(index).click()
    page.keyboard.press("Shift+Enter")
    page.locator(".jp-OutputArea-output", has_text=output).wait_for(timeout=WAIT * 1000)


def test_cells_run_in_jupyterlab_are_audited_by_the_server(lab: Lab) -> None:
    """Each cell's code, hash, outcome and duration are recorded; no output, no error text."""
    with chromium_page(playwright) as page:
        page.goto(f"{lab.url}lab/tree/audited.ipynb?token={TOKEN}")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=90_000)
        wait_for_kernel(lab)
        run_cell(page, 0, "42")
        run_cell(page, 1, "KeyError")

    def execution(code: str) -> Any:
        return lambda e: e["__schema__"] == EXECUTION and e.get("code") == code

    ok = lab.wait_for(execution("40 + 2"), "the first cell's execution event")
    failed = lab.wait_for(execution(f"raise KeyError({SECRET!r})"), "the second cell's event")
    assert ok["status"] == "ok"
    assert "ename" not in ok
    assert ok["code_sha256"] == hashlib.sha256(b"40 + 2").hexdigest()
    assert ok["code_length"] == len("40 + 2")
    assert ok["client"] == "websocket-v1"
    assert ok["channel"] == "shell"
    assert ok["cell_id"] == "cell-0"
    assert failed["cell_id"] == "cell-1"
    assert ok["duration_ms"] >= 0
    assert ok["execution_count"] >= 1
    assert (failed["status"], failed["ename"]) == ("error", "KeyError")
    assert failed["audit_stream"] == ok["audit_stream"]
    assert failed["audit_seq"] > ok["audit_seq"]
    for event in (ok, failed):  # outputs, error messages and tracebacks are never recorded
        assert not {"outputs", "data", "evalue", "traceback"} & set(event)
    text = lab.sink.read_text(encoding="utf-8")
    assert text.count(SECRET) == 1  # in the code only, never from the error's message
