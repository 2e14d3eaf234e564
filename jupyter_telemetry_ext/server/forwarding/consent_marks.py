"""The consent marks of a forwarding server's schema listing: the collector's, for its user.

The collector keeps the decisions and knows the studies; its `GET api/telemetry/schemas`,
asked with the server's hub token, marks the schemas held back for this server's user. The
marks are kept a few seconds, read again after a decision relayed through this server, and,
while the collector cannot be reached, the marks read last stay (none before the first
reading: the collector still drops, on arrival, whatever a study keeps out).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from jupyter_telemetry_ext.core.consent import DECLINED, NEEDED
from jupyter_telemetry_ext.core.errors import ConsentError

from .consent_relay import SCHEMAS_PATH, ask
from .forwarder import ForwardSettings

MARKS_SECONDS = 10.0  # how long marks read are used before they are read again
RETRY_SECONDS = 2.0  # after a failed reading
READ_TIMEOUT_SECONDS = 5.0  # a listing waits at most this long for the collector's marks
# (schema id, version) -> ("needed" | "declined" | None: recorded, the studies covering it)
Marks = dict[tuple[str, Any], tuple[str | None, tuple[str, ...]]]


class ConsentMarks:
    """The collector's consent marks for this server's user, kept briefly."""

    def __init__(self, settings: ForwardSettings, log: logging.Logger) -> None:
        """Read the marks from the collector `settings` name, with their token."""
        self.settings, self.log = settings, log
        self.marks: Marks | None = None  # None: never read
        self._due = 0.0
        self._failing = False

    def invalidate(self) -> None:
        """Read the marks again at the next listing (a decision was taken)."""
        self._due = 0.0

    async def current(self) -> Marks | None:
        """Return the marks, read again when older than MARKS_SECONDS (None: never read)."""
        if time.monotonic() < self._due:
            return self.marks
        try:
            timeout = min(self.settings.timeout, READ_TIMEOUT_SECONDS)
            reply = await ask(self.settings, SCHEMAS_PATH, "GET", None, timeout)
        except ConsentError as e:
            self._due = time.monotonic() + RETRY_SECONDS
            if not self._failing:
                self.log.warning("Telemetry forwarding: the collector's consent marks cannot "
                                 "be read (%s): %s", e, "the marks read last stay" if self.marks
                                 is not None else "the listing has none")  # fmt: skip
            self._failing = True
            return self.marks
        self._failing = False
        self.marks = read_marks(reply)
        self._due = time.monotonic() + MARKS_SECONDS
        return self.marks

    async def mark(self, model: dict[str, Any]) -> None:
        """Add the collector's `consent` mark to each schema of a listing it holds back."""
        marks = await self.current()
        if not marks:
            return
        for summary in model["schemas"]:
            mark, studies = marks.get((summary["id"], summary["version"]), (None, ()))
            if mark is not None:
                summary["consent"] = mark
            if studies:
                summary["studies"] = list(studies)

    async def coverage(self) -> dict[tuple[str, Any], tuple[str, ...]]:
        """Return the studies covering each schema version, by the collector (none unread)."""
        marks = await self.current()
        return {key: studies for key, (_, studies) in (marks or {}).items() if studies}


def read_marks(reply: Any) -> Marks:
    """Return the marks of the collector's listing (a malformed entry is skipped)."""
    schemas = reply.get("schemas") if isinstance(reply, dict) else None
    marks: Marks = {}
    for schema in schemas if isinstance(schemas, list) else []:
        if not isinstance(schema, dict):
            continue
        version, studies = schema.get("version"), schema.get("studies")
        if not isinstance(schema.get("id"), str) or not isinstance(version, (int, str)):
            continue
        mark = schema.get("consent") if schema.get("consent") in (NEEDED, DECLINED) else None
        names = tuple(n for n in studies if isinstance(n, str)) if isinstance(studies, list) else ()
        if mark is not None or names:
            marks[(schema["id"], version)] = (mark, names)
    return marks
