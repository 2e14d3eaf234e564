"""`jupyter telemetry audit check`: gaps and unclean ends of the stored audit streams."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traitlets import Bool, Unicode

from jupyter_telemetry_ext.core.command import CommandGroup
from jupyter_telemetry_ext.sinks.logreader import BadLine, event_time, log_files, read_events

from .audit_report import HASHED, AuditRow, StreamReport, altered, check_streams, sort_key
from .main import _print_rows
from .store import _STORE_ALIASES, StoreCommand, _since

if TYPE_CHECKING:
    import psycopg

GAP_SCHEMA = "https://events.jupyter.org/jupyter_telemetry_ext/audit-gap"
# Every stored event numbered in an audit stream, in the order the check reads them, and
# whether its code (or terminal line), kept whole, no longer matches its hash (`altered`).
ALTERED_SQL = """(schema_id = {schema} AND jsonb_typeof(data->{text}) = 'string'
    AND data->{cut} = 'false'::jsonb AND strpos(data->>{text}, chr(65533)) = 0
    AND strpos(data->>{text}, '\\u0000') = 0
    AND encode(sha256(convert_to(data->>{text}, 'UTF8')), 'hex') IS DISTINCT FROM data->>{hash})"""
# Text holding the escape the store keeps for U+0000 (jsonb cannot hold it) is checked by
# `altered`, which reads it back: its event's data is read for that.
ESCAPED_SQL = """(schema_id = {schema} AND strpos(data->>{text}, '\\u0000') > 0)"""
ROWS_SQL = """SELECT username, data->>'audit_stream', (data->>'audit_seq')::numeric, received,
    schema_id, data->>'action', {altered}, CASE WHEN {escaped} THEN data END FROM {t}
WHERE data ? 'audit_stream' AND jsonb_typeof(data->'audit_seq') = 'number'
ORDER BY data->>'audit_stream', (data->>'audit_seq')::numeric"""
GAPS_SQL = """SELECT username, data->>'stream', count(*) FROM {t} WHERE schema_id = %s
GROUP BY 1, 2"""


class AuditCheckCommand(StoreCommand):
    """List the audit streams of a store: gaps, repeats, and streams ended without a stop."""

    name = "jupyter-telemetry-audit-check"
    description = """Check every audit stream (the audit events of one server process, numbered
    from 1 by audit_seq) in the PostgreSQL store (--db) or a JSON-lines log: print per stream
    its user, first and last number and time, the numbers missing, numbers stored twice, the
    collector's audit-gap events, and how it ended: "stopped" (a clean stop), "running" (no
    stop, and an event within --idle), or "ended without stop". Exit status 1 when a stream has
    a gap or a repeat or ended without a stop, or when there is no audit data at all."""
    examples = "jupyter telemetry audit check --db env:TELEMETRY_DB --idle 24h"
    idle = Unicode(
        "24h",
        help="""How long a stream without a stop may be silent and still count as running
        (a duration such as 24h or 7d, or a time): one whose last event is older "ended without
        stop". Default 24h.""",
    ).tag(config=True)
    json_output = Bool(False, help="Print JSON lines instead of a table.").tag(config=True)
    aliases = {  # noqa: RUF012 - traitlets reads these class attributes
        **{k: v for k, v in _STORE_ALIASES.items() if k in ("db", "table", "config")},
        "idle": "AuditCheckCommand.idle",
    }
    flags = {"json": ({"AuditCheckCommand": {"json_output": True}}, "Print JSON lines.")}  # noqa: RUF012
    bad_lines = 0

    def start(self) -> None:
        """Print each stream's report and a summary; exit 1 on any problem or no data."""
        idle_before = _since(self, self.idle, "--idle")
        path = self.log_path()
        if path is None:
            reports = self._from_store(idle_before)
        else:
            reports = self._from_files(path, idle_before)
        if not reports:
            self.fail(f"audit check: no audit events in {path or 'the store'} (is "
                      "TelemetryExtension.audit on, and its schemas allowed?)", 1)  # fmt: skip
        _print_rows([r.model() for r in reports], self.json_output, None)
        problems = self._summary(reports)
        self.exit(1 if problems or self.bad_lines else 0)

    def _summary(self, reports: list[StreamReport]) -> int:
        ends = Counter(r.end for r in reports)
        gaps = sum(1 for r in reports if r.missing)
        repeated = sum(1 for r in reports if r.repeated)
        print(f"{len(reports)} audit streams: {gaps} with gaps, {repeated} with repeated "
              f"numbers, {ends['ended without stop']} ended without stop, {ends['running']} "
              f"running, {ends['stopped']} stopped cleanly; "
              f"{sum(1 for r in reports if r.after_stop)} with events numbered after their stop, "
              f"{sum(1 for r in reports if r.altered)} with code that does not match its hash",
              file=sys.stderr)  # fmt: skip
        return sum(1 for r in reports if r.problem)

    def _from_store(self, idle_before: Any) -> list[StreamReport]:
        with self.connect(read_only=True) as conn:
            rows = _store_rows(conn, self.table)
            reports = list(check_streams(rows, idle_before))
            _count_gaps(reports, _store_gaps(conn, self.table))
        return reports

    def _from_files(self, path: Path, idle_before: Any) -> list[StreamReport]:
        capsules = list(read_events(log_files(path), self._bad))
        rows = sorted(_file_rows(capsules), key=sort_key)
        reports = list(check_streams(rows, idle_before))
        gaps = Counter(
            (c.get("__user__"), str(c.get("stream")))
            for c in capsules
            if c.get("__schema__") == GAP_SCHEMA
        )
        _count_gaps(reports, gaps.items())
        return reports

    def _bad(self, bad: BadLine) -> None:
        self.bad_lines += 1
        print(bad, file=sys.stderr)


