"""The transparency page's studies beside its kinds of event: what each study covers, and, on
each kind, the studies covering it and whether they keep the viewing user's events out."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .studyview import StudyMark, StudyView, study_views
from .transparency import PageModel, SchemaView

if TYPE_CHECKING:
    from jupyter_telemetry_ext.core.eventlog import EventLog

Coverage = Mapping[tuple[str, Any], Sequence[str]]  # (schema id, version) -> study names


def with_own_studies(
    model: PageModel,
    eventlog: EventLog,
    user: str | None,
    groups: frozenset[str] | None = None,
    *,
    decide_here: bool = True,
) -> PageModel:
    """Return the model with `user`'s studies among the EventLog's own, and the kinds each
    covers; without their buttons unless the page's decisions are taken `decide_here`."""
    consent = eventlog.consent
    views = study_views(consent.model(user, groups)["studies"])
    if not decide_here:
        views = tuple(dataclasses.replace(view, choices=()) for view in views)
    coverage = {(s.id, s.version): consent.covering(s) for s in eventlog.schemas}
    return with_studies(model, views, coverage)


def with_studies(model: PageModel, studies: Sequence[StudyView], coverage: Coverage) -> PageModel:
    """Return the model with the user's `studies`, each listing the titles of the kinds it
    covers (by `coverage`), and each kind marked with the studies covering it."""
    by_name = {study.name: study for study in studies}
    schemas = tuple(_marked(schema, coverage, by_name) for schema in model.schemas)
    covered = tuple(
        dataclasses.replace(study, covers=_titles(schemas, study.name)) for study in studies
    )
    return dataclasses.replace(model, schemas=schemas, studies=covered)


def _marked(schema: SchemaView, coverage: Coverage, studies: Mapping[str, StudyView]) -> SchemaView:
    names = coverage.get((schema.id, schema.version), ())
    marks = tuple(
        StudyMark(name, studies[name].title, studies[name].held_back)
        for name in names
        if name in studies
    )
    return dataclasses.replace(schema, studies=marks) if marks else schema


def _titles(schemas: Sequence[SchemaView], study: str) -> tuple[str, ...]:
    """Return the titles of the kinds a study covers, each once, in the page's order."""
    titles = (s.title for s in schemas if any(m.name == study for m in s.studies))
    return tuple(dict.fromkeys(titles))
