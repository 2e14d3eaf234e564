"""Recording many checked events of one schema in few steps (a posted batch's common case).

`EventLog.record_checked` works out for each event what its schema's plan, the taps, the
sampling, the handlers' form and the receive time say. Within one thread's `batch` block those
do not change from event to event, so a BatchRecorder works them out once: each event then
costs its action and consent checks, its capsule and its hand-over. Whatever it cannot decide
the same way (an action the allow-list leaves out, a study that holds the event back) it leaves
to `record_checked`, having recorded and counted nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from . import capsule as capsules
from .capsule import Plan
from .consent import Consent
from .event_keys import EventKey
from .outcomes import RECORDED
from .schema import EventSchema

Hold = Callable[[dict[str, Any], EventKey | None], None]
Listener = Callable[[dict[str, Any]], None]


class BatchRecorder:
    """Records checked, parsed events of one schema version in this thread's `batch` block."""

    __slots__ = (
        "_consent",
        "_count",
        "_hold",
        "_listeners",
        "_log",
        "_plan",
        "_recorded",
        "_stamp",
    )

    def __init__(
        self,
        plan: Plan,
        stamp: str,
        hold: Hold,
        *,
        consent: Consent | None,
        listeners: Callable[[], list[Listener]],
        outcomes: Counter[tuple[str, str]],
        log: logging.Logger,
    ) -> None:
        """Record under `plan` (a rule and a redactor, no sampling) at `stamp`, handing each
        capsule to `hold`; ask `consent` for each event (None: no study); call the listeners
        `listeners()` returns as each event is recorded."""
        self._plan, self._stamp, self._hold, self._consent = plan, stamp, hold, consent
        self._listeners, self._count, self._log = listeners, outcomes, log
        self._recorded = (plan.schema.id, RECORDED)

    @property
    def schema(self) -> EventSchema:
        """Return the schema whose events this records."""
        return self._plan.schema

    def record(
        self, event: Mapping[str, Any], context: Mapping[str, Any] | None, key: EventKey | None
    ) -> dict[str, Any] | None:
        """Record one valid event; return its capsule, or None (nothing recorded or counted)
        when `record_checked` must decide: its action is not allowed, or a study holds it back.

        Raise QueueFullError when the queues have no room for it (nothing recorded either).
        """
        plan = self._plan
        rule = plan.rule
        if rule is None or plan.redactor is None or not rule.allows_action(event):
            return None
        if self._consent is not None and not self._consent.allows(plan.schema):
            return None
        capsule = capsules.build(plan.redactor, plan.schema, event, self._stamp, context=context,
                                 context_kept=plan.context_kept)  # fmt: skip
        self._hold(capsule, key)
        for listener in self._listeners():
            try:
                listener(capsule)
            except Exception:  # a listener's bug must not reach the code recording the event
                self._log.exception("Event listener %r failed", listener)
        self._count[self._recorded] += 1
        return capsule
