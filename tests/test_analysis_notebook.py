"""The worked example of docs/analysis.md: the notebook runs, with a real kernel, on real logs."""

from __future__ import annotations

import logging.handlers
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.recorded_user import hashed_user

nbformat = pytest.importorskip("nbformat", reason="nbformat (with jupyter_server) not installed")
nbclient = pytest.importorskip("nbclient", reason="nbclient (with nbconvert) not installed")
pytest.importorskip("duckdb", reason="the [analysis] extra is not installed")

pytestmark = pytest.mark.e2e  # starts a kernel
ROOT = Path(__file__).parent.parent
NOTEBOOK = ROOT / "docs" / "examples" / "analysing-events.ipynb"
PAGE = ROOT / "docs" / "analysis.md"
CELL = "https://events.jupyter.org/jupyter_telemetry_ext/cell"
START = datetime(2026, 3, 2, tzinfo=timezone.utc)


def record_cells(log: Path) -> None:
    """Record 12 cell runs over 2 days by 2 users, 3 of them errors, to a rotated log."""
    handler = logging.handlers.RotatingFileHandler(log, maxBytes=1500, backupCount=20)
    allowed = {CELL: {"allowed_categories": ["unrestricted", "user-identifier"]}}
    eventlog = EventLog(handlers=[handler], allowed_schemas=allowed)
    eventlog.register_schema_file(ROOT / "schemas" / "cell" / "v1.yaml")
    for n in range(12):
        error = n % 4 == 3
        event = {"action": "executed", "status": "error" if error else "ok",
                 "duration_ms": 10.0 * (n + 1), "execution_count": n, "language": "python",
                 "source": "secret()"}  # fmt: skip
        if error:
            event["error_name"] = "NameError"
        user = hashed_user(b"k" * 32, "alice" if n % 2 else "bob")
        when = START + timedelta(hours=4 * n)  # 6 runs a day
        eventlog.record_event(CELL, 1, event, when, context={"__user__": user})
    eventlog.close()
    handler.close()


def test_the_page_shows_the_notebook_code() -> None:
    page = PAGE.read_text(encoding="utf-8")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.source in page, cell.source


def test_the_notebook_runs_on_recorded_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "events.log"
    record_cells(log)
    assert list(tmp_path.glob("events.log.*"))
    monkeypatch.setenv("TELEMETRY_EVENTS", str(log))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})  # fmt: skip
    client.execute()
    outputs = [cell.outputs for cell in notebook.cells if cell.cell_type == "code"]
    assert all(o.output_type != "error" for cell in outputs for o in cell)
    head, per_day, per_user, errors, arrow = (_text(cell) for cell in outputs)
    assert "duration_ms" in head
    assert "secret()" not in head  # the store never held the source: not allowed
    assert "2026-03-02" in per_day
    assert "2026-03-03" in per_day
    assert "6    0.166667" in per_day  # run 3 of the first day
    assert "6    0.333333" in per_day  # runs 7 and 11 of the second
    assert len(per_user.strip().splitlines()) == 4  # a header of two lines, 2 users
    assert "NameError    3" in errors
    assert "received: timestamp[us, tz=UTC]" in arrow


def _text(outputs: list[Any]) -> str:
    """Return the plain text a code cell displayed."""
    return "\n".join(str(o.get("data", {}).get("text/plain", "")) for o in outputs)
