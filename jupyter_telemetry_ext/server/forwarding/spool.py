"""The forwarding spool: events waiting for the collector, in segment files on disk.

A spool belongs to one user's server: it holds events that server accepted, to be sent with
its token, and no other server may send them. Several servers may share the folder (a Jupyter
data dir shared by users, or by one user's servers); each file names whose it is.

On disk, in the spool folder (owned by the server's uid, not group- or world-writable, else
forwarding refuses to start):

- `<key>.<owner>.lock`: held (`flock`) by the running process `<owner>` (`<pid>-<random>`),
  locked before it is given that name; `<key>` is the quoted hub user and server name
  (`JUPYTERHUB_USER`, `JUPYTERHUB_SERVER_NAME`; outside a hub the OS user and ""), e.g.
  `alice@gpu` (beyond 100 characters, cut and followed by `~` and a hash of the name).
- `<key>.<owner>.<serial>.jsonl` (0600), a segment: its first line is the stamp
  `{"__spool__":1,"acked":"<20 digits>","user":...,"server_name":...,"uid":...}`, then one JSON
  event a line. `acked` is the byte offset of the first event the collector has not
  acknowledged, rewritten in place (fixed width, fdatasync) at each acknowledgement; a segment
  fully acknowledged is then deleted, the newest too (the next event starts a new one). So a
  restart sends only what was not acknowledged, and delivered events do not stay on disk. An
  `acked` that does not fall at the start of a line (a torn write) counts as nothing acknowledged.

A starting process adopts, oldest first, the segments of its own key whose owner's lock is free
(the owner stopped), once their stamp names the same user, server and uid and the file is a
regular one owned by that uid (opened without following symlinks); any other segment is left
alone and counted in `left_alone`. Locks are tested without blocking: a held lock, or a FIFO or
other non-file under a spool name, is skipped at once. The spool holds events before
redaction: folder 0700, files 0600.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import secrets
import stat
import sys
import threading
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from jupyter_telemetry_ext.core.errors import SpoolFolderError

SEGMENT_SUFFIX = ".jsonl"
LOCK_SUFFIX = ".lock"
STAMP_KEY = "__spool__"  # the reserved key of a segment's first line
STAMP_PREFIX = b'{"__spool__":1,"acked":"'
ACK_DIGITS = 20
STAMP_MAX = 4096  # a stamp longer than this is not one of ours
KEY_MAX = 100  # longer quoted names are cut and hashed: file names have a limit
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)

# Why a segment was left alone (`ForwardSpool.left_alone`).
OTHER_KEY = "named for another user or server (or by an earlier version)"
NO_LOCK = "without its owner's lock"
NOT_A_FILE = "not a regular file (a symlink, a FIFO, ...)"
OTHER_UID = "not owned by this server's uid"
UNSTAMPED = "without a spool stamp"
OTHER_STAMP = "stamped for another user, server or uid"


@dataclass(frozen=True)
class SpoolIdentity:
    """Whose spool it is: the hub user and server name it is written for, and the uid."""

    user: str
    server_name: str
    uid: int

    @classmethod
    def of_process(cls) -> SpoolIdentity:
        """Return the identity of this process: its hub user and server, else the OS user."""
        uid = getattr(os, "getuid", lambda: -1)()
        user = os.environ.get("JUPYTERHUB_USER") or _os_user()
        return cls(user, os.environ.get("JUPYTERHUB_SERVER_NAME", ""), uid)

    @property
    def key(self) -> str:
        """Return the identity as the first part of a file name (no `.` nor `/` in it)."""
        return f"{_quoted(self.user)}@{_quoted(self.server_name)}"

    def stamp(self, acked: int) -> bytes:
        """Return a segment's first line, saying whose it is and how far it is acknowledged."""
        rest = json.dumps({"user": self.user, "server_name": self.server_name, "uid": self.uid})
        return STAMP_PREFIX + b"%020d" % acked + b'",' + rest[1:].encode() + b"\n"

    def owns(self, stamp: dict[str, Any]) -> bool:
        """Return True when a stamp names this user, server and uid."""
        mine = (self.user, self.server_name, self.uid)
        return (stamp.get("user"), stamp.get("server_name"), stamp.get("uid")) == mine


@dataclass
class Segment:
    """One spool file: where its events start, its size, its events, how far acknowledged."""

    path: Path
    start: int
    size: int
    lines: int = 0
    acked: int = 0  # the offset of the first event not acknowledged
    acked_lines: int = 0


@dataclass(frozen=True)
class Taken:
    """Events read from the oldest segment, not yet acknowledged: where they start and end."""

    segment: Segment
    start: int
    end: int
    lines: list[bytes]


