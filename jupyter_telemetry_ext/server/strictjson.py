"""Reading a posted body as I-JSON (RFC 7493), quickly.

The rules: UTF-8 text, no duplicate keys, finite numbers, integers within +-(2**53 - 1), no
lone surrogates, at most MAX_DEPTH nested arrays and objects. orjson reads the body; whenever
its reading could differ from these rules, the standard library's decoder, with a hook for
each rule, reads it again and decides (and says why a body is refused).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import orjson

from jupyter_telemetry_ext.core.errors import JSONBodyError, SlowReading

MAX_DEPTH = 64  # arrays and objects nested in a body; deeper is refused before any recursion
MAX_SAFE_INTEGER = 2**53 - 1  # I-JSON (RFC 7493): larger integers are not interoperable
_SAFE_DIGITS = len(str(MAX_SAFE_INTEGER))
# A \\uD800-\\uDFFF escape: only a body holding one can hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")
# An escaped ":" makes the count of colons below say nothing about keys.
_COLON_ESCAPE = re.compile(rb"\\u003[aA]")
_UNSURE = object()
# The keys of a posted body and of its events that an error may name (those below `data`, and
# any other, are shown as `*`: a key may be data).
_ENVELOPE = frozenset({"events", "schema_id", "version", "data", "id", "sent_at", "timestamp"})
_STRICT = orjson.OPT_STRICT_INTEGER


def loads(body: bytes, inspect: Callable[[Any], None] | None = None, *, quick: bool = False) -> Any:
    """Return the document in `body`; raise JSONBodyError when it breaks a rule.

    `inspect` is shown the document as orjson reads it (when orjson can read the body), before
    any rule is checked: it may raise to refuse the body first, without a second reading.
    `quick`: raise SlowReading rather than read the body with the standard library's decoder
    (which takes about a second for a hostile megabyte: the caller does it on a thread).
    """
    document = _quick(body, inspect)
    if document is _UNSURE:
        if quick:
            raise SlowReading
        return _strict(body)
    return document


def size(value: Any) -> int:
    """Return the bytes of a value read by `loads`, as compact UTF-8 JSON."""
    return len(orjson.dumps(value))


def _quick(body: bytes, inspect: Callable[[Any], None] | None = None) -> Any:
    """Return the document when orjson's reading certainly keeps every rule, else _UNSURE.

    orjson refuses what is not UTF-8, NaN and Infinity, overflowing numbers and lone
    surrogates. Written back, integers past 2**53 fail and integers past 2**64 (read as
    floats) show an exponent. Duplicate keys: a colon outside strings follows each key, so the
    body has more colons than the document written back exactly when a key was overwritten.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _UNSURE
    if inspect is not None:
        inspect(document)
    again = _write_back(document, body.count(b"[") + body.count(b"{") > MAX_DEPTH)
    if again is None:
        return _UNSURE
    # (A one-byte `in` is a memchr: it spares most bodies the slower searches.)
    if (b"+" in again and b"e+" in again) or (b"\\" in body and _COLON_ESCAPE.search(body)):
        return _UNSURE
    if again.count(b":") != body.count(b":"):
        return _UNSURE
    return document


def _write_back(document: Any, deep: bool) -> bytes | None:
    """Return the document as compact JSON; None if orjson refuses a number or the nesting.

    orjson writes at most _ORJSON_DEPTH levels: a `deep` document (one with enough brackets to
    nest too deep) is written inside _PADDING lists, which fails when it nests too deep.
    """
    padding = _PADDING if deep else 0
    if padding is None:
        check_depth(document)
        padding = 0
    try:
        if not padding:
            return orjson.dumps(document, option=_STRICT)
        return orjson.dumps(_padded(document, padding), option=_STRICT)[padding:-padding]
    except orjson.JSONEncodeError:
        return None


def _padded(document: Any, levels: int) -> list[Any]:
    """Return the document inside `levels` nested lists."""
    padded = [document]
    for _ in range(levels - 1):
        padded = [padded]
    return padded


def _orjson_depth() -> int | None:
    """Return how many levels orjson writes and refuses one more (None: it is not 254)."""
    nested: list[Any] = []
    for _ in range(253):
        nested = [nested]
    try:
        orjson.dumps(nested)  # 254 levels
    except orjson.JSONEncodeError:
        return None
    try:
        orjson.dumps([nested])
    except orjson.JSONEncodeError:
        return 254
    return None


