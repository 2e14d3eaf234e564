"""The dashboard's page in headless Chromium: periods labelled by their UTC day whatever the
viewer's time zone, and an answer that is not the API's JSON said on the page."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest

from jupyter_telemetry_ext.dashboard.views import CELL, NOTEBOOK
from tests.conftest import SHIPPED_SCHEMAS
from tests.labs import CHROMIUM, CHROMIUM_ARGS
from tests.servers import TOKEN, Server

pytestmark = pytest.mark.e2e  # starts a Jupyter server and Chromium

CONFIG = """\
import logging
c.TelemetryExtension.schema_paths = [{schemas!r}]
c.TelemetryExtension.reply_after_write = True
c.EventLog.handlers = [logging.FileHandler({log!r})]
c.EventLog.allowed_schemas = [{notebook!r}, {cell!r}]
"""
# A kernel name that reads "python3" once its characters are put right to left.
SPOOF = "\u202e3nohtyp"
# Kernel names that look like "python3": a zero-width space, a tab, an invisible tag character.
INVISIBLE = {"\u200bpython3": "\\u200bpython3", "\tpython3": "\\u0009python3",
             "python3\U000e0041": "python3\\u{e0041}"}  # fmt: skip
# West of Greenwich a UTC midnight is the evening before; east, the morning of the day.
TIME_ZONES = ("America/Los_Angeles", "Pacific/Kiritimati")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, datetime]]:
    """A server whose log holds one notebook event; and the UTC day the view counts it in."""
    tmp = tmp_path_factory.mktemp("dashboard-page")
    config = tmp / "jupyter_server_config.py"
    config.write_text(CONFIG.format(schemas=str(SHIPPED_SCHEMAS), log=str(tmp / "e.jsonl"),
                                    notebook=NOTEBOOK, cell=CELL), "utf-8")  # fmt: skip
    with Server(tmp, f"--config={config}") as started:
        data = {"action": "opened", "notebook_session": "s", "kernel_name": "python3"}
        run = {"action": "executed", "status": "error"}
        spoofs = [{**data, "action": "closed", "kernel_name": k} for k in (SPOOF, *INVISIBLE)]
        events = [{"schema_id": NOTEBOOK, "version": 2, "data": data},
                  {"schema_id": CELL, "version": 2, "data": run},
                  *({"schema_id": NOTEBOOK, "version": 2, "data": s} for s in spoofs)]  # fmt: skip
        status, reply = started.request("POST", "/api/telemetry/events", {"events": events})
        assert (status, reply["recorded"]) == (200, len(events)), reply
        status, view = started.request("GET", "/api/telemetry/dashboard/events")
        assert status == 200, view
        day = view["rows"][0]["period"]
        yield started, datetime.fromisoformat(day.replace("Z", "+00:00"))


@contextmanager
def drawn_page(server: Server, time_zone: str, route: Any = None) -> Iterator[Any]:
    """Yield a tab of the dashboard, drawn, in headless Chromium set to `time_zone`."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_context(timezone_id=time_zone).new_page()
            errors: list[str] = []
            tab.on("pageerror", lambda e: errors.append(str(e)))
            if route is not None:
                tab.route(*route)
            tab.goto(f"http://127.0.0.1:{server.port}/telemetry/dashboard?token={TOKEN}")
            drawn(tab, errors)
            yield tab
        finally:
            browser.close()


def drawn(tab: Any, errors: list[str] | None = None) -> None:
    """Wait until the page has drawn every view."""
    try:
        tab.locator("body[data-drawn='true']").wait_for(timeout=30_000)
    except Exception:  # playwright's TimeoutError: say what the page said
        pytest.fail(f"not drawn: {errors} {tab.inner_text('body')[:2000]}")