class ForwardSpool:
    """The segments of one process, oldest first; appended by one thread, read by another."""

    def __init__(
        self,
        folder: Path,
        segment_bytes: int,
        *,
        fsync: bool = False,
        identity: SpoolIdentity | None = None,
    ) -> None:
        """Own a new set of segments in `folder`; adopt those a stopped process of the same
        identity left. Raise SpoolFolderError when the folder cannot be trusted."""
        self.folder, self.segment_bytes, self.fsync = folder, segment_bytes, fsync
        self.identity = identity or SpoolIdentity.of_process()
        check_folder(folder, self.identity.uid)
        self.owner = f"{self.identity.key}.{os.getpid()}-{secrets.token_hex(4)}"
        try:
            self._lock_file = _take_lock(folder, self.owner)
        except OSError as e:
            msg = f"the spool folder {folder} cannot be locked ({type(e).__name__}: {e.strerror})"
            raise SpoolFolderError(msg) from None
        self._lock = threading.Lock()
        # The server never closes its spool (an event may come until the very end): at the
        # process's exit, a spool with nothing left leaves no lock behind.
        atexit.register(self.close)
        self._segments: deque[Segment] = deque()
        self._serial = 0
        self._file: BinaryIO | None = None  # the newest segment, open for appending
        self._bytes = self._lines = 0  # not acknowledged, in every segment
        self.left_alone: Counter[str] = Counter()  # segments not adopted, by reason
        self.adopted = self._adopt()

    @property
    def size(self) -> int:
        """Return the bytes of events in the spool that the collector has not acknowledged."""
        return self._bytes

    @property
    def pending(self) -> int:
        """Return how many events in the spool the collector has not acknowledged."""
        return self._lines

    # Adopting what a stopped process left

    def _adopt(self) -> int:
        """Take over the segments a stopped owner of this identity left; return their events."""
        stopped: dict[str, bool | None] = {}  # owner: its lock is free (None: no lock)
        found = [p for p in self.folder.glob(f"*{SEGMENT_SUFFIX}") if _owner(p) != self.owner]
        for path in sorted(found, key=_age):
            owner = _owner(path)
            if owner is None or not owner.startswith(self.identity.key + "."):
                self.left_alone[OTHER_KEY] += 1
                continue
            if owner not in stopped:
                stopped[owner] = _free(self.folder / f"{owner}{LOCK_SUFFIX}")
            if stopped[owner] is None:
                reason: str | None = NO_LOCK
            else:  # a running owner's segment ("") is no business of ours
                reason = self._adopt_segment(path) if stopped[owner] else ""
            if reason:
                self.left_alone[reason] += 1
        self._forget_stopped_owners()
        return self.pending

    def _forget_stopped_owners(self) -> None:
        """Delete the locks of this identity's stopped owners that have no segment left."""
        for lock in self.folder.glob(f"{self.identity.key}.*{LOCK_SUFFIX}"):
            owner = lock.name[: -len(LOCK_SUFFIX)]
            left = any(self.folder.glob(f"{owner}.*{SEGMENT_SUFFIX}"))
            if owner != self.owner and not left and _free(lock):
                lock.unlink(missing_ok=True)

    def _adopt_segment(self, path: Path) -> str | None:
        """Claim one segment once it proves to be this identity's; return why not otherwise."""
        try:
            fd = os.open(path, os.O_RDONLY | NOFOLLOW | NONBLOCK)
        except FileNotFoundError:  # another starting process took it
            return ""
        except OSError:  # ELOOP: a symlink
            return NOT_A_FILE
        with os.fdopen(fd, "rb") as f:
            reason, stamp, start = self._examine(f)
            if stamp is None:
                return reason
            mine = self._next_path()
            try:
                path.rename(mine)
            except FileNotFoundError:
                return ""
            f.seek(0)
            self._take_over(mine, f.read(), start, _acked(stamp, start))
        return None

    def _examine(self, f: BinaryIO) -> tuple[str, dict[str, Any] | None, int]:
        """Return why an open segment is not this identity's, or its stamp and where its
        events start."""
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            return NOT_A_FILE, None, 0
        if info.st_uid != self.identity.uid and self.identity.uid >= 0:
            return OTHER_UID, None, 0
        stamp, start = _read_stamp(f)
        if stamp is None:
            return UNSTAMPED, None, 0
        if not self.identity.owns(stamp):
            return OTHER_STAMP, None, 0
        return "", stamp, start

    def _take_over(self, mine: Path, data: bytes, start: int, acked: int) -> None:
        end = data.rfind(b"\n") + 1  # a line cut by a crash was never acknowledged to anyone
        if acked > end or data[acked - 1 : acked] != b"\n":
            acked = start  # a torn acknowledgement: send the whole segment again
        if end < len(data):
            os.truncate(mine, end)
        lines = data.count(b"\n", start, end)
        done = data.count(b"\n", start, acked)
        if lines > done:
            self._add(Segment(mine, start, end, lines, acked, done))
        else:
            mine.unlink()

    def _next_path(self) -> Path:
        self._serial += 1
        return self.folder / f"{self.owner}.{self._serial:010d}{SEGMENT_SUFFIX}"

    # Appending

    def append(self, lines: list[bytes]) -> None:
        """Append events (one JSON line each) in one write; fsync it when asked. Raise OSError
        (a full disk) having appended none of them: the segment is cut back to its last event."""
        block = b"".join(line + b"\n" for line in lines)
        with self._lock:
            segment = self._writable()
            assert self._file is not None  # noqa: S101 - _writable opened it
            try:
                _write_all(self._file, block)
                if self.fsync:
                    _datasync(self._file.fileno())
            except OSError:
                os.ftruncate(self._file.fileno(), segment.size)
                raise
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
        path = self._next_path()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | NOFOLLOW
        # Unbuffered: a write a full disk cuts short leaves nothing behind to be written later.
        self._file = os.fdopen(os.open(path, flags, 0o600), "ab", buffering=0)
        stamp = self.identity.stamp(0)
        stamp = self.identity.stamp(len(stamp))
        try:
            _write_all(self._file, stamp)
        except OSError:
            self._close_file()
            path.unlink(missing_ok=True)
            raise
        segment = Segment(path, len(stamp), len(stamp), acked=len(stamp))
        self._add(segment)
        return segment

    def _add(self, segment: Segment) -> None:
        self._segments.append(segment)
        self._bytes += segment.size - segment.acked
        self._lines += segment.lines - segment.acked_lines

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _is_open(self, segment: Segment) -> bool:
        return self._file is not None and segment is self._segments[-1]

    # Sending

    def take(self, max_lines: int, max_bytes: int) -> Taken | None:
        """Return the oldest events not acknowledged (at most `max_lines` and about
        `max_bytes`, at least one), or None when there are none."""
        with self._lock:
            while self._segments:
                head = self._segments[0]
                if head.acked < head.size:
                    return _read(head, max_lines, max_bytes)
                if self._is_open(head):
                    return None  # the newest, still appended to: nothing new in it
                self._remove_head()
            return None

    def done(self, taken: Taken) -> None:
        """Note acknowledged events on disk; a segment fully acknowledged is deleted at once
        (the newest too: the next event starts a new one)."""
        with self._lock:
            head = self._segments[0] if self._segments else None
            if head is not taken.segment or head is None or taken.start != head.acked:
                return  # dropped meanwhile (the spool was full), or noted already
            head.acked = taken.end
            head.acked_lines += len(taken.lines)
            self._bytes -= taken.end - taken.start
            self._lines -= len(taken.lines)
            delivered = head.acked >= head.size
            if delivered:
                if self._is_open(head):
                    self._close_file()
                self._segments.popleft()
        # Without the lock, so appends go on; only this thread acknowledges. The offset is
        # noted before a deletion, so a deletion lost to a power cut still sends nothing again.
        with contextlib.suppress(FileNotFoundError):  # dropped meanwhile (the spool was full)
            _note_acked(head.path, taken.end)
        if delivered:
            head.path.unlink(missing_ok=True)

    def _remove_head(self) -> None:
        head = self._segments.popleft()
        head.path.unlink(missing_ok=True)
        self._bytes -= head.size - head.acked
        self._lines -= head.lines - head.acked_lines

    def drop_oldest(self) -> int:
        """Delete the oldest segment (a new one is started if it was the only one); return
        how many events not acknowledged were dropped."""
        with self._lock:
            if not self._segments:
                return 0
            head = self._segments[0]
            if self._is_open(head):
                self._close_file()
            dropped = head.lines - head.acked_lines
            self._remove_head()
            return dropped

    def close(self) -> None:
        """Close the newest segment and give up the ownership (what is left stays for a
        restart; with nothing left, no file of this process stays either)."""
        atexit.unregister(self.close)
        with self._lock:
            self._close_file()
            if not any(self.folder.glob(f"{self.owner}.*{SEGMENT_SUFFIX}")):
                (self.folder / f"{self.owner}{LOCK_SUFFIX}").unlink(missing_ok=True)
            self._lock_file.close()


