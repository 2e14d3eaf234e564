"""EventLog: registers schemas, validates events, applies the allow-list and writes capsules."""

from __future__ import annotations

import errno
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, NamedTuple, cast

import orjson
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

from .allowlist import SchemaRule, parse_allowed_schemas
from .categories import UNRESTRICTED, USER_IDENTIFIER
from .delivery import (
    RECORD_NAME,
    BackgroundWriter,
    CapsuleRecord,
    Delivery,
    HeldRecords,
    Queued,
    as_record,
    writes_lines,
)
from .errors import AllowListError, EventSchemaError, SamplingError, UnknownSchemaError
from .jsonline import encode as _encode
from .jsonline import encode_standard
from .redaction import Redactor
from .registered import RegisteredSchemas
from .sampling import SAMPLING_FORM, keeps, parse_sampling
from .schema import EventSchema, SchemaSource, version_key, version_order
from .tickets import Ticket

METADATA_VERSION = 2
FAILED_RECORD_NAME = "jupyter_telemetry_ext.failed"
# Optional capsule fields (metadata version 2) and the privacy category of each.
CONTEXT_FIELDS = {
    "__event_time__": UNRESTRICTED,
    "__client_id__": UNRESTRICTED,
    "__user__": USER_IDENTIFIER,
}
Listener = Callable[[dict[str, Any]], None]
# Called with (schema, event, timestamp, context) for each valid event, before the allow-list.
Tap = Callable[[EventSchema, Mapping[str, Any], datetime | None, Mapping[str, Any] | None], None]


_second: tuple[int, str] = (-1, "")


def _now() -> str:
    global _second  # noqa: PLW0603 - a one-entry cache of the formatted current second
    seconds, fraction = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _second
    if cached[0] != seconds:
        cached = _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{cached[1]}.{fraction:06d}Z"


_last: tuple[datetime | None, str] = (None, "")


def format_timestamp(when: datetime | None = None) -> str:
    """Return an RFC 3339 UTC timestamp ending in `Z`; a naive datetime is taken as UTC."""
    global _last  # noqa: PLW0603 - a one-entry cache: a batch's events share a receive time
    if when is None:
        return _now()
    cached = _last
    if cached[0] is not None and when == cached[0]:  # equal instants: the same UTC text
        return cached[1]
    text = _format(when)
    _last = (when, text)
    return text


