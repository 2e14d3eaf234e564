"""Reading JSON-lines event logs, rotated files included, and following one as it grows."""

from __future__ import annotations

import gzip
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

from jupyter_telemetry_ext.core.errors import TimestampError
from jupyter_telemetry_ext.core.timestamps import parse_timestamp

_NUMBERED = re.compile(r"\.(\d+)(\.gz)?$")
_RELATIVE = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True)
class BadLine:
    """A line of a log that is not an event capsule."""

    path: Path
    lineno: int
    problem: str

    def __str__(self) -> str:
        """Return `file:line: problem`."""
        return f"{self.path}:{self.lineno}: {self.problem}"


OnBadLine = Callable[[BadLine], None]


def log_files(path: Path) -> list[Path]:
    """Return a log and its rotated files, oldest first (`x.log.2`, `x.log.1`, `x.log`)."""
    rotated = [p for p in path.parent.glob(path.name + ".*") if p.is_file()]
    numbered = sorted(
        (p for p in rotated if _NUMBERED.search(p.name[len(path.name) :])),
        key=_number,
        reverse=True,
    )
    dated = sorted(p for p in rotated if p not in numbered)
    return [*numbered, *dated, path] if path.is_file() else [*numbered, *dated]


def unreadable(path: Path) -> str:
    """Return why a log named on a command line holds nothing to read (it has no `log_files`)."""
    if path.is_dir():
        return f"{path}: cannot read: a directory, not an event log file"
    return f"{path}: cannot read: no such file"


def _number(path: Path) -> int:
    match = _NUMBERED.search(path.name)
    return int(match.group(1)) if match else 0


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return path.open(encoding="utf-8", errors="replace")


def parse_line(path: Path, lineno: int, line: str) -> dict[str, Any] | BadLine:
    """Return the capsule on one line, or what is wrong with the line."""
    try:
        value = json.loads(line)
    except ValueError as e:
        return BadLine(path, lineno, f"not valid JSON ({e.args[0].split(':')[0]})")
    if not isinstance(value, dict) or "__schema__" not in value:
        return BadLine(path, lineno, "not an event capsule (no __schema__)")
    return value


def read_events(paths: Iterable[Path], on_bad_line: OnBadLine) -> Iterator[dict[str, Any]]:
    """Yield each capsule of the files in order; report bad lines and go on."""
    for path in paths:
        with _open(path) as stream:
            yield from _capsules(path, enumerate(stream, 1), on_bad_line)


class Tail:
    """A log read from its start, then the lines appended since the last look, across rotations."""

    def __init__(self, path: Path) -> None:
        """Start at the beginning of the log."""
        self.path = path
        self.stream: IO[str] | None = None
        self.inode: int | None = None
        self.lineno = 0
        self.partial = ""

    def _reopen(self) -> None:
        self.close()
        self.stream, self.inode, self.lineno, self.partial = None, _inode(self.path), 0, ""
        if self.inode is not None:
            self.stream = self.path.open(encoding="utf-8", errors="replace")

    def new_lines(self) -> list[tuple[int, str]]:
        """Return the complete lines written since the last call, numbered."""
        if self.stream is None or _inode(self.path) != self.inode:
            self._reopen()
        if self.stream is None:
            return []
        text = self.partial + self.stream.read()
        *complete, self.partial = text.split("\n")
        start, self.lineno = self.lineno, self.lineno + len(complete)
        return list(enumerate(complete, start + 1))

    def close(self) -> None:
        """Close the log."""
        if self.stream:
            self.stream.close()


def tail_batches(
    path: Path, on_bad_line: OnBadLine, *, forever: bool, poll: float = 0.5
) -> Iterator[list[dict[str, Any]]]:
    """Yield the log's capsules, then (with `forever`) each poll's new ones, across rotations."""
    tail = Tail(path)
    try:
        while True:
            yield list(_capsules(path, tail.new_lines(), on_bad_line))
            if not forever:
                return
            time.sleep(poll)
    finally:
        tail.close()


def _capsules(
    path: Path, lines: Iterable[tuple[int, str]], on_bad_line: OnBadLine
) -> Iterator[dict[str, Any]]:
    for lineno, line in lines:
        parsed = parse_line(path, lineno, line) if line.strip() else None
        if isinstance(parsed, BadLine):
            on_bad_line(parsed)
        elif parsed is not None:
            yield parsed


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def parse_since(text: str, now: datetime | None = None, option: str = "--since") -> datetime:
    """Return the UTC time that `option` names: RFC 3339, a date, or a duration ago (`2h`)."""
    now = now or datetime.now(timezone.utc)
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        return now - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        return datetime.fromisoformat(text.strip()).replace(tzinfo=timezone.utc)
    try:
        return parse_timestamp(text.strip())
    except TimestampError:
        msg = f"{option} {text!r}: use an RFC 3339 time, a date (2026-11-27) or 30m, 2h, 7d"
        raise ValueError(msg) from None


def event_time(capsule: dict[str, Any]) -> datetime | None:
    """Return a capsule's `__timestamp__` as a UTC datetime, or None when it has none."""
    try:
        return parse_timestamp(str(capsule.get("__timestamp__", "")))
    except TimestampError:
        return None
