"""Who posted an event, as the server records it: nothing, a keyed hash, or the user name."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SecretFileError

if TYPE_CHECKING:
    from .eventlog import EventLog
    from .schema import EventSchema

SECRET_FILE = "jupyter_telemetry_ext_user_secret"  # noqa: S105 - a file name, not a secret


def load_or_create_secret(folder: Path) -> bytes:
    """Return the secret kept in `folder`, creating it (mode 0600) the first time.

    Servers starting together all get the key of the one that created the file first. An
    existing file that is empty, or readable by its group or others, raises SecretFileError.
    """
    path = folder / SECRET_FILE
    try:
        return read_secret(path)
    except FileNotFoundError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    _create(path)
    return read_secret(path)


def read_secret(path: Path) -> bytes:
    """Return the key in `path`; raise SecretFileError when it is empty or not private."""
    fd = os.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        if os.name == "posix" and mode & 0o077:
            msg = (
                f"{path}: the user-hash key is readable by other users (mode {mode:04o}): "
                f"run `chmod 600 {path}`, or delete the file to generate a new key (hashes "
                "recorded so far then no longer match)"
            )
            raise SecretFileError(msg)
        secret = f.read().strip()
    if not secret:
        msg = (
            f"{path}: the user-hash key file is empty: delete it to generate a new key, or "
            "write the key into it (mode 0600)"
        )
        raise SecretFileError(msg)
    return secret


def _create(path: Path) -> None:
    """Write a new key to a private temporary file, then link it into place unless one exists.

    A link, unlike a rename, never replaces a file: when several servers start at once, the
    first link wins and every server reads that one key, complete.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_hex(32).encode())
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another server's key is already there
            _link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _link(source: Path, target: Path) -> None:
    """Make `target` name `source`'s file; raise FileExistsError when `target` exists."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system: rename, unless a key is there already
        if target.exists():
            raise FileExistsError(target) from None
        source.rename(target)


MIN_SECRET_LENGTH = 16
MAKE_SECRET = 'python -c "import secrets; print(secrets.token_hex(32))"'  # noqa: S105 - how to make a key, not one


def checked_secret(secret: str) -> str:
    """Return a configured user-hash key; raise ValueError when it is too short to be a key.

    A short key (or a placeholder copied from the docs, "...") would let anyone who reads the
    store find a user's name by trying names: refused, never used.
    """
    if 0 < len(secret) < MIN_SECRET_LENGTH:
        msg = (f"user_hash_secret: a key of at least {MIN_SECRET_LENGTH} characters is needed "
               f"(got {len(secret)}); make one with {MAKE_SECRET}")  # fmt: skip
        raise ValueError(msg)
    return secret


def hashed_user(secret: bytes, username: str) -> str:
    """Return an HMAC-SHA256 of the user name: stable for a user, not reversible without the key."""
    return hmac.new(secret, username.encode(), hashlib.sha256).hexdigest()


def recorded_user(mode: str, secret: bytes, username: str) -> str | None:
    """Return the `__user__` value for a mode: None ("none"), the HMAC ("hashed"), or the name."""
    if mode == "hashed":
        return hashed_user(secret, username)
    if mode == "username":
        return username
    return None


def schemas_without_user(eventlog: EventLog, posted: Callable[[EventSchema], bool]) -> list[str]:
    """Return the ids of the allowed `posted` schemas whose capsules do not keep `__user__`."""
    return sorted(
        {
            schema.id
            for schema in eventlog.schemas
            if posted(schema)
            and eventlog.is_allowed(schema.id)
            and "__user__" not in eventlog.plan(schema).context_kept
        }
    )


def warn_user_not_kept(
    log: Any, eventlog: EventLog, record_user: str, posted: Callable[[EventSchema], bool]
) -> list[str]:
    """Log one WARNING naming the allowed schemas whose user `record_user` asks for but the
    allow-list drops (their events are nobody's: never exported or erased); return their ids."""
    if record_user == "none":
        return []
    dropped = schemas_without_user(eventlog, posted)
    if dropped:
        log.warning(
            "Telemetry: record_user = %r, but the allow-list does not keep the category "
            "user-identifier (or unrestricted_only is set) for %d allowed schemas: their events "
            "are stored without a user, so they can never be exported or erased by user. Add "
            '"user-identifier" to their allowed_categories where the user is wanted: %s',
            record_user,
            len(dropped),
            ", ".join(dropped),
        )
    return dropped
