"""What the dashboard's handlers share on the server and on the hub: a view's answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado import web

from jupyter_telemetry_ext.core.errors import DashboardQueryError, DashboardStoreError, StoreError
from jupyter_telemetry_ext.core.eventlog import EventLog

from .model import Source, reply, source_for
from .query import Query, parse_query
from .views import PROCESS_VIEWS, VIEWS

SOURCE_SETTING = "telemetry_dashboard_source"
API = "api/telemetry/dashboard"


def index_model(source_kind: str, everything: bool) -> dict[str, Any]:
    """Return what `GET api/telemetry/dashboard` answers: the views this viewer may ask."""
    views = [v for v in VIEWS if everything or v not in PROCESS_VIEWS]
    return {"views": views, "source": source_kind, "scope": "all" if everything else "groups"}


def source_of(settings: dict[str, Any], eventlog: EventLog) -> Source:
    """Return the process's dashboard source (made at the first request, then kept)."""
    source = settings.get(SOURCE_SETTING)
    if source is None:
        try:
            source = source_for(eventlog)
        except DashboardStoreError as e:
            raise web.HTTPError(e.status, str(e)) from None
        settings[SOURCE_SETTING] = source
    return source


def query_of(arguments: dict[str, list[bytes]]) -> Query:
    """Return the request's query, or answer 400 naming the argument."""
    args = {k: [v.decode("utf-8", "replace") for v in vs] for k, vs in arguments.items()}
    try:
        return parse_query(args)
    except DashboardQueryError as e:
        raise web.HTTPError(400, str(e)) from None


def check_view(view: str, everything: bool) -> None:
    """Answer 404 for a view that does not exist, 403 for one this viewer may not see."""
    if view not in VIEWS:
        msg = f"view: no such dashboard view (views: {', '.join(VIEWS)})"
        raise web.HTTPError(404, msg)
    if not everything and view in PROCESS_VIEWS:
        msg = f"view: {view} is about the whole collector, for viewers who see every event"
        raise web.HTTPError(403, msg)


async def answer(view: str, query: Query, source: Source, eventlog: EventLog) -> str:
    """Return a view's JSON, computed off the event loop; 503 when the store fails."""
    try:
        model = await asyncio.to_thread(reply, view, query, source, eventlog)
    except StoreError as e:
        raise web.HTTPError(503, f"the store cannot be read: {e}") from None
    return json.dumps(model)
