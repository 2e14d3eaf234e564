"""An on-disk queue of JSON lines: where events wait when memory is full or the process stops.

Each append is fsynced before it returns (one fsync for the lines appended together, and one of
the folder when a file is created), so an event that waits here survives a power cut. The files
hold recorded events: they are created 0600, in a folder created 0700.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import orjson

SUFFIX = ".spool"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_all(fd: int, data: bytes) -> None:
    """Write all of `data` (a full disk takes part of it, then raises OSError)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Spool:
    """Files `<name>.<pid>.spool` in a folder, read oldest first; a dead process's are adopted."""

    def __init__(self, folder: Path, name: str, *, adopt: bool = True) -> None:
        """Queue in `folder`; take over the files a stopped process of the same `name` left
        (unless `adopt` is False)."""
        self.folder, self.name = folder, name
        self.path = folder / f"{name}.{os.getpid()}{SUFFIX}"
        self._lock = threading.Lock()
        self._files: list[Path] = []  # to read, oldest first; the last may be self.path
        self._offset = 0  # in self._files[0]
        self.pending = 0
        if adopt:
            self._adopt()

    def _adopt(self) -> None:
        if not self.folder.is_dir():
            return
        for n, path in enumerate(sorted(self.folder.glob(f"{self.name}.*{SUFFIX}"))):
            pid = path.name[len(self.name) + 1 :].split(".")[0]
            if path == self.path or not pid.isdigit() or _alive(int(pid)):
                continue
            mine = self.folder / f"{self.name}.{os.getpid()}.{n}.adopted{SUFFIX}"
            path.rename(mine)
            self._files.append(mine)
            with mine.open("rb") as f:
                self.pending += sum(1 for _ in f)

    def append(self, lines: list[str]) -> None:
        """Add lines (JSON, one event each) at the end, on disk when it returns; raise OSError
        (a full disk) having added none of them."""
        with self._lock:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            created = not self.path.exists()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                data = "".join(line + "\n" for line in lines).encode("utf-8")
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, size)  # none of it: no line is cut, none counted twice
                    raise
            finally:
                os.close(fd)
            if created:
                _fsync_folder(self.folder)
            if not self._files or self._files[-1] != self.path:
                self._files.append(self.path)
            self.pending += len(lines)

    def take(self, n: int) -> tuple[list[str], int]:
        """Return up to `n` of the oldest lines and where they end (for `done`); keep them."""
        with self._lock:
            if not self._files:
                return [], 0
            lines: list[str] = []
            with self._files[0].open("rb") as f:
                f.seek(self._offset)
                for raw in f:
                    lines.append(raw.decode("utf-8"))
                    if len(lines) >= n:
                        break
                return [line.rstrip("\n") for line in lines], f.tell()

    def done(self, end: int, count: int) -> None:
        """Forget the lines up to `end` of the oldest file: they were stored."""
        with self._lock:
            self.pending -= count
            self._offset = end
            head = self._files[0]
            if end < head.stat().st_size:
                return
            self._files.pop(0)
            self._offset = 0
            head.unlink()


def _fsync_folder(folder: Path) -> None:
    """Make a file's creation in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def spooled_lines(folder: Path, name: str) -> Iterator[str]:
    """Yield every line waiting in the spool files of `name` in `folder` (any process's)."""
    if not folder.is_dir():
        return
    for path in sorted(folder.glob(f"{name}.*{SUFFIX}")):
        try:
            with path.open("rb") as f:
                for raw in f:
                    yield raw.decode("utf-8", errors="replace").rstrip("\n")
        except FileNotFoundError:  # written and removed meanwhile
            continue


def user_events(
    folder: Path, name: str, users: Collection[str], stored_ids: Collection[str] = ()
) -> Iterator[dict[str, Any]]:
    """Yield the spooled capsules whose `__user__` is one of `users`, except those whose client
    id is in `stored_ids` (a live spool keeps the lines it stored until its file is done)."""
    for line in spooled_lines(folder, name):
        try:
            capsule = orjson.loads(line)
        except orjson.JSONDecodeError:  # a damaged line: the writer refuses it too
            continue
        if not isinstance(capsule, dict) or capsule.get("__user__") not in users:
            continue
        if capsule.get("__client_id__") not in stored_ids:
            yield capsule
