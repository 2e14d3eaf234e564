"""The forwarding spool: events waiting for the collector, in segment files on disk.

A spool folder may be shared by several servers of one user. Each process owns its segments
(`<owner>.<serial>.jsonl`, one JSON event a line) through an exclusive lock on `<owner>.lock`;
a starting process adopts the segments whose owner's lock is free (the owner stopped), oldest
first, so a restart sends what the last run left. An entry leaves the spool only once the
collector acknowledged it (`done`); the acknowledged part of the oldest segment is not noted on
disk, so after a crash at most one segment is sent again, which the collector's ids deduplicate.
The spool holds events before redaction: folder 0700, files 0600.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SEGMENT_SUFFIX = ".jsonl"
LOCK_SUFFIX = ".lock"


@dataclass
class Segment:
    """One spool file: its path, its size and how many events it holds."""

    path: Path
    size: int = 0
    lines: int = 0


@dataclass(frozen=True)
class Taken:
    """Events read from the oldest segment, not yet acknowledged: where they start and end."""

    segment: Segment
    start: int
    end: int
    lines: list[bytes]


class ForwardSpool:
    """The segments of one process, oldest first; appended by one thread, read by another."""

    def __init__(self, folder: Path, segment_bytes: int, *, fsync: bool = False) -> None:
        """Own a new set of segments in `folder`; adopt those a stopped process left."""
        self.folder, self.segment_bytes, self.fsync = folder, segment_bytes, fsync
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._lock_file = _locked(folder / f"{self.owner}{LOCK_SUFFIX}")
        self._lock = threading.Lock()
        self._segments: deque[Segment] = deque()
        self._serial = 0
        self._head_offset = 0  # bytes of the oldest segment already acknowledged
        self._head_lines = 0  # events of the oldest segment already acknowledged
        self._file: BinaryIO | None = None  # the newest segment, open for appending
        self._bytes = self._lines = 0  # in every segment, acknowledged parts included
        self.adopted = self._adopt()

    @property
    def size(self) -> int:
        """Return the bytes of events in the spool that the collector has not acknowledged."""
        return self._bytes - self._head_offset

    @property
    def pending(self) -> int:
        """Return how many events in the spool the collector has not acknowledged."""
        return self._lines - self._head_lines

    def _adopt(self) -> int:
        """Take over the segments of every stopped owner; return how many events they hold."""
        found: list[Path] = []
        for lock in sorted(self.folder.glob(f"*{LOCK_SUFFIX}")):
            owner = lock.name[: -len(LOCK_SUFFIX)]
            if owner != self.owner and _free(lock):
                found += sorted(self.folder.glob(f"{owner}.*{SEGMENT_SUFFIX}"))
                lock.unlink(missing_ok=True)
        found.sort(key=_age)
        for path in found:
            self._adopt_segment(path)
        return self.pending

    def _adopt_segment(self, path: Path) -> None:
        mine = self._next_path()
        try:
            path.rename(mine)
        except FileNotFoundError:  # another starting process took it
            return
        data = mine.read_bytes()
        end = data.rfind(b"\n") + 1  # a line cut by a crash was never acknowledged to anyone
        if end < len(data):
            os.truncate(mine, end)
        if end:
            self._add(Segment(mine, end, data.count(b"\n", 0, end)))
        else:
            mine.unlink()

    def _next_path(self) -> Path:
        self._serial += 1
        return self.folder / f"{self.owner}.{self._serial:010d}{SEGMENT_SUFFIX}"

    def append(self, lines: list[bytes]) -> None:
        """Append events (one JSON line each) in one write; fsync it when asked."""
        block = b"".join(line + b"\n" for line in lines)
        with self._lock:
            segment = self._writable()
            assert self._file is not None  # noqa: S101 - _writable opened it
            self._file.write(block)
            self._file.flush()
            if self.fsync:
                os.fdatasync(self._file.fileno())
            segment.size += len(block)
            segment.lines += len(lines)
            self._bytes += len(block)
            self._lines += len(lines)

    def _writable(self) -> Segment:
        """Return the newest segment, opening a new one when it is full (or there is none)."""
        newest = self._segments[-1] if self._segments else None
        if self._file is not None and newest is not None and newest.size < self.segment_bytes:
            return newest
        self._close_file()
        segment = Segment(self._next_path())
        fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "ab")
        self._add(segment)
        return segment

    def _add(self, segment: Segment) -> None:
        self._segments.append(segment)
        self._bytes += segment.size
        self._lines += segment.lines

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def take(self, max_lines: int, max_bytes: int) -> Taken | None:
        """Return the oldest events not acknowledged (at most `max_lines` and about
        `max_bytes`, at least one), or None when there are none."""
        with self._lock:
            while self._segments:
                head = self._segments[0]
                if self._head_offset < head.size:
                    return self._read(head, max_lines, max_bytes)
                if self._file is not None and len(self._segments) == 1:
                    return None  # the newest, still appended to: nothing new in it
                self._remove_head()
            return None

    def _read(self, head: Segment, max_lines: int, max_bytes: int) -> Taken:
        with head.path.open("rb") as f:
            f.seek(self._head_offset)
            chunk = f.read(min(max_bytes, head.size - self._head_offset))
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:  # one event larger than max_bytes: send it alone
                f.seek(self._head_offset)
                chunk = cut_chunk = f.readline()
                cut = len(cut_chunk)
        lines = chunk[:cut].split(b"\n")[:-1][:max_lines]
        end = self._head_offset + sum(len(line) + 1 for line in lines)
        return Taken(head, self._head_offset, end, lines)

    def done(self, taken: Taken) -> None:
        """Forget acknowledged events; a segment fully acknowledged is deleted."""
        with self._lock:
            if not self._segments or self._segments[0] is not taken.segment:
                return  # dropped meanwhile (the spool was full)
            if taken.start != self._head_offset:
                return
            self._head_offset = taken.end
            self._head_lines += len(taken.lines)
            head = taken.segment
            if self._head_offset >= head.size and not (self._file and len(self._segments) == 1):
                self._remove_head()

    def _remove_head(self) -> None:
        head = self._segments.popleft()
        head.path.unlink(missing_ok=True)
        self._bytes -= head.size
        self._lines -= head.lines
        self._head_offset = self._head_lines = 0

    def drop_oldest(self) -> int:
        """Delete the oldest segment (a new one is started if it was the only one); return
        how many events not acknowledged were dropped."""
        with self._lock:
            if not self._segments:
                return 0
            if len(self._segments) == 1:
                self._close_file()
            dropped = self._segments[0].lines - self._head_lines
            self._remove_head()
            return dropped

    def close(self) -> None:
        """Close the newest segment and give up the ownership (the files stay for a restart)."""
        with self._lock:
            self._close_file()
            self._lock_file.close()


if sys.platform == "win32":  # no flock: an open file cannot be renamed, which guards a live one

    def _flock(fd: int) -> None:
        """Lock nothing."""

else:
    import fcntl

    def _flock(fd: int) -> None:
        """Take an exclusive lock on `fd`; raise BlockingIOError when someone holds it."""
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _locked(path: Path) -> BinaryIO:
    """Create `path` and hold an exclusive lock on it for as long as it is open."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    _flock(fd)
    return os.fdopen(fd, "wb")


def _free(lock: Path) -> bool:
    """Return True when nobody holds the lock `lock` (its owner stopped)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        _flock(fd)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _age(path: Path) -> tuple[float, str]:
    try:
        return (path.stat().st_mtime, path.name)
    except FileNotFoundError:
        return (0.0, path.name)