def _format(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    elif when.tzinfo is not timezone.utc:
        when = when.astimezone(timezone.utc)
    return when.isoformat(timespec="microseconds")[:-6] + "Z"


class _Route(NamedTuple):
    """What recording an event of one schema version takes, planned once."""

    schema: EventSchema
    is_valid: Callable[[Any], bool]
    rule: SchemaRule | None
    redactor: Redactor | None
    context_kept: frozenset[str] = frozenset()
    rate: float | None = None  # the sampling rate, None when every event is kept


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

    def __init__(self, **kwargs: Any) -> None:
        """Create an EventLog; traits may come from keyword arguments or from config."""
        self._schemas: dict[str, dict[str, EventSchema]] = {}
        self._rules: dict[str, SchemaRule] = {}
        self._rates: dict[str, float] = {}
        self._routes: dict[tuple[str, object], _Route] = {}
        self._outcomes: Counter[tuple[str, str]] = Counter()
        self._listeners: list[Listener] = []
        self._taps: list[Tap] = []
        super().__init__(**kwargs)
        self._delivery = Delivery(self.log)
        self._delivery.on_lost = self._describe_loss
        self._tracking = 0  # how many threads record into a Ticket (see `tracking`)
        self._local = threading.local()
        self._tracking_lock = threading.Lock()
        self._watch_handlers()
        self._writer: BackgroundWriter | None = None
        self._held: HeldRecords | None = None
        self._lines_only_of: tuple[list[logging.Handler] | None, int, bool] = (None, 0, False)
        self._rules = parse_allowed_schemas(self.allowed_schemas)
        self._rates = parse_sampling(self.sampling)
        self._background_changed(None)

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
        self._rules = parse_allowed_schemas(self.allowed_schemas)
        self._routes.clear()

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
        self._routes.clear()

    @observe("background")
    def _background_changed(self, change: Any) -> None:
        if not hasattr(self, "_writer"):
            return
        if self.background and self._writer is None:
            self._writer = BackgroundWriter(self._delivery, self.queue_size)
        elif not self.background and self._writer is not None:
            self._writer.close()
            self._writer = None

    @observe("handlers")
    def _handlers_changed(self, change: Any) -> None:
        if hasattr(self, "_delivery"):
            old = change["old"] if isinstance(change["old"], list) else []
            for handler in set(old) - set(change["new"]):
                self._delivery.unwatch(handler)
            self._watch_handlers()

    def _watch_handlers(self) -> None:
        """Take over the handlers' error reporting now (and give plain streams the line
        formatter), rather than at their first event."""
        for handler in self.handlers:
            self._delivery.watch(handler)

    # Schemas

    def register_schema(self, schema: Mapping[str, Any] | EventSchema) -> EventSchema:
        """Register a schema given as a dict; the identical schema again is a no-op."""
        checked = schema if isinstance(schema, EventSchema) else EventSchema(schema)
        versions = self._schemas.setdefault(checked.id, {})
        existing = versions.get(checked.version_key)
        if existing is not None:
            if existing.same_as(checked):
                return existing
            msg = (
                f"{checked.source or 'schema'}: $id {checked.id!r} version {checked.version!r} "
                "is already registered with a different schema"
            )
            raise EventSchemaError(msg)
        versions[checked.version_key] = checked
        return checked

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

    def sampling_rate(self, schema_id: str) -> float:
        """Return the share of a schema's events kept by sampling: 1 when not sampled."""
        return self._rates.get(schema_id, 1.0)

    def is_allowed_event(self, schema: EventSchema, event: Mapping[str, Any]) -> bool:
        """Return True when the allow-list records this event (its schema and its action).

        A valid event it allows that was not recorded was sampled out.
        """
        rule = self._route(schema.id, schema.version).rule
        return rule is not None and rule.allows_action(event)

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

    def count(self, schema_id: str, outcome: str, n: int = 1) -> None:
        """Count events of a schema with an outcome decided elsewhere (e.g. "rejected")."""
        self._outcomes[(schema_id, outcome)] += n

    def outcomes(self) -> dict[tuple[str, str], int]:
        """Return how many events of each schema had each outcome since start.

        Outcomes: "recorded", "filtered", "sampled_out" (dropped by `sampling`), "sink_failure"
        (an event a handler did not write, once per handler that did not), and those counted
        with `count()`.
        """
        failures = self._delivery.schema_failures
        return {**self._outcomes, **{(s, "sink_failure"): n for s, n in failures.items()}}

    @property
    def handler_failures(self) -> dict[logging.Handler, int]:
        """Return how many events (and failure descriptions) each handler did not write."""
        return dict(self._delivery.failures)

    def sink_failures(self) -> dict[tuple[logging.Handler, str], int]:
        """Return how many events of each schema each handler did not write."""
        return dict(self._delivery.lost)

    # Recording

    def check_event(self, schema_id: str, version: object, event: Any) -> EventSchema:
        """Return the event's schema; raise UnknownSchemaError or a ValidationError."""
        schema = self.get_schema(schema_id, version)
        schema.validate(event)
        return schema

    def record_event(
        self,
        schema_id: str,
        version: object,
        event: Mapping[str, Any],
        timestamp_override: datetime | None = None,
        *,
        context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Validate and record an event; return the capsule, or None when filtered or sampled out.

        `context` adds capsule fields (`__event_time__`, `__client_id__`, `__user__`), each
        redacted like a property of its category (`__user__` is a `user-identifier`).
        """
        route = self._route(schema_id, version)
        if not route.is_valid(event):
            raise route.schema.validation_error(event)
        return self._record(route, event, timestamp_override, context)

    def record_checked(
        self,
        schema: EventSchema,
        event: Mapping[str, Any],
        timestamp: datetime | None = None,
        *,
        context: Mapping[str, Any] | None = None,
        parsed: bool = False,
    ) -> dict[str, Any] | None:
        """Record an event already checked against `schema`; return the capsule or None.

        `parsed`: the event was read from JSON text, so it holds JSON values only (no NaN, no
        other Python types) and a faster encoder writes it.
        """
        route = self._route(schema.id, schema.version)
        return self._record(route, event, timestamp, context, _dumps_read if parsed else _dumps)

    def _route(self, schema_id: str, version: object) -> _Route:
        route = self._routes.get((schema_id, version)) if isinstance(version, (str, int)) else None
        if route is None:
            route = self._plan_route(self.get_schema(schema_id, version))
            if isinstance(version, (str, int)):
                self._routes[(schema_id, version)] = route
        return route

    def _plan_route(self, schema: EventSchema) -> _Route:
        rule = self._rules.get(schema.id)
        if rule is None:
            return _Route(schema, schema.is_valid, None, None)
        if self.unrestricted_only:
            rule = rule.restricted_to_unrestricted()
        drop = self.redaction == "drop"
        plan = Redactor.plan(schema.categories, rule, personal_data=schema.personal_data, drop=drop)
        kept = frozenset(k for k, category in CONTEXT_FIELDS.items() if category in rule.categories)
        return _Route(schema, schema.is_valid, rule, plan, kept, self._rates.get(schema.id))

    def _record(
        self,
        route: _Route,
        event: Mapping[str, Any],
        timestamp: datetime | None,
        context: Mapping[str, Any] | None = None,
        dumps: Callable[[Mapping[str, Any], EventSchema], str] | None = None,
    ) -> dict[str, Any] | None:
        schema, rule, redactor = route.schema, route.rule, route.redactor
        dumps = dumps or _dumps
        for tap in self._taps:
            tap(schema, event, timestamp, context)
        if rule is None or redactor is None or not rule.allows_action(event):
            dumps(event, schema)  # a filtered event must still be JSON: fail the same way
            self._outcomes[(schema.id, "filtered")] += 1
            return None
        if route.rate is not None and not _kept(route.rate, schema.id, context):
            dumps(event, schema)
            self._outcomes[(schema.id, "sampled_out")] += 1
            return None
        capsule: dict[str, Any] = {
            "__timestamp__": format_timestamp(timestamp),
            "__schema__": schema.id,
            "__schema_version__": schema.version,
            "__metadata_version__": METADATA_VERSION,
        }
        if context:
            self._add_context(capsule, context, route.context_kept)
        redactor.copy_into(capsule, event)
        self._write(capsule, dumps(capsule, schema))
        self._outcomes[(schema.id, "recorded")] += 1
        return capsule

    def _add_context(
        self, capsule: dict[str, Any], context: Mapping[str, Any], kept: frozenset[str]
    ) -> None:
        for key, value in context.items():
            if key not in CONTEXT_FIELDS:
                msg = f"unknown capsule field {key!r}: known are {sorted(CONTEXT_FIELDS)}"
                raise ValueError(msg)
            if key in kept:
                capsule[key] = value
            elif self.redaction == "null":
                capsule[key] = None

    def _handlers(self) -> list[logging.Handler]:
        return self.handlers

    def _send(self, handlers: Callable[[], list[logging.Handler]], record: Queued) -> None:
        if self._writer is not None:
            self._writer.submit(handlers, record)
        else:
            self._delivery.deliver(handlers(), as_record(record))

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
        never the event's values.
        """
        self.count(schema_id or "(unknown)", outcome)
        if not self.failed_handlers:
            return
        failure = {
            "__timestamp__": _now(),
            "outcome": outcome,
            "reason": reason,
            "schema_id": schema_id,
            "version": version,
            "size": size,
            "field": field,
        }
        self._send_failure(failure)

    def _send_failure(self, failure: dict[str, Any]) -> None:
        record = CapsuleRecord(FAILED_RECORD_NAME, failure, _encode(failure))
        self._send(lambda: self.failed_handlers, record)

    def _describe_loss(
        self, handler: logging.Handler, error: BaseException | None, items: list[Any]
    ) -> None:
        """Describe each event a handler did not write to failed_handlers (never its values)."""
        if not self.failed_handlers:
            return
        reason = f"{type(handler).__name__} did not write the event: {_error_name(error)}"
        for item in items:
            if not isinstance(item, (CapsuleRecord, str)) or as_record(item).name != RECORD_NAME:
                continue  # a lost failure description is counted, not described again
            capsule = cast(Mapping[str, Any], as_record(item).msg)
            self._send_failure({
                "__timestamp__": _now(), "outcome": "sink_failure", "reason": reason,
                "schema_id": capsule.get("__schema__"),
                "version": capsule.get("__schema_version__"),
                "size": len(as_record(item).line), "field": None,
                "handler": type(handler).__name__,
            })  # fmt: skip

    def flush(self, timeout: float | None = None) -> bool:
        """Write every queued event and flush each handler; return False on timeout."""
        done = self._writer.flush(timeout) if self._writer is not None else True
        self._flush_handlers(self.handlers)
        # Again: writing (and flushing, for a handler that buffers) may have described failures
        # to write, which go to failed_handlers through the writer too.
        if self._writer is not None:
            done = self._writer.flush(timeout) and done
        self._flush_handlers(self.failed_handlers)
        return done

    def _flush_handlers(self, handlers: list[logging.Handler]) -> None:
        for handler in handlers:
            try:
                handler.flush()
            except Exception as e:
                self._delivery.failed(handler, e)

    def close(self, timeout: float | None = None) -> None:
        """Flush, then stop the background writer (the handlers stay open: they are yours)."""
        self.flush(timeout)
        if self._writer is not None:
            self._writer.close(timeout)
            self._writer = None

    @property
    def pending(self) -> int:
        """Return how many events wait for the background writer."""
        return self._writer.pending if self._writer is not None else 0

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hand the events this thread records in the block to the handlers together, at its end.

        With `background`, they are queued at once (an event that would not fit in the queue
        raises QueueFullError when it is recorded); without, each handler writes them all at the
        end of the block. Listeners still see each event as it is recorded.
        """
        if self._held is not None:  # nested, or another thread's block: record as usual
            yield
            return
        room = self._writer.room(self.handlers) if self._writer is not None else sys.maxsize
        held = self._held = HeldRecords(room, self._lines_only())
        try:
            yield
        finally:
            self._held = None
            self._release(held.records)

    def _queued(self, capsule: dict[str, Any], line: str, lines_only: bool | None = None) -> Queued:
        """Return what is handed over for an event: its record, or its line alone when every
        handler writes lines and a writer thread takes it (see `Queued`)."""
        if lines_only is None:
            lines_only = self._lines_only()
        return line if lines_only else CapsuleRecord(RECORD_NAME, capsule, line)

    def _lines_only(self) -> bool:
        """Return True when a background writer feeds handlers that write JSON lines only.

        Worked out again when the handler list changes. Should a handler change its formatter
        meanwhile, it still gets each capsule: a record reads it back from the line.
        """
        if self._writer is None:
            return False
        handlers = self.handlers
        if self._lines_only_of[0] is not handlers or self._lines_only_of[1] != len(handlers):
            self._lines_only_of = (handlers, len(handlers), all(map(writes_lines, handlers)))
        return self._lines_only_of[2]

    def _release(self, records: list[Queued]) -> None:
        if not records:
            return
        if self._writer is not None:
            self._writer.submit_many(self._handlers, records)
            return
        for handler in self.handlers:
            self._delivery.deliver_many(handler, records)

    @contextmanager
    def tracking(self, ticket: Ticket, *, seal: bool = True) -> Iterator[Ticket]:
        """Have the handlers report on `ticket` whether they wrote the events this thread
        records in the block; the ticket is sealed when the block ends (unless `seal` is
        False: then the caller seals it with `seal()` after its last block)."""
        if getattr(self._local, "ticket", None) is not None:  # nested: the outer ticket tracks
            yield self._local.ticket
            return
        self._local.ticket = ticket
        with self._tracking_lock:
            self._tracking += 1
        try:
            yield ticket
        finally:
            with self._tracking_lock:
                self._tracking -= 1
            self._local.ticket = None
            if seal:
                self.seal(ticket)

    def seal(self, ticket: Ticket) -> None:
        """Let no more events join `ticket`; it settles once the handlers got past them."""
        if self._writer is not None:
            self._writer.settle(ticket, self.handlers)
        else:
            ticket.seal(0)  # written already, on this thread

    @property
    def ticket(self) -> Ticket | None:
        """Return the ticket that the calling thread's events are tracked by, if any."""
        return getattr(self._local, "ticket", None) if self._tracking else None

    def _write(self, capsule: dict[str, Any], line: str) -> None:
        if self._tracking and (ticket := self.ticket) is not None:
            record = CapsuleRecord(RECORD_NAME, capsule, line)
            record.ticket = ticket
            handlers = ticket.handlers(self.handlers)
            self._send(lambda: handlers, record)
        elif self._writer is not None or self.handlers:
            held = self._held
            if held is None or held.thread != threading.get_ident():
                self._send(self._handlers, self._queued(capsule, line))
            else:
                held.add(self._queued(capsule, line, held.lines_only))
        for listener in self._listeners:
            try:
                listener(capsule)
            except Exception:  # a listener's bug must not reach the code recording the event
                self.log.exception("Event listener %r failed", listener)


def _kept(rate: float, schema_id: str, context: Mapping[str, Any] | None) -> bool:
    """Return True when sampling keeps the event: by its client id if it has one."""
    return keeps(rate, schema_id, context.get("__client_id__") if context else None)


def _error_name(error: BaseException | None) -> str:
    """Name an error by its type (and errno), never its message: it may hold an event's values."""
    if error is None:
        return "an error"
    code = getattr(error, "errno", None)
    name = errno.errorcode.get(code, "") if isinstance(code, int) else ""
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.isalnum():
        name = f"SQLSTATE {sqlstate}"
    return f"{type(error).__name__} {name}".strip()


def _dumps(
    value: Mapping[str, Any], schema: EventSchema, encode: Callable[[Any], str] = _encode
) -> str:
    try:
        return encode(value)
    except (TypeError, ValueError) as e:
        from .validation import not_json_error

        raise not_json_error(value, schema.id, schema.version) from e


def _dumps_read(value: Mapping[str, Any], schema: EventSchema) -> str:
    """Encode a capsule of values read from JSON text: orjson, unless the line is not ASCII."""
    line = orjson.dumps(value)
    return line.decode() if line.isascii() else _dumps(value, schema, encode_standard)
