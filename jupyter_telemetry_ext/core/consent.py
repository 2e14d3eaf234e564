"""Consent decisions per user, study and version, and the check that keeps events out.

`Consent` answers, for each event's schema and user, whether every study covering it allows
it; its answers are cached per user and dropped at once when a decision of that user changes.
"""

from __future__ import annotations

import contextvars
import json
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from .errors import ConsentError
from .schema import EventSchema
from .studies import Study

GRANTED, DECLINED, SHOWN = "granted", "declined", "shown"
# What a study asks of a user before their covered events are recorded (GET api/telemetry/schemas).
NEEDED = "needed"

# The user whose events are being recorded (and their hub groups, None: not known), when it is
# not the Consent's default user.
Acting = tuple[str | None, frozenset[str] | None]
_acting: contextvars.ContextVar[Acting] = contextvars.ContextVar(
    "telemetry_consent_user", default=(None, None)
)


@dataclass(frozen=True)
class Decision:
    """One user's decision on one study version, and when it was taken (ISO 8601, UTC)."""

    study: str
    version: int
    decision: str
    decided_at: str


class DecisionStore(Protocol):
    """Where decisions are kept: the latest one per user and study."""

    def load(self, user: str) -> dict[str, Decision]:
        """Return a user's latest decision per study."""

    def save(self, user: str, decision: Decision) -> None:
        """Keep a user's decision (replacing the study's previous one); raise OSError if not."""


class MemoryDecisions:
    """Decisions kept in memory only (lost at exit): for the library used on its own."""

    def __init__(self) -> None:
        """Start with no decision."""
        self._decisions: dict[str, dict[str, Decision]] = {}

    def load(self, user: str) -> dict[str, Decision]:
        """Return a user's latest decision per study."""
        return dict(self._decisions.get(user, {}))

    def save(self, user: str, decision: Decision) -> None:
        """Keep a user's decision."""
        self._decisions.setdefault(user, {})[decision.study] = decision