def check_folder(folder: Path, uid: int) -> None:
    """Make the spool folder (0700) if need be; raise SpoolFolderError unless it is a folder
    owned by `uid` that neither its group nor others may write to."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.stat()
    except OSError as e:
        msg = f"the spool folder {folder} cannot be made ({type(e).__name__}: {e.strerror})"
        raise SpoolFolderError(msg) from None
    if not stat.S_ISDIR(info.st_mode):
        msg = f"the spool folder {folder} is not a folder"
        raise SpoolFolderError(msg)
    if uid >= 0 and info.st_uid != uid:
        msg = f"the spool folder {folder} is owned by uid {info.st_uid}, not this server's {uid}"
        raise SpoolFolderError(msg)
    if uid >= 0 and info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(info.st_mode)
        msg = f"the spool folder {folder} may be written by others (mode {mode:#o}; 0700 expected)"
        raise SpoolFolderError(msg)


def _write_all(f: BinaryIO, data: bytes) -> None:
    """Write all of `data` to an unbuffered file (a full disk takes part, then raises OSError)."""
    view = memoryview(data)
    while view:
        written = f.write(view)
        if not written:
            msg = "the spool file took none of a write"
            raise OSError(msg)
        view = view[written:]


def _note_acked(path: Path, acked: int) -> None:
    """Write how far a segment is acknowledged into its stamp, durably."""
    fd = os.open(path, os.O_WRONLY | NOFOLLOW)  # not O_APPEND: written in place
    try:
        os.lseek(fd, len(STAMP_PREFIX), os.SEEK_SET)
        os.write(fd, b"%020d" % acked)
        _datasync(fd)
    finally:
        os.close(fd)


def _read(head: Segment, max_lines: int, max_bytes: int) -> Taken:
    with head.path.open("rb") as f:
        f.seek(head.acked)
        chunk = f.read(min(max_bytes, head.size - head.acked))
        cut = chunk.rfind(b"\n") + 1
        if cut == 0:  # one event larger than max_bytes: send it alone
            f.seek(head.acked)
            chunk = f.readline()
            cut = len(chunk)
    lines = chunk[:cut].split(b"\n")[:-1][:max_lines]
    end = head.acked + sum(len(line) + 1 for line in lines)
    return Taken(head, head.acked, end, lines)


def _read_stamp(f: BinaryIO) -> tuple[dict[str, Any] | None, int]:
    """Return a segment's stamp and where its events start (None, 0: it has none)."""
    first = f.readline(STAMP_MAX)
    if not first.endswith(b"\n") or not first.startswith(STAMP_PREFIX):
        return None, 0
    try:
        stamp = json.loads(first)
    except ValueError:
        return None, 0
    if not isinstance(stamp, dict) or stamp.get(STAMP_KEY) != 1:
        return None, 0
    return stamp, len(first)


