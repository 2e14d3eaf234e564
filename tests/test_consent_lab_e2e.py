"""End to end: a study's consent asked and changed in JupyterLab, enforced by the server.

A real `jupyter lab` (this checkout's client build) with an opt-in study covering the cell
events the client sends, and Debian's Chromium: the dialog appears at start, Decline keeps the
cell events out of the sink, Accept (from the status bar item's list) lets them in. Screenshots
of the dialog, the status bar item and its list go to `test-artifacts/`.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.labs import (
    NEEDS_CHROMIUM,
    ROOT,
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
CONSENT = SCHEMAS + "consent"
ARTIFACTS = ROOT / "test-artifacts"
NEWS = "@jupyterlab/apputils-extension:notification"
TITLE = "How students work in Introduction to Programming (2027)"
# Markdown the dialog renders, and HTML the sanitizer must take out (an admin's typo or worse).
TEXT = (
    "The course team studies how students work. If you agree, the server records **when you "
    "run a cell**, never your code.\n\n- You can withdraw at any time\n\n"
    "<script>window.consentInjected = 1</script>"
    '<img src="x" onerror="window.consentInjected = 2">'
)
STUDIES = f"""
c.TelemetryExtension.consent_file = {{consent!r}}
c.EventLog.studies = {{{{
    "intro-2027": {{{{
        "title": {TITLE!r},
        "text": {TEXT!r},
        "version": 1,
        "mode": "opt-in",
        "schemas": [{CELL!r}],
    }}}},
}}}}
"""

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.e2e,
    NEEDS_CHROMIUM,
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """`jupyter lab` with this checkout's client, an opt-in study on cell events, a file sink."""
    tmp = tmp_path_factory.mktemp("consent-lab")
    files = {"study.ipynb": notebook("40 + 2", "'after' + ' accepting'")}
    config = STUDIES.format(consent=str(tmp / "consent.json"))
    settings = {NEWS: {"fetchNews": "false"}}  # no news toast over the screenshots
    with running_lab(
        tmp, [NOTEBOOK, CELL], checkout=True, files=files, config_lines=config, settings=settings
    ) as lab:
        yield lab


def consent(lab: Lab) -> dict[str, Any]:
    """The study as `GET api/telemetry/consent` answers it."""
    url = f"{lab.url}api/telemetry/consent?token={TOKEN}"
    with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310
        studies: list[dict[str, Any]] = json.load(reply)["studies"]
    assert len(studies) == 1
    return studies[0]


def held_back(lab: Lab) -> list[str]:
    """The `/metrics` rows of events the server dropped for want of consent."""
    url = f"{lab.url}metrics?token={TOKEN}"
    with urllib.request.urlopen(url, timeout=10) as reply:  # noqa: S310
        rows = reply.read().decode("utf-8").splitlines()
    return [row for row in rows if 'outcome="no_consent"' in row and not row.endswith(" 0.0")]


def run_cell(page: Any, index: int, output: str) -> None:
    """Run the index-th cell with Shift+Enter and wait for its output."""
    page.locator(".jp-Notebook .jp-Cell .cm-content").nth(index).click()
    page.keyboard.press("Shift+Enter")
    page.locator(".jp-OutputArea-output", has_text=output).wait_for(timeout=WAIT * 1000)


def shoot(target: Any, name: str) -> None:
    """Save a screenshot of a page or an element for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    target.screenshot(path=str(ARTIFACTS / name))


def test_declined_then_accepted_in_jupyterlab(lab: Lab) -> None:
    """The dialog asks at start; declined, no cell event is written; accepted, they are."""
    with chromium_page(playwright) as page:
        page.set_viewport_size({"width": 1280, "height": 800})
        page.goto(f"{lab.url}lab/tree/study.ipynb?token={TOKEN}")
        dialog = page.locator(".jp-Dialog")
        dialog.locator(".jp-TelemetryConsent-text").wait_for(timeout=90_000)
        shoot(page, "consent-dialog.png")
        assert TITLE in dialog.locator(".jp-Dialog-header").inner_text()
        text = dialog.locator(".jp-TelemetryConsent-text")
        assert text.locator("strong", has_text="when you run a cell").count() == 1
        assert text.locator("li", has_text="withdraw at any time").count() == 1
        assert text.locator("script").count() == 0
        assert text.locator("img[onerror]").count() == 0
        # The text has the focus, not a button: Enter decides nothing.
        assert page.evaluate(
            "document.activeElement.classList.contains('jp-TelemetryConsent-text')"
        )
        # The rest of Lab did not wait for the dialog: the notebook opened behind it.
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(state="attached", timeout=90_000)
        dialog.get_by_role("button", name=f"Decline: {TITLE}").click()
        dialog.wait_for(state="detached")
        wait_until(lambda: consent(lab)["decision"] == "declined", WAIT)
        assert page.evaluate("window.consentInjected") is None

        status = page.locator(".jp-TelemetryConsent-status")
        wait_until(lambda: status.inner_text() == "Telemetry: not recording", WAIT)
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=90_000)
        wait_for_kernel(lab)
        run_cell(page, 0, "42")
        page.keyboard.press("Control+s")
        # The save's event goes out with (or after) the cell's: once it is written, a cell
        # event the client sent would be too.
        lab.wait_for(lambda e: e.get("action") == "saved", "notebook-saved event")
        assert not [e for e in lab.events() if e["__schema__"] == CELL]
        # Nor did the client send any: the schema listing told it the study holds them back.
        assert held_back(lab) == []
        shoot(status, "consent-status-off.png")

        status.click()
        listing = page.locator(".jp-TelemetryConsent-list")
        listing.wait_for()
        item = listing.locator('li[data-study="intro-2027"]')
        assert "Your decision: declined" in item.inner_text()
        shoot(page, "consent-status-list.png")
        item.get_by_role("button", name="Accept").click()
        # Accepting shows the text again: the decision is on the version read.
        page.locator(".jp-Dialog").get_by_role("button", name=f"Accept: {TITLE}").click()
        wait_until(lambda: status.inner_text() == "Telemetry: recording", WAIT)
        assert consent(lab)["decision"] == "granted"
        shoot(status, "consent-status-on.png")

        run_cell(page, 1, "after accepting")
        cell = lab.wait_for(lambda e: e["__schema__"] == CELL, "cell event after accepting")
        assert cell["execution_count"] == 2
    decisions = [e["decision"] for e in lab.events() if e["__schema__"] == CONSENT]
    assert decisions == ["declined", "granted"]
    assert [e["execution_count"] for e in lab.events() if e["__schema__"] == CELL] == [2]


def test_without_studies_no_dialog_and_no_status_item(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A server with no study: the page shows neither a dialog nor the status bar item."""
    tmp = tmp_path_factory.mktemp("no-study-lab")
    files = {"plain.ipynb": notebook("40 + 2")}
    settings = {NEWS: {"fetchNews": "false"}}
    with (
        running_lab(tmp, [CELL], checkout=True, files=files, settings=settings) as lab,
        chromium_page(playwright) as page,
    ):
        page.goto(f"{lab.url}lab/tree/plain.ipynb?token={TOKEN}")
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=90_000)
        wait_for_kernel(lab)
        run_cell(page, 0, "42")
        lab.wait_for(lambda e: e["__schema__"] == CELL, "cell event")  # the client did start
        assert page.locator(".jp-Dialog").count() == 0
        assert page.locator(".jp-TelemetryConsent-status").count() == 0
