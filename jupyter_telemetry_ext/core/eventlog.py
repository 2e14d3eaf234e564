"""EventLog: registers schemas, validates events, applies the allow-list and records capsules.

The capsule is planned and built in `capsule`, its timestamps come from `timestamps`, and the
handlers are fed by a `delivery.Sink`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from traitlets import Any as AnyTrait
from traitlets import (
    Bool,
    Dict,
    Enum,
    Float,
    Instance,
    Int,
    List,
    TraitError,
    default,
    observe,
    validate,
)
from traitlets.config import Config, LoggingConfigurable

from . import capsule as capsules
from .allowlist import SchemaRule, parse_allowed_schemas
from .batchrecorder import BatchRecorder
from .capsule import Plan
from .categories import UNRESTRICTED, USER_IDENTIFIER
from .consent import Consent
from .delivery import Sink
from .errors import (
    AllowListError,
    EventSchemaError,
    SamplingError,
    StudyError,
    UnknownSchemaError,
)
from .event_keys import EventKey
from .jsonline import escape_lone_surrogates
from .outcomes import FILTERED, NO_CONSENT, RECORDED, SAMPLED_OUT, SINK_FAILURE
from .registered import RegisteredSchemas
from .sampling import SAMPLING_FORM, keeps, parse_sampling
from .schema import EventSchema, SchemaSource, version_key, version_order
from .studies import CONSENT_SCHEMA_ID, parse_studies
from .tickets import Ticket
from .timestamps import Clock, Timestamps

Listener = Callable[[dict[str, Any]], None]
# Called with (schema, event, timestamp, context) for each valid event, before the allow-list.
Tap = Callable[[EventSchema, Mapping[str, Any], datetime | None, Mapping[str, Any] | None], None]


class _Rate(Float):  # type: ignore[type-arg]  # traitlets before 5.10 is not generic
    """A sampling rate; a number from the command line (`--EventLog.sampling id=0.25`)."""

    info_text = f"a rate: {SAMPLING_FORM}"


class EventLog(LoggingConfigurable):
    """Records events that match a registered schema and that the admin's allow-list allows."""

    handlers = List(
        Instance(logging.Handler),
        help="""Python `logging` handlers that receive each recorded event as one line of JSON,
        e.g. `[logging.FileHandler("events.log")]`. Empty (the default): events are still
        validated and filtered, and returned to the caller, but written nowhere.""",
    ).tag(config=True)

    allowed_schemas = AnyTrait(
        default_value=[],
        help="""Which events are recorded; nothing is recorded unless allowed here (default: []).
        A list of schema ids records those schemas with their `unrestricted` properties only.
        A list of tuples `(schema_id, allowed_actions, allowed_properties)` also names the
        actions recorded (empty: all) and top-level properties kept whatever their categories.
        A dict `{schema_id: {"allowed_actions": [...], "allowed_categories": [...],
        "allowed_properties": [...]}}` also names the privacy categories kept.""",
    ).tag(config=True)

    sampling = Dict(
        value_trait=_Rate(),
        help="""Keep only a share of some schemas' events: `{schema_id: rate}` with
        0 < rate <= 1, e.g. `{"my.events/click": 0.25}` keeps about a quarter of them. Each event
        the allow-list records is kept or dropped (counted `sampled_out`) once, before any
        handler or listener: by its client id when it has one (`__client_id__`: a retry gets
        the same decision, and the JupyterLab client skips what would be dropped), else at
        random. Empty (the default), or a rate of 1: every event is kept.""",
    ).tag(config=True)

    studies = Dict(
        help="""Studies that users consent to: `{name: {"title": ..., "text": markdown or
        "text_file": path, "version": N, "mode": "opt-in" | "opt-out" | "notice",
        "schemas": [ids] and/or "categories": [names], "groups": [hub groups],
        "erase_on_withdrawal": bool}}`. An event a study covers (by schema id, or by a category
        of its schema) is recorded only when every study covering it allows it for its user:
        opt-in once granted, opt-out unless declined, notice always; a new version asks again.
        Others are dropped before any handler or forwarding, counted `no_consent`. Each
        decision is recorded as an event of the consent schema, whatever the allow-list says.
        A study that is not valid stops the start, naming the study and the field. Empty (the
        default): no study, nothing is held back for consent. See "Consent and studies".""",
    ).tag(config=True)

    redaction = Enum(
        ["null", "drop"],
        default_value="null",
        help="""What happens to a property the allow-list does not keep: "null" (the default)
        records it with the value null; "drop" leaves the key out. A redacted key that the
        schema does not name is left out in both modes (its name may be data).""",
    ).tag(config=True)

    background = Bool(
        False,
        help="""Write to the handlers from a background thread, so that a slow handler never
        blocks the caller: `record_event` returns once the event is queued and `flush()` waits
        until it is written. False (the default): handlers are called before `record_event`
        returns.""",
    ).tag(config=True)

    unrestricted_only = Bool(
        False,
        help="""One switch that records no personal data: every property (and capsule field)
        whose categories are not all `unrestricted` is redacted, whatever allowed_schemas says
        about categories and properties. False (the default): allowed_schemas decides.""",
    ).tag(config=True)

    failed_handlers = List(
        Instance(logging.Handler),
        help="""Python `logging` handlers that receive one JSON line for every event that was
        not recorded because it was rejected (invalid, oversized, not open to frontends,
        rate-limited) or that a handler did not write (`sink_failure`, naming the handler's
        class): the reason, schema id, version and size, never the event's values.
        Empty (the default): failures are counted, not written.""",
    ).tag(config=True)

    queue_size = Int(
        100_000,
        help="""With `background`, how many events may wait for the handlers (default 100000).
        When the queue is full, `record_event` raises QueueFullError and the event is not
        recorded, rather than the queue growing without bound.""",
    ).tag(config=True)

    def __init__(self, *, clock: Clock | None = None, **kwargs: Any) -> None:
        """Create an EventLog; traits may come from keyword arguments or from config.

        `clock`: the current time in nanoseconds since the epoch (default `time.time_ns`), read
        for each capsule recorded without a timestamp and each failure description.
        """
        self._schemas: dict[str, dict[str, EventSchema]] = {}
        self._rules: dict[str, SchemaRule] = {}
        self._rates: dict[str, float] = {}
        self._plans: dict[tuple[str, object], Plan] = {}
        self._outcomes: Counter[tuple[str, str]] = Counter()
        self._listeners: list[Listener] = []
        self._taps: list[Tap] = []
        self._stamps = Timestamps(clock or time.time_ns)
        super().__init__(**kwargs)
        self._sink = Sink(self.log, self._stamps)
        self._sink.use(self.handlers)
        self._sink.failed_handlers = self.failed_handlers
        self.consent = Consent(parse_studies(self.studies))
        self._rules = self._parse_rules()
        self._rates = parse_sampling(self.sampling)
        self._sink.run_in_background(self.background, self.queue_size)

    def _load_config(self, cfg: Config, section_names: Any = None, traits: Any = None) -> None:
        """Load config; configured handlers are shared, not deep-copied (they hold locks)."""
        mine = self._find_my_config(cfg)
        for key in ("handlers", "failed_handlers"):
            handlers = mine.get(key)
            for handler in handlers if isinstance(handlers, (list, tuple)) else ():
                if isinstance(handler, logging.Handler):
                    handler.__deepcopy__ = lambda memo, h=handler: h  # type: ignore[attr-defined]
        super()._load_config(cfg, section_names=section_names, traits=traits)

    @default("log")
    def _default_log(self) -> logging.Logger:
        parent_log = getattr(self.parent, "log", None)
        return parent_log if parent_log is not None else logging.getLogger("jupyter_telemetry_ext")

    @validate("allowed_schemas")
    def _validate_allowed_schemas(self, proposal: Any) -> Any:
        try:
            parse_allowed_schemas(proposal["value"])
        except AllowListError as e:
            raise TraitError(str(e)) from None
        return proposal["value"]

    @observe("allowed_schemas", "redaction", "unrestricted_only")
    def _allow_list_changed(self, change: Any) -> None:
        self._rules = self._parse_rules()
        self._plans.clear()

    def _parse_rules(self) -> dict[str, SchemaRule]:
        """Return the allow-list's rules; with studies, consent decisions are always recorded
        (they are the proof of consent)."""
        rules = parse_allowed_schemas(self.allowed_schemas)
        if self.studies and CONSENT_SCHEMA_ID not in rules:
            # with the user as record_user says: a decision must say whose it is
            rules[CONSENT_SCHEMA_ID] = SchemaRule(
                categories=frozenset({UNRESTRICTED, USER_IDENTIFIER})
            )
        return rules

    @validate("studies")
    def _validate_studies(self, proposal: Any) -> Any:
        try:
            parse_studies(proposal["value"])
        except StudyError as e:
            raise TraitError(str(e)) from None
        return proposal["value"]

    @observe("studies")
    def _studies_changed(self, change: Any) -> None:
        if hasattr(self, "consent"):
            self.consent.studies = dict(parse_studies(self.studies))
            self.consent.use_store(self.consent.store)
            self._rules = self._parse_rules()
            self._plans.clear()

    @validate("sampling")
    def _validate_sampling(self, proposal: Any) -> Any:
        try:
            parse_sampling(proposal["value"])
        except SamplingError as e:
            raise TraitError(str(e)) from None
        return proposal["value"]

    @observe("sampling")
    def _sampling_changed(self, change: Any) -> None:
        self._rates = parse_sampling(self.sampling)
        self._plans.clear()

    @observe("background")
    def _background_changed(self, change: Any) -> None:
        if hasattr(self, "_sink"):
            self._sink.run_in_background(self.background, self.queue_size)

    @observe("handlers")
    def _handlers_changed(self, change: Any) -> None:
        if hasattr(self, "_sink"):
            self._sink.use(self.handlers)

    @observe("failed_handlers")
    def _failed_handlers_changed(self, change: Any) -> None:
        if hasattr(self, "_sink"):
            self._sink.failed_handlers = self.failed_handlers

    # Schemas

    def register_schema(self, schema: Mapping[str, Any] | EventSchema) -> EventSchema:
        """Register a schema given as a dict; the identical schema again is a no-op."""
        checked = self.check_schema(
            schema if isinstance(schema, EventSchema) else EventSchema(schema)
        )
        self._schemas.setdefault(checked.id, {})[checked.version_key] = checked
        return checked

    def check_schema(self, schema: EventSchema) -> EventSchema:
        """Return what `register_schema` would register, registering nothing: the schema, or
        the identical one registered already; raise EventSchemaError when another schema is
        registered under its `$id` and version (a subclass refusing more schemas says so here)."""
        existing = self._schemas.get(schema.id, {}).get(schema.version_key)
        if existing is None:
            return schema
        if existing.same_as(schema):
            return existing
        msg = (
            f"{schema.source or 'schema'}: $id {schema.id!r} version {schema.version!r} "
            "is already registered with a different schema"
        )
        raise EventSchemaError(msg)

    def _forget_schema(self, schema: EventSchema) -> None:
        """Unregister one schema version (an EventRouter's registration that did not finish)."""
        versions = self._schemas.get(schema.id, {})
        if versions.get(schema.version_key) is schema:
            del versions[schema.version_key]
            if not versions:
                del self._schemas[schema.id]
            self._plans.clear()

    def register_schema_file(self, source: SchemaSource) -> EventSchema:
        """Register a schema from a YAML or JSON file (a path or an open file)."""
        return self.register_schema(EventSchema.from_file(source))

    @property
    def schemas(self) -> RegisteredSchemas:
        """Return every registered schema, each version on its own (also by `(id, version)`)."""
        schemas = (schema for versions in self._schemas.values() for schema in versions.values())
        return RegisteredSchemas(schemas)

    def get_schema(self, schema_id: str, version: object) -> EventSchema:
        """Return a registered schema, or raise UnknownSchemaError."""
        schema = self._schemas.get(schema_id, {}).get(version_key(version))
        if schema is None:
            raise UnknownSchemaError(schema_id, version)
        return schema

    def latest_version(self, schema_id: str) -> str | int:
        """Return the newest registered version of a schema id."""
        versions = self._schemas.get(schema_id)
        if not versions:
            raise UnknownSchemaError(schema_id, "(any)")
        return versions[max(versions, key=version_order)].version

    def is_allowed(self, schema_id: str) -> bool:
        """Return True when the allow-list lets events of this schema id be recorded."""
        return schema_id in self._rules

    def withheld(self, schema: EventSchema) -> bool:
        """Return True when a study keeps the current user's events of `schema` out."""
        return bool(self.consent.studies) and not self.consent.allows(schema)

    def sampling_rate(self, schema_id: str) -> float:
        """Return the share of a schema's events kept by sampling: 1 when not sampled."""
        return self._rates.get(schema_id, 1.0)

    def is_allowed_event(self, schema: EventSchema, event: Mapping[str, Any]) -> bool:
        """Return True when the allow-list records this event (its schema and its action).

        A valid event it allows that was not recorded was sampled out.
        """
        rule = self._plan(schema.id, schema.version).rule
        return rule is not None and rule.allows_action(event)

    def plan(self, schema: EventSchema) -> Plan:
        """Return what is recorded of a registered schema's events: the rule as applied
        (`unrestricted_only` included), the redaction plan and the context fields kept."""
        return self._plan(schema.id, schema.version)

    # Handlers and listeners

    def add_handler(self, handler: logging.Handler) -> None:
        """Start writing recorded events to a handler."""
        if handler not in self.handlers:
            self.handlers = [*self.handlers, handler]

    def remove_handler(self, handler: logging.Handler) -> None:
        """Stop writing recorded events to a handler."""
        self.handlers = [h for h in self.handlers if h is not handler]

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(capsule)` after each recorded event (after redaction)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling a listener."""
        self._listeners = [x for x in self._listeners if x != listener]

    def add_tap(self, tap: Tap) -> None:
        """Call `tap(schema, event, timestamp, context)` with each valid event before the
        allow-list, sampling and redaction (a forwarder); an exception it raises refuses the
        event (e.g. QueueFullError)."""
        self._taps.append(tap)

    @property
    def tapped(self) -> bool:
        """Return True when a tap takes every valid event (see `add_tap`)."""
        return bool(self._taps)

    @property
    def listened(self) -> bool:
        """Return True when a listener takes the events it asked for (see `add_listener`)."""
        return bool(self._listeners)

    # Counts

    def count(self, schema_id: str, outcome: str, n: int = 1) -> None:
        """Count events of a schema with an outcome decided elsewhere (e.g. "rejected")."""
        self._outcomes[(schema_id, outcome)] += n

    def outcomes(self) -> dict[tuple[str, str], int]:
        """Return how many events of each schema had each outcome since start.

        Outcomes: "recorded", "filtered", "sampled_out" (dropped by `sampling`), "sink_failure"
        (an event a handler did not write, once per handler that did not), and those counted
        with `count()` (see `outcomes.OUTCOMES`).
        """
        failures = self._sink.delivery.schema_failures
        return {**self._outcomes, **{(s, SINK_FAILURE): n for s, n in failures.items()}}

    @property
    def handler_failures(self) -> dict[logging.Handler, int]:
        """Return how many events (and failure descriptions) each handler did not write."""
        return dict(self._sink.delivery.failures)

    def sink_failures(self) -> dict[tuple[logging.Handler, str], int]:
        """Return how many events of each schema each handler did not write."""
        return dict(self._sink.delivery.lost)

    # Recording

    def check_event(self, schema_id: str, version: object, event: Any) -> EventSchema:
        """Return the event's schema; raise UnknownSchemaError or a ValidationError."""
        schema = self.get_schema(schema_id, version)
        schema.validate(event)
        return schema

    def record_event(
        self,
        schema_id: str | None = None,
        version: object = None,
        event: Mapping[str, Any] | None = None,
        timestamp_override: datetime | None = None,
        *,
        context: Mapping[str, Any] | None = None,
        schema_name: str | None = None,
    ) -> dict[str, Any] | None:
        """Validate and record an event; return the capsule, or None when filtered or sampled out.

        `context` adds capsule fields (`__event_time__`, `__client_id__`, `__user__`), each
        redacted like a property of its category (`__user__` is a `user-identifier`).
        `schema_name` is jupyter-telemetry's name for `schema_id`.
        """
        if schema_id is None or event is None or schema_name is not None:
            schema_id, event = _named_arguments(schema_id, schema_name, event)
        plan = self._plan(schema_id, version)
        if not plan.is_valid(event):
            raise plan.schema.validation_error(event)
        return self._record(plan, event, timestamp_override, context)

    def record_checked(
        self,
        schema: EventSchema,
        event: Mapping[str, Any],
        timestamp: datetime | None = None,
        *,
        context: Mapping[str, Any] | None = None,
        parsed: bool = False,
        key: EventKey | None = None,
    ) -> dict[str, Any] | None:
        """Record an event already checked against `schema`; return the capsule or None.

        `parsed`: the event was read from JSON text, so it holds JSON values only (no NaN, no
        other Python types) and a faster encoder writes it. `key`: the event's store key (see
        `event_keys`; a client id's may still be hashed by its reader), handed to the handlers
        on its record, never in the capsule.
        """
        plan = self._plan(schema.id, schema.version)
        encode = capsules.encode_read if parsed else capsules.encode
        return self._record(plan, event, timestamp, context, encode, key=key)

    def batch_recorder(self, schema: EventSchema, timestamp: datetime) -> BatchRecorder | None:
        """Return a recorder of `schema`'s checked, parsed events received at `timestamp`, for
        this thread's `batch` block (see `batchrecorder`); None when they go one by one through
        `record_checked`: taps, sampling, a schema the allow-list leaves out, or handlers that
        do not all take batches."""
        plan = self._plan(schema.id, schema.version)
        if self._taps or plan.rule is None or plan.redactor is None or plan.rate is not None:
            return None
        hold = self._sink.holder()
        if hold is None:
            return None
        return BatchRecorder(
            plan,
            self._stamps.format(timestamp),
            hold,
            consent=self.consent if self.consent.studies else None,
            listeners=lambda: self._listeners,
            outcomes=self._outcomes,
            log=self.log,
        )

    def _plan(self, schema_id: str, version: object) -> Plan:
        plan = self._plans.get((schema_id, version)) if isinstance(version, (str, int)) else None
        if plan is None:
            schema = self.get_schema(schema_id, version)
            plan = capsules.plan(
                schema,
                self._rules.get(schema.id),
                drop=self.redaction == "drop",
                unrestricted_only=self.unrestricted_only,
                rate=self._rates.get(schema.id),
            )
            if isinstance(version, (str, int)):
                self._plans[(schema_id, version)] = plan
        return plan

    def _record(
        self,
        plan: Plan,
        event: Mapping[str, Any],
        timestamp: datetime | None,
        context: Mapping[str, Any] | None = None,
        encode: capsules.Encoder = capsules.encode,
        *,
        key: EventKey | None = None,
    ) -> dict[str, Any] | None:
        schema, rule, redactor = plan.schema, plan.rule, plan.redactor
        if self.consent.studies and not self.consent.allows(schema):
            encode(event, schema)
            self._outcomes[(schema.id, NO_CONSENT)] += 1
            return None
        if self._taps:
            if encode is not capsules.encode_read:  # JSON read holds JSON: others are checked
                encode(event, schema)  # before a tap forwards what would then be refused
            for tap in self._taps:
                tap(schema, event, timestamp, context)
        if rule is None or redactor is None or not rule.allows_action(event):
            encode(event, schema)  # a filtered event must still be JSON: fail the same way
            self._outcomes[(schema.id, FILTERED)] += 1
            return None
        if plan.rate is not None and not _kept(plan.rate, schema.id, context):
            encode(event, schema)
            self._outcomes[(schema.id, SAMPLED_OUT)] += 1
            return None
        stamp = self._stamps.format(timestamp)
        capsule = capsules.build(
            redactor, schema, event, stamp, context=context, context_kept=plan.context_kept
        )
        # Text read from JSON needs no check that it is JSON: no line when no handler writes one.
        lines = encode is not capsules.encode_read or self._sink.wants_lines()
        self._sink.send(capsule, encode(capsule, schema) if lines else None, key)
        for listener in self._listeners:
            try:
                listener(capsule)
            except Exception:  # a listener's bug must not reach the code recording the event
                self.log.exception("Event listener %r failed", listener)
        self._outcomes[(schema.id, RECORDED)] += 1
        return capsule

    def record_failure(
        self,
        outcome: str,
        reason: str,
        *,
        schema_id: str | None = None,
        version: object = None,
        size: int | None = None,
        field: str | None = None,
    ) -> None:
        """Count an event that was not recorded and write its description to failed_handlers.

        The description holds the reason, schema id, version, size and failing field path,
        never the event's values; a lone surrogate in them (which no line may hold) is written
        as its escape, `\\ud800`.
        """
        self.count(schema_id or "(unknown)", outcome)
        self._sink.describe({
            "outcome": outcome, "reason": _shown(reason), "schema_id": _shown(schema_id),
            "version": _shown(version), "size": size, "field": _shown(field),
        })  # fmt: skip

    # Writing

    def flush(self, timeout: float | None = None) -> bool:
        """Write every queued event and flush each handler; return False on timeout."""
        return self._sink.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush, then stop the background writer (the handlers stay open: they are yours)."""
        self._sink.close(timeout)

    @property
    def pending(self) -> int:
        """Return how many events wait for the background writer."""
        return self._sink.pending

    def batch(self) -> AbstractContextManager[None]:
        """Hand the events this thread records in the block to the handlers together, at its end.

        With `background`, they are queued at once (an event that would not fit in the queue
        raises QueueFullError when it is recorded); without, each handler writes them all at the
        end of the block. Listeners still see each event as it is recorded.
        """
        return self._sink.batch()

    def tracking(self, ticket: Ticket, *, seal: bool = True) -> AbstractContextManager[Ticket]:
        """Have the handlers report on `ticket` whether they wrote the events this thread
        records in the block; the ticket is sealed when the block ends (unless `seal` is
        False: then the caller seals it with `seal()` after its last block)."""
        return self._sink.tracking(ticket, seal=seal)

    def seal(self, ticket: Ticket) -> None:
        """Let no more events join `ticket`; it settles once the handlers got past them."""
        self._sink.seal(ticket)

    @property
    def ticket(self) -> Ticket | None:
        """Return the ticket that the calling thread's events are tracked by, if any."""
        return self._sink.ticket


def _shown(value: Any) -> Any:
    """Return a string of a failure description with each lone surrogate escaped."""
    return escape_lone_surrogates(value) if isinstance(value, str) else value


def _kept(rate: float, schema_id: str, context: Mapping[str, Any] | None) -> bool:
    """Return True when sampling keeps the event: by its client id if it has one."""
    return keeps(rate, schema_id, context.get("__client_id__") if context else None)


def _named_arguments(
    schema_id: str | None, schema_name: str | None, event: Mapping[str, Any] | None
) -> tuple[str, Mapping[str, Any]]:
    """Return `record_event`'s schema id (or jupyter-telemetry's `schema_name`) and event."""
    if schema_name is not None and schema_id is not None:
        msg = "record_event() takes schema_id or schema_name (its old name), not both"
        raise TypeError(msg)
    schema_id = schema_name if schema_name is not None else schema_id
    if schema_id is None or event is None:
        msg = "record_event() needs a schema_id, a version and an event"
        raise TypeError(msg)
    return schema_id, event
