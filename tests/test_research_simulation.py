"""Volume of the research events: a simulated editing session in headless Chromium.

Playwright types in cells, runs some, scrolls and switches tabs against a real lab with every
kind allowed (personal category too, so content is sent), counts the page's POSTs to
api/telemetry/events and measures each posted event. Requirement: at most one request per 5 s
on average and no event over 32 KB (a 100 KB insertion is cut to fit).

The test runs for TELEMETRY_SIMULATION_SECONDS (default 75); the full 30-minute session:

    TELEMETRY_SIMULATION_SECONDS=1800 python -m pytest tests/test_research_simulation.py -s
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.labs import (
    NEEDS_CHROMIUM,
    SCHEMAS,
    TOKEN,
    Lab,
    chromium_page,
    notebook,
    running_lab,
)
from tests.labs import wait_for_kernel as kernel_ready

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.e2e,
    NEEDS_CHROMIUM,
]

SECONDS = float(os.environ.get("TELEMETRY_SIMULATION_SECONDS", "75"))
KINDS = (
    "notebook", "cell", "command", "active-cell", "cell-structure", "cell-edit", "clipboard",
    "kernel", "scroll", "active-time",
)  # fmt: skip
MAX_EVENT = 32 * 1024
CELLS = 60
BIG = 100_000


@dataclass
class Traffic:
    """The page's POSTs to the events endpoint: when, and the size of each event in them."""

    times: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    def see(self, request: Any) -> None:
        """Count a request if it posts events."""
        if request.method == "POST" and "/api/telemetry/events" in request.url:
            self.times.append(time.monotonic())
            body = json.loads(request.post_data or "{}")
            self.sizes += [len(json.dumps(e).encode()) for e in body.get("events", [])]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab recording every shipped kind with the personal category."""
    tmp = tmp_path_factory.mktemp("simulation")
    rules = {"allowed_categories": ["user-identifiable-information"]}
    allowed = {SCHEMAS + kind: rules for kind in KINDS}
    files = {
        "long.ipynb": notebook(*(f"value_{i} = {i} * 2" for i in range(CELLS))),
        "other.ipynb": notebook("1 + 1"),
    }
    with running_lab(tmp, allowed, checkout=True, files=files) as lab:
        yield lab


def editor(page: Any, index: int) -> Any:
    """The code editor of the index-th cell of the notebook in front."""
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content").nth(index)


def switch_to(page: Any, name: str) -> None:
    """Bring a notebook's tab to the front (opening it from the file browser the first time)."""
    tab = page.locator(".lm-TabBar-tab", has_text=name)
    if tab.count() == 0:
        page.locator(".jp-DirListing-item", has_text=name).dblclick()
    else:
        tab.click()
    page.locator(".lm-TabBar-tab.lm-mod-current", has_text=name).wait_for()


def episode(page: Any, rng: random.Random, n: int) -> None:
    """About ten seconds of work: type a line in a visible cell, maybe run it, scroll."""
    visible = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content")
    target = visible.nth(rng.randrange(max(1, min(visible.count(), 8))))
    target.click()
    page.keyboard.press("End")
    page.keyboard.type(f"  # note {n} " + "abc " * rng.randint(3, 8), delay=60)
    if rng.random() < 0.3:
        page.keyboard.press("Shift+Enter")
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").hover()
    for _ in range(rng.randint(1, 4)):
        page.mouse.wheel(0, rng.choice([-900, 600, 1200]))
        page.wait_for_timeout(rng.randint(200, 1200))
    page.wait_for_timeout(rng.randint(500, 2500))


def simulate(page: Any, lab: Lab, seconds: float) -> float:
    """Work in the notebooks for `seconds`; return the session's length in seconds."""
    page.goto(f"{lab.url}lab/tree/long.ipynb?token={TOKEN}")
    editor(page, 0).wait_for(timeout=90_000)
    kernel_ready(lab)
    start = time.monotonic()
    # One large insertion: the cell's edit event carries 100 KB of source, cut to fit.
    editor(page, 0).click()
    page.keyboard.insert_text("x" * BIG)
    rng = random.Random(15)  # noqa: S311 -- a repeatable session, not a secret
    n = 0
    while time.monotonic() - start < seconds:
        n += 1
        episode(page, rng, n)
        if n % 3 == 0:
            switch_to(page, "other.ipynb" if n % 6 == 3 else "long.ipynb")
    page.goto("about:blank")  # the rest is sent with keepalive
    return time.monotonic() - start


def test_a_simulated_session_sends_at_most_one_request_per_5_s(lab: Lab) -> None:
    """<= 1 request per 5 s on average, no event over 32 KB, content cut with its mark."""
    traffic = Traffic()
    with chromium_page(playwright) as page:
        page.on("request", traffic.see)
        seconds = simulate(page, lab, SECONDS)
    lab.wait_for(lambda e: e.get("truncated") is True, "cut event")
    per_5s = len(traffic.times) / (seconds / 5)
    largest = max(traffic.sizes)
    kinds = sorted({e["__schema__"].rsplit("/", 1)[1] for e in lab.events()})
    print(  # the figures of the run, shown with -s
        f"\nsimulation: {seconds:.0f} s, {len(traffic.times)} requests "
        f"({per_5s:.2f} per 5 s), {len(traffic.sizes)} events, largest {largest} bytes, "
        f"kinds {kinds}"
    )
    assert per_5s <= 1.0
    assert largest <= MAX_EVENT
    assert {"cell-edit", "scroll", "active-cell", "notebook"} <= set(kinds)
