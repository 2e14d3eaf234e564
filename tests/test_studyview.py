"""The transparency page's view of a study: its paragraphs and the choices its buttons offer."""

from __future__ import annotations

import pytest

from jupyter_telemetry_ext.server.studyview import paragraphs, study_view


@pytest.mark.parametrize(
    ("mode", "decision", "buttons"),
    [
        ("opt-in", None, [("granted", "Accept"), ("declined", "Decline")]),
        ("opt-in", "granted", [("declined", "Withdraw")]),
        ("opt-out", "declined", [("granted", "Accept")]),
        ("notice", None, [("shown", "I have read this")]),
        ("notice", "shown", []),
    ],
)
def test_the_buttons_offer_the_decisions_not_taken(
    mode: str, decision: str | None, buttons: list[tuple[str, str]]
) -> None:
    """Each decision the user has not taken on the current version, withdraw after accepting."""
    study = {"study": "s", "title": "S", "text": "t", "version": 2, "mode": mode}
    view = study_view({**study, "decision": decision, "decided_at": None, "recording": True})
    assert list(view.choices) == buttons
    assert (view.name, view.version, view.decision) == ("s", 2, decision)


def test_the_text_keeps_its_paragraphs_as_written() -> None:
    """Blank lines separate paragraphs; markup stays text (the template escapes it)."""
    text = "First line\nsame paragraph.\r\n\r\n\n<b>Second</b>\n\n  \n"
    assert paragraphs(text) == ("First line\nsame paragraph.", "<b>Second</b>")
    assert paragraphs("") == ()
