"""Taking a user's consent decision, as the server extension and the collector both do.

The decision is recorded as an event of the consent schema first (the proof of consent), and
kept only once every handler wrote that event. Nothing here imports tornado.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from jupyter_telemetry_ext.core.consent import DECLINED, Decision
from jupyter_telemetry_ext.core.errors import ConsentError
from jupyter_telemetry_ext.core.eventlog import EventLog
from jupyter_telemetry_ext.core.studies import CONSENT_SCHEMA_ID, Study
from jupyter_telemetry_ext.core.tickets import Ticket

MAX_BODY_BYTES = 1024  # `{"decision": "declined", "version": N}` and some whitespace
WRITE_TIMEOUT_SECONDS = 30.0


def read_body(body: bytes) -> Any:
    """Return a PUT body's JSON; raise ConsentError (400) when it is not JSON or too long."""
    if len(body) > MAX_BODY_BYTES:
        msg = f"body: a decision is at most {MAX_BODY_BYTES} bytes"
        raise ConsentError(msg, 400, "body")
    try:
        return json.loads(body.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        msg = "body: not valid JSON in UTF-8"
        raise ConsentError(msg, 400, "body") from None


async def take_decision(
    eventlog: EventLog,
    user: str,
    recorded: str | None,
    study_name: str,
    body: bytes,
    *,
    groups: frozenset[str] | None = None,
    erase: Callable[[Study], Awaitable[int]] | None = None,
) -> dict[str, Any]:
    """Check, prove and keep the decision of `user` (in `groups`; None: not known); return the
    PUT reply. A decline of a study with `erase_on_withdrawal` then calls `erase(study)`, which
    returns how many events it erased. Raise ConsentError (400, 404, 409; 503 when its event
    was not written; 500 when it cannot be kept, or was kept but the erasure failed)."""
    consent = eventlog.consent
    study, decision, previous = consent.check(user, study_name, read_body(body), groups)
    ticket = Ticket()
    with eventlog.tracking(ticket):
        record_decision(eventlog, study, decision, previous, recorded)
    if not await ticket.wait(WRITE_TIMEOUT_SECONDS) or not ticket.ok:
        msg = "the decision's event could not be written, so it is not kept; retry"
        raise ConsentError(msg, 503)
    try:  # off the event loop: a database store writes over the network
        await asyncio.to_thread(consent.keep, user, decision)
    except OSError:
        msg = "the decision could not be written where decisions are kept; retry"
        raise ConsentError(msg, 500) from None
    erased = None
    if decision.decision == DECLINED and study.erase_on_withdrawal and erase is not None:
        erased = await _erase(erase, study)
    return {**asdict(decision), "recording": consent.recording(study, user), "erased": erased}


async def _erase(erase: Callable[[Study], Awaitable[int]], study: Study) -> int:
    """Erase the study's events of the user; raise ConsentError (500) when it failed."""
    try:
        return await erase(study)
    except Exception as e:  # a store's failure, whichever: the user must hear the erase failed
        msg = (
            "the withdrawal is kept (nothing more is recorded) but erasing the study's events "
            f"failed ({type(e).__name__}): withdraw again to retry the erasure"
        )
        raise ConsentError(msg, 500) from None


def record_decision(
    eventlog: EventLog, study: Study, decision: Decision, previous: str | None, user: str | None
) -> None:
    """Record a decision as an event of the consent schema (the proof of consent)."""
    data = {
        "study": study.name, "study_version": decision.version, "decision": decision.decision,
        "mode": study.mode, "previous": previous, "erased": None,
    }  # fmt: skip
    context = {"__user__": user} if user is not None else None
    version = eventlog.latest_version(CONSENT_SCHEMA_ID)
    eventlog.record_event(CONSENT_SCHEMA_ID, version, data, context=context)
