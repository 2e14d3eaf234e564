"""The fast line encoder writes what the standard library's encoder writes, or fails alike."""

from __future__ import annotations

import enum
import json
import math
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jupyter_telemetry_ext.core.errors import LoneSurrogateError
from jupyter_telemetry_ext.core.jsonline import encode

STANDARD = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


class Text(str):
    """A str subclass."""


class Color(enum.IntEnum):
    """An int enum: the standard encoder writes its int."""

    RED = 1


def outcome(encoder: Any, value: Any) -> tuple[str, str]:
    """Return ("ok", line) or ("error", exception type)."""
    try:
        return "ok", encoder(value)
    except (TypeError, ValueError) as e:
        return "error", type(e).__name__


cycle: dict[str, Any] = {}
cycle["self"] = cycle

TRICKY = [
    {"a": float("nan")}, {"a": [math.inf]}, {"a": -math.inf}, {"a": 1e-05}, {"a": 1e-7},
    {"a": 0.0001}, {"a": 1e16}, {"a": -0.0}, {"a": 2**63}, {"a": 2**64 - 1}, {"a": 2**64},
    {"a": -(2**63) - 1}, {"a": (1, 2)}, {1: "int key"}, {None: 1}, {"a": "\x7f"}, {"a": "é"},
    {"a": "\x00\x1f\"\\/"}, {"a": Text("x")}, {Text("k"): 1}, {"a": Color.RED},
    {"a": uuid.UUID(int=1)}, {"a": datetime(2020, 1, 1, tzinfo=timezone.utc)}, {"a": b"x"},
    {"a": {1, 2}}, cycle, {"a": [[[[{"b": [True, False, None]}]]]]},
    {True: 1}, {1.5: "float key"}, {"a": {2: "a nested int key"}}, {"a": [Color.RED]},
    {"a": [Text("x"), "y"]}, {"a": {"b": 1e-05}}, {"a": [1, 2.5, float("nan")]}, {"a": [2**70]},
    {"a": "\U0001f600"}, {"a": ("\U0001f600",)}, {"a": "\\ud800"}, {"a": ["\\ud800", 1e-05]},
]  # fmt: skip
# A lone surrogate (and two that look like a pair): the standard encoder writes escapes that a
# strict reader refuses, or reads back as another character; refused, whichever path writes it.
LONE_SURROGATES = [
    {"a": "\ud800"}, {"a": "x\udfff"}, {"a": "\ud83d\ude00"}, {"\ud800": 1},
    {"a": ["é", "\udc00"]}, {"a": {"b": "\ud800"}}, {"a": ("\ud800",)}, {"a": Text("\ud800")},
    {"a": "\ud800", "b": 1e-05}, {"a": "\ud800", "b": 2**70}, {Text("\ud800"): 1},
]  # fmt: skip


@pytest.mark.parametrize("value", TRICKY, ids=range(len(TRICKY)))
def test_tricky_values_encode_as_the_standard_encoder_does(value: Any) -> None:
    assert outcome(encode, value) == outcome(STANDARD, value)


@pytest.mark.parametrize("value", LONE_SURROGATES, ids=range(len(LONE_SURROGATES)))
def test_lone_surrogates_are_refused_not_escaped(value: Any) -> None:
    assert outcome(STANDARD, value)[0] == "ok"
    with pytest.raises(LoneSurrogateError) as e:
        encode(value)
    assert "\ud800" not in str(e.value)
    assert isinstance(e.value, ValueError)


def test_deep_nesting_encodes_as_the_standard_encoder_does() -> None:
    value: Any = "leaf"
    for _ in range(100):
        value = {"a": [value]}
    assert outcome(encode, value) == outcome(STANDARD, value)


SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text()
    | st.integers(min_value=-(2**65), max_value=2**65)
    | st.floats(min_value=-1e-3, max_value=1e-3)
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=4), inner, max_size=4)
        | st.tuples(inner)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=6), VALUES, max_size=6))
def test_any_value_encodes_as_the_standard_encoder_does(value: dict[str, Any]) -> None:
    assert outcome(encode, value) == outcome(STANDARD, value)


def holds_surrogate(value: Any) -> bool:
    """Return True when a string or key anywhere in `value` holds a surrogate code point."""
    text = json.dumps(value, ensure_ascii=False)
    return any(0xD800 <= ord(char) <= 0xDFFF for char in text)


# Hypothesis leaves surrogates out of its characters: they are drawn on their own.
SURROGATES = st.integers(min_value=0xD800, max_value=0xDFFF).map(chr)
ANY_TEXT = st.text(st.characters() | SURROGATES, max_size=4)
TEXT_VALUES = st.recursive(
    ANY_TEXT | st.integers() | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(ANY_TEXT, TEXT_VALUES, max_size=4))
def test_any_text_is_written_as_the_standard_encoder_does_or_refused_for_a_surrogate(
    value: dict[str, Any],
) -> None:
    if holds_surrogate(value):
        with pytest.raises(LoneSurrogateError):
            encode(value)
    else:
        assert encode(value) == STANDARD(value)
