"""A batch's plain events, recorded in few steps, end exactly as they would one by one."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from jupyter_telemetry_ext import EventLog
from jupyter_telemetry_ext.core.consent import JsonDecisions
from jupyter_telemetry_ext.core.records import HeldEvent
from jupyter_telemetry_ext.server import plainevents
from jupyter_telemetry_ext.server.duplicates import Duplicates
from jupyter_telemetry_ext.server.ingest import BatchResult, record_batch
from jupyter_telemetry_ext.server.ratelimit import RateLimiter
from jupyter_telemetry_ext.server.reception import Policy
from jupyter_telemetry_ext.server.wire import Limits

CELLS, HELD, GRANTED, CLOSED = (f"https://events.example.org/plain/{name}"
                                for name in ("cells", "held", "granted", "closed"))  # fmt: skip
RECEIVED = datetime(2026, 12, 7, 12, 0, 0, 123456, tzinfo=timezone.utc)
STUDY = {"title": "T", "text": "x", "version": 1, "mode": "opt-in"}


def _schema(schema_id: str, version: Any = 1) -> dict[str, Any]:
    return {
        "$id": schema_id, "version": version, "title": "Cells", "description": "Cell events.",
        "type": "object", "additionalProperties": False,
        "properties": {
            "action": {"type": "string", "categories": ["unrestricted"]},
            "user": {"type": "string", "categories": ["user-identifier"]},
            "n": {"type": "integer", "categories": ["unrestricted"]},
        },
    }  # fmt: skip


class Batches(logging.Handler):
    """A handler that takes batches, as PostgresEventHandler does: keeps capsules and keys."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[dict[str, Any], bytes | None]] = []

    def handle_batch(self, events: list[HeldEvent]) -> None:
        self.events.extend((dict(event.msg), event.key) for event in events)

    def emit(self, record: logging.LogRecord) -> None:
        msg = "a batch handler gets no records"
        raise AssertionError(msg)


def _items() -> list[Any]:
    """Posted events of every kind: plain ones and each way an event is not plain."""
    plain = [{"schema_id": CELLS, "version": 1, "data": {"action": "run", "n": i}, "id": f"c{i}"}
             for i in range(5)]  # fmt: skip
    return [
        *plain,
        {"schema_id": CELLS, "version": "1", "data": {"action": "run", "user": "ann"}, "id": "s1"},
        {"schema_id": CELLS, "version": 1, "data": {"action": "run"}},  # no id: a new key
        {"schema_id": CELLS, "version": 1, "data": {"action": "run"}, "id": "c1"},  # again
        {"schema_id": CELLS, "version": 1, "data": {"action": "skip"}, "id": "f1"},  # filtered
        {"schema_id": CELLS, "version": 1, "data": {"action": "run", "n": "x"}, "id": "bad"},
        {"schema_id": CELLS, "version": 1, "data": {"action": "run", "other": 1}, "id": "more"},
        {
            "schema_id": CELLS,
            "version": 1,
            "data": {"action": "run"},
            "id": "t1",
            "timestamp": "2026-12-07T11:59:59Z",
        },
        {"schema_id": CELLS, "version": 1, "data": {"action": "run"}, "id": "with-dash_1"},
        {"schema_id": CELLS, "version": 1, "data": {"action": "run"}, "id": "x" * 65},
        {"schema_id": CELLS, "version": 1, "data": {"action": "run"}, "id": ""},
        {"schema_id": CELLS, "version": 1, "data": {"action": "run"}, "id": 7},
        {"schema_id": CELLS, "version": True, "data": {"action": "run"}, "id": "b1"},
        {"schema_id": CELLS, "version": 1.0, "data": {"action": "run"}, "id": "b2"},
        {"schema_id": CELLS, "version": 2, "data": {"action": "run"}, "id": "v2"},
        {"schema_id": CELLS, "version": 1, "data": ["run"], "id": "l1"},
        {"schema_id": CELLS, "version": 1, "data": {"action": "run"}, "id": "e1", "extra": 1},
        {"schema_id": "https://events.example.org/plain/unknown", "version": 1, "data": {}},
        {"schema_id": CLOSED, "version": 1, "data": {"action": "run"}, "id": "x1"},
        {"schema_id": HELD, "version": 1, "data": {"action": "run"}, "id": "h1"},  # no consent
        {"schema_id": GRANTED, "version": 1, "data": {"action": "run"}, "id": "g1"},
        {"schema_id": CELLS, "version": 1, "data": {"action": "run", "__user__": "bob"}},
        "not an object",
        None,
        *plain,  # every one a duplicate now
    ]