def _acked(stamp: dict[str, Any], start: int) -> int:
    """Return the offset a stamp says is acknowledged (`start` when it makes no sense)."""
    acked = stamp.get("acked")
    if isinstance(acked, str) and acked.isdigit() and int(acked) >= start:
        return int(acked)
    return start


def _owner(path: Path) -> str | None:
    """Return the owner part of a segment's name (`<key>.<owner>`), None if not spool-named."""
    parts = path.name.split(".")
    return ".".join(parts[:2]) if len(parts) == 4 and parts[2].isdigit() else None


def _quoted(text: str) -> str:
    """Return `text` for a file name; the stamp, not the name, says whose a segment is."""
    quoted = quote(text, safe="").replace(".", "%2E")
    if len(quoted) <= KEY_MAX:
        return quoted
    return quoted[: KEY_MAX - 17] + "~" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _datasync(fd: int) -> None:
    getattr(os, "fdatasync", os.fsync)(fd)


def _os_user() -> str:
    try:
        import pwd  # POSIX only

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


if sys.platform == "win32":  # no flock: an open file cannot be renamed, which guards a live one

    def _flock(fd: int) -> None:
        """Lock nothing."""

else:
    import fcntl

    def _flock(fd: int) -> None:
        """Take an exclusive lock on `fd`; raise BlockingIOError when someone holds it."""
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _take_lock(folder: Path, owner: str) -> BinaryIO:
    """Create the lock of `owner` and hold it for as long as it is open.

    It is locked under a name no other process looks at, then renamed: nobody sees it unheld.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW
    lock = folder / f"{owner}{LOCK_SUFFIX}"
    if sys.platform == "win32":  # no flock, and an open file cannot be renamed
        return os.fdopen(os.open(lock, flags, 0o600), "wb")
    locking = folder / f".{owner}.locking"
    fd = os.open(locking, flags, 0o600)
    _flock(fd)
    locking.rename(lock)
    return os.fdopen(fd, "wb")


def _free(lock: Path) -> bool | None:
    """Return True when nobody holds the lock `lock` (its owner stopped), False when someone
    does or it is not a lock file, None when there is none. Never blocks."""
    try:
        fd = os.open(lock, os.O_RDONLY | NOFOLLOW | NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError:  # ELOOP: a symlink
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        _flock(fd)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _age(path: Path) -> tuple[float, str]:
    """Return when the segment's owner started (its lock was made), then the segment's name:
    oldest first (a segment's own time changes as its acknowledgement is written)."""
    lock = path.with_name(f"{_owner(path)}{LOCK_SUFFIX}")
    try:
        return (lock.lstat().st_mtime, path.name)
    except OSError:
        return (0.0, path.name)
