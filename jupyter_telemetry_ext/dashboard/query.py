"""A dashboard request's filters: time range, schemas, period; read from query arguments."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from jupyter_telemetry_ext.core.errors import DashboardQueryError as QueryError
from jupyter_telemetry_ext.core.timestamps import parse_timestamp

BUCKETS = ("day", "week", "month")
DEFAULT_DAYS = 30
MAX_SCHEMAS = 50
MAX_SCHEMA_LENGTH = 1000
MAX_DAYS = 3660  # ten years: a longer range is a mistake, not a question
ARGUMENTS = ("since", "until", "bucket", "schema")
# Query arguments that are not the view's: the server's token and XSRF token, a cache-buster.
PASSED = frozenset({"token", "_xsrf", "_"})


@dataclass(frozen=True)
class Query:
    """What a view aggregates: events received in the UTC days from `since` to `until`, of
    `schemas` (all if empty)."""

    since: datetime
    until: datetime
    bucket: str = "day"
    schemas: tuple[str, ...] = ()
    users: tuple[str, ...] | None = field(default=None)  # None: everyone's; else only theirs

    @property
    def first_day(self) -> datetime:
        """Return the UTC midnight that starts the day of `since` (views count whole days)."""
        return self.since.astimezone(timezone.utc).replace(hour=0, minute=0, second=0,
                                                           microsecond=0)  # fmt: skip

    @property
    def end_day(self) -> datetime:
        """Return the UTC midnight that ends the day of `until` (excluded), or `until` itself."""
        return day_end(self.until)


def day_end(until: datetime) -> datetime:
    """Return the UTC midnight that ends the day of `until` (excluded), or `until` itself."""
    start = until.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return start if start == until else start + timedelta(days=1)


def parse_query(args: Mapping[str, Sequence[str]], now: datetime | None = None) -> Query:
    """Return the query that `since`, `until`, `bucket` and `schema` arguments describe."""
    for name in args:
        if name not in ARGUMENTS and name not in PASSED:
            # A misspelt filter (`schemas`, `from`) would otherwise answer every event.
            shown = name if name.isprintable() and len(name) <= 64 else "an argument"
            msg = f"{shown}: not an argument of the dashboard (arguments: {', '.join(ARGUMENTS)})"
            raise QueryError(msg)
    now = now or datetime.now(timezone.utc)
    until = _time(args, "until") or now
    # The default: the DEFAULT_DAYS whole UTC days that end with the day of `until`.
    since = _time(args, "since") or day_end(until) - timedelta(days=DEFAULT_DAYS)
    if since >= until:
        msg = "since: must be earlier than until"
        raise QueryError(msg)
    if until - since > timedelta(days=MAX_DAYS):
        msg = f"since: the range from since to until is longer than {MAX_DAYS} days"
        raise QueryError(msg)
    bucket = _one(args, "bucket") or "day"
    if bucket not in BUCKETS:
        msg = f"bucket: must be one of {', '.join(BUCKETS)}"
        raise QueryError(msg)
    schemas = tuple(s for s in args.get("schema", ()) if s)
    if len(schemas) > MAX_SCHEMAS:
        msg = f"schema: at most {MAX_SCHEMAS} schemas"
        raise QueryError(msg)
    if any(len(s) > MAX_SCHEMA_LENGTH or not s.isprintable() for s in schemas):
        msg = f"schema: a schema id is printable text of at most {MAX_SCHEMA_LENGTH} characters"
        raise QueryError(msg)
    return Query(since, until, bucket, schemas)


def _one(args: Mapping[str, Sequence[str]], name: str) -> str:
    values = args.get(name, ())
    if len(values) > 1:
        msg = f"{name}: given more than once"
        raise QueryError(msg)
    return values[0] if values else ""


def _time(args: Mapping[str, Sequence[str]], name: str) -> datetime | None:
    text = _one(args, name)
    if not text:
        return None
    try:
        value = parse_timestamp(text)
    except (ValueError, TypeError, OverflowError):
        msg = f"{name}: not an RFC 3339 time with a time zone (e.g. 2026-01-31T00:00:00Z)"
        raise QueryError(msg) from None
    if value.year < 2000 or value.year > 9000:
        msg = f"{name}: out of range (years 2000 to 9000)"
        raise QueryError(msg)
    return value
