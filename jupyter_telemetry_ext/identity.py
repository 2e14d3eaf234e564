"""Who posted an event, as the server records it: nothing, a keyed hash, or the user name."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_FILE = "jupyter_telemetry_ext_user_secret"  # noqa: S105 - a file name, not a secret


def load_or_create_secret(folder: Path) -> bytes:
    """Return the secret kept in `folder`, creating it (mode 0600) the first time."""
    path = folder / SECRET_FILE
    if path.exists():
        return path.read_bytes().strip()
    folder.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
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
