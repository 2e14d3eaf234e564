"""One event as one compact ASCII line of JSON: orjson where its line is the standard library's.

The standard library's encoder (`allow_nan=False`, ASCII escapes) decides what a line is; orjson
writes the same line several times faster, for values it writes exactly the same way. Those are
checked first (`_plain`): exact dicts with string keys, lists, strings, booleans, None, 64-bit
integers and finite floats that Python writes without an exponent below 1e-4. Anything else
(a NaN, a tuple, a datetime, a str subclass, a UUID, a cycle) goes to the standard encoder, which
writes it or raises as it always did.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

# One compact line per event, ASCII whatever the handler's stream encoding.
encode_standard = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode

_MAX_DEPTH = 64  # nesting checked for the fast path; deeper goes to the standard encoder
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson writes
# Below this, Python writes floats with an exponent (1e-05) and orjson without (0.00001).
_SMALLEST_PLAIN_FLOAT = 1e-4


def encode(value: Any) -> str:
    """Return `value` as one compact ASCII JSON line; raise TypeError or ValueError if not JSON."""
    if _plain(value, 0):
        try:
            line = orjson.dumps(value)
        except orjson.JSONEncodeError:  # a lone surrogate, which the standard encoder escapes
            return encode_standard(value)
        # Non-ASCII text is escaped by the standard encoder, and so is DEL (0x7f).
        if line.isascii() and b"\x7f" not in line:
            return line.decode()
    return encode_standard(value)


def _plain(value: Any, depth: int) -> bool:
    """Return True when orjson writes `value` exactly as the standard encoder does."""
    kind = type(value)
    if kind is dict:
        return depth < _MAX_DEPTH and _plain_dict(value, depth + 1)
    if kind is list:
        return depth < _MAX_DEPTH and all(_plain(item, depth + 1) for item in value)
    return _plain_scalar(kind, value)


def _plain_dict(value: dict[Any, Any], depth: int) -> bool:
    for key, item in value.items():
        if type(key) is not str:
            return False
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue  # the common case, without a call
        if not _plain(item, depth):
            return False
    return True


def _plain_scalar(kind: type, value: Any) -> bool:
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(_INT_MIN <= value <= _INT_MAX)
    if kind is float:
        return math.isfinite(value) and (value == 0.0 or abs(value) >= _SMALLEST_PLAIN_FLOAT)
    return False
