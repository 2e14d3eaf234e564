"""The transparency page's studies: each study of the viewing user, their decision, the choices.

The study's text is shown as written (escaped by the template, paragraphs kept), never rendered
as HTML or markdown: nothing an admin writes in the config can put markup or script in the page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jupyter_telemetry_ext.core.consent import DECLINED, GRANTED, NEEDED, SHOWN


@dataclass(frozen=True)
class StudyView:
    """One study as the page shows it, with the user's decision and the buttons to change it."""

    name: str
    title: str
    paragraphs: tuple[str, ...]
    mode: str
    version: int
    decision: str | None
    decided_at: str | None
    recording: bool
    choices: tuple[tuple[str, str], ...]  # (decision, button label)
    covers: tuple[str, ...] = ()  # the titles of the kinds of event it covers

    @property
    def held_back(self) -> str | None:
        """Return why the study keeps the user's events out ("declined", "needed"), or None."""
        if self.recording:
            return None
        return DECLINED if self.decision == DECLINED else NEEDED


@dataclass(frozen=True)
class StudyMark:
    """A study covering a kind of event, as that kind shows it: its name and title, and whether
    (and why: "declined", "needed") it keeps the user's events of the kind out."""

    name: str
    title: str
    held_back: str | None


def study_views(studies: Sequence[Mapping[str, Any]]) -> tuple[StudyView, ...]:
    """Return the views of `GET api/telemetry/consent`'s studies."""
    return tuple(study_view(study) for study in studies)


def study_view(study: Mapping[str, Any]) -> StudyView:
    """Return the view of one study of `GET api/telemetry/consent`."""
    decision = study.get("decision")
    return StudyView(
        name=str(study["study"]),
        title=str(study.get("title") or study["study"]),
        paragraphs=paragraphs(str(study.get("text") or "")),
        mode=str(study.get("mode")),
        version=int(study["version"]),
        decision=decision if isinstance(decision, str) else None,
        decided_at=study.get("decided_at") if isinstance(study.get("decided_at"), str) else None,
        recording=study.get("recording") is True,
        choices=choices(str(study.get("mode")), decision),
    )


def choices(mode: str, decision: object) -> tuple[tuple[str, str], ...]:
    """Return the decisions the user can take now, with their buttons' labels."""
    if mode == "notice":
        return () if decision == SHOWN else ((SHOWN, "I have read this"),)
    offered = []
    if decision != GRANTED:
        offered.append((GRANTED, "Accept"))
    if decision != DECLINED:
        offered.append((DECLINED, "Withdraw" if decision == GRANTED else "Decline"))
    return tuple(offered)


def paragraphs(text: str) -> tuple[str, ...]:
    """Return the text's paragraphs (separated by blank lines), stripped, none empty."""
    blocks = (block.strip() for block in text.replace("\r\n", "\n").split("\n\n"))
    return tuple(block for block in blocks if block)
