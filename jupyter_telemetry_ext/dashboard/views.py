"""The dashboard's views: each an aggregate query, written once for PostgreSQL and DuckDB.

A view never selects an event: only counts per period, schema, action or kernel. Times are
UTC; the page shows them in the viewer's time zone.
"""

# ruff: noqa: S608 - the SQL is made of constants; every value a request gives is a parameter

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .query import Query

EXT = "https://events.jupyter.org/jupyter_telemetry_ext/"
CELL, NOTEBOOK, ACTIVE_TIME = EXT + "cell", EXT + "notebook", EXT + "active-time"
SERVER_ACTION = "https://schema.jupyter.org/jupyterhub/events/server-action"
# The event properties the views read (a file store loads only these).
FIELDS = ("action", "status", "kernel_name", "notebook_session", "active_s")
ACTIVE_MINUTES_STEP, ACTIVE_MINUTES_MAX = 5, 120


@dataclass(frozen=True)
class Dialect:
    """How one store spells what the views need."""

    name: str
    period: Callable[[str], str]  # the SQL of `received` truncated to a bucket (UTC)
    field: Callable[[str], str]  # the SQL of an event property as text
    in_list: Callable[[str], str]  # the SQL testing a column against a list parameter
    placeholder: str = "%s"


POSTGRES = Dialect(
    "postgresql",
    period=lambda bucket: f"date_trunc('{bucket}', received AT TIME ZONE 'UTC')",
    field=lambda name: f"(data->>'{name}')",
    in_list=lambda column: f"{column} = ANY(%s)",
)
DUCKDB = Dialect(
    "duckdb",
    period=lambda bucket: f"date_trunc('{bucket}', received)",
    field=lambda name: name,
    in_list=lambda column: f"list_contains(%s, {column})",
    placeholder="?",
)


@dataclass(frozen=True)
class Statement:
    """A view's SQL for one dialect, with its parameters and its columns' names."""

    sql: str
    params: list[Any]
    columns: tuple[str, ...]


def where(query: Query, dialect: Dialect, received: Callable[[Any], Any]) -> tuple[str, list[Any]]:
    """Return the WHERE clause of a query's filters and its parameters."""
    clauses, params = ["received >= %s", "received < %s"], [received(query.since),
                                                            received(query.until)]  # fmt: skip
    if query.schemas:
        clauses.append(dialect.in_list("schema_id"))
        params.append(list(query.schemas))
    if query.users is not None:
        clauses.append(dialect.in_list("username"))
        params.append(list(query.users))
    return " AND ".join(clauses), params


def active_users(q: Query, d: Dialect, w: str) -> tuple[str, tuple[str, ...]]:
    """Distinct recorded users per period (a count, never who)."""
    sql = (f"SELECT {d.period(q.bucket)} AS period, count(DISTINCT username) AS users "
           f"FROM {{t}} WHERE {w} AND username IS NOT NULL GROUP BY 1 ORDER BY 1")  # fmt: skip
    return sql, ("period", "users")


def events(q: Query, d: Dialect, w: str) -> tuple[str, tuple[str, ...]]:
    """Events per period, schema and action."""
    action = f"coalesce({d.field('action')}, '')"
    sql = (f"SELECT {d.period(q.bucket)} AS period, schema_id, {action} AS action, "
           f"count(*) AS events FROM {{t}} WHERE {w} "
           "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")  # fmt: skip
    return sql, ("period", "schema", "action", "events")


def lab_activity(q: Query, d: Dialect, w: str) -> tuple[str, tuple[str, ...]]:
    """JupyterLab's cell runs, cell errors and notebooks opened per period."""
    cell, notebook = f"schema_id = '{CELL}'", f"schema_id = '{NOTEBOOK}'"
    sql = (
        f"SELECT {d.period(q.bucket)} AS period, "
        f"count(*) FILTER (WHERE {cell} AND {d.field('action')} = 'executed') AS cell_runs, "
        f"count(*) FILTER (WHERE {cell} AND {d.field('status')} = 'error') AS cell_errors, "
        f"count(*) FILTER (WHERE {notebook} AND {d.field('action')} = 'opened') "
        f"AS notebooks_opened FROM {{t}} WHERE {w} AND schema_id IN ('{CELL}', '{NOTEBOOK}') "
        "GROUP BY 1 ORDER BY 1"
    )
    return sql, ("period", "cell_runs", "cell_errors", "notebooks_opened")


def active_time(q: Query, d: Dialect, w: str) -> tuple[str, tuple[str, ...]]:
    """How many notebook sessions had how many minutes of active time (5-minute bins)."""
    step, top = ACTIVE_MINUTES_STEP, ACTIVE_MINUTES_MAX
    seconds = f"CAST({d.field('active_s')} AS float8)"
    sql = (
        f"SELECT least(floor(s / {60 * step}) * {step}, {top}) AS minutes, count(*) AS sessions "
        f"FROM (SELECT {d.field('notebook_session')} AS ses, max({seconds}) AS s FROM {{t}} "
        f"WHERE {w} AND schema_id = '{ACTIVE_TIME}' AND {d.field('notebook_session')} "
        "IS NOT NULL GROUP BY 1) AS per_session GROUP BY 1 ORDER BY 1"
    )
    return sql, ("minutes", "sessions")


def kernels(q: Query, d: Dialect, w: str) -> tuple[str, tuple[str, ...]]:
    """Events and distinct users per kernel name (the 50 most used)."""
    kernel = d.field("kernel_name")
    sql = (f"SELECT {kernel} AS kernel, count(*) AS events, count(DISTINCT username) AS users "
           f"FROM {{t}} WHERE {w} AND {kernel} IS NOT NULL GROUP BY 1 "
           "ORDER BY 2 DESC, 1 LIMIT 50")  # fmt: skip
    return sql, ("kernel", "events", "users")


def servers(q: Query, d: Dialect, w: str) -> tuple[str, tuple[str, ...]]:
    """The hub's server starts and stops per period (its server-action events)."""
    sql = (f"SELECT {d.period(q.bucket)} AS period, {d.field('action')} AS action, "
           f"count(*) AS events FROM {{t}} WHERE {w} AND schema_id = '{SERVER_ACTION}' "
           "GROUP BY 1, 2 ORDER BY 1, 2")  # fmt: skip
    return sql, ("period", "action", "events")


SQL_VIEWS: dict[str, Callable[[Query, Dialect, str], tuple[str, tuple[str, ...]]]] = {
    "active-users": active_users,
    "events": events,
    "lab-activity": lab_activity,
    "active-time": active_time,
    "kernels": kernels,
    "servers": servers,
}
# Views of what this process knows (not the store): only for viewers who see everything.
PROCESS_VIEWS = ("outcomes", "health")
VIEWS = (*SQL_VIEWS, *PROCESS_VIEWS)


def statement(
    view: str, query: Query, dialect: Dialect, received: Callable[[Any], Any], table: str
) -> Statement:
    """Return the SQL of a view over `table` (an identifier already quoted)."""
    clause, params = where(query, dialect, received)
    sql, columns = SQL_VIEWS[view](query, dialect, clause)
    sql = sql.replace("{t}", table)
    if dialect.placeholder != "%s":
        sql = sql.replace("%s", dialect.placeholder)
    return Statement(sql, params, columns)
