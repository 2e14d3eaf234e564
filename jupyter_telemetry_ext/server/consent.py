"""A single server's studies: its user's decisions kept in a JSON file, and the listing's marks.

The server's user (the hub user it runs for, else the OS user) is the user of every event it
records, so one set of decisions applies to all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from logging import Logger
from pathlib import Path
from typing import Any

from jupyter_telemetry_ext.core.consent import DECLINED, NEEDED, DecisionStore, JsonDecisions
from jupyter_telemetry_ext.core.errors import ConsentError
from jupyter_telemetry_ext.core.eventlog import EventLog

CONSENT_FILE = "jupyter_telemetry_ext_consent.json"


def start_consent(
    eventlog: EventLog,
    path: Path,
    refuse: Callable[[list[str]], Any],
    log: Logger,
    user: str | None,
    *,
    store: Callable[[], DecisionStore] | None = None,
) -> None:
    """Keep the decisions in `store()` (None: the JSON file `path`), `user` being whose events
    are recorded when no request says (None: each request's); refuse to start when they cannot
    be read."""
    consent = eventlog.consent
    consent.default_user = user
    if not consent.studies:
        return
    try:
        consent.use_store(store() if store is not None else JsonDecisions(path))
    except ConsentError as e:
        refuse([str(e)])
    where = getattr(consent.store, "where", path)
    log.info("Telemetry: %d studies; decisions kept in %s", len(consent.studies), where)


def mark_withheld(eventlog: EventLog, model: dict[str, Any]) -> None:
    """Add to each schema of the listing the studies covering it (`studies`: their names) and
    `consent: "needed" | "declined"` when they keep it out, for the user being recorded (see
    `Consent.acting_for`)."""
    consent = eventlog.consent
    if not consent.studies:
        return
    groups = consent.current_user()[1]
    for summary in model["schemas"]:
        schema = eventlog.get_schema(summary["id"], summary["version"])
        studies = consent.covering(schema, groups)
        if studies:
            summary["studies"] = studies
        states = consent.withheld(schema).values()
        if states:
            summary["consent"] = DECLINED if DECLINED in states else NEEDED
