"""One event as one compact ASCII line of JSON: orjson where its line is the standard library's.

The standard library's encoder (`allow_nan=False`, ASCII escapes) decides what a line is; orjson
writes the same line several times faster, for values it writes exactly the same way. Those are
checked first (`_plain`): exact dicts and lists of strings, booleans, None, integers and finite
floats that Python writes without an exponent (orjson refuses other keys and larger integers).
Anything else (a NaN, a tuple, a datetime, a str subclass, a UUID, a cycle) goes to the standard
encoder, which writes it or raises as it always did.

One thing the standard encoder writes is refused: a string (value or key) holding a lone
surrogate (U+D800-U+DFFF, which Python strings may hold and UTF-8 text cannot). It would be
written as a `\\ud800` escape that strict readers (orjson, PostgreSQL's jsonb) refuse, and two of
them in a row would be read back as one other character. orjson refuses them itself, so only
lines that orjson did not write are looked at, and only when they hold such an escape.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

from .errors import LoneSurrogateError, NotJSONError

# One compact line per event, ASCII whatever the handler's stream encoding.
encode_standard = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
# The same line with text unescaped, where a surrogate stays one character.
_encode_unescaped = json.JSONEncoder(
    allow_nan=False, separators=(",", ":"), ensure_ascii=False
).encode
_SURROGATE = re.compile("[\ud800-\udfff]")
# How the standard encoder writes a surrogate, and each half of a character past U+FFFF.
_SURROGATE_ESCAPE = "\\ud"

_MAX_DEPTH = 64  # nesting checked for the fast path; deeper goes to the standard encoder
# Value types orjson writes as the standard encoder does (an integer it cannot write, past 64
# bits, raises there), and those to look into.
_WRITTEN_ALIKE = frozenset({str, int, bool, type(None)})
_LOOKED_AT = _WRITTEN_ALIKE | {float, dict, list}
# Below this, Python writes floats with an exponent (1e-05) and orjson without (0.00001).
_SMALLEST_PLAIN_FLOAT = 1e-4


def encode(value: Any) -> str:
    """Return `value` as one compact ASCII JSON line; raise TypeError or ValueError if not JSON
    (LoneSurrogateError if a string holds a lone surrogate)."""
    if _plain(value, 0):
        try:
            line = orjson.dumps(value)
        except orjson.JSONEncodeError:  # a key not a string, a large integer, a lone surrogate
            return _standard(value)
        # Non-ASCII text is escaped by the standard encoder, and so is DEL (0x7f). orjson wrote
        # it, so its text holds no lone surrogate.
        if line.isascii() and b"\x7f" not in line:
            return line.decode()
        return encode_standard(value)
    return _standard(value)


def check(value: Any) -> None:
    """Raise NotJSONError when `value` cannot be written as a line (see `encode`)."""
    if value.__class__ is str and value.isascii():
        return
    try:
        encode(value)
    except NotJSONError:
        raise
    except (TypeError, ValueError) as e:
        raise NotJSONError(str(e)) from e


def holds_lone_surrogate(text: str) -> bool:
    """Return True when a string holds a lone surrogate (never an ASCII one: checked in O(1))."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def escape_lone_surrogates(text: str) -> str:
    """Return `text` with each lone surrogate written as its escape (`\\ud800`), as text."""
    if not holds_lone_surrogate(text):
        return text
    return _SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def _standard(value: Any) -> str:
    """Return the standard encoder's line; raise LoneSurrogateError for a lone surrogate."""
    line = encode_standard(value)
    if _SURROGATE_ESCAPE in line and _SURROGATE.search(_encode_unescaped(value)):
        msg = "a string holds a lone surrogate (U+D800-U+DFFF): it is not UTF-8 text"
        raise LoneSurrogateError(msg)
    return line


def _plain(value: Any, depth: int) -> bool:
    """Return True when orjson writes `value` exactly as the standard encoder does.

    orjson itself refuses what would differ among keys (not strings) and integers (past 64
    bits), and writes strings, booleans, None and the integers it takes as the standard encoder
    does: only floats, containers and other types are looked at, a container's value types
    first (in one pass in C), so that most containers need no loop in Python.
    """
    kind = type(value)
    if kind is dict:
        return depth < _MAX_DEPTH and _plain_items(value.values(), depth)
    if kind is list:
        return depth < _MAX_DEPTH and _plain_items(value, depth)
    return _plain_scalar(kind, value)


def _plain_items(items: Any, depth: int) -> bool:
    """Return True when orjson writes each of a container's values as the standard encoder
    (their types read in C first: a container of strings, integers and the like needs no loop)."""
    kinds = set(map(type, items))
    if kinds <= _WRITTEN_ALIKE:
        return True
    if not kinds <= _LOOKED_AT:
        return False
    for item in items:
        kind = type(item)
        if kind is float:
            if not _plain_float(item):
                return False
        elif (kind is dict or kind is list) and not _plain(item, depth + 1):
            return False
    return True


def _plain_scalar(kind: type, value: Any) -> bool:
    if kind is str or kind is bool or kind is int or value is None:
        return True  # an integer orjson does not take raises there: the standard encoder then
    return kind is float and _plain_float(value)


def _plain_float(value: float) -> bool:
    return math.isfinite(value) and (value == 0.0 or abs(value) >= _SMALLEST_PLAIN_FLOAT)
