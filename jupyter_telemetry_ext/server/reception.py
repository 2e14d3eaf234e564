"""What the server knows of a POST besides its body: when it came, who sent it, its duplicates.

Nothing here imports tornado: the handler builds a Reception for each request.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from jupyter_telemetry_ext.core.errors import TimestampError
from jupyter_telemetry_ext.core.event_keys import EventKey, RequestKeys
from jupyter_telemetry_ext.core.recorded_user import load_or_create_secret, recorded_user
from jupyter_telemetry_ext.core.schema import EventSchema
from jupyter_telemetry_ext.core.tickets import Owed
from jupyter_telemetry_ext.core.timestamps import corrected_event_time, format_timestamp
from jupyter_telemetry_ext.core.tombstones import TombstoneSource

from .duplicates import Duplicates
from .idjournal import IdJournal
from .ratelimit import RateLimiter

log = logging.getLogger("jupyter_telemetry_ext.server.reception")


@dataclass(frozen=True)
class Reception:
    """One request's context: receive time, the client's `sent_at`, the sender and its ids.

    Built whole once the body is read (`Policy.reception`), and not changed afterwards.
    """

    received_at: datetime
    principal: str = ""
    recorded_user: str | None = None
    sent_at: datetime | None = None
    window: timedelta | None = None
    duplicates: Duplicates | None = None
    # Which schemas the sender may post; None: those marked `frontend: true` (see ingest).
    open_to: Callable[[EventSchema], bool] | None = None
    # When the recorded user was erased from a store written to (None: never).
    erased_at: datetime | None = None
    # The configurable whose event_time_window is `window`, named in the errors.
    options: str = "TelemetryExtension"

    def erased(self, event_time: datetime | None) -> bool:
        """Return True when the recorded user was erased after this event (received or
        happened): it is dropped, never written."""
        at = self.erased_at
        return at is not None and (self.received_at < at or (event_time or at) < at)

    # The keys of this request's events (see `event_key`); None: events get none.
    keys: RequestKeys | None = None

    def event_time(self, timestamp: datetime | None) -> datetime | None:
        """Return the client's event time by the server's clock; raise TimestampError if far."""
        if timestamp is None:
            return None
        when = timestamp
        if self.sent_at is not None:
            when = corrected_event_time(self.received_at, self.sent_at, timestamp)
        if self.window is not None and abs(when - self.received_at) > self.window:
            hours = self.window.total_seconds() / 3600
            msg = (
                f"is more than {hours:g} h away from the server's receive time"
                f"{' (after correcting by sent_at)' if self.sent_at else ''}"
                f" ({self.options}.event_time_window)"
            )
            raise TimestampError(msg)
        return when

    def is_duplicate(self, client_id: str | None) -> bool:
        """Return True when this sender's event id was recorded within the window."""
        if not client_id or self.duplicates is None:
            return False
        return self.duplicates.seen(self.principal, client_id)

    def remember(self, client_id: str | None, *, durable: bool = True) -> None:
        """Remember a recorded event's id, so that a retry of it is a duplicate (`durable`:
        journaled now; else once every handler wrote it, see `Policy.from_options`)."""
        # Ids are kept per principal: one cannot suppress another's events by reusing ids.
        if client_id and self.duplicates is not None:
            self.duplicates.add(self.principal, client_id, durable=durable)

    def journaling(self) -> AbstractContextManager[None]:
        """Return a block whose remembered ids are journaled in one write at its end."""
        return self.duplicates.journaling() if self.duplicates is not None else nullcontext()

    def event_key(self, client_id: str | None) -> bytes | None:
        """Return the store key of an event: of this principal and its client id, else new.

        An event without a client id gets a new key here, once, which travels with it to
        the store: a batch written twice is stored once. Such an event is never a duplicate
        of another (the duplicate window holds client ids only).
        """
        return self.keys.key(client_id or None) if self.keys is not None else None

    def pending_key(self, client_id: str | None) -> EventKey | None:
        """Return the store key of an event as `event_key` does, a client id's not hashed yet:
        whoever first reads it hashes it (`event_keys.key_bytes`: the writer thread)."""
        return self.keys.pending(client_id or None) if self.keys is not None else None

    def id_key(self, client_id: str) -> str:
        """Return the key under which this principal's event id is owed (see tickets.Owed)."""
        return f"{self.principal}\x00{client_id}"

    def context(self, client_id: str | None, event_time: datetime | None) -> dict[str, Any]:
        """Return the capsule fields the server adds to one event."""
        context: dict[str, Any] = {}
        if event_time is None and client_id is None and self.recorded_user is None:
            return context
        if event_time is not None:
            context["__event_time__"] = format_timestamp(event_time)
        if client_id is not None:
            context["__client_id__"] = client_id
        if self.recorded_user is not None:
            context["__user__"] = self.recorded_user
        return context


