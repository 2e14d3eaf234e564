"""Retention and a person's events in JSON-lines logs: prune old events, export or erase a user's.

Files are rewritten whole and replaced atomically. A server still writing the live log notices
the replacement within `filesink.REPLACED_CHECK_SECONDS` (a plain `logging.FileHandler` of an
EventLog, or a `logging.handlers.WatchedFileHandler`) and reopens it: the lines appended to the
old file meanwhile, while it was read and until then, are carried over (filtered like the rest).
"""

from __future__ import annotations

import getpass
import gzip
import json
import os
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from jupyter_telemetry_ext.core.filesink import REPLACED_CHECK_SECONDS
from jupyter_telemetry_ext.core.tombstones import HASHED, add_to_file, erased_file

from .logreader import event_time, log_files, parse_line

Keep = Callable[[dict[str, Any]], bool]
# How long a rewrite keeps reading the old live log after replacing it: past this, a writer that
# follows `filesink` has noticed the new file (with time to spare for a thread held up meanwhile).
CARRY_SECONDS = REPLACED_CHECK_SECONDS + 0.8


def _lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="surrogateescape") as f:
        return f.read().splitlines(keepends=True)


def _write(path: Path, lines: list[str]) -> None:
    """Replace a file's content atomically (same mode, same compression): the new content is
    on disk before it takes the file's name, so a crash leaves the old file or the new one."""
    fd, temp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(temp, "wt", encoding="utf-8", errors="surrogateescape") as out:
            out.writelines(lines)
        with Path(temp).open("rb") as written:
            os.fsync(written.fileno())
        Path(temp).chmod(path.stat().st_mode & 0o7777)
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Write a folder's entries to disk (the rename), where the system allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def rewrite(path: Path, keep: Keep, *, carry: bool = True) -> int:
    """Drop the events `keep` refuses from a log and its rotated files; return how many.

    `carry`: a server may be appending to the log (see `_rewrite_live`); False when the caller
    holds the only writer's lock.
    """
    removed = 0
    for file in log_files(path):
        removed += _rewrite_file(file, keep, live=file == path, carry=carry)
    return removed


def _rewrite_file(file: Path, keep: Keep, *, live: bool, carry: bool) -> int:
    if live and carry and file.suffix != ".gz":
        return _rewrite_live(file, keep)
    lines = _lines(file)
    kept = [line for n, line in enumerate(lines, 1) if _keeps(keep, file, n, line)]
    if len(kept) == len(lines):
        return 0
    if not kept and not live:
        file.unlink()
        return len(lines)
    _write(file, kept)
    return len(lines) - len(kept)


def _rewrite_live(file: Path, keep: Keep) -> int:
    """Rewrite the log a server may be appending to; return how many events were dropped.

    The old file stays open: what is appended to it until every writer has reopened the new
    one (CARRY_SECONDS) is carried over to it, filtered, so no event written meanwhile is lost.
    """
    with file.open("rb") as old:
        tail = _Tail(old)
        lines = tail.lines()
        kept = [line for n, line in enumerate(lines, 1) if _keeps(keep, file, n, line)]
        if len(kept) == len(lines):
            return 0
        dropped = len(lines) - len(kept)
        appended = tail.lines()
        carried = [line for line in appended if _keeps(keep, file, 0, line)]
        dropped += len(appended) - len(carried)
        _write(file, kept + carried)
        time.sleep(CARRY_SECONDS)
        late = tail.lines(final=True)
        carried = [line for line in late if _keeps(keep, file, 0, line)]
        if carried:
            _append(file, carried)
        return dropped + len(late) - len(carried)


class _Tail:
    """The lines of an open file read so far: whole lines only, until the last read."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream, self.rest = stream, b""

    def lines(self, *, final: bool = False) -> list[str]:
        """Return the lines appended since the last call (a cut last line too when `final`)."""
        data = self.rest + self.stream.read()
        end = len(data) if final else data.rfind(b"\n") + 1
        self.rest = data[end:]
        text = data[:end].decode("utf-8", errors="surrogateescape")
        return text.splitlines(keepends=True)


def _append(path: Path, lines: list[str]) -> None:
    """Append lines to a file in one write (as a server appends: whole, never interleaved)."""
    data = "".join(lines).encode("utf-8", errors="surrogateescape")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _keeps(keep: Keep, file: Path, lineno: int, line: str) -> bool:
    """Return whether a line stays: every line that is not an event capsule does."""
    if not line.strip():
        return True
    parsed = parse_line(file, lineno, line)
    return not isinstance(parsed, dict) or keep(parsed)


def prune_files(path: Path, before: datetime) -> int:
    """Remove the events received before `before` from a log and its rotated files."""

    def recent(capsule: dict[str, Any]) -> bool:
        when = event_time(capsule)
        return when is None or when >= before

    return rewrite(path, recent)


def user_events(path: Path, users: Collection[str]) -> Iterator[dict[str, Any]]:
    """Yield the capsules of a log (rotated files first) whose `__user__` is one of `users`."""
    for file in log_files(path):
        for n, line in enumerate(_lines(file), 1):
            parsed = parse_line(file, n, line) if line.strip() else None
            if isinstance(parsed, dict) and parsed.get("__user__") in users:
                yield parsed


def holds_hashed_users(path: Path) -> bool:
    """Return True when a log (or a rotated file) records users as keyed hashes."""
    for file in log_files(path):
        for n, line in enumerate(_lines(file), 1):
            parsed = parse_line(file, n, line) if line.strip() else None
            user = parsed.get("__user__") if isinstance(parsed, dict) else None
            if isinstance(user, str) and HASHED.fullmatch(user):
                return True
    return False


def erase_files(path: Path, users: Collection[str]) -> int:
    """Keep tombstones of `users` (checked by a collector writing the log), then remove their
    events from the log and its rotated files; record the erasure."""
    add_to_file(erased_file(path), users)
    removed = rewrite(path, lambda capsule: capsule.get("__user__") not in users)
    record_erasure(path, removed)
    return removed


def erasures_file(path: Path) -> Path:
    """Return where the erasures of a log are recorded (not matched as one of its rotations)."""
    return path.with_name(path.name + "-erasures.jsonl")


def record_erasure(path: Path, removed: int, operator: str | None = None) -> None:
    """Append who erased how many events (`operator`, default the OS user), and when (never
    whose) to the log's erasures file."""
    entry = {
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "operator": operator or getpass.getuser(),
        "events": removed,
    }
    # Mode 0600 when made, as the tombstones beside it: who erased, when, and how many.
    descriptor = os.open(erasures_file(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
