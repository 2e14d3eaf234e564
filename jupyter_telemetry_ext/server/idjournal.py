"""The ids a collector recorded, kept on disk, so that a resend after a restart is a duplicate.

Append-only segment files `<start>.ids` in a folder, one JSON line `[time, pseudonym, id]` per
recorded id (the wall-clock time it was recorded; the pseudonym is a keyed hash of the principal
that sent it, so the journal names nobody and cannot tie the event ids of a store that keeps
users hashed, or none, to their names). A segment is closed after a quarter of the window or
`segment_lines` lines; a segment whose newest id is past the window is deleted, and so are the
oldest once the segments hold more than twice the memory's capacity (the memory has forgotten
those ids already). Nothing is ever rewritten; a line cut short by a crash is skipped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson

SUFFIX = ".ids"
PSEUDONYM = "h:"  # the start of a pseudonym; a principal never starts so
MAX_NAMES = 10_000  # pseudonyms kept made, then made again
_ENCODE = json.JSONEncoder(ensure_ascii=False).encode  # as json.dumps, made once
log = logging.getLogger("jupyter_telemetry_ext.server.idjournal")


class IdJournal:
    """Recorded ids, appended to segment files in `folder` and read back at start."""

    def __init__(self, folder: Path, window: float, capacity: int, *, key: bytes) -> None:
        """Keep ids for `window` seconds, at most about 2 x `capacity` lines on disk, each
        under the pseudonym of its principal by `key` (one that outlives the process)."""
        self.folder, self.window, self.key = folder, window, key
        self._names: dict[str, str] = {}
        self.segment_lines = max(1000, capacity // 4)
        self.max_lines = 2 * capacity
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._path = folder  # the newest segment's, while `_file` is open
        self._started = 0.0
        self._written = 0
        self._lines: dict[Path, int] = {}  # lines of each closed segment
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def pseudonym(self, principal: str) -> str:
        """Return what the journal keeps of `principal`: a keyed hash, never its name."""
        name = self._names.get(principal)
        if name is None:
            if principal.startswith(PSEUDONYM):  # read back from the journal
                return principal
            if len(self._names) >= MAX_NAMES:
                self._names.clear()
            digest = hmac.new(self.key, principal.encode("utf-8", "surrogatepass"), hashlib.sha256)
            name = self._names[principal] = PSEUDONYM + digest.hexdigest()[:32]
        return name

    def load(self, now: float) -> Iterator[tuple[float, str, str]]:
        """Yield the (time, pseudonym, id) recorded within the window, oldest first (a line
        that an older release wrote with the principal's name is read as its pseudonym)."""
        for path in self._segments():
            count = 0
            with path.open(encoding="utf-8", errors="replace") as f:
                for line in f:
                    count += 1
                    entry = _entry(line)
                    if entry is not None and now - entry[0] <= self.window:
                        yield entry[0], self.pseudonym(entry[1]), entry[2]
            self._lines[path] = count

    def append(self, when: float, pseudonym: str, client_id: str) -> None:
        """Add a recorded id (written to the OS at once: a crash of the process keeps it)."""
        self.append_many([(when, pseudonym, client_id)])

    def append_many(self, entries: list[tuple[float, str, str]]) -> None:
        """Add recorded ids (each under its principal's `pseudonym`), oldest first, in one write
        (per segment) to the OS at once."""
        lines = [_line(entry) for entry in entries]
        with self._lock:
            done = 0
            while done < len(lines):
                f = self._segment(entries[done][0])
                take = max(1, self.segment_lines - self._written)  # a segment's lines stay bounded
                f.write("".join(lines[done : done + take]))
                f.flush()
                self._written += len(lines[done : done + take])
                done += take

    def close(self) -> None:
        """Close the open segment."""
        with self._lock:
            self._close()

    def _segment(self, now: float) -> IO[str]:
        """Return the open segment; start a new one (and drop old ones) when it is full."""
        full = self._written >= self.segment_lines or now - self._started > self.window / 4
        if self._file is not None and not full:
            return self._file
        self._close()
        self._prune(now)
        path = self.folder / f"{now:017.6f}-{os.getpid()}{SUFFIX}"
        # The ids name hub users: the owner's alone, as the spools and the key file are.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        self._file, self._path = os.fdopen(fd, "a", encoding="utf-8"), path
        self._started, self._written = now, 0
        return self._file

    def _close(self) -> None:
        if self._file is not None:
            self._lines[self._path] = self._written
            self._file.close()
            self._file = None

    def _prune(self, now: float) -> None:
        """Delete the segments past the window, and the oldest beyond `max_lines`."""
        segments = self._segments()
        total = sum(self._lines.get(path, 0) for path in segments)
        for n, path in enumerate(segments):
            newest = segments[n + 1] if n + 1 < len(segments) else None
            ended = (
                _start(newest) if newest is not None else now
            )  # a segment ends as the next starts
            if now - ended > self.window or total > self.max_lines:
                total -= self._lines.pop(path, 0)
                path.unlink(missing_ok=True)

    def _segments(self) -> list[Path]:
        return sorted(self.folder.glob(f"*{SUFFIX}"), key=_start)


def _start(path: Path) -> float:
    try:
        return float(path.name.split("-")[0])
    except ValueError:
        return 0.0


def _line(entry: tuple[float, str, str]) -> str:
    """Return the journal line of one (time, principal, id): JSON, read back by `_entry`."""
    try:
        return orjson.dumps(entry).decode() + "\n"
    except orjson.JSONEncodeError:  # not UTF-8 (a lone surrogate): as the json module writes it
        return _ENCODE(entry) + "\n"


def _entry(line: str) -> tuple[float, str, str] | None:
    """Return a line's (time, principal, id), None for a damaged line (a crash mid-write)."""
    try:
        when, principal, client_id = json.loads(line)
    except ValueError:
        return None
    if isinstance(when, (int, float)) and isinstance(principal, str) and isinstance(client_id, str):
        return float(when), principal, client_id
    return None


def wall_clock() -> float:
    """Return the time ids are kept by when they are journaled (it survives restarts)."""
    return time.time()