class JsonDecisions:
    """Decisions kept in a JSON file (mode 0600), rewritten atomically on each decision."""

    def __init__(self, path: Path) -> None:
        """Read the file if it exists; raise ConsentError when it cannot be read."""
        self.path = path
        self._lock = threading.Lock()
        self._decisions = self._read()

    def _read(self) -> dict[str, dict[str, Decision]]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return {
                user: {study: Decision(**d) for study, d in studies.items()}
                for user, studies in raw.items()
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, AttributeError) as e:
            msg = f"{self.path}: the consent decisions cannot be read ({type(e).__name__})"
            raise ConsentError(msg, 500) from None

    def load(self, user: str) -> dict[str, Decision]:
        """Return a user's latest decision per study."""
        with self._lock:
            return dict(self._decisions.get(user, {}))

    def every_user(self) -> dict[str, dict[str, Decision]]:
        """Return every user's latest decision per study."""
        with self._lock:
            return {user: dict(studies) for user, studies in self._decisions.items()}

    def save(self, user: str, decision: Decision) -> None:
        """Keep a user's decision: written to a new file, then renamed over the old one."""
        with self._lock:
            decisions = {u: dict(s) for u, s in self._decisions.items()}
            decisions.setdefault(user, {})[decision.study] = decision
            self._write(decisions)
            self._decisions = decisions

    def _write(self, decisions: Mapping[str, Mapping[str, Decision]]) -> None:
        data = {u: {s: asdict(d) for s, d in st.items()} for u, st in decisions.items()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".consent-", dir=self.path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            Path(tmp).replace(self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class Consent:
    """The studies, the decisions, and whether a user's event of a schema may be recorded."""

    def __init__(self, studies: Mapping[str, Study], store: DecisionStore | None = None) -> None:
        """Check events against `studies`, with decisions from `store` (default: in memory)."""
        self.studies = dict(studies)
        self.store: DecisionStore = store if store is not None else MemoryDecisions()
        # Whose events are recorded when no request names the user (a single server's owner);
        # None: unknown, so opt-in studies record nothing (privacy fails closed).
        self.default_user: str | None = None
        self._lock = threading.Lock()
        self._decisions: dict[str, dict[str, Decision]] = {}
        self._verdicts: dict[tuple[str | None, frozenset[str] | None, str], dict[str, str]] = {}
        # An acting user's answers by (acting user and groups, schema id): one look an event.
        self._allowed: dict[tuple[Acting, str], bool] = {}

    def refresh(self) -> bool:
        """Drop the cached answers when the store says another process changed its decisions
        (a store without `reload()` never does); return True if it did."""
        reload = getattr(self.store, "reload", None)
        if reload is None or not reload():
            return False
        with self._lock:
            self._decisions.clear()
            self._verdicts.clear()
            self._allowed.clear()
        return True

    def use_store(self, store: DecisionStore) -> None:
        """Take decisions from `store` from now on."""
        with self._lock:
            self.store = store
            self._decisions.clear()
            self._verdicts.clear()
            self._allowed.clear()

    @contextmanager
    def acting_for(self, user: str | None, groups: frozenset[str] | None = None) -> Iterator[None]:
        """Check the events recorded in the block (this thread or task) as `user`'s, a member
        of `groups` (None: not known, so every study applies)."""
        token = _acting.set((user, groups))
        try:
            yield
        finally:
            _acting.reset(token)

    def current_user(self) -> Acting:
        """Return the user whose events are being recorded (the acting one, else the default)
        and their groups."""
        user, groups = _acting.get()
        return (user, groups) if user is not None else (self.default_user, None)

    def allows(self, schema: EventSchema, user: str | None = None) -> bool:
        """Return True when every study covering `schema` lets `user`'s events be recorded."""
        if user is not None:
            return not self.withheld(schema, user)
        acting = _acting.get()
        if acting[0] is None:  # the default user's: not kept here, as it may be set later
            return not self.withheld(schema)
        key = (acting, schema.id)
        allowed = self._allowed.get(key)
        if allowed is None:
            allowed = not self.withheld(schema, *acting)
            with self._lock:
                self._allowed[key] = allowed
        return allowed

    def withheld(
        self, schema: EventSchema, user: str | None = None, groups: frozenset[str] | None = None
    ) -> dict[str, str]:
        """Return the studies that keep `user`'s events of `schema` out: "needed" or "declined".

        Without `user`, the user being recorded (see `acting_for`) and their groups.
        """
        who, groups = (user, groups) if user is not None else self.current_user()
        key = (who, groups, schema.id)
        verdict = self._verdicts.get(key)
        if verdict is None:
            decisions = self.decisions(who) if who is not None else {}
            verdict = {}
            for study in self.studies.values():
                if study.covers(schema) and study.applies_to(groups):
                    state = _state(study, decisions.get(study.name))
                    if state is not None:
                        verdict[study.name] = state
            with self._lock:
                self._verdicts[key] = verdict
        return verdict

    def covering(self, schema: EventSchema, groups: frozenset[str] | None = None) -> list[str]:
        """Return the names of the studies for a user of `groups` that cover `schema`."""
        return [name for name, study in self.studies.items()
                if study.covers(schema) and study.applies_to(groups)]  # fmt: skip

    def decisions(self, user: str) -> dict[str, Decision]:
        """Return a user's latest decision per study (cached until the user decides again)."""
        found = self._decisions.get(user)
        if found is None:
            found = self.store.load(user)
            with self._lock:
                self._decisions[user] = found
        return found

    def decide(self, user: str, study_name: str, body: Any) -> Decision:
        """Check and keep a decision posted as `{"decision": ..., "version": N}`."""
        _, decision, _ = self.check(user, study_name, body)
        self.keep(user, decision)
        return decision

    def check(
        self, user: str, study_name: str, body: Any, groups: frozenset[str] | None = None
    ) -> tuple[Study, Decision, str | None]:
        """Return the study, the decision a PUT body asks for, and the user's previous word
        (None: none); raise ConsentError (400, 404 also for a study not for the user's
        `groups`, 409). Nothing is kept yet (see `keep`)."""
        study = self.studies.get(study_name)
        if study is None or not study.applies_to(groups):
            msg = "study: no such study; GET api/telemetry/consent lists the studies"
            raise ConsentError(msg, 404, "study")
        word, version = _posted(study, body)
        previous = self.decisions(user).get(study.name)
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        decision = Decision(study.name, version, word, now.replace("+00:00", "Z"))
        return study, decision, None if previous is None else previous.decision

    def keep(self, user: str, decision: Decision) -> None:
        """Keep a user's decision; it applies to the next event checked, on every thread."""
        self.store.save(user, decision)
        with self._lock:
            self._decisions.pop(user, None)
            for key in [k for k in self._verdicts if k[0] == user]:
                del self._verdicts[key]
            self._allowed.clear()  # decisions are rare: every acting user's answers go

    def recording(self, study: Study, user: str) -> bool:
        """Return True when `study` lets `user`'s events be recorded now."""
        return _state(study, self.decisions(user).get(study.name)) is None

    def model(self, user: str | None, groups: frozenset[str] | None = None) -> dict[str, Any]:
        """Return the reply of GET api/telemetry/consent: the user's studies and decisions."""
        decisions = self.decisions(user) if user is not None else {}
        studies = []
        for study in self.studies.values():
            if not study.applies_to(groups):
                continue
            decision = decisions.get(study.name)
            current = decision if decision and decision.version == study.version else None
            studies.append({
                **study.model(),
                "decision": current.decision if current else None,
                "decided_at": current.decided_at if current else None,
                "recording": _state(study, current) is None,
            })  # fmt: skip
        return {"studies": studies}


def _state(study: Study, decision: Decision | None) -> str | None:
    """Return what keeps a study's events out ("needed", "declined") or None: recorded."""
    if study.mode == "notice":
        return None
    current = decision.decision if decision and decision.version == study.version else None
    if current == DECLINED:
        return DECLINED
    if study.mode == "opt-in" and current != GRANTED:
        return NEEDED
    return None


def _posted(study: Study, body: Any) -> tuple[str, int]:
    """Return the decision and version of a PUT body; raise ConsentError (400, 409)."""
    if not isinstance(body, Mapping):
        msg = 'body: must be a JSON object {"decision": ..., "version": N}'
        raise ConsentError(msg, 400, "body")
    unknown = sorted(set(body) - {"decision", "version"})
    if unknown:
        msg = "body: has an unknown field; only decision and version are read"  # never echoed
        raise ConsentError(msg, 400, "body")
    words = (SHOWN,) if study.mode == "notice" else (GRANTED, DECLINED)
    word = body.get("decision")
    if word not in words:
        kind = "a notice" if study.mode == "notice" else f"an {study.mode}"
        msg = f"decision: must be {' or '.join(repr(w) for w in words)} for {kind} study"
        raise ConsentError(msg, 400, "decision")
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        msg = "version: must be an integer >= 1, the version of the study the user was shown"
        raise ConsentError(msg, 400, "version")
    if version != study.version:
        msg = (
            f"version: the study is now at version {study.version}; show the user its "
            "current text (GET api/telemetry/consent) and ask again"
        )
        raise ConsentError(msg, 409, "version")
    return str(word), version
