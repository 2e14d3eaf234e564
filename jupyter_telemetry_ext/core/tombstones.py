"""Tombstones: the users erased from a store, so that their late events are never written.

A tombstone is a keyed hash of the user as the store records them (`__user__`) and the time
of the erasure: an event of that user from before that time (received, or happened) is
dropped wherever it comes from (a spool, a forwarder, a retry); one from after is recorded.
A `__user__` that is already a keyed hash (`record_user = "hashed"`) is its own key; a plain
name is hashed with the store's erasure key, so a tombstone never holds a name.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

# What `recorded_user.hashed_user` makes: an HMAC-SHA256 in lowercase hex.
HASHED = re.compile(r"[0-9a-f]{64}")


def user_key(store_key: bytes, user: str) -> str:
    """Return the tombstone key of a stored `__user__`: itself when a keyed hash, else an HMAC."""
    if HASHED.fullmatch(user):
        return user
    return hmac.new(store_key, user.encode(), hashlib.sha256).hexdigest()


class Tombstones:
    """The erased users of a store (key -> erasure time), with a cache of looked-up users."""

    def __init__(self, store_key: bytes = b"", erased: Mapping[str, datetime] | None = None):
        """Hold the tombstones `erased` of a store whose erasure key is `store_key`."""
        self.store_key = store_key
        self.erased: dict[str, datetime] = dict(erased or {})
        self._keys: dict[str, str] = {}  # user -> key: the users of a store repeat

    def __len__(self) -> int:
        """Return how many users were erased."""
        return len(self.erased)

    def erased_at(self, user: str | None) -> datetime | None:
        """Return when `user` (a stored `__user__`) was erased, or None."""
        if user is None or not self.erased:
            return None
        key = self._keys.get(user)
        if key is None:
            if len(self._keys) >= 65536:
                self._keys.clear()
            key = self._keys[user] = user_key(self.store_key, user)
        return self.erased.get(key)

    def drops(self, user: str | None, *times: datetime | None) -> bool:
        """Return True when `user` was erased after any of `times` (received, event time)."""
        at = self.erased_at(user)
        return at is not None and any(t is not None and t < at for t in times)


def erased_file(log: Path) -> Path:
    """Return where the tombstones of a JSON-lines log are kept (not one of its rotations)."""
    return log.with_name(log.name + "-erased-users.json")


def read_file(path: Path) -> Tombstones:
    """Return the tombstones kept in `path` (none when it does not exist)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Tombstones()
    erased = {k: datetime.fromisoformat(v) for k, v in document.get("users", {}).items()}
    return Tombstones(bytes.fromhex(document["key"]), erased)


def add_to_file(path: Path, users: Iterable[str], at: datetime | None = None) -> Tombstones:
    """Add tombstones of `users` (erased `at`, default now) to `path`, atomically, mode 0600."""
    at = at or datetime.now(timezone.utc)
    found = read_file(path)
    store_key = found.store_key or secrets.token_bytes(32)
    erased = {**found.erased, **{user_key(store_key, user): at for user in users}}
    document = {"key": store_key.hex(), "users": {k: v.isoformat() for k, v in erased.items()}}
    fd, temporary = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp: mode 0600
        json.dump(document, f)
        f.flush()
        os.fsync(f.fileno())
    Path(temporary).replace(path)
    return Tombstones(store_key, erased)


class FileTombstones:
    """The tombstones of a JSON-lines log, read again when the file changes, so that an
    erasure run by another process reaches this one."""

    def __init__(self, log: Path) -> None:
        """Watch the tombstones of the log `log`."""
        self.path = erased_file(log)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self.current = Tombstones()
        self.refresh()

    def refresh(self) -> Tombstones:
        """Return the tombstones, read again when the file changed since last looked at (a
        stat: each request's check sees an erasure that has just been run)."""
        with self._lock:
            try:
                stat = self.path.stat()
                stamp = (stat.st_mtime_ns, stat.st_ino)
            except FileNotFoundError:
                stamp = None
            if stamp != self._stamp:
                self.current = read_file(self.path) if stamp else Tombstones()
                self._stamp = stamp
        return self.current

    def erased_at(self, user: str | None) -> datetime | None:
        """Return when `user` was erased (the file read again if it changed), or None."""
        return self.refresh().erased_at(user)


class TombstoneSource(Protocol):
    """Where a recorder learns which users were erased, and when."""

    def erased_at(self, user: str | None) -> datetime | None:
        """Return when `user` (a stored `__user__`) was erased, or None."""


def sources_of(handlers: Sequence[logging.Handler]) -> list[TombstoneSource]:
    """Return the tombstones of the stores some handlers write: a log file's (kept beside it)
    and those a handler checks itself (its `tombstones`, as PostgresEventHandler's)."""
    sources: list[TombstoneSource] = []
    for handler in handlers:
        own = getattr(handler, "tombstones", None)
        if callable(getattr(own, "erased_at", None)):
            sources.append(own)  # type: ignore[arg-type]
        elif isinstance(handler, logging.FileHandler):
            sources.append(FileTombstones(Path(handler.baseFilename)))
    return sources
