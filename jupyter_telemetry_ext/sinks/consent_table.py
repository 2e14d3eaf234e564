"""Consent decisions kept in the PostgreSQL store: the `<prefix>_consent` table beside the events.

One row per user, study and study version: the decision and when it was taken. The user is
the keyed hash of the hub user name (the key of the store's user hashes: what the events table
holds when `record_user = "hashed"`); the name itself only when `record_user = "username"`.
Each change bumps a counter in `<prefix>_consent_state`, which every collector polls, so that
a decision taken on one collector process applies on the others within a second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from jupyter_telemetry_ext.core.consent import DECLINED, Decision
from jupyter_telemetry_ext.core.errors import ConsentError

from .pgtable import masked, scrub

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("jupyter_telemetry_ext.sinks.consent_table")
LAYOUT = 1  # of the tables below; a newer one is refused
DDL = """\
CREATE TABLE IF NOT EXISTS {c} (
    user_key   text        NOT NULL,  -- a keyed hash of the user name (the store's hash key)
    username   text,                  -- the name, only when record_user = "username"
    study      text        NOT NULL,
    version    integer     NOT NULL,  -- the study version decided on
    decision   text        NOT NULL,  -- granted, declined or shown
    decided_at timestamptz NOT NULL,
    PRIMARY KEY (user_key, study, version)
);
CREATE TABLE IF NOT EXISTS {c_state} (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    layout  integer NOT NULL,          -- of these tables
    changes bigint  NOT NULL DEFAULT 0 -- bumped by each decision and each erasure
);
"""
UPSERT = """INSERT INTO {c} (user_key, username, study, version, decision, decided_at)
VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (user_key, study, version) DO UPDATE
SET username = EXCLUDED.username, decision = EXCLUDED.decision, decided_at = EXCLUDED.decided_at"""
BUMP = "UPDATE {c_state} SET changes = changes + 1 RETURNING changes"
# Each user's latest decision per study, counted per study, version and decision.
COUNTS = """SELECT study, version, decision, count(*) AS users FROM (
    SELECT DISTINCT ON (user_key, study) study, version, decision FROM {c}
    WHERE (%s::text IS NULL OR study = %s) ORDER BY user_key, study, decided_at DESC
) latest GROUP BY study, version, decision ORDER BY study, version, decision"""

Decisions = dict[str, dict[str, Decision]]  # user key -> study -> latest decision


def consent_table(events_table: str) -> str:
    """Return the consent table beside an events table (`telemetry_events`: `telemetry_consent`)."""
    prefix = events_table.removesuffix("_events")
    return prefix + "_consent"


def _names(table: str) -> dict[str, Any]:
    from psycopg import sql

    return {"c": sql.Identifier(table), "c_state": sql.Identifier(table + "_state")}


def ensure(conn: psycopg.Connection[Any], table: str) -> None:
    """Create the consent tables if missing; raise ConsentError for a newer layout."""
    from psycopg import sql

    ids = _names(table)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [table + ":ddl"])
        conn.execute(sql.SQL(DDL).format(**ids))
        conn.execute(sql.SQL("INSERT INTO {c_state} (layout) VALUES (%s) ON CONFLICT DO NOTHING")
                     .format(**ids), [LAYOUT])  # fmt: skip
        row = conn.execute(sql.SQL("SELECT layout FROM {c_state}").format(**ids)).fetchone()
    if row is not None and row[0] > LAYOUT:
        msg = (f"PostgreSQL table {table!r} has layout version {row[0]}; this version of "
               f"jupyter_telemetry_ext understands up to {LAYOUT}: upgrade it")  # fmt: skip
        raise ConsentError(msg, 500)


def exists(conn: psycopg.Connection[Any], table: str) -> bool:
    """Return True when the store has the consent table."""
    row = conn.execute("SELECT to_regclass(%s)", ['"' + table.replace('"', '""') + '"']).fetchone()
    return row is not None and row[0] is not None


def read_all(conn: psycopg.Connection[Any], table: str) -> tuple[int, Decisions]:
    """Return the change counter and every user's latest decision per study."""
    from psycopg import sql

    ids = _names(table)
    with conn.transaction():  # one snapshot: the counter matches the rows
        row = conn.execute(sql.SQL("SELECT changes FROM {c_state}").format(**ids)).fetchone()
        rows = conn.execute(sql.SQL("SELECT user_key, study, version, decision, decided_at "
                                    "FROM {c} ORDER BY decided_at").format(**ids))  # fmt: skip
        decisions: Decisions = {}
        for key, study, version, word, at in rows:
            decisions.setdefault(key, {})[study] = Decision(study, version, word, _stamp(at))
    return (row[0] if row else 0), decisions


def counts(
    conn: psycopg.Connection[Any], table: str, study: str | None
) -> list[tuple[str, int, str, int]]:
    """Return (study, version, decision, users) for each users' latest decision."""
    from psycopg import sql

    query = sql.SQL(COUNTS).format(**_names(table))
    return [tuple(r) for r in conn.execute(query, [study, study]).fetchall()]


def erase_user_rows(
    conn: psycopg.Connection[Any], table: str, users: Sequence[str]
) -> tuple[int, int]:
    """Erase a person's decisions (`users`: their keys and name): grants and notices are deleted,
    declines are kept without the name (a keyed hash only), so that erasing a person never turns
    recording on again. Return (deleted, declines kept)."""
    from psycopg import sql

    ids = _names(table)
    match = sql.SQL("(user_key = ANY(%s) OR username = ANY(%s))")
    with conn.transaction():
        deleted = conn.execute(
            sql.SQL("DELETE FROM {c} WHERE {m} AND decision <> %s").format(m=match, **ids),
            [list(users), list(users), DECLINED],
        ).rowcount
        kept = conn.execute(
            sql.SQL("UPDATE {c} SET username = NULL WHERE {m}").format(m=match, **ids),
            [list(users), list(users)],
        ).rowcount
        conn.execute(sql.SQL(BUMP).format(**ids))
    return int(deleted), int(kept)


def _stamp(value: datetime) -> str:
    """Return a decision time as the API writes it: ISO 8601 UTC in milliseconds, ending in Z."""
    text = value.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


class PgDecisions:
    """Decisions kept in the store's consent table, read whole into memory and kept current."""

    def __init__(self, url: str, table: str, key: Callable[[str], str], keep_names: bool) -> None:
        """Keep decisions in `table` at `url`, users by `key(name)` (and their names when
        `keep_names`); raise ConsentError when the store cannot be read."""
        self._url, self.table, self._key, self._keep_names = url, table, key, keep_names
        self.where = f"PostgreSQL {masked(url)} table {table}"
        self._lock = threading.Lock()  # the decisions in memory
        self._io = threading.Lock()  # a save and a reload: one at a time, in order
        self._failing = False
        try:
            with self._connect() as conn:
                ensure(conn, table)
                self._changes, self._decisions = read_all(conn, table)
        except _errors() as e:
            msg = f"{self.where}: the consent decisions cannot be read ({self._reason(e)})"
            raise ConsentError(msg, 500) from None

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        return psycopg.connect(self._url, autocommit=True, connect_timeout=10)

    def _reason(self, error: Exception) -> str:
        return scrub(str(error).strip().splitlines()[0] if str(error).strip() else
                     type(error).__name__, self._url)  # fmt: skip

    def load(self, user: str) -> dict[str, Decision]:
        """Return a user's latest decision per study (from memory)."""
        key = self._key(user)
        with self._lock:
            return dict(self._decisions.get(key, {}))

    def save(self, user: str, decision: Decision) -> None:
        """Write a decision in one transaction with the change counter; raise OSError if not."""
        from psycopg import sql

        key, ids = self._key(user), _names(self.table)
        name = user if self._keep_names else None
        row = [key, name, decision.study, decision.version, decision.decision, decision.decided_at]
        with self._io:
            try:
                with self._connect() as conn, conn.transaction():
                    conn.execute(sql.SQL(UPSERT).format(**ids), row)
                    bumped = conn.execute(sql.SQL(BUMP).format(**ids)).fetchone()
            except _errors() as e:
                msg = f"{self.where}: the decision was not written ({self._reason(e)})"
                raise OSError(msg) from None
            with self._lock:
                self._decisions.setdefault(key, {})[decision.study] = decision
                if bumped is not None and bumped[0] == self._changes + 1:  # none else's between
                    self._changes = bumped[0]

    def reload(self) -> bool:
        """Read the decisions again when any process changed them; return True if it did.

        When the store cannot be reached, the decisions last read stay in force (logged once).
        """
        with self._io:
            return self._reload()

    def _reload(self) -> bool:
        from psycopg import sql

        try:
            with self._connect() as conn:
                query = sql.SQL("SELECT changes FROM {c_state}").format(**_names(self.table))
                row = conn.execute(query).fetchone()
                if row is None or row[0] == self._changes:
                    self._recovered()
                    return False
                changes, decisions = read_all(conn, self.table)
        except _errors() as e:
            if not self._failing:
                log.warning("Telemetry: %s cannot be read (%s): the decisions read last stay "
                            "in force", self.where, self._reason(e))  # fmt: skip
            self._failing = True
            return False
        self._recovered()
        with self._lock:
            self._changes, self._decisions = changes, decisions
        return True

    def _recovered(self) -> None:
        if self._failing:
            log.warning("Telemetry: %s can be read again", self.where)
        self._failing = False


def _errors() -> tuple[type[Exception], ...]:
    """Return what a failing store raises: psycopg's errors and the OS's."""
    import psycopg

    return (psycopg.Error, OSError)
