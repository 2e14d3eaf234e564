"""The start-up check of who else can read, or replace, the log files the EventLog writes."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from jupyter_telemetry_ext.core.eventlog import EventLog


def warn_open_logs(log: logging.Logger, eventlog: EventLog) -> None:
    """Warn of each FileHandler's log that every user can read, or whose folder another user
    owns (they can read it, or leave a link at its name that the handler then follows)."""
    for handler in eventlog.handlers:
        if not isinstance(handler, logging.FileHandler):
            continue
        path = Path(handler.baseFilename)
        owner = _foreign_owner(path.parent)
        if owner is not None:
            log.warning(
                "Telemetry: the folder of the log %s belongs to user id %d, who can read the "
                "log or replace it with a link to another file: keep logs in a folder of the "
                "server's user",
                path,
                owner,
            )
        elif _readable_by_everyone(path):
            log.warning(
                "Telemetry: every user of this machine can read the log %s (mode %03o, and "
                "every folder above it open to them): `chmod 600` it, or keep it in a private "
                "folder",
                path,
                stat.S_IMODE(path.stat().st_mode),
            )


def _foreign_owner(folder: Path) -> int | None:
    """Return the user id owning the folder when it is neither the server's user nor root."""
    try:
        owner = folder.stat().st_uid
    except OSError:
        return None
    return None if owner in (os.geteuid(), 0) else owner


def _readable_by_everyone(path: Path) -> bool:
    """Return True when others may read the file and enter every folder above it."""
    try:
        if not path.stat().st_mode & stat.S_IROTH:
            return False
        return all(folder.stat().st_mode & stat.S_IXOTH for folder in path.resolve().parents)
    except OSError:
        return False
