"""Exact writes to log files: after a failed write, the file holds whole events only, and we
know which.

A write to a full disk may leave part of it in the file (the OS writes what fits), and the
file object keeps the rest in its buffer, to write it later should room appear. So after a
failure the stream is closed (its buffer dropped with it), the file is cut back to the end of
the last whole event, and the handler reopens the file (in append mode) at its next write.
A log left with its last event cut short (a write a crash or a full disk cut, with no cut
back: a SIGKILL, a power loss) is cut back to its last line end before the handler's first write
through a new stream (`cut_torn_tail`), else the next event would be glued to the torn one and
unreadable. A log unlinked under a running handler (replaced: see `reopen_if_replaced`) is
reopened before a write, looked at once every REPLACED_CHECK_SECONDS. `sync` writes a file to
disk (fdatasync) for the writes that must survive a crash of the machine.
"""

from __future__ import annotations

import contextlib
import locale
import logging
import os
from collections.abc import Sequence
from logging.handlers import WatchedFileHandler
from pathlib import Path

UNKNOWN_SIZE = -1  # a write whose size in bytes is not known: it is whole or cut away
# Seconds between a writer's looks at whether its log was replaced (an fstat each, which would
# cost as much as the rest of a small write if made at every one). A rewrite of a live log
# (`sinks.retention`) carries over what is appended to the old file for longer than this.
REPLACED_CHECK_SECONDS = 0.2


def position(handler: logging.FileHandler) -> int | None:
    """Return where the handler's next write lands in its file (None: unknown)."""
    stream = handler.stream
    try:
        if stream is None:  # opened at the first write (`delay`), in append mode
            return Path(handler.baseFilename).stat().st_size
        # The file offset: in append mode, where the last write ended (no seek, no stat).
        return os.lseek(stream.fileno(), 0, os.SEEK_CUR)
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, AttributeError):
        return None


def reopen_if_replaced(handler: logging.FileHandler) -> None:
    """Have the handler reopen its file when its open file was unlinked (as `jupyter telemetry
    erase` and retention leave a log: rewritten, and replaced by rename). A plain FileHandler
    would write on into the old file, and its events would be lost; WatchedFileHandler checks
    this itself. One fstat of the open file: no path is looked up (the caller makes it at most
    once every REPLACED_CHECK_SECONDS)."""
    stream = handler.stream
    if stream is None or isinstance(handler, WatchedFileHandler):
        return
    try:
        unlinked = os.fstat(stream.fileno()).st_nlink == 0
    except (OSError, ValueError, AttributeError):
        return  # not a file this can tell about: the write says what is wrong
    if unlinked:
        _close(handler)


def settle(handler: logging.FileHandler, start: int | None, sizes: Sequence[int]) -> int:
    """After a failed write that began at `start`, keep its whole events; return how many.

    `sizes` are the bytes of each event the write held, in order (UNKNOWN_SIZE: the write is
    kept only if nothing was cut from it, which a failure rules out: it is cut away).
    """
    _close(handler)
    if start is None:
        return 0
    try:
        end = Path(handler.baseFilename).stat().st_size
    except OSError:  # the file is gone: none of it is known to be written
        return 0
    whole, kept = _whole(sizes, end - start)
    if end > start + kept:
        _cut(handler, start + kept)
    return whole


def cut_torn_tail(handler: logging.FileHandler) -> int:
    """Cut an event partly written at the end of the handler's file (no line end after it);
    return the bytes cut. The stream is closed when it cuts: the handler reopens the file."""
    if handler.terminator != "\n":
        return 0
    try:
        fd = os.open(handler.baseFilename, os.O_RDONLY)
    except OSError:
        return 0  # not there yet (or not readable): the write says what is wrong
    try:
        end = os.fstat(fd).st_size
        keep = _last_line_end(fd, end)
    except OSError:
        return 0
    finally:
        os.close(fd)
    if keep == end:
        return 0
    _close(handler)
    _cut(handler, keep)
    return end - keep


def _last_line_end(fd: int, end: int, block: int = 1 << 16) -> int:
    """Return the offset just past the file's last line end (0 when it has none)."""
    at = end
    while at > 0:
        start = max(at - block, 0)
        data = os.pread(fd, at - start, start)
        found = data.rfind(b"\n")
        if found >= 0:
            return start + found + 1
        at = start
    return 0


def sync(handler: logging.FileHandler) -> None:
    """Write the handler's file to disk (fdatasync: its data and size, as the forwarding spool
    does): what it holds survives a crash of the machine.

    A stream closed after a failed write (see `settle`) is synced through the file's path:
    the events kept in it were written, not yet synced. Raise OSError when the sync fails.
    """
    handler.acquire()
    try:
        stream = handler.stream
        if stream is not None:
            stream.flush()
            os.fdatasync(stream.fileno())
            return
        try:
            fd = os.open(handler.baseFilename, os.O_RDONLY)
        except FileNotFoundError:
            return  # never opened (`delay`): nothing was written to it
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)
    finally:
        handler.release()


def _close(handler: logging.FileHandler) -> None:
    """Close the stream, dropping what it could not write; the handler reopens the file."""
    stream, handler.stream = handler.stream, None
    if handler.mode.startswith("w"):
        handler.mode = "a"  # reopening must append to the file, not empty it
    if stream is None:
        return
    with contextlib.suppress(OSError, ValueError):
        stream.close()  # writes what it can of its buffer, then closes the file


def _whole(sizes: Sequence[int], written: int) -> tuple[int, int]:
    """Return how many events of `sizes` fit whole in `written` bytes, and their bytes."""
    whole = kept = 0
    for size in sizes:
        if size == UNKNOWN_SIZE or kept + size > written:
            break
        kept += size
        whole += 1
    return whole, kept


def _cut(handler: logging.FileHandler, size: int) -> None:
    """Cut the file back to `size` bytes: no partial event is left for a reader to trip on."""
    try:
        os.truncate(handler.baseFilename, size)
    except OSError:
        logging.getLogger(__name__).exception(
            "Could not cut a partly written event from %s", handler.baseFilename
        )


def line_sizes(lines: Sequence[str], handler: logging.FileHandler) -> list[int]:
    """Return the bytes each line takes in the handler's file, with its terminator."""
    encoding = getattr(handler.stream, "encoding", None) or handler.encoding or "locale"
    if encoding == "locale":
        encoding = locale.getpreferredencoding(False)
    terminator = handler.terminator
    try:
        if "\n{a".encode(encoding) != b"\n{a":  # not ASCII-compatible (UTF-16, say)
            return [UNKNOWN_SIZE]
    except LookupError:
        return [UNKNOWN_SIZE]
    # The lines are ASCII (JSON with escapes): one byte a character.
    end = len(terminator.encode(encoding))
    return [len(line) + end for line in lines]
