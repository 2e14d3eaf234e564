"""End to end: the research events of the JupyterLab client, in headless Chromium.

A real `jupyter lab` loads this checkout's client build and schemas (tests/labs.py); Chromium
opens a notebook, types, runs, copies and pastes, scrolls, switches tabs, interrupts and restarts
the kernel and closes the notebook; the test reads the sink. It runs twice, one lab at a time:
with the default allow-list (unrestricted fields only: no cell source, no clipboard text) and
with the personal category allowed (they are there). The user's settings turn the command
kind off: none is recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
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
from tests.servers import Event

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.e2e,
    NEEDS_CHROMIUM,
]

KINDS = (
    "notebook", "cell", "command", "active-cell", "cell-structure", "cell-edit", "clipboard",
    "kernel", "scroll", "active-time",
)  # fmt: skip
PERSONAL = "user-identifiable-information"
TYPED = "typed_secret_771"
COPIED = "copied_secret_552"
SETTINGS = {"jupyter-telemetry-ext:plugin": {"events": {"command": False}, "flushInterval": 2}}
CELLS = 40


def schema(kind: str) -> str:
    """The schema id of a kind."""
    return SCHEMAS + kind


@pytest.fixture(scope="module", params=["default", "personal"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab recording every shipped kind; `personal` also allows the personal category."""
    tmp = tmp_path_factory.mktemp(f"research-{request.param}")
    rules = {"allowed_categories": [PERSONAL]} if request.param == "personal" else {}
    allowed = {schema(kind): rules for kind in KINDS}
    sources = [f"{COPIED} = {i}" if i == 1 else f"x{i} = {i}" for i in range(CELLS)]
    files = {"research.ipynb": notebook(*sources), "other.ipynb": notebook("1 + 1")}
    with running_lab(tmp, allowed, checkout=True, settings=SETTINGS, files=files) as lab:
        yield lab


def editor(page: Any, index: int) -> Any:
    """The code editor of the index-th cell of the notebook in front."""
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content").nth(index)


def work(page: Any, lab: Lab) -> None:
    """Type, run, copy and paste, scroll, switch tabs, interrupt, restart, save and close."""
    page.goto(f"{lab.url}lab/tree/research.ipynb?token={TOKEN}")
    editor(page, 0).wait_for(timeout=90_000)
    wait_for_kernel(lab)
    editor(page, 0).click()
    page.keyboard.press("End")
    page.keyboard.type(f"  # {TYPED}", delay=20)
    page.keyboard.press("Shift+Enter")  # runs cell 0, activates cell 1
    page.locator(".jp-InputArea-prompt", has_text="[1]").wait_for(timeout=WAIT * 1000)
    # Text: copy cell 1's source, paste it at the end of cell 2.
    editor(page, 1).click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Control+c")
    editor(page, 2).click()
    page.keyboard.press("End")
    page.keyboard.press("Control+v")
    # Cells: copy cell 2 and paste it below, in command mode.
    page.keyboard.press("Escape")
    page.keyboard.press("c")
    page.keyboard.press("v")
    # Kernel: interrupt (i, i) and restart (0, 0, then the dialog).
    page.keyboard.press("i")
    page.keyboard.press("i")
    page.keyboard.press("0")
    page.keyboard.press("0")
    page.locator(".jp-Dialog-button.jp-mod-accept").click()
    # Scroll down the notebook, with pauses.
    page.locator(".jp-NotebookPanel .jp-Notebook").hover()
    for _ in range(4):
        page.mouse.wheel(0, 1200)
        page.wait_for_timeout(700)
    page.wait_for_timeout(1600)
    # Another notebook in front, then back.
    page.locator(".jp-DirListing-item", has_text="other.ipynb").dblclick()
    page.locator(".lm-TabBar-tab.lm-mod-current", has_text="other.ipynb").wait_for()
    page.locator(".lm-TabBar-tab", has_text="research.ipynb").click()
    page.locator(".lm-TabBar-tab.lm-mod-current", has_text="research.ipynb").wait_for()
    page.keyboard.press("Control+s")
    saved = ".lm-TabBar-tab.lm-mod-current:not(.jp-mod-dirty)"
    page.locator(saved, has_text="research.ipynb").wait_for()
    page.locator(f"{saved} .lm-TabBar-tabCloseIcon").click()
    page.locator(".lm-TabBar-tab", has_text="research.ipynb").wait_for(state="detached")
    page.goto("about:blank")  # sends the rest with keepalive


def of(events: list[Event], kind: str, **fields: Any) -> list[Event]:
    """The events of a kind whose fields have the given values."""
    return [
        e
        for e in events
        if e["__schema__"] == schema(kind) and all(e.get(k) == v for k, v in fields.items())
    ]


@dataclass
class Recorded:
    """What the sink holds after the work: every event, those of the worked notebook, the lab."""

    events: list[Event]
    mine: list[Event]
    personal: bool
    lab: Lab


