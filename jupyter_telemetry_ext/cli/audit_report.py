"""Checking stored audit streams: each stream's numbers from 1, its gaps, and how it ended.

A stream is one server process's audit events (`audit_stream`), numbered from 1 with no gaps
(`audit_seq`), under the user the store records (the hub user who posted it). Its first event
is its `start`, its last a `stop` when the server stopped cleanly: nothing is numbered after
it. An event's code (or terminal line) kept whole must match the hash recorded beside it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from typing import Any, NamedTuple

STREAM_SCHEMA = "https://events.jupyter.org/jupyter_telemetry_ext/audit-stream"
EXECUTION_SCHEMA = "https://events.jupyter.org/jupyter_telemetry_ext/execution"
TERMINAL_SCHEMA = "https://events.jupyter.org/jupyter_telemetry_ext/terminal"
# Per schema: the text kept, the hash of the whole text, and the flag saying the text was cut.
HASHED = {
    EXECUTION_SCHEMA: ("code", "code_sha256", "code_truncated"),
    TERMINAL_SCHEMA: ("text", "text_sha256", "truncated"),
}
STOPPED, RUNNING, NO_STOP = "stopped", "running", "ended without stop"


class AuditRow(NamedTuple):
    """One stored audit event, as far as the check reads it."""

    user: str | None
    stream: str
    seq: int
    received: datetime | None
    schema: str
    action: str | None
    altered: bool = False  # its code (or line) does not match the hash recorded beside it


@dataclass
class StreamReport:
    """What the store holds of one (user, stream)."""

    user: str | None
    stream: str
    first_seq: int = 0
    last_seq: int = 0
    first_time: datetime | None = None
    last_time: datetime | None = None
    events: int = 0
    repeated: int = 0  # numbers stored more than once: a replay, or a forged copy
    missing: list[tuple[int, int]] = field(default_factory=list)
    stopped: bool = False
    stop_seq: int = 0  # the number of its stop
    after_stop: int = 0  # events numbered after its stop: nothing is, unless forged
    altered: int = 0  # events whose code or line does not match its hash
    end: str = RUNNING
    collector_gaps: int = 0  # `audit-gap` events the collector recorded for it

    @property
    def problem(self) -> bool:
        """Return True when the stream has a gap, a repeat, an event numbered after its stop or
        one whose code does not match its hash, or ended without a clean stop."""
        return bool(self.missing or self.repeated or self.after_stop or self.altered) or (
            self.end == NO_STOP
        )

    def model(self) -> dict[str, Any]:
        """Return the report as a JSON-ready row."""
        when = [None if t is None else t.isoformat() for t in (self.first_time, self.last_time)]
        return {
            "user": self.user, "stream": self.stream, "first_seq": self.first_seq,
            "last_seq": self.last_seq, "first_time": when[0], "last_time": when[1],
            "events": self.events, "missing": ranges_text(self.missing), "repeated": self.repeated,
            "after_stop": self.after_stop, "altered": self.altered, "end": self.end,
            "collector_gaps": self.collector_gaps,
        }  # fmt: skip


def check_streams(rows: Iterable[AuditRow], idle_before: datetime) -> Iterator[StreamReport]:
    """Yield a report per stream and poster of `rows` (sorted by stream, then seq).

    A stream without a stop is `running` while its last event came at or after `idle_before`,
    else it `ended without stop`.
    """
    for _, stream_rows in groupby(rows, key=lambda row: row.stream):
        for user, part in _parts(list(stream_rows)):
            report = StreamReport(user, part[0].stream, first_seq=part[0].seq)
            report.last_seq = part[0].seq - 1
            if part[0].seq > 1:
                report.missing.append((1, part[0].seq - 1))  # its start never arrived
            for row in part:
                _add(report, row)
            yield _finish(report, idle_before)


def _parts(rows: list[AuditRow]) -> list[tuple[str | None, list[AuditRow]]]:
    """Split one stream's rows by poster, when a collector recorded who posted its start.

    A collector records each event as its poster's: there, rows of another user are that
    user's own stream (a replayed or forged copy), reported apart, as the collector follows
    them. A server records its start without a user, and may record its events under several
    (made-up) names: there the stream is one, named by every user it holds.
    """
    start = next((r for r in rows if r.schema == STREAM_SCHEMA and r.action == "start"), None)
    owner = None if start is None else start.user
    if owner is None:
        users = sorted({r.user for r in rows if r.user is not None})
        return [(", ".join(users) if users else None, rows)]
    parts: dict[str, list[AuditRow]] = {}
    for row in rows:
        parts.setdefault(row.user or owner, []).append(row)
    return list(parts.items())


def _add(report: StreamReport, row: AuditRow) -> None:
    if row.seq <= report.last_seq:
        report.repeated += 1
    elif row.seq > report.last_seq + 1 and report.events:
        report.missing.append((report.last_seq + 1, row.seq - 1))
    report.last_seq = max(report.last_seq, row.seq)
    report.events += 1
    report.altered += row.altered
    if report.stopped and row.seq > report.stop_seq:
        report.after_stop += 1
    if row.received is not None:
        report.first_time = min(report.first_time or row.received, row.received)
        report.last_time = max(report.last_time or row.received, row.received)
    if row.schema == STREAM_SCHEMA and row.action == "stop" and not report.stopped:
        report.stopped, report.stop_seq = True, row.seq


def _finish(report: StreamReport, idle_before: datetime) -> StreamReport:
    if report.stopped:
        report.end = STOPPED
    elif report.last_time is None or report.last_time < idle_before:
        report.end = NO_STOP
    return report


def ranges_text(ranges: list[tuple[int, int]]) -> str:
    """Return missing ranges as `3, 7-9` ("" when none)."""
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def sort_key(row: AuditRow) -> tuple[str, int]:
    """Return the order `check_streams` reads rows in."""
    return (row.stream, row.seq)


def altered(schema: str, data: Mapping[str, Any]) -> bool:
    """Return True when an audit event's code (or terminal line), kept whole, does not match the
    SHA-256 recorded beside it: the text was edited in the store.

    Text that was cut, not kept (null), or holds U+FFFD (a lone surrogate replaced, whose hash
    is of the original) cannot be checked. A PostgreSQL store keeps U+0000 as the six
    characters \\u0000 (jsonb cannot hold it): text that matches once they are U+0000 again is
    the text recorded.
    """
    keys = HASHED.get(schema)
    if keys is None:
        return False
    text_key, hash_key, cut_key = keys
    text, digest = data.get(text_key), data.get(hash_key)
    if not isinstance(text, str) or data.get(cut_key) is not False or "\ufffd" in text:
        return False
    if _sha256(text) == digest:
        return False
    return "\\u0000" not in text or _sha256(text.replace("\\u0000", "\x00")) != digest


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
