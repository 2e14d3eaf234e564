"""The dashboard's views: each an aggregate over daily counts, the same SQL for every store.

A view never selects an event: only counts per period, schema, action or kernel. Each store
gives two relations of whole UTC days, already filtered by the query (time range, schemas,
users): `{counts}` (day, schema_id, action, status, kernel_name, username, events) and
`{sessions}` (day, username, minutes, sessions: notebook sessions by their active minutes that
day, in 5-minute bins). Times are UTC; the page shows them in the viewer's time zone.
"""

# ruff: noqa: S608 - the SQL is made of constants; every value a request gives is a parameter

from __future__ import annotations

from collections.abc import Callable

from .query import Query

EXT = "https://events.jupyter.org/jupyter_telemetry_ext/"
CELL, NOTEBOOK, ACTIVE_TIME = EXT + "cell", EXT + "notebook", EXT + "active-time"
SERVER_ACTION = "https://schema.jupyter.org/jupyterhub/events/server-action"
# The event properties the views read (a file store loads only these).
FIELDS = ("action", "status", "kernel_name", "notebook_session", "active_s")
COUNT_COLUMNS = ("day", "schema_id", "action", "status", "kernel_name", "username", "events")
MINUTES_STEP, MINUTES_MAX = 5, 120
# A session's active minutes in a day: the sum of its summaries' `active_s` that day (each
# counts the seconds since the previous one), as SQL over a column `s`.
MINUTES_SQL = f"CAST(least(floor(s / {60 * MINUTES_STEP}) * {MINUTES_STEP}, {MINUTES_MAX}) AS int)"
TOTAL = "CAST(sum(events) AS bigint)"


def filters(query: Query, in_list: Callable[[str], str]) -> tuple[str, list[object]]:
    """Return the SQL (`AND ...`, or "") and parameters of the query's schemas and users."""
    sql, params = "", list[object]()
    if query.schemas:
        sql += " AND " + in_list("schema_id")
        params.append(list(query.schemas))
    if query.users is not None:
        sql += " AND " + in_list("username")
        params.append(list(query.users))
    return sql, params


def period(bucket: str) -> str:
    """Return the SQL of a row's period: its day truncated to the bucket (a checked word)."""
    return f"date_trunc('{bucket}', day)"


def active_users(q: Query) -> tuple[str, tuple[str, ...]]:
    """Distinct recorded users per period (a count, never who)."""
    sql = (f"SELECT {period(q.bucket)} AS period, count(DISTINCT username) AS users "
           "FROM {counts} WHERE username IS NOT NULL GROUP BY 1 ORDER BY 1")  # fmt: skip
    return sql, ("period", "users")


def events(q: Query) -> tuple[str, tuple[str, ...]]:
    """Events per period, schema and action."""
    sql = (f"SELECT {period(q.bucket)} AS period, schema_id, coalesce(action, '') AS action, "
           f"{TOTAL} AS events FROM {{counts}} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")  # fmt: skip
    return sql, ("period", "schema", "action", "events")


def lab_activity(q: Query) -> tuple[str, tuple[str, ...]]:
    """JupyterLab's cell runs, cell errors and notebooks opened per period."""
    cell, notebook = f"schema_id = '{CELL}'", f"schema_id = '{NOTEBOOK}'"

    def total(where: str) -> str:  # a bigint: PostgreSQL's sum of bigints is numeric (3.0)
        return f"CAST(coalesce(sum(events) FILTER (WHERE {where}), 0) AS bigint)"

    runs, errors = total(cell + " AND action = 'executed'"), total(cell + " AND status = 'error'")
    opened = total(notebook + " AND action = 'opened'")
    sql = (
        f"SELECT {period(q.bucket)} AS period, {runs} AS cell_runs, {errors} AS cell_errors, "
        f"{opened} AS notebooks_opened "
        f"FROM {{counts}} WHERE schema_id IN ('{CELL}', '{NOTEBOOK}') GROUP BY 1 ORDER BY 1"
    )
    return sql, ("period", "cell_runs", "cell_errors", "notebooks_opened")


def active_time(q: Query) -> tuple[str, tuple[str, ...]]:
    """Notebook sessions (each day) by their active minutes, in 5-minute bins."""
    sql = ("SELECT minutes, CAST(sum(sessions) AS bigint) AS sessions FROM {sessions} "
           "GROUP BY 1 ORDER BY 1")  # fmt: skip
    return sql, ("minutes", "sessions")


def kernels(q: Query) -> tuple[str, tuple[str, ...]]:
    """Events and distinct users per kernel name (the 50 most used)."""
    sql = (f"SELECT kernel_name AS kernel, {TOTAL} AS events, count(DISTINCT username) AS users "
           "FROM {counts} WHERE kernel_name IS NOT NULL GROUP BY 1 "
           "ORDER BY 2 DESC, 1 LIMIT 50")  # fmt: skip
    return sql, ("kernel", "events", "users")


def servers(q: Query) -> tuple[str, tuple[str, ...]]:
    """The hub's server starts and stops per period (its server-action events)."""
    sql = (f"SELECT {period(q.bucket)} AS period, action, {TOTAL} AS events FROM {{counts}} "
           f"WHERE schema_id = '{SERVER_ACTION}' GROUP BY 1, 2 ORDER BY 1, 2")  # fmt: skip
    return sql, ("period", "action", "events")


SQL_VIEWS: dict[str, Callable[[Query], tuple[str, tuple[str, ...]]]] = {
    "active-users": active_users,
    "events": events,
    "lab-activity": lab_activity,
    "active-time": active_time,
    "kernels": kernels,
    "servers": servers,
}
# The views that read no user (a viewer of every event gets them from counts without users).
USERLESS = frozenset({"events", "lab-activity", "servers"})
# Views of what this process knows (not the store): only for viewers who see everything.
PROCESS_VIEWS = ("outcomes", "health")
VIEWS = (*SQL_VIEWS, *PROCESS_VIEWS)
