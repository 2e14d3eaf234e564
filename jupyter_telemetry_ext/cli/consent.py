"""`jupyter telemetry consent list`: how many users took each decision on each study version.

Read from a JSON-lines event log (its consent events, the proof of each decision), from a
server's or collector's consent decisions file, or from a PostgreSQL store (--db: its consent
table, else its consent events). The latest decision of each user on each study counts once.
Counts only: no user is ever named.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from traitlets import Bool, Unicode

from jupyter_telemetry_ext.core.command import CommandGroup
from jupyter_telemetry_ext.core.consent import JsonDecisions
from jupyter_telemetry_ext.core.errors import ConsentError
from jupyter_telemetry_ext.core.studies import CONSENT_SCHEMA_ID
from jupyter_telemetry_ext.sinks.logreader import BadLine, event_time, log_files, read_events

from .main import _print_rows
from .store import _STORE_ALIASES, StoreCommand

# Each user's latest decision per study (by the time it was received), counted per study,
# version and decision. Events whose user was not recorded count as one user (user unknown).
LATEST_SQL = """SELECT study, version, decision, count(*) AS users FROM (
    SELECT DISTINCT ON (coalesce(username, ''), data->>'study') data->>'study' AS study,
        (data->>'study_version')::int AS version, data->>'decision' AS decision
    FROM {t} WHERE schema_id = %s AND (%s::text IS NULL OR data->>'study' = %s)
    ORDER BY coalesce(username, ''), data->>'study', received DESC
) latest GROUP BY study, version, decision ORDER BY study, version, decision"""
Count = tuple[str, int, str, int]  # study, version, decision, users
_UNKNOWN_TIME = datetime.min.replace(tzinfo=timezone.utc)  # an event without a readable time


class ConsentListCommand(StoreCommand):
    """Count the users per decision and version of each study, from the stored decisions."""

    name = "jupyter-telemetry-consent-list"
    description = """Count, for each study (or --study), how many users last decided granted,
    declined or shown, per study version. From a JSON-lines event log named on the command line
    (and its rotated files): its consent events. From a consent decisions file named instead
    (the JSON file of a server's TelemetryExtension.consent_file or a collector's
    TelemetryCollector.consent_file): its decisions. From the PostgreSQL store with --db (needs
    the [postgres] extra): its consent table (`telemetry_consent` beside `telemetry_events`),
    else its consent events. Users are never named. Exit status 1 when there is no decision."""
    examples = """jupyter telemetry consent list events.jsonl --study intro-2027
    jupyter telemetry consent list ~/.local/share/jupyter/jupyter_telemetry_ext_consent.json
    jupyter telemetry consent list --db env:TELEMETRY_DB --study intro-2027"""
    study = Unicode("", help="Only this study (default: every study).").tag(config=True)
    json_output = Bool(False, help="Print JSON lines instead of a table.").tag(config=True)
    aliases = {  # noqa: RUF012 - traitlets reads these class attributes
        **{k: v for k, v in _STORE_ALIASES.items() if k in ("db", "table", "config")},
        "study": "ConsentListCommand.study",
    }
    flags = {"json": ({"ConsentListCommand": {"json_output": True}}, "Print JSON lines.")}  # noqa: RUF012
    bad_lines = 0

    def start(self) -> None:
        """Print the counts; exit 1 when there is no decision (of --study), or a bad line."""
        path = self.log_path()
        rows = self._from_store() if path is None else self._from_file(path)
        rows = [row for row in rows if not self.study or row[0] == self.study]
        if not rows:
            which = f"study {self.study!r}" if self.study else "any study"
            where = str(path) if path is not None else "the store"
            self.fail(f"consent list: {where} holds no decision on {which}", 1)
        counts: list[dict[str, Any]] = [
            {"study": s, "version": v, "decision": d, "users": n} for s, v, d, n in rows
        ]
        _print_rows(counts, self.json_output, None)
        self.exit(1 if self.bad_lines else 0)

    def _from_store(self) -> list[Count]:
        from jupyter_telemetry_ext.sinks import consent_table

        study = self.study or None
        table = consent_table.consent_table(self.table)
        with self.connect(read_only=True) as conn:
            if consent_table.exists(conn, table):
                return consent_table.counts(conn, table, study)
            from psycopg import sql

            query = sql.SQL(LATEST_SQL).format(t=sql.Identifier(self.table))
            return [tuple(r) for r in conn.execute(query, [CONSENT_SCHEMA_ID, study, study])]

    def _from_file(self, path: Path) -> list[Count]:
        if is_decisions_file(path):
            try:
                return file_counts(JsonDecisions(path).every_user())
            except ConsentError as e:
                self.fail(f"consent list: {e}")
        return log_counts(read_events(log_files(path), self._bad))

    def _bad(self, bad: BadLine) -> None:
        self.bad_lines += 1
        print(bad, file=sys.stderr)


def is_decisions_file(path: Path) -> bool:
    """Return True when `path` is a consent decisions file (one JSON object per user), not a
    JSON-lines log (one event per line, each with `__schema__`)."""
    first = ""
    try:
        with path.open(encoding="utf-8") as stream:
            first = stream.readline()
            first_event = json.loads(first)
    except (OSError, ValueError):  # a decisions file is indented: its first line is "{"
        return first.strip() == "{"  # unreadable: read as a log, which says why
    return isinstance(first_event, dict) and "__schema__" not in first_event


def log_counts(capsules: Iterable[dict[str, Any]]) -> list[Count]:
    """Count the latest consent event of each user on each study (by `__timestamp__`, then by
    order in the log), per study, version and decision."""
    latest: dict[tuple[str, str], tuple[tuple[datetime, int], int, str]] = {}
    for order, capsule in enumerate(capsules):
        if capsule.get("__schema__") != CONSENT_SCHEMA_ID:
            continue
        study, version, word = (capsule.get(k) for k in ("study", "study_version", "decision"))
        if not isinstance(study, str) or not isinstance(word, str) or type(version) is not int:
            continue
        key = (str(capsule.get("__user__") or ""), study)  # no user recorded: counted as one
        when = (event_time(capsule) or _UNKNOWN_TIME, order)
        if key not in latest or when > latest[key][0]:
            latest[key] = (when, version, word)
    return _tally((study, version, word) for (_, study), (_, version, word) in latest.items())


def file_counts(decisions: dict[str, dict[str, Any]]) -> list[Count]:
    """Count the decisions of a consent decisions file (the latest per user and study)."""
    return _tally((d.study, d.version, d.decision) for per in decisions.values()
                  for d in per.values())  # fmt: skip


def _tally(decisions: Iterable[tuple[str, int, str]]) -> list[Count]:
    counted: dict[tuple[str, int, str], int] = {}
    for decision in decisions:
        counted[decision] = counted.get(decision, 0) + 1
    return [(*key, n) for key, n in sorted(counted.items())]


class ConsentApp(CommandGroup):
    """`jupyter telemetry consent`: the users' consent decisions, counted."""

    name = "jupyter-telemetry-consent"
    description = """Consent decisions: `jupyter telemetry consent list [--study S] LOG|FILE`
    or `--db URL`."""
    subcommands = {  # noqa: RUF012 - traitlets reads these class attributes
        "list": (ConsentListCommand, ConsentListCommand.__doc__ or ""),
    }
