"""The transparency page's studies: listed for the viewing user, changed with its buttons.

A real server with two studies (opt-in, notice) and Debian's Chromium clicking the page's
buttons; the test reads the decisions back from `GET api/telemetry/consent` and the decisions
file. A screenshot of the section goes to `test-artifacts/`.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from tornado.httpclient import HTTPResponse

from tests.labs import (
    NEEDS_CHROMIUM,
    ROOT,
    SCHEMAS,
    TOKEN,
    WAIT,
    Lab,
    chromium_page,
    running_lab,
)
from tests.servers import wait_until

CELL = SCHEMAS + "cell"
ARTIFACTS = ROOT / "test-artifacts"
INJECTED = "<script>window.studyInjected = 1</script>"
STUDIES = {
    "intro-2027": {
        "title": "How students work (2027)",
        "text": f"We record when you run a cell.\n\nNever your code. {INJECTED}",
        "version": 3,
        "mode": "opt-in",
        "schemas": [CELL],
    },
    "lab-notice": {
        "title": "Usage notice",
        "text": "This lab records how its pages are used.",
        "version": 1,
        "mode": "notice",
        "schemas": [CELL],
    },
}

playwright = pytest.importorskip("playwright.sync_api")
browser = NEEDS_CHROMIUM


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    """A server with the two studies, its decisions file in the test's folder."""
    tmp = tmp_path_factory.mktemp("consent-page")
    decisions = tmp / "consent.json"
    config = (
        f"\nc.TelemetryExtension.consent_file = {str(decisions)!r}"
        f"\nc.EventLog.studies = {STUDIES!r}\n"
    )
    with running_lab(tmp, [CELL], config_lines=config) as lab:
        yield lab, decisions


def summary_counts(text: str) -> tuple[int, int]:
    """Return how many kinds of event the page's summary counts as recorded, and held back."""
    recorded = re.search(r"(\d+)(?:</strong>)? of\s", text)
    held = re.search(r"(\d+)(?:</strong>)? more (?:is|are) allowed but not recorded for you", text)
    assert recorded is not None, text
    return int(recorded.group(1)), int(held.group(1)) if held is not None else 0


def fetch(lab: Lab, path: str) -> str:
    """GET a path of the server with the token; return the body."""
    with urllib.request.urlopen(f"{lab.url}{path}?token={TOKEN}", timeout=10) as reply:  # noqa: S310
        return str(reply.read().decode("utf-8"))


def decision(lab: Lab, study: str) -> str | None:
    """The user's decision on `study`, as `GET api/telemetry/consent` says."""
    studies = json.loads(fetch(lab, "api/telemetry/consent"))["studies"]
    found: str | None = next(s["decision"] for s in studies if s["study"] == study)
    return found


@pytest.mark.e2e
def test_the_section_lists_each_study_and_escapes_its_text(lab: tuple[Lab, Path]) -> None:
    """Title, mode, version and decision of each study; the text is never markup."""
    page = fetch(lab[0], "telemetry")
    assert 'id="studies"' in page
    assert "How students work (2027)" in page
    assert 'data-study="intro-2027" data-version="3"' in page
    assert INJECTED not in page
    assert "&lt;script&gt;window.studyInjected = 1&lt;/script&gt;" in page
    assert "<p>We record when you run a cell.</p>" in page  # paragraphs kept


@pytest.mark.e2e
def test_a_kind_awaiting_an_opt_in_decision_is_not_counted_as_recorded(
    lab: tuple[Lab, Path],
) -> None:
    """Before any decision, the opt-in study holds the cell events back: the kind says so, and
    the summary does not count it."""
    page = fetch(lab[0], "telemetry")
    cell = page.split(f'data-schema-id="{CELL}"', 1)[1].split("</article>", 1)[0]
    assert "Not recorded for you (study How students work (2027): awaiting your decision)" in cell
    assert "Part of study Usage notice" in cell
    assert ">Not recorded for you</span>" in cell
    recorded, held = summary_counts(page)
    cells = page.count(f'data-schema-id="{CELL}"')  # one per version of the schema
    assert held == cells
    assert recorded == 1  # the consent events, the proof of each decision, are always recorded


