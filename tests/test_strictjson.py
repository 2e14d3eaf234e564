"""The quick reading of a posted body agrees with the strict one on every body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jupyter_telemetry_ext.core.errors import JSONBodyError
from jupyter_telemetry_ext.server import strictjson

NUMBERS = [
    "0", "-0", "12", "-7", "9007199254740991", "-9007199254740991", "9007199254740992",
    "-9007199254740993", "9223372036854775808", "18446744073709551615",
    "18446744073709551616", "123456789012345678901234567890", "-123456789012345678901234",
    "1.5", "-0.0", "1e3", "1E+20", "1e16", "9007199254740993.0", "2.5e-400", "1e400",
    "-1E309", "183.5",
]  # fmt: skip
STRINGS = [
    "", "a", "a:b", "::", "\\u003a", "x\\u003Ay", "\\ud800", "\\udc00", "\\ud83d\\ude00",
    "\\u00e9", "é", "1e+5", "e+", "\\\\u003a", "\\n", "\\\"", "{[}]", "\\u0000",
]  # fmt: skip
KEYS = ["a", "b", "a:", ":", "\\u003a", "é", "e+"]
LITERALS = ["true", "false", "null", "NaN", "Infinity", "-Infinity"]
SPACE = st.sampled_from(["", " ", "\n", "\t ", "\r\n"])


def _string(text: str) -> str:
    return f'"{text}"'


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{_string(k)}:{v}" for k, v in pairs) + "}"


def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


SCALARS = st.one_of(
    st.sampled_from(NUMBERS),
    st.sampled_from(STRINGS).map(_string),
    st.sampled_from(LITERALS),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(_array),
        st.lists(st.tuples(st.sampled_from(KEYS), inner), max_size=4).map(_object),
    ),
    max_leaves=12,
)
BODIES = st.tuples(SPACE, VALUES, SPACE).map(lambda parts: "".join(parts).encode())


def _verdict(read: Callable[[bytes], Any], body: bytes) -> str:
    """Return the value read, written with its types, or the refusal."""
    try:
        return "value " + repr(read(body))
    except JSONBodyError as e:
        return f"refused: {e}"


@settings(max_examples=1500, deadline=None)
@given(BODIES)
def test_the_quick_reading_agrees_with_the_strict_one(body: bytes) -> None:
    """Whatever the body (duplicates, big numbers, escapes), both read it the same way."""
    assert _verdict(strictjson.loads, body) == _verdict(strictjson._strict, body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"a": 1, "a": 2}', "duplicate key"),
        (b'{"a": {"b:c": 1, "b:c": 1}}', "duplicate key"),
        (b'{"\\u003a": 1, ":": 2}', "duplicate key"),
        (b'{"a": 9007199254740992}', "beyond"),
        (b'{"a": 123456789012345678901234567890}', "beyond"),
        (b'{"a": -' + b"9" * 5000 + b"}", "beyond"),  # past Python's 4300 digits: said as well
        (b'{"a": 1e400}', "too large"),
        (b'{"a": NaN}', "not JSON"),
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b'{"a": "\xff"}', "not valid JSON"),
        (b"[" * 66 + b"]" * 66, "nested more than 64"),
    ],
)
def test_each_rule_is_kept(body: bytes, reason: str) -> None:
    """Every rule refuses its body with a message that names the rule."""
    with pytest.raises(JSONBodyError, match=reason):
        strictjson.loads(body)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"events": [{"data": {}}, {"data": {"secret": ["ok", "\\udc00"]}}]}',
         "events[1].data.*[1]"),
        (b'{"events": [{"data": {"\\ud800": 1}}]}', "events[0].data.*"),
        (b'{"schema_id": "s", "id": "\\ud800x"}', "id"),
        (b'{"named": {"key": "\\ud800"}}', "*.*"),
    ],
)  # fmt: skip
def test_a_lone_surrogate_is_refused_naming_where_never_the_keys_below_data(
    body: bytes, where: str
) -> None:
    """Which event of a batch, and which envelope field; a key below `data` (or one the body
    format does not have) may be data, so it is `*`."""
    with pytest.raises(JSONBodyError) as refused:
        strictjson.loads(body)
    assert str(refused.value).endswith(f"not UTF-8 text, at {where}")
    assert "secret" not in str(refused.value)
    assert "named" not in str(refused.value)


def test_a_body_within_the_rules_is_read() -> None:
    """Colons in strings, exponents within range and 64 levels are all fine."""
    body = b'{"t": "12:00:01", "k:x": [1.5e3, -9007199254740991], "d": ' + b"[" * 62 + b"]" * 62
    document = strictjson.loads(body + b"}")
    assert document["t"] == "12:00:01"
    assert document["k:x"] == [1500.0, -9007199254740991]


def test_size_is_the_compact_utf8_length() -> None:
    """An event's size counts UTF-8 bytes of its compact JSON."""
    assert strictjson.size({"a": "é"}) == len('{"a":"é"}'.encode())


def _nested(levels: int, inner: bytes = b"1") -> bytes:
    """Return a batch-like body whose `d` nests `levels` arrays (the body adds one object)."""
    many = b",".join([b'{"a": [1], "b": {"c": 2}}'] * 40)  # enough brackets to be checked
    return b'{"events": [' + many + b'], "d": ' + b"[" * levels + inner + b"]" * levels + b"}"


@pytest.mark.parametrize("walk", [False, True], ids=["orjson-limit", "walk"])
@pytest.mark.parametrize(("levels", "inner"), [(62, b"1"), (63, b"1"), (64, b"1"), (63, b"[]"),
                                               (64, b"[]"), (64, b"{}"), (65, b"1")])  # fmt: skip
def test_nesting_verdict_is_the_strict_one(
    levels: int, inner: bytes, walk: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Around the limit, the quick reading refuses exactly what the strict reading refuses."""
    if walk:
        monkeypatch.setattr(strictjson, "_PADDING", None)
    body = _nested(levels, inner)
    assert _verdict(strictjson.loads, body) == _verdict(strictjson._strict, body)


def test_orjson_nesting_limit_is_known() -> None:
    """The installed orjson writes 254 levels and no more, so deep bodies are not walked."""
    if strictjson._ORJSON_DEPTH is None:  # orjson before 3.11.8 or so: deep bodies are walked
        pytest.skip(f"orjson {orjson.__version__} has another nesting limit")
    assert strictjson._ORJSON_DEPTH == 254
    assert strictjson._PADDING == 254 - strictjson.MAX_DEPTH


def test_quick_asks_for_the_strict_reading() -> None:
    """With `quick`, a body only the strict reading can judge raises SlowReading."""
    with pytest.raises(strictjson.SlowReading):
        strictjson.loads(b'{"a": 1, "a": 2}', quick=True)
    with pytest.raises((strictjson.SlowReading, JSONBodyError)):  # (walked: refused at once)
        strictjson.loads(_nested(70), quick=True)
    assert strictjson.loads(_nested(10), quick=True)["d"] == [[[[[[[[[[1]]]]]]]]]]
