"""Event keys: what a store keeps each event once by, across batches, retries and replicas.

An event posted with a client id is keyed by who posted it and that id, so that the same id from
two posters is two events while a retry of either is the same one: a keyed hash, whatever
`record_user` says, that tells nothing about the poster to anyone without the deployment's key.
An event posted without a client id gets a new key when it is received, which travels with it
to the store: a batch written again (say after the connection dropped once PostgreSQL had
committed it) is then stored once. A key is never part of the capsule: it rides on the event's
log record (`CapsuleRecord.key`).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import time
from typing import Any, Union

# A store key as the request path hands it over: its bytes, or a client id's key still to be
# hashed, `(the poster's hash, client id)`, which whoever first reads it hashes (`key_bytes`):
# the EventLog's writer thread, off the event loop.
EventKey = Union[bytes, tuple[Any, str]]  # noqa: UP007 - a runtime alias

KEY_BYTES = 16
# Keys are derived apart from the user hashes made with the same secret (`hashed_user`), so a
# stored user hash is no help in computing anyone's event keys.
_LABEL = b"jupyter_telemetry_ext event key\x00"


def poster_key(secret: bytes, poster: str) -> bytes:
    """Return the key of one poster's event keys: HMAC-SHA256(secret, label || poster)."""
    return hmac.new(secret, _LABEL + poster.encode(), hashlib.sha256).digest()


def client_key(poster: bytes, client_id: str) -> bytes:
    """Return the key of a poster's event by its client id: BLAKE2b-128 keyed by `poster`."""
    return hashlib.blake2b(client_id.encode(), key=poster, digest_size=KEY_BYTES).digest()


def new_key() -> bytes:
    """Return the key of an event without a client id: the time in milliseconds (6 bytes), then
    10 random bytes, as a UUID version 7 is laid out (without its version bits).

    Keys made one after the other sort one after the other, so the unique index takes each at
    its end, as it took the NULL keys of such events before, however large it grows.
    """
    return (time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10)


class RequestKeys:
    """The keys of one request's events: of its poster's client ids, and new ones.

    Made once per request, so each event's key costs a hash copy or a counter: a new key is the
    request's receive time in milliseconds (6 bytes), 6 random bytes of the request, and the
    event's number in it (4 bytes), so keys still sort in the order they were made.
    """

    __slots__ = ("_count", "_hash", "_prefix")

    def __init__(self, secret: bytes, poster: str, received_ms: int) -> None:
        """Key `poster`'s events under `secret`; number new ones after `received_ms`."""
        self._hash = hashlib.blake2b(key=poster_key(secret, poster), digest_size=KEY_BYTES)
        self._prefix = received_ms.to_bytes(6, "big") + os.urandom(6)
        self._count = itertools.count()

    def key(self, client_id: str | None) -> bytes:
        """Return the key of an event: `client_key` of its client id, else a new key."""
        return key_bytes(self.pending(client_id))

    def pending(self, client_id: str | None) -> EventKey:
        """Return the key of an event, a client id's not hashed yet (see `key_bytes`)."""
        if client_id is None:
            return self._prefix + next(self._count).to_bytes(4, "big")
        return (self._hash, client_id)


def key_bytes(key: EventKey) -> bytes:
    """Return the bytes of a key: a client id's key (see `RequestKeys.pending`) hashed now."""
    if isinstance(key, bytes):
        return key
    poster, client_id = key
    hashed = poster.copy()  # the poster's hash is never updated itself: safe on any thread
    hashed.update(client_id.encode())
    return hashed.digest()  # type: ignore[no-any-return]