class PolicyOptions(Protocol):
    """The options a Policy is made from: TelemetryExtension's and TelemetryCollector's."""

    duplicate_window: float
    duplicate_capacity: int
    duplicate_capacity_per_user: int
    event_time_window: float
    rate_limit: float
    rate_burst: int
    record_user: str
    user_hash_secret: str
    data_dir: str
    reply_after_write: bool


@dataclass
class Policy:
    """The server's rules for posts, from TelemetryExtension's options."""

    limiter: RateLimiter
    duplicates: Duplicates | None = None
    window: timedelta | None = None
    record_user: str = "none"
    secret: bytes = b""
    reply_after_write: bool = False
    key_secret: bytes = b""  # of event keys, whatever record_user says (see event_keys)
    owed: Owed = field(default_factory=Owed)  # ids some handlers did not write (see tickets)
    # The erased users of the stores written to (see core.tombstones): checked for each event.
    tombstones: tuple[TombstoneSource, ...] = ()
    # The configurable these rules come from (its class name), named in the errors.
    options: str = "TelemetryExtension"

    @classmethod
    def from_options(cls, options: PolicyOptions) -> Policy:
        """Return the rules for posts: rate limit, duplicate ids, clock window, recorded user."""
        secret = _user_secret(options)
        key_secret = secret or _key_secret(options)
        duplicates = None
        if options.duplicate_window > 0:
            duplicates = Duplicates(
                options.duplicate_window,
                options.duplicate_capacity,
                options.duplicate_capacity_per_user,
                journal=_journal(options, key_secret),
            )
        window = options.event_time_window
        owed = Owed(written=_journal_written(duplicates))
        return cls(
            limiter=RateLimiter(options.rate_limit, options.rate_burst),
            duplicates=duplicates,
            window=timedelta(seconds=window) if window else None,
            record_user=options.record_user,
            secret=secret,
            reply_after_write=options.reply_after_write,
            owed=owed,
            key_secret=key_secret,
            options=type(options).__name__,
        )

    def reception(
        self,
        username: str,
        principal: str,
        received_at: datetime,
        *,
        sent_at: datetime | None = None,
        open_to: Callable[[EventSchema], bool] | None = None,
    ) -> Reception:
        """Return the context of a request that `principal` (user `username`) sent: its
        `sent_at` and the schemas it may post (`open_to`; None: those open to frontends)."""
        user = recorded_user(self.record_user, self.secret, username)
        return Reception(
            received_at=received_at,
            principal=principal,
            recorded_user=user,
            sent_at=sent_at,
            window=self.window,
            duplicates=self.duplicates,
            open_to=open_to,
            erased_at=self.erased_at(user),
            options=self.options,
            keys=self._keys(principal, received_at),
        )

    def erased_at(self, user: str | None) -> datetime | None:
        """Return when `user` was last erased from a store written to, or None."""
        if user is None or not self.tombstones:
            return None
        found = [at for at in (s.erased_at(user) for s in self.tombstones) if at is not None]
        return max(found, default=None)

    def _keys(self, principal: str, received_at: datetime) -> RequestKeys | None:
        """Return the keys of a request's events (None without a key secret)."""
        if not self.key_secret:
            return None
        return RequestKeys(self.key_secret, principal, int(received_at.timestamp() * 1000))


def _user_secret(options: PolicyOptions) -> bytes:
    """Return the key of hashed user names: configured, or kept in the data dir."""
    if options.record_user != "hashed":
        return b""
    if options.user_hash_secret:
        return options.user_hash_secret.encode()
    return load_or_create_secret(Path(options.data_dir))


def _journal(options: PolicyOptions, key: bytes) -> IdJournal | None:
    """Return the on-disk journal of recorded ids (its pseudonyms by `key`), when the options
    name its folder."""
    folder = getattr(options, "duplicate_journal", "")  # the collector's option
    if not folder:
        return None
    window, capacity = options.duplicate_window, options.duplicate_capacity
    return IdJournal(Path(folder), window, capacity, key=key)


def _journal_written(duplicates: Duplicates | None) -> Callable[[list[str]], None] | None:
    """Return what journals the ids a ticket's handlers all wrote (`reply_after_write`)."""
    if duplicates is None or duplicates.journal is None:
        return None

    def written(keys: list[str]) -> None:
        duplicates.journal_written([(p, c) for p, _, c in (k.partition("\x00") for k in keys)])

    return written


def _key_secret(options: PolicyOptions) -> bytes:
    """Return the key of event keys when user names are not hashed: the same key as theirs.

    A data dir that cannot hold the key file leaves a key of this process only (said at start):
    a retry that reaches the store after a restart is then stored again.
    """
    if options.user_hash_secret:
        return options.user_hash_secret.encode()
    try:
        return load_or_create_secret(Path(options.data_dir))
    except OSError as e:
        log.warning(
            "Telemetry: no key file for event keys in %s (%s): events are keyed by a key of "
            "this process only, so a retry stored after a restart is stored again; set "
            "user_hash_secret, or make the data dir writable",
            options.data_dir, e.strerror or type(e).__name__,
        )  # fmt: skip
        return secrets.token_bytes(32)