@pytest.fixture(scope="module")
def recorded(lab: Lab) -> Recorded:
    """Do the work once per lab in a fresh Chromium; wait for the last events."""
    with chromium_page(playwright) as page:
        work(page, lab)
    lab.wait_for(lambda e: e["__schema__"] == schema("notebook") and e["action"] == "closed")
    lab.wait_for(lambda e: e["__schema__"] == schema("active-time"), "active-time summary")
    events = lab.events()
    session = of(events, "notebook", action="opened", cell_count=CELLS)[0]["notebook_session"]
    mine = [e for e in events if e.get("notebook_session") == session]
    return Recorded(events, mine, lab.sink.parent.name.startswith("research-personal"), lab)


def test_notebook_opened_saved_shown_hidden_closed(recorded: Recorded) -> None:
    """Notebook v2: opened, saved, hidden and shown with its tab, closed; active time at close."""
    mine = recorded.mine
    opened = of(mine, "notebook", action="opened")[0]
    assert (opened["__schema_version__"], opened["cell_count"]) == (2, CELLS)
    assert opened["kernel_name"] == "python3"
    assert of(mine, "notebook", action="hidden", cause="tab")
    assert of(mine, "notebook", action="visible", cause="tab")
    assert of(mine, "notebook", action="saved", cell_count=CELLS + 1)
    assert of(mine, "notebook", action="closed")
    summary = of(mine, "active-time", action="summary", final=True)[0]
    assert 0 < summary["active_s"] <= summary["period_s"]
    assert summary["idle_timeout_s"] == 60


def test_cells_executed_edited_added_and_activated(recorded: Recorded) -> None:
    """Cell ids (nbformat 4.5) tie executions, edits, structure and the active cell together."""
    mine = recorded.mine
    executed = of(mine, "cell", action="executed", cell_id="cell-0")[0]
    assert executed["status"] == "ok"
    assert executed["source_length"] == len(f"x0 = 0  # {TYPED}")
    edit = of(mine, "cell-edit", cell_id="cell-0")[0]
    assert (edit["inserted"], edit["deleted"]) == (len(f"  # {TYPED}"), 0)
    assert edit["changes"] > 1  # one event for the whole burst of typing
    added = of(mine, "cell-structure", action="added", index=3)[0]
    assert added["cell_count"] == CELLS + 1
    # Debounced: the cell the user stayed on, the pasted one.
    active = of(mine, "active-cell", action="changed")[-1]
    assert (active["cell_id"], active["index"]) == (added["cell_id"], 3)


def test_clipboard_text_and_cells(recorded: Recorded) -> None:
    """Copy and paste of text (cell ids, lengths) and of cells (their ids)."""
    mine = recorded.mine
    copy = of(mine, "clipboard", action="copy", what="text")[0]
    assert (copy["cell_id"], copy["length"]) == ("cell-1", len(f"{COPIED} = 1"))
    paste = of(mine, "clipboard", action="paste", what="text")[0]
    assert (paste["cell_id"], paste["length"]) == ("cell-2", len(f"{COPIED} = 1"))
    assert of(mine, "clipboard", action="copy", what="cells", cell_ids=["cell-2"], cell_count=1)
    added = of(mine, "cell-structure", action="added", index=3)[0]
    assert of(mine, "clipboard", action="paste", what="cells", cell_ids=[added["cell_id"]])


def test_kernel_and_scroll(recorded: Recorded) -> None:
    """Interrupt and restart once each; scrolling reports the cells in view further down."""
    mine = recorded.mine
    assert len(of(mine, "kernel", action="interrupted", kernel_name="python3")) == 1
    assert len(of(mine, "kernel", action="restarted", kernel_name="python3")) == 1
    scrolls = of(mine, "scroll", action="scrolled")
    assert any(s["first_index"] > 0 and "cell-0" not in s["cell_ids"] for s in scrolls)
    assert all(s["cell_count"] == CELLS + 1 for s in scrolls)


def test_a_kind_turned_off_in_the_settings_is_not_recorded(recorded: Recorded) -> None:
    """The user's settings turn the command kind off: the admin allows it, none is recorded."""
    assert not [e for e in recorded.events if e["__schema__"] == schema("command")]


def test_content_only_with_the_personal_category(recorded: Recorded) -> None:
    """Default allow-list: no source, clipboard text or path in the sink; personal: all there."""
    mine = recorded.mine
    edit = of(mine, "cell-edit", cell_id="cell-0")[0]
    executed = of(mine, "cell", action="executed", cell_id="cell-0")[0]
    copy = of(mine, "clipboard", action="copy", what="text")[0]
    paste = of(mine, "clipboard", action="paste", what="text")[0]
    opened = of(mine, "notebook", action="opened")[0]
    if recorded.personal:
        assert TYPED in edit["source"]
        assert TYPED in executed["source"]
        assert copy["text"] == f"{COPIED} = 1"
        assert COPIED in paste["text"]
        assert opened["path"] == "research.ipynb"
    else:
        sink = recorded.lab.sink.read_text(encoding="utf-8")
        for secret in (TYPED, COPIED, "research.ipynb"):
            assert secret not in sink
        assert edit["source"] is executed["source"] is copy["text"] is paste["text"] is None