def _record(tmp_path: Path, items: list[Any], limits: Limits) -> tuple[Any, ...]:
    """Record `items` as a hub user's batch; return everything that could differ."""
    handler = Batches()
    allowed = {"allowed_categories": ["unrestricted"], "allowed_actions": ["run", "stop"]}
    eventlog = EventLog(handlers=[handler], background=True,
                        allowed_schemas=dict.fromkeys((CELLS, HELD, GRANTED, CLOSED), allowed),
                        studies={"held": {**STUDY, "schemas": [HELD]},
                                 "granted": {**STUDY, "schemas": [GRANTED]}})  # fmt: skip
    for schema_id in (CELLS, HELD, GRANTED, CLOSED):
        eventlog.register_schema(_schema(schema_id))
    eventlog.consent.use_store(JsonDecisions(tmp_path / "decisions.json"))
    eventlog.consent.decide("ann", "granted", {"decision": "granted", "version": 1})
    listened: list[dict[str, Any]] = []
    eventlog.add_listener(listened.append)
    policy = Policy(limiter=RateLimiter(0, 0), duplicates=Duplicates(3600, 1000),
                    record_user="username", key_secret=b"k" * 32)  # fmt: skip
    reception = policy.reception("ann", "user:ann", RECEIVED, open_to=lambda s: s.id != CLOSED)
    try:
        with eventlog.consent.acting_for("ann"):
            batch = record_batch(eventlog, items, limits, reception, BatchResult())
        assert eventlog.flush(timeout=10)
    finally:
        eventlog.close()
    # A key made for an event without a client id is new each time: only its size can agree.
    written = [(capsule, key if capsule.get("__client_id__") else len(key or b""))
               for capsule, key in handler.events]  # fmt: skip
    assert policy.duplicates is not None
    return (
        batch.model(),
        written,
        listened,
        eventlog.outcomes(),
        policy.duplicates.count("user:ann"),
    )


@pytest.mark.parametrize("reserved_keys", [True, False])
def test_plain_events_end_as_they_would_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reserved_keys: bool
) -> None:
    """Statuses, errors, capsules, keys, listeners, counts and remembered ids all agree."""
    items = _items()
    if not reserved_keys:  # (a body whose text holds no `__` key: see Limits.reserved_keys)
        items = [i for i in items if not (isinstance(i, dict) and "__user__" in i.get("data"))]
    limits = Limits(measure=False, reserved_keys=reserved_keys)
    recorded = []
    plain_record = plainevents.PlainEvents.record

    def counted(self: plainevents.PlainEvents, item: Any) -> str | None:
        status = plain_record(self, item)
        recorded.append(status)
        return status

    monkeypatch.setattr(plainevents.PlainEvents, "record", counted)
    (tmp_path / "fast").mkdir()
    fast = _record(tmp_path / "fast", items, limits)
    assert recorded.count("recorded") == 8  # c0-c4, s1, g1 and the one without an id

    monkeypatch.setattr(plainevents.PlainEvents, "record", lambda self, item: None)
    (tmp_path / "slow").mkdir()
    slow = _record(tmp_path / "slow", items, limits)
    assert fast == slow
    reply = fast[0]
    assert (reply["recorded"], reply["duplicate"], reply["filtered"]) == (10, 6, 1)
    assert reply["no_consent"] == 1
    # `user` and `__user__` are user-identifiers, which the allow-list leaves out: redacted.
    assert all(capsule.get("user") is capsule.get("__user__") is None for capsule, _ in fast[1])
    assert sum(1 for capsule, _ in fast[1] if "user" in capsule) == 1  # s1's, as null


def test_a_measured_body_or_an_erased_user_takes_the_general_way(tmp_path: Path) -> None:
    """What must be decided event by event leaves the batch to `post_event` whole."""
    eventlog = EventLog(handlers=[Batches()], background=True, allowed_schemas=[CELLS])
    eventlog.register_schema(_schema(CELLS))
    policy = Policy(limiter=RateLimiter(0, 0), key_secret=b"k" * 32)
    reception = policy.reception("ann", "user:ann", RECEIVED, open_to=lambda s: True)
    try:
        with eventlog.batch():
            assert plainevents.PlainEvents(eventlog, Limits(measure=False), reception,
                                           lambda *a: None).usable  # fmt: skip
            assert not plainevents.PlainEvents(eventlog, Limits(measure=True), reception,
                                               lambda *a: None).usable  # fmt: skip
            erased = policy.reception("ann", "user:ann", RECEIVED, open_to=lambda s: True)
            object.__setattr__(erased, "erased_at", RECEIVED)
            assert not plainevents.PlainEvents(eventlog, Limits(measure=False), erased,
                                               lambda *a: None).usable  # fmt: skip
    finally:
        eventlog.close()
