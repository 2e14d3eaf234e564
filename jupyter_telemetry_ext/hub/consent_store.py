"""Where the collector keeps the consent decisions: in its PostgreSQL store when it has one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

from jupyter_telemetry_ext.core.consent import Consent, DecisionStore
from jupyter_telemetry_ext.core.errors import ConsentError, SecretFileError
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.recorded_user import hashed_user, load_or_create_secret
from jupyter_telemetry_ext.server.withdrawal import stores
from jupyter_telemetry_ext.sinks.consent_table import PgDecisions, consent_table

# How often the collector reads whether another process changed the decisions (seconds).
REFRESH_SECONDS = 0.5


def pg_decisions(
    eventlog: EventLog, record_user: str, secret: str, data_dir: str
) -> Callable[[], DecisionStore] | None:
    """Return what makes the decisions table of the first PostgreSQL handler (None: the
    collector has none). Users are keyed by the keyed hash of their name, with the key of the
    store's user hashes (`secret`, else the key file in `data_dir`)."""
    found = stores(eventlog)
    if not found:
        return None
    handler = found[0]

    def make() -> DecisionStore:
        try:
            key = secret.encode() if secret else load_or_create_secret(Path(data_dir))
        except (OSError, SecretFileError) as e:
            msg = f"the key of the consent table's user hashes cannot be read: {e}"
            raise ConsentError(msg, 500) from None
        return PgDecisions(
            handler.url,
            consent_table(handler.table),
            lambda name: hashed_user(key, name),
            keep_names=record_user == "username",
        )

    return make


async def refresh_decisions(consent: Consent, stopping: asyncio.Event) -> None:
    """Take the decisions other processes made, every REFRESH_SECONDS, until stopping."""
    if getattr(consent.store, "reload", None) is None:
        return
    while not stopping.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopping.wait(), REFRESH_SECONDS)
        await asyncio.to_thread(consent.refresh)