@pytest.mark.parametrize("time_zone", TIME_ZONES)
def test_a_period_is_labelled_by_its_utc_day_in_any_time_zone(
    server: tuple[Server, datetime], time_zone: str
) -> None:
    started, day = server
    with drawn_page(started, time_zone) as tab:
        section = tab.locator("section.view[data-view='events']")
        # The table, the chart's axis and the dates chosen all name the UTC day of the event.
        assert section.locator("tbody td").first.text_content() == day.strftime("%Y-%m-%d")
        assert day.strftime("%b %d, %Y") in section.locator("svg").text_content()
        assert tab.locator("#until").input_value() >= day.strftime("%Y-%m-%d")
        tab.select_option("#bucket", "month")
        tab.evaluate("document.body.dataset.drawn = 'false'")
        tab.click("button[type=submit]")
        drawn(tab)
        section = tab.locator("section.view[data-view='events']")
        assert section.locator("tbody td").first.text_content() == day.strftime("%Y-%m-01")
        assert day.strftime("%b %Y") in section.locator("svg").text_content()


def test_equal_counts_of_lab_activity_are_each_drawn(server: tuple[Server, datetime]) -> None:
    # One cell run, one error, one notebook opened: three marks, none hidden behind another.
    with drawn_page(server[0], "UTC") as tab:
        lab = tab.locator("section.view[data-view='lab-activity'] svg")
        marks = lab.locator("[aria-roledescription='bar'], [aria-roledescription='point']")
        boxes = [marks.nth(i).bounding_box() for i in range(marks.count())]
    places = {(round(b["x"]), round(b["y"])) for b in boxes if b is not None}
    assert len(boxes) == len(places) == 3, boxes


def test_the_events_chart_tells_actions_apart(server: tuple[Server, datetime]) -> None:
    with drawn_page(server[0], "UTC") as tab:
        legend = tab.locator("section.view[data-view='events'] svg").text_content() or ""
    assert f"{CELL} · executed" in legend, legend
    assert f"{NOTEBOOK} · opened" in legend, legend


def test_text_that_reorders_text_is_shown_escaped(server: tuple[Server, datetime]) -> None:
    with drawn_page(server[0], "UTC") as tab:
        kernels = tab.locator("section.view[data-view='kernels']")
        cells = kernels.locator("tbody td").all_text_contents()
        chart = kernels.locator("svg").text_content() or ""
    assert "\\u202e3nohtyp" in cells, cells
    assert "\\u202e3nohtyp" in chart
    assert "\u202e" not in chart + "".join(cells)


def test_invisible_and_control_characters_are_shown_escaped(
    server: tuple[Server, datetime],
) -> None:
    """A name that differs from another only by characters nobody sees (zero-width, tab,
    tags) would pass for it: each is shown as its escape, as reordering ones are."""
    with drawn_page(server[0], "UTC") as tab:
        kernels = tab.locator("section.view[data-view='kernels']")
        cells = kernels.locator("tbody td").all_text_contents()
        chart = kernels.locator("svg").text_content() or ""
    for raw, shown in INVISIBLE.items():
        assert shown in cells, cells
        assert shown in chart, chart
        assert raw not in chart + "".join(cells)


def test_no_active_users_says_how_users_are_counted(server: tuple[Server, datetime]) -> None:
    # The server records no user (no record_user): events, but no user to count.
    with drawn_page(server[0], "UTC") as tab:
        said = tab.locator("section.view[data-view='active-users'] .chart.empty").text_content()
    assert "record_user" in (said or ""), said
    assert "user-identifier" in (said or ""), said


def test_an_answer_that_is_not_json_is_said_on_the_page(server: tuple[Server, datetime]) -> None:
    # What a proxy or a login redirect answers in place of the API: an HTML page.
    def html(route: Any) -> None:
        route.fulfill(status=502, content_type="text/html", body="<html>Bad gateway</html>")

    with drawn_page(server[0], "UTC", ("**/api/telemetry/dashboard/kernels*", html)) as tab:
        kernels = tab.locator("section.view[data-view='kernels'] .chart.error").text_content()
        assert "did not answer in JSON (HTTP 502)" in (kernels or "")
        # The other views are drawn all the same.
        assert tab.locator("section.view[data-view='events'] svg").count() == 1