def _strict(body: bytes) -> Any:
    """Read the body with a hook per rule; raise JSONBodyError naming the first broken one."""
    try:
        document = json.loads(
            body.decode("utf-8"),  # strict: no other encoding, no encoded surrogates
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_safe_int,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise _too_deep() from None
    except UnicodeDecodeError as e:  # its message quotes the byte
        msg = f"the body is not valid JSON: it is not UTF-8 text (at byte {e.start})"
        raise JSONBodyError(msg) from None
    except json.JSONDecodeError as e:
        msg = f"the body is not valid JSON: {_json_problem(e)}"
        raise JSONBodyError(msg) from None
    except ValueError as e:  # a hook's refusal
        msg = f"the body is not valid JSON: {e}"
        raise JSONBodyError(msg) from None
    check_depth(document)
    if _SURROGATE_ESCAPE.search(body):
        _refuse_lone_surrogates(document)
    return document


def _refuse_lone_surrogates(document: Any) -> None:
    """Raise JSONBodyError when a string escapes half of a UTF-16 pair on its own (not text),
    naming where: the event and envelope field, and `*` for each key below (keys may be data)."""
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        where = _surrogate_path(document)
        msg = ("the body holds a lone surrogate (a \\ud800-\\udfff escape): not UTF-8 text"
               + (f", at {where}" if where else ""))  # fmt: skip
        raise JSONBodyError(msg) from None


def _surrogate_path(document: Any) -> str:
    """Return where the first lone surrogate of `document` is (`events[2].data.*`)."""
    stack: list[tuple[Any, str, bool]] = [(document, "", False)]
    while stack:
        value, path, in_data = stack.pop()
        if isinstance(value, str):
            if not _is_text(value):
                return path
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{n}]", in_data) for n, item in
                         reversed(list(enumerate(value))))  # fmt: skip
        elif isinstance(value, dict):
            children = []
            for key, item in value.items():
                named = key if key in _ENVELOPE and not in_data else "*"
                child = f"{path}.{named}" if path else named
                if not _is_text(key):
                    return child
                children.append((item, child, in_data or key == "data"))
            stack.extend(reversed(children))
    return ""


def _is_text(value: str) -> bool:
    """Return True when `value` holds no lone surrogate (it is UTF-8 text)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _too_deep() -> JSONBodyError:
    return JSONBodyError(f"the body is nested more than {MAX_DEPTH} levels deep")


def check_depth(document: Any) -> None:
    """Raise JSONBodyError when arrays and objects nest deeper than MAX_DEPTH (no recursion)."""
    level: list[Any] = [document]
    for _ in range(MAX_DEPTH + 1):
        below: list[Any] = []
        for value in level:
            kind = type(value)
            if kind is dict:
                below.extend(value.values())
            elif kind is list:
                below.extend(value)
        if not below:
            return
        level = below
    raise _too_deep()


def _refuse_constant(name: str) -> Any:
    msg = f"{name} is not JSON"
    raise ValueError(msg)


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        msg = "a number is too large for a 64-bit float"
        raise ValueError(msg)
    return value


def _safe_int(text: str) -> int:
    # More digits than the limit has (JSON has no leading zeros) is beyond it: said without
    # converting, which Python refuses past 4300 digits with advice for its own programmers.
    value = int(text) if len(text.lstrip("-")) <= _SAFE_DIGITS else MAX_SAFE_INTEGER + 1
    if abs(value) > MAX_SAFE_INTEGER:
        msg = f"an integer is beyond +-{MAX_SAFE_INTEGER} (I-JSON)"
        raise ValueError(msg)
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        msg = "an object has a duplicate key"
        raise ValueError(msg)
    return document


_ORJSON_DEPTH = _orjson_depth()
# Lists around a document to write, so that orjson refuses it when it nests too deep (None:
# orjson's limit is not the one known here, and each deep document is walked instead).
_PADDING = None if _ORJSON_DEPTH is None else _ORJSON_DEPTH - MAX_DEPTH


def _json_problem(error: json.JSONDecodeError) -> str:
    """Say what is wrong where; a byte order mark in the client's words, not Python's."""
    if error.msg.startswith("Unexpected UTF-8 BOM"):
        return "it starts with a byte order mark (U+FEFF): send the JSON text without one"
    return str(error)
