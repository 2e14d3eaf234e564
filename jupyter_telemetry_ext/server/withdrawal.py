"""Erasing a user's events of a study when they withdraw (`erase_on_withdrawal`): from each
PostgreSQL handler and each JSON-lines file handler, once the events already accepted are
written. The collector erases the user's events from its stores; a single server, whose events
are all its user's, every event of the study from its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.studies import Study
from jupyter_telemetry_ext.sinks.postgres import PostgresEventHandler
from jupyter_telemetry_ext.sinks.study_erasure import erase_user_schemas, erase_user_schemas_log

FLUSH_TIMEOUT_SECONDS = 30.0


def erasure_problem(eventlog: EventLog, record_user: str | None) -> str | None:
    """Return why a study's `erase_on_withdrawal` cannot be honoured here, or None
    (`record_user` None: a single server's, whose events are all its user's)."""
    erasing = sorted(s.name for s in eventlog.consent.studies.values() if s.erase_on_withdrawal)
    if not erasing:
        return None
    where = f"EventLog.studies[{erasing[0]!r}].erase_on_withdrawal"
    if record_user == "none":
        return f"{where}: events name no user (record_user = 'none'): nothing could be erased"
    if not stores(eventlog) and not logs(eventlog):
        return (f"{where}: erases from PostgreSQL stores and JSON-lines files, and no "
                "PostgresEventHandler or logging.FileHandler is set")  # fmt: skip
    return None


def check_erasure(
    eventlog: EventLog,
    record_user: str | None,
    refuse: Callable[[list[str]], Any],
    log: logging.Logger,
) -> None:
    """Refuse to start when a study's erasure cannot be honoured; name the handlers that a
    withdrawal does not erase from."""
    problem = erasure_problem(eventlog, record_user)
    if problem:
        refuse([problem])
    if any(s.erase_on_withdrawal for s in eventlog.consent.studies.values()):
        for handler in others(eventlog):
            log.warning("Telemetry: a withdrawal erases from PostgreSQL and JSON-lines files "
                        "only, not from the handler %r: erase there by hand", handler)  # fmt: skip


def stores(eventlog: EventLog) -> list[PostgresEventHandler]:
    """Return the PostgreSQL handlers of an EventLog."""
    return [h for h in eventlog.handlers if isinstance(h, PostgresEventHandler)]


def logs(eventlog: EventLog) -> list[logging.FileHandler]:
    """Return the JSON-lines file handlers of an EventLog."""
    return [h for h in eventlog.handlers if isinstance(h, logging.FileHandler)]


def others(eventlog: EventLog) -> list[logging.Handler]:
    """Return the handlers a withdrawal does not erase from."""
    erased = (PostgresEventHandler, logging.FileHandler)
    return [h for h in eventlog.handlers if not isinstance(h, erased)]


async def erase_withdrawn(eventlog: EventLog, study: Study, user: str | None) -> int:
    """Erase `user`'s (as stored; None: every user's) events of `study` from every PostgreSQL
    and file handler; return how many. The events accepted so far are written first, so none
    of them comes back later; the withdrawal keeps any later one out."""
    if not await asyncio.to_thread(eventlog.flush, FLUSH_TIMEOUT_SECONDS):
        msg = "the events accepted before the withdrawal are not written yet: erase again later"
        raise TimeoutError(msg)
    schema_ids = sorted({s.id for s in eventlog.schemas if study.covers(s)})
    operator = f"withdrawal from study {study.name}"
    total = 0
    for store in stores(eventlog):
        url = store._url  # the handler's resolved URL, never logged
        total += await asyncio.to_thread(
            erase_user_schemas, url, store.table, user, schema_ids, operator
        )
    for handler in logs(eventlog):
        total += await asyncio.to_thread(
            erase_user_schemas_log, handler, user, schema_ids, operator
        )
    return total
