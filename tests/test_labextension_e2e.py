"""End to end: JupyterLab with the telemetry client, the server extension and headless Chromium.

A real `jupyter lab` runs on 127.0.0.1 with a token, a temporary root and a file sink; Debian's
Chromium (driven by Playwright, whose own browsers are never downloaded) opens a notebook and
runs its cell, and the test reads what the server wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.labs import (
    NEEDS_CHROMIUM,
    SCHEMAS,
    TOKEN,
    WAIT,
    Lab,
    chromium_page,
    notebook,
    running_lab,
    wait_for_kernel,
)
from tests.servers import wait_until

CELL = SCHEMAS + "cell"
NOTEBOOK = SCHEMAS + "notebook"
COMMAND = SCHEMAS + "command"

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.e2e,
    NEEDS_CHROMIUM,
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """`jupyter lab` on 127.0.0.1 recording the shipped frontend schemas into a file."""
    tmp = tmp_path_factory.mktemp("lab")
    files = {"e2e.ipynb": notebook("40 + 2", "'keep' + 'alive'")}
    with running_lab(tmp, [NOTEBOOK, CELL, COMMAND], files=files) as lab:
        yield lab


@pytest.fixture
def page() -> Iterator[Any]:
    """A page of Debian's headless Chromium with a fresh profile."""
    with chromium_page(playwright) as page:
        yield page


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
