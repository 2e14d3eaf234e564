"""Retention and a person's events in JSON-lines logs: prune old events, export or erase a user's.

Files are rewritten whole and replaced atomically. A server still writing the live log should
write it with `logging.handlers.WatchedFileHandler`, which reopens a replaced file; lines appended
while the file was being rewritten are carried over.
"""

from __future__ import annotations

import getpass
import gzip
import json
import os
import tempfile
from collections.abc import Callable, Collection, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jupyter_telemetry_ext.core.tombstones import HASHED, add_to_file, erased_file

from .logreader import event_time, log_files, parse_line

Keep = Callable[[dict[str, Any]], bool]


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


def rewrite(path: Path, keep: Keep) -> int:
    """Drop the events `keep` refuses from a log and its rotated files; return how many."""
    removed = 0
    for file in log_files(path):
        removed += _rewrite_file(file, keep, live=file == path)
    return removed


def _rewrite_file(file: Path, keep: Keep, live: bool) -> int:
    size = file.stat().st_size
    lines = _lines(file)
    kept = [line for n, line in enumerate(lines, 1) if _keeps(keep, file, n, line)]
    if len(kept) == len(lines):
        return 0
    if not kept and not live:
        file.unlink()
        return len(lines)
    if live and file.suffix != ".gz":
        kept += _appended(file, size, keep)
    _write(file, kept)
    return len(lines) - len(kept)


def _appended(file: Path, size: int, keep: Keep) -> list[str]:
    """Return the lines a running server appended since the file was read, filtered."""
    with file.open("r", encoding="utf-8", errors="surrogateescape") as f:
        f.seek(size)
        return [line for line in f.readlines() if _keeps(keep, file, 0, line)]


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
    with erasures_file(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