async def test_no_section_without_studies(jp_fetch: Callable[..., Awaitable[HTTPResponse]]) -> None:
    """A server with no study shows no studies section and loads no consent script."""
    page = (await jp_fetch("telemetry")).body.decode("utf-8")
    assert 'id="studies"' not in page
    assert "consent.js" not in page


@browser
@pytest.mark.e2e
def test_the_buttons_change_the_decisions(lab: tuple[Lab, Path]) -> None:
    """Accept, Withdraw and "I have read this" PUT the decision with the page's XSRF token."""
    server, decisions = lab
    with chromium_page(playwright) as page:
        page.set_viewport_size({"width": 1000, "height": 900})
        page.goto(f"{server.url}telemetry?token={TOKEN}")
        section = page.locator("#studies")
        intro = section.locator('article[data-study="intro-2027"]')
        assert "Your decision: none yet" in intro.inner_text()
        intro.get_by_role("button", name="Accept").click()
        wait_until(lambda: "Your decision: accepted" in intro.inner_text(), WAIT)
        assert decision(server, "intro-2027") == "granted"
        saved = json.loads(decisions.read_text(encoding="utf-8"))
        assert [d["decision"] for d in next(iter(saved.values())).values()] == ["granted"]

        notice = section.locator('article[data-study="lab-notice"]')
        notice.get_by_role("button", name="I have read this").click()
        wait_until(lambda: "Your decision: read" in notice.inner_text(), WAIT)
        assert decision(server, "lab-notice") == "shown"
        ARTIFACTS.mkdir(exist_ok=True)
        section.screenshot(path=str(ARTIFACTS / "consent-transparency.png"))

        intro.get_by_role("button", name="Withdraw").click()
        wait_until(lambda: "Your decision: declined" in intro.inner_text(), WAIT)
        assert decision(server, "intro-2027") == "declined"
        assert "Not recording" in intro.inner_text()
        assert page.evaluate("window.studyInjected") is None


@browser
@pytest.mark.e2e
def test_each_study_lists_its_kinds_and_each_kind_its_studies(lab: tuple[Lab, Path]) -> None:
    """A study card names the kinds it covers; a kind names its studies and, once the user
    declined one of them, is not recorded for them, nor counted as recorded."""
    server, _ = lab
    with chromium_page(playwright) as page:
        page.set_viewport_size({"width": 1000, "height": 1400})
        page.goto(f"{server.url}telemetry?token={TOKEN}")
        intro = page.locator('#studies article[data-study="intro-2027"]')
        if "Your decision: declined" not in intro.inner_text():  # run alone: decline here
            intro.get_by_role("button", name="Decline").click()
            wait_until(lambda: "Your decision: declined" in intro.inner_text(), WAIT)
        assert "Covers: Cell execution" in intro.inner_text()
        notice = page.locator('#studies article[data-study="lab-notice"]')
        assert "Covers: Cell execution" in notice.inner_text()
        cell = page.locator(f'#kinds article[data-schema-id="{CELL}"]').first
        text = cell.inner_text()
        assert "Not recorded for you (study How students work (2027): declined)" in text
        assert "Part of study Usage notice" in text
        assert cell.locator("h3 .status").inner_text() == "Not recorded for you"
        versions = page.locator(f'#kinds article[data-schema-id="{CELL}"]').count()
        before = summary_counts(page.locator("header .summary").inner_text())
        assert before == (1, versions)
        ARTIFACTS.mkdir(exist_ok=True)
        studies = page.locator("#studies").bounding_box()
        assert studies is not None
        top = {"x": 0, "y": 0, "width": 1000, "height": studies["y"] + studies["height"]}
        page.screenshot(path=str(ARTIFACTS / "consent-kinds-studies.png"), clip=top,
                        full_page=True)  # fmt: skip
        cell.screenshot(path=str(ARTIFACTS / "consent-kinds-cell.png"))
        intro.get_by_role("button", name="Accept").click()
        wait_until(lambda: "Your decision: accepted" in intro.inner_text(), WAIT)
        cell = page.locator(f'#kinds article[data-schema-id="{CELL}"]').first
        assert cell.locator("h3 .status").inner_text() == "Recorded"
        assert "Part of study How students work (2027)" in cell.inner_text()
        assert summary_counts(page.locator("header .summary").inner_text()) == (1 + versions, 0)
