"""What a dashboard view answers: the store's source, and the reply model of every view."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from jupyter_telemetry_ext.core.errors import DashboardStoreError, StoreError
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.timestamps import format_timestamp

from .query import Query
from .views import PROCESS_VIEWS, SQL_VIEWS, VIEWS

NO_STORE = ("this process writes no store the dashboard can read (a PostgresEventHandler or a "
            "logging.FileHandler in c.EventLog.handlers)")  # fmt: skip
STARTED = time.time()


class Source(Protocol):
    """A store the views can be asked of."""

    kind: str

    def rows(self, view: str, query: Query) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        """Return a view's columns and rows."""

    def last_received(self) -> datetime | None:
        """Return when the newest event was received."""


def source_for(eventlog: EventLog) -> Source:
    """Return the source of the first readable store among the EventLog's handlers."""
    from jupyter_telemetry_ext.sinks.postgres import PostgresEventHandler

    for handler in eventlog.handlers:
        if isinstance(handler, PostgresEventHandler):
            from .pgsource import PostgresSource

            return PostgresSource(handler.url, handler.table)
    for handler in eventlog.handlers:
        if isinstance(handler, logging.FileHandler):
            from .filesource import FileSource

            return FileSource(Path(handler.baseFilename))
    raise DashboardStoreError(NO_STORE, 503)


def reply(view: str, query: Query, source: Source, eventlog: EventLog) -> dict[str, Any]:
    """Return the model of a view (blocking: call it off the event loop)."""
    if view in SQL_VIEWS:
        columns, rows = source.rows(view, query)
        kind = source.kind
    elif view == "outcomes":
        (columns, rows), kind = outcomes(eventlog, query), "process"
    else:
        (columns, rows), kind = health(eventlog, source), "process"
    return {
        "view": view,
        "source": kind,
        "since": format_timestamp(query.first_day),
        "until": format_timestamp(query.end_day),
        "bucket": query.bucket,
        "scope": "all" if query.users is None else "groups",
        "columns": list(columns),
        "rows": [dict(zip(columns, map(_json, row), strict=True)) for row in rows],
    }


def outcomes(eventlog: EventLog, query: Query) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """Events per schema and outcome since this process started (not the time range)."""
    counts = eventlog.outcomes()
    rows = sorted((schema, outcome, n) for (schema, outcome), n in counts.items()
                  if not query.schemas or schema in query.schemas)  # fmt: skip
    return ("schema", "outcome", "events"), rows


def health(eventlog: EventLog, source: Source) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """The pipeline's health as this process knows it: whether the store can be read, its last
    event, each sink's counts. A store that is down is said, not a failure of the view."""
    try:
        newest, readable = source.last_received(), True
    except StoreError:
        newest, readable = None, False
    rows: list[tuple[Any, ...]] = [
        ("store", "readable", readable),
        ("store", "last event received", newest),
        ("process", "started", datetime.fromtimestamp(STARTED, timezone.utc)),
        ("process", "events waiting", eventlog.pending),
    ]
    failures: dict[str, int] = {}
    for (_schema, outcome), n in eventlog.outcomes().items():
        failures[outcome] = failures.get(outcome, 0) + n
    rows += [("process", f"events {outcome}", n) for outcome, n in sorted(failures.items())]
    for handler in eventlog.handlers:
        rows += _handler_rows(handler)
    return ("part", "measure", "value"), rows


def _handler_rows(handler: logging.Handler) -> list[tuple[Any, ...]]:
    counts: Mapping[str, int] | None = getattr(handler, "counts", None)
    name = type(handler).__name__
    if counts is None:
        return [(name, "writing", True)]
    down_since = getattr(handler, "_down_since", None)
    rows = [(name, key, value) for key, value in counts.items()]
    return [*rows, (name, "available", down_since is None),
            (name, "events waiting", getattr(handler, "pending", 0))]  # fmt: skip


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


__all__ = ["PROCESS_VIEWS", "VIEWS", "Source", "reply", "source_for"]
