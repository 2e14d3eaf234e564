"""How deeply an event may nest.

The validator (jsonschema-rs) and the reserved-key check recurse on the native stack: an event
nested some ten thousand levels deep would crash the process (a segmentation fault) rather than
fail. JSON text read by the standard library cannot nest that deep, but a Python caller's
event can, so every event is checked first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

MAX_DEPTH = 254  # orjson's own limit: an event it writes nests no deeper


def too_deep(event: Any) -> str | None:
    """Return the top-level key under which `event` nests deeper than MAX_DEPTH levels (the
    event itself counting as one), `""` when the event is such a container but not a dict,
    or None when it does not."""
    try:
        orjson.dumps(event)
    except (orjson.JSONEncodeError, TypeError):  # too deep, or a value orjson does not write
        pass
    else:
        return None
    if not isinstance(event, dict):
        return "" if _deeper_than(event, MAX_DEPTH) else None
    for key, value in event.items():
        if _deeper_than(value, MAX_DEPTH - 1):
            return str(key)
    return None


def _deeper_than(value: Any, limit: int) -> bool:
    """Return True when `value` holds more than `limit` levels of dicts and lists (no recursion:
    the value may be deeper than Python's own stack allows)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
