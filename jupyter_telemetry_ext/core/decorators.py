"""`record` and `instrument`: record an event each time a method returns."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)


@overload
def record(action: F) -> F: ...
@overload
def record(action: str | None = None) -> Callable[[F], F]: ...
def record(action: Any = None) -> Any:
    """Record `{"action": ..., <eventkeys from the call>}` after the method returns normally.

    The instance provides `eventlog`, `eventschema`, optionally `eventschema_version`
    (default: the newest registered) and `eventkeys` (names of call arguments to record).
    `@record` alone uses the method's name as the action.
    """
    if callable(action):
        return _recording(action, action.__name__)
    return lambda method: _recording(method, action or method.__name__)


def _recording(method: F, action: str) -> F:
    signature = inspect.signature(method)

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = method(self, *args, **kwargs)
        _record_call(self, action, signature.bind(self, *args, **kwargs))
        return result

    return wrapper  # type: ignore[return-value]


def _record_call(owner: Any, action: str, call: inspect.BoundArguments) -> None:
    call.apply_defaults()
    event = {"action": action}
    for key in getattr(owner, "eventkeys", ()):
        if key in call.arguments:
            event[key] = call.arguments[key]
    eventlog, schema_id = owner.eventlog, owner.eventschema
    version = getattr(owner, "eventschema_version", None)
    if version is None:
        version = eventlog.latest_version(schema_id)
    eventlog.record_event(schema_id, version, event)


def instrument(cls: C) -> C:
    """Apply `record` (the method's name as the action) to every public method of a class."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(member):
            setattr(cls, name, _recording(member, name))
    return cls
