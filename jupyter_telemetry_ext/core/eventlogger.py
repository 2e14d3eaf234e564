"""EventLogger: jupyter_events' API (schemas, handlers, modifiers, async listeners) on our EventLog.

The allow-list and redaction stay on: every registered schema is recorded unless
`allowed_schemas` (or the admin's `c.EventLog.allowed_schemas`) says otherwise, and properties
marked personal are redacted unless allowed.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import warnings
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from traitlets import Any as AnyTrait
from traitlets import Instance, List, default, observe
from traitlets.config import Application, Config, LoggingConfigurable

from jupyter_telemetry_ext._version import __version__

from . import events_yaml as yaml  # jupyter_events.yaml's helpers, for code moving from it
from .errors import (
    CoreMetadataError,
    ListenerError,
    ModifierError,
    SchemaNotRegistered,
    SchemaRegistryException,
)
from .eventlog import EventLog
from .eventlog_v1 import MetadataV1EventLog
from .events_schema import EventSchema, load_schema, with_defaults
from .timestamps import Timestamps

__all__ = [
    "CoreMetadataError",
    "EventLogger",
    "EventSchema",
    "Handlers",
    "ListenerError",
    "ModifierError",
    "SchemaNotRegistered",
    "SchemaRegistry",
    "SchemaRegistryException",
    "__version__",
    "yaml",
]

Modifier = Callable[..., dict[str, Any]]
EventListener = Callable[..., Any]
# jupyter_events warns once per schema id, not at every emit.
warnings.simplefilter("once", SchemaNotRegistered)


class Handlers(List):  # type: ignore[type-arg]  # traitlets before 5.10 is not generic
    """A list of `logging.Handler` (jupyter_events' trait of that name)."""

    def __init__(self, default_value: Any = None, **kwargs: Any) -> None:
        """Accept only logging handlers; `None` (with `allow_none`) means none."""
        super().__init__(Instance(logging.Handler), default_value=default_value, **kwargs)


class SchemaRegistry:
    """The schemas an EventLogger registered, by id (jupyter_events keeps one version per id)."""

    def __init__(self) -> None:
        """Start empty."""
        self._schemas: dict[str, EventSchema] = {}

    def __contains__(self, schema_id: object) -> bool:
        """Return True when a schema id is registered."""
        return schema_id in self._schemas

    @property
    def schema_ids(self) -> list[str]:
        """Return the registered schema ids."""
        return list(self._schemas)

    def get(self, schema_id: str) -> EventSchema:
        """Return a registered schema; raise KeyError for an unknown id."""
        return self._schemas[schema_id]

    def check(self, schema: Any) -> EventSchema:
        """Return a schema checked, keeping nothing; raise SchemaRegistryException if its id is
        registered."""
        checked = EventSchema(_string_version(with_defaults(load_schema(schema))))
        if checked.id in self._schemas:
            msg = f"The schema, {checked.id}, is already registered with this EventLogger."
            raise SchemaRegistryException(msg)
        return checked

    def register(self, schema: Any) -> EventSchema:
        """Check and keep a schema; raise SchemaRegistryException if its id is registered."""
        checked = self.check(schema)
        self.add(checked)
        return checked

    def add(self, checked: EventSchema) -> None:
        """Keep a schema returned by `check`."""
        self._schemas[checked.id] = checked

    def validate_event(self, schema_id: str, data: Any) -> None:
        """Raise a `jsonschema.ValidationError` naming the field when the event is not valid."""
        self._schemas[schema_id].validate(data)


def _string_version(document: dict[str, Any]) -> dict[str, Any]:
    """Return the document with an integer `version` as a string, as jupyter_events keeps it
    (its capsules' `__schema_version__` is a string); without its warning."""
    version = document.get("version")
    if isinstance(version, int) and not isinstance(version, bool):
        document["version"] = str(version)
    return document


class _EventsTimestamps(Timestamps):
    """Capsule timestamps as jupyter_events writes them: `datetime.isoformat()` then `Z`."""

    def format(self, when: datetime | None = None) -> str:
        """Return `when` (None: now, in UTC) in jupyter_events' form."""
        return (when or datetime.now(tz=timezone.utc)).isoformat() + "Z"


class _EventsLog(MetadataV1EventLog):
    """Our EventLog writing jupyter_events' capsule metadata version and timestamps."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stamps = _EventsTimestamps()


class EventLogger(LoggingConfigurable):
    """Emits events as jupyter_events' EventLogger does, recorded through our EventLog."""

    handlers = Handlers(
        default_value=None,
        allow_none=True,
        help="""Python `logging` handlers that receive each recorded event as one line of JSON.
        None or empty (the default): events are written nowhere, and `emit` returns at once
        unless a listener waits for the schema.""",
    ).tag(config=True)

    allowed_schemas = AnyTrait(
        default_value=None,
        allow_none=True,
        help="""Which events this EventLogger records, in `EventLog.allowed_schemas`' forms.
        None (the default): every registered schema, with properties marked personal redacted;
        but when the admin configured `c.EventLog.allowed_schemas`, that list applies instead.
        Empty: nothing is recorded.""",
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        """Create an EventLogger; traits come from keyword arguments or `c.EventLogger.*`.

        Without `parent` nor `config`, the config is the running application's (a Jupyter
        server's), so that the admin's `c.EventLog.*` applies to it too.
        """
        if "parent" not in kwargs and "config" not in kwargs and Application.initialized():
            kwargs["config"] = Application.instance().config
        super().__init__(**kwargs)
        self.schemas = SchemaRegistry()
        self._modifiers: dict[str, set[Modifier]] = {}
        self._all_modifiers: set[Modifier] = set()
        self._modified_listeners: dict[str, set[EventListener]] = {}
        self._unmodified_listeners: dict[str, set[EventListener]] = {}
        self._active_listeners: set[asyncio.Future[Any]] = set()
        admin = "allowed_schemas" in self.config.get("EventLog", {})
        self._record_all = self.allowed_schemas is None and not admin
        kept = {} if self.allowed_schemas is None else {"allowed_schemas": self.allowed_schemas}
        self._eventlog = _EventsLog(parent=self, handlers=list(self.handlers or []), **kept)

    def _load_config(self, cfg: Config, section_names: Any = None, traits: Any = None) -> None:
        """Load config; configured handlers are shared, not deep-copied (they hold locks)."""
        handlers = self._find_my_config(cfg).get("handlers")
        for handler in handlers if isinstance(handlers, (list, tuple)) else ():
            if isinstance(handler, logging.Handler):
                handler.__deepcopy__ = lambda memo, h=handler: h  # type: ignore[attr-defined]
        super()._load_config(cfg, section_names=section_names, traits=traits)

    @default("log")
    def _default_log(self) -> logging.Logger:
        parent_log = getattr(self.parent, "log", None)
        return parent_log if parent_log is not None else logging.getLogger("jupyter_telemetry_ext")

    @observe("handlers")
    def _handlers_changed(self, change: Any) -> None:
        if hasattr(self, "_eventlog"):
            self._eventlog.handlers = list(self.handlers or [])

    @property
    def eventlog(self) -> EventLog:
        """Return the EventLog that records this logger's events."""
        return self._eventlog

    # Schemas and handlers

    def register_event_schema(self, schema: Any) -> None:
        """Register a schema: a dict, a `pathlib.Path`, or YAML/JSON text.

        Raises `jsonschema.ValidationError` for an invalid schema, `SchemaRegistryException`
        for an id registered already, and `EventSchemaLoadingError` for an unreadable source.
        """
        registered = self.schemas.check(schema)
        self._eventlog.register_schema(registered.checked)  # may refuse: then kept nowhere
        self.schemas.add(registered)
        for table in (self._modifiers, self._modified_listeners, self._unmodified_listeners):
            table.setdefault(registered.id, set())
        if self._record_all:
            self._eventlog.allowed_schemas = [*self._eventlog.allowed_schemas, registered.id]
        elif not self._eventlog.is_allowed(registered.id):  # else emit returns None, unexplained
            self.log.warning(
                "%s is registered, but the allow-list (%s) does not name it: its events will "
                "not be recorded",
                registered.id, self._allow_list_name(),
            )  # fmt: skip

    def _allow_list_name(self) -> str:
        """Return the option whose allow-list this logger applies."""
        own = self.allowed_schemas is not None
        return "c.EventLogger.allowed_schemas" if own else "c.EventLog.allowed_schemas"

    def register_handler(self, handler: logging.Handler) -> None:
        """Write recorded events to a `logging.Handler` too."""
        if handler not in (self.handlers or []):
            self.handlers = [*(self.handlers or []), handler]

    def remove_handler(self, handler: logging.Handler) -> None:
        """Stop writing recorded events to a handler."""
        self.handlers = [h for h in self.handlers or [] if h is not handler]

    # Modifiers

    def add_modifier(self, *, schema_id: str | None = None, modifier: Modifier) -> None:
        """Call `modifier(schema_id=..., data=...)` on a copy of each event before validation.

        Without `schema_id`, for every schema, including those registered later.
        """
        if not callable(modifier):
            msg = "`modifier` must be a callable"  # type: ignore[unreachable]  # untyped callers
            raise TypeError(msg)
        if schema_id:
            self._modifiers.setdefault(schema_id, set()).add(modifier)
        else:
            self._all_modifiers.add(modifier)
            for modifiers in self._modifiers.values():
                modifiers.add(modifier)

    def remove_modifier(self, *, schema_id: str | None = None, modifier: Modifier) -> None:
        """Stop calling a modifier for one schema, or (no `schema_id`) for all."""
        if schema_id:
            self._modifiers.get(schema_id, set()).discard(modifier)
            return
        self._all_modifiers.discard(modifier)
        for modifiers in self._modifiers.values():
            modifiers.discard(modifier)

    # Listeners

    def add_listener(
        self, *, modified: bool = True, schema_id: str | None = None, listener: EventListener
    ) -> None:
        """Await `listener(logger=..., schema_id=..., data=...)` on the running loop after each
        recorded event (its data as recorded, redacted); `modified=False`: the data before the
        modifiers (redacted too). Without `schema_id`: for every schema registered so far."""
        if not callable(listener):
            msg = "`listener` must be a callable"  # type: ignore[unreachable]  # untyped callers
            raise TypeError(msg)
        table = self._modified_listeners if modified else self._unmodified_listeners
        for key in [schema_id] if schema_id else self.schemas.schema_ids:
            table.setdefault(key, set()).add(listener)

    def remove_listener(self, *, schema_id: str | None = None, listener: EventListener) -> None:
        """Stop calling a listener for one schema, or (no `schema_id`) for all."""
        for table in (self._modified_listeners, self._unmodified_listeners):
            for key in [schema_id] if schema_id else list(table):
                table.get(key, set()).discard(listener)

    async def gather_listeners(self) -> list[Any]:
        """Wait for the listeners running now; return their results (or exceptions)."""
        return await asyncio.gather(*self._active_listeners, return_exceptions=True)

    # Emitting

    def emit(
        self, *, schema_id: str, data: dict[str, Any], timestamp_override: datetime | None = None
    ) -> dict[str, Any] | None:
        """Validate and record an event; return its capsule, or None when nothing was recorded
        (no handler nor listener, schema not registered, not allowed, or a modifier failed)."""
        unmodified = self._unmodified_listeners.get(schema_id)
        modified_listeners = self._modified_listeners.get(schema_id)
        if not self.handlers and not unmodified and not modified_listeners:
            return None
        if schema_id not in self.schemas:
            warnings.warn(
                f"{schema_id} has not been registered yet. If this was not intentional, "
                "please register the schema using the `register_event_schema` method.",
                SchemaNotRegistered,
                stacklevel=2,
            )
            return None
        schema = self.schemas.get(schema_id)
        modified = self._modify(schema_id, data)
        if modified is None:
            return None
        if unmodified:
            self.schemas.validate_event(schema_id, data)
        self.schemas.validate_event(schema_id, modified)
        capsule = self._eventlog.record_checked(schema.checked, modified, timestamp_override)
        if capsule is None:
            return None
        if modified_listeners:
            recorded = {k: v for k, v in capsule.items() if not k.startswith("__")}
            self._schedule(modified_listeners, schema_id, recorded)
        if unmodified and self._eventlog.is_allowed_event(schema.checked, data):
            # The raw event's action may be one the allow-list leaves out (a modifier changed
            # it): then no listener sees it.
            self._schedule(unmodified, schema_id, self._redacted(schema, data))
        return capsule

    def _modify(self, schema_id: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """Return the event the modifiers made of a copy of `data` (no modifier: `data`), or
        None when one raised (logged: the event is not recorded)."""
        modifiers = self._modifiers.get(schema_id)
        if not modifiers and not self._all_modifiers:
            return data
        data = copy.deepcopy(data)  # the caller's event is never changed
        for modifier in (modifiers or set()) | self._all_modifiers:
            try:
                modified: object = modifier(schema_id=schema_id, data=data)
            except Exception:  # a modifier may redact: the event is not recorded without it
                self.log.exception(
                    "Event modifier %r failed: the %s event was not recorded", modifier, schema_id
                )
                return None
            if not isinstance(modified, dict):  # e.g. it changed the event and returned None
                self.log.error(
                    "Event modifier %r returned %s, not a dict: the %s event was not recorded",
                    modifier, type(modified).__name__, schema_id,
                )  # fmt: skip
                return None
            data = modified
        return data

    def _redacted(self, schema: EventSchema, data: Mapping[str, Any]) -> dict[str, Any]:
        redactor = self._eventlog.plan(schema.checked).redactor
        if redactor is None:
            return {}
        redacted: dict[str, Any] = {}
        redactor.copy_into(redacted, data)
        return redacted

    def _schedule(
        self, listeners: set[EventListener] | None, schema_id: str, data: dict[str, Any]
    ) -> None:
        for listener in list(listeners or ()):
            try:
                result = listener(logger=self, schema_id=schema_id, data=copy.deepcopy(data))
                if not inspect.isawaitable(result):
                    continue
                task = asyncio.ensure_future(result, loop=_running_loop(result))
            except Exception as e:  # a listener's bug must not reach the code emitting
                self.log.error(
                    "Event listener %r failed for %s: %s: %s",
                    listener, schema_id, type(e).__name__, e, exc_info=e,
                )  # fmt: skip
                continue
            self._active_listeners.add(task)
            task.add_done_callback(self._listener_done)

    def _listener_done(self, task: asyncio.Future[Any]) -> None:
        self._active_listeners.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        self.log.error("Event listener failed: %s: %s", type(error).__name__, error, exc_info=error)


def _running_loop(awaitable: Any) -> asyncio.AbstractEventLoop:
    """Return the running loop; without one, close the coroutine and raise RuntimeError."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        msg = "no running event loop to await the listener on (emit from the loop's thread)"
        raise RuntimeError(msg) from None