def _store_rows(conn: psycopg.Connection[Any], table: str) -> Iterator[AuditRow]:
    from psycopg import sql

    altered_sql = sql.SQL(" OR ").join(
        sql.SQL(ALTERED_SQL).format(schema=sql.Literal(schema), text=sql.Literal(text),
                                    cut=sql.Literal(cut), hash=sql.Literal(digest))
        for schema, (text, digest, cut) in HASHED.items()
    )  # fmt: skip
    escaped = sql.SQL(" OR ").join(
        sql.SQL(ESCAPED_SQL).format(schema=sql.Literal(schema), text=sql.Literal(text))
        for schema, (text, _, _) in HASHED.items()
    )
    query = sql.SQL(ROWS_SQL).format(t=sql.Identifier(table), altered=altered_sql,
                                     escaped=escaped)  # fmt: skip
    with conn.cursor(name="audit_check") as cursor:  # read in chunks, not all at once
        cursor.execute(query)
        for user, stream, seq, received, schema, action, edited, data in cursor:
            changed = edited or (data is not None and altered(schema, data))
            yield AuditRow(user, stream, int(seq), received, schema, action, bool(changed))


def _store_gaps(conn: psycopg.Connection[Any], table: str) -> list[tuple[Any, int]]:
    from psycopg import sql

    query = sql.SQL(GAPS_SQL).format(t=sql.Identifier(table))
    return [((user, stream), n) for user, stream, n in conn.execute(query, [GAP_SCHEMA])]


def _file_rows(capsules: Iterable[dict[str, Any]]) -> Iterator[AuditRow]:
    for c in capsules:
        stream, seq = c.get("audit_stream"), c.get("audit_seq")
        if isinstance(stream, str) and type(seq) is int:
            user = c.get("__user__")
            schema = str(c.get("__schema__"))
            yield AuditRow(None if user is None else str(user), stream, seq, event_time(c),
                           schema, c.get("action"), altered(schema, c))  # fmt: skip


def _count_gaps(reports: list[StreamReport], gaps: Iterable[tuple[Any, int]]) -> None:
    by_stream = {(r.user, r.stream): r for r in reports}
    for key, count in gaps:
        report = by_stream.get(key)
        if report is not None:
            report.collector_gaps += count


class AuditApp(CommandGroup):
    """`jupyter telemetry audit`: checks of the execution audit."""

    name = "jupyter-telemetry-audit"
    description = "Checks of the audit trail: `jupyter telemetry audit check --db URL`."
    subcommands = {  # noqa: RUF012 - traitlets reads these class attributes
        "check": (AuditCheckCommand, AuditCheckCommand.__doc__ or ""),
    }
