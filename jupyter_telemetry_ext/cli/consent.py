"""`jupyter telemetry consent list`: how many users took each decision on each study version.

Read from the store's consent table (where a collector with a PostgreSQL store keeps the
decisions), else from the consent events of the store (the proof of each decision): the latest
decision of each user on each study counts once. Counts only: no user is ever named.
"""

from __future__ import annotations

from typing import Any

from traitlets import Bool, Unicode

from jupyter_telemetry_ext.core.command import CommandGroup
from jupyter_telemetry_ext.core.studies import CONSENT_SCHEMA_ID

from .main import _print_rows
from .store import _STORE_ALIASES, StoreCommand

# Each user's latest decision per study (by the time it was received), counted per study,
# version and decision. Events whose user was not recorded are counted apart (user unknown).
LATEST_SQL = """SELECT study, version, decision, count(*) AS users FROM (
    SELECT DISTINCT ON (coalesce(username, ''), data->>'study') data->>'study' AS study,
        (data->>'study_version')::int AS version, data->>'decision' AS decision
    FROM {t} WHERE schema_id = %s AND (%s::text IS NULL OR data->>'study' = %s)
    ORDER BY coalesce(username, ''), data->>'study', received DESC
) latest GROUP BY study, version, decision ORDER BY study, version, decision"""


class ConsentListCommand(StoreCommand):
    """Count the users per decision and version of each study, from the stored decisions."""

    name = "jupyter-telemetry-consent-list"
    description = """Count, for each study (or --study), how many users last decided granted,
    declined or shown, per study version, from the consent table of the PostgreSQL store (--db;
    `telemetry_consent` beside `telemetry_events`), else, when the store has none (the
    decisions were kept in a file), from its consent events. Users are never named. Exit status
    1 when there is no decision."""
    examples = "jupyter telemetry consent list --db env:TELEMETRY_DB --study intro-2027"
    study = Unicode("", help="Only this study (default: every study).").tag(config=True)
    json_output = Bool(False, help="Print JSON lines instead of a table.").tag(config=True)
    aliases = {  # noqa: RUF012 - traitlets reads these class attributes
        **{k: v for k, v in _STORE_ALIASES.items() if k in ("db", "table", "config")},
        "study": "ConsentListCommand.study",
    }
    flags = {"json": ({"ConsentListCommand": {"json_output": True}}, "Print JSON lines.")}  # noqa: RUF012

    def start(self) -> None:
        """Print the counts; exit 1 when the store holds no decision (of --study)."""
        from psycopg import sql

        from jupyter_telemetry_ext.sinks import consent_table

        study = self.study or None
        table = consent_table.consent_table(self.table)
        with self.connect(read_only=True) as conn:
            if consent_table.exists(conn, table):
                rows: list[Any] = consent_table.counts(conn, table, study)
            else:
                query = sql.SQL(LATEST_SQL).format(t=sql.Identifier(self.table))
                rows = conn.execute(query, [CONSENT_SCHEMA_ID, study, study]).fetchall()
        if not rows:
            which = f"study {self.study!r}" if self.study else "any study"
            self.fail(f"consent list: the store holds no decision on {which}", 1)
        counts: list[dict[str, Any]] = [
            {"study": s, "version": v, "decision": d, "users": n} for s, v, d, n in rows
        ]
        _print_rows(counts, self.json_output, None)


class ConsentApp(CommandGroup):
    """`jupyter telemetry consent`: the users' consent decisions, counted."""

    name = "jupyter-telemetry-consent"
    description = "Consent decisions: `jupyter telemetry consent list --db URL [--study S]`."
    subcommands = {  # noqa: RUF012 - traitlets reads these class attributes
        "list": (ConsentListCommand, ConsentListCommand.__doc__ or ""),
    }
