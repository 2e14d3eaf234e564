"""Rows of the PostgreSQL event table: the bytes `to_row` makes, checked against a plain
reference of the row layout (no database needed)."""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from jupyter_telemetry_ext.core.errors import RowError
from jupyter_telemetry_ext.sinks import pgrows
from jupyter_telemetry_ext.sinks.pgrows import (
    HEADER,
    INVALID_DATETIME,
    OUT_OF_RANGE,
    TRAILER,
    TUPLE_COLUMNS,
    fields,
    stream,
    to_row,
)

KEY = bytes(range(16))
FIXED_NEW_KEY = b"\x01" * 16
BASE = {
    "__timestamp__": "2026-12-07T17:00:00.123456Z",
    "__schema__": "https://events.example.org/bench/notebook-cell",
    "__schema_version__": "1",
    "__metadata_version__": 2,
}
EVENT = {
    "action": "execute",
    "user": "alice@example.org",
    "cell": {"index": 12, "cell_type": "code", "execution_count": None, "duration_ms": 183.5},
    "tags": ["parameters", "slow"],
}
CAPSULE_FIELDS = (
    "__timestamp__", "__event_time__", "__schema__", "__schema_version__",
    "__metadata_version__", "__user__", "__client_id__", "__key__",
)  # fmt: skip
_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
USER, DATA = TUPLE_COLUMNS.index("username"), TUPLE_COLUMNS.index("data")


def _reference_stamp(value: Any) -> bytes:
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in "Zz" else value)
        except ValueError:
            raise RowError(INVALID_DATETIME) from None
    else:
        raise RowError(INVALID_DATETIME)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return struct.pack(">iq", 8, (when - _EPOCH) // timedelta(microseconds=1))


def _reference_text(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">i", len(data)) + data


def _reference_int4(value: int) -> bytes:
    try:
        return b"\x00\x00\x00\x04" + value.to_bytes(4, "big", signed=True)
    except OverflowError:
        raise RowError(OUT_OF_RANGE) from None


def reference_row(capsule: Mapping[str, Any], key: bytes | None = None) -> bytes:
    """The row of a capsule as the table's layout defines it: the data is the capsule without
    its fields, in its order; each field encoded on its own, without caches."""
    data = dict(capsule)
    for field in CAPSULE_FIELDS:
        data.pop(field, None)
    try:
        text = orjson.dumps(data)
    except TypeError:
        text = json.dumps(data, separators=(",", ":")).encode()
    get = capsule.get
    user, client, event_time = get("__user__"), get("__client_id__"), get("__event_time__")
    null = b"\xff\xff\xff\xff"
    user_field = null if user is None else _reference_text(str(user))
    client_field = null if client is None else _reference_text(str(client))
    if key is None:
        key = pgrows.row_key(capsule, None)
    return b"".join((
        b"\x00\x09", _reference_stamp(capsule["__timestamp__"]), b"\x00\x00\x00\x10", key,
        null if event_time is None else _reference_stamp(event_time),
        _reference_text(str(capsule["__schema__"])),
        _reference_text(str(get("__schema_version__"))),
        _reference_int4(int(get("__metadata_version__") or 1)), user_field, client_field,
        struct.pack(">i", len(text) + 1), b"\x01", text,
    ))  # fmt: skip


def outcome(make: Any, capsule: Mapping[str, Any], key: bytes | None) -> Any:
    """Return the row, or what was raised (its type and SQLSTATE)."""
    try:
        return make(capsule, key)
    except (RowError, KeyError, TypeError, ValueError) as e:
        return type(e).__name__, getattr(e, "sqlstate", None)


CAPSULES: list[dict[Any, Any]] = [
    {**BASE, **EVENT},
    {**BASE, "__client_id__": "c-1", "__user__": "alice", **EVENT},
    {**BASE, "__event_time__": "2026-12-07T16:59:59.5Z", "__client_id__": "c-2", **EVENT},
    {**BASE, "__user__": None, "__client_id__": None, **EVENT},
    dict(BASE),  # an empty event
    {"action": "first", **BASE, "zz": 1, "__user__": "late"},  # event keys before and after
    {"aa": 0, "__schema__": "s", "b": 1, "__timestamp__": "2026-01-01T00:00:00Z", "c": 2},
    {**BASE, "user": None, "cell": None},  # redacted to null
    {**BASE, "__user__": "ñandú", "é": "ü ✓ \u2028", "emoji": "\U0001f600"},  # not ASCII
    {**BASE, "__key__": "00" * 16, "__foo__": "kept: not a capsule field", **EVENT},
    {**BASE, "__schema_version__": 3, "__metadata_version__": True, "__user__": 7},
    {**BASE, "__metadata_version__": 1.0, "__user__": 1.0, "__client_id__": 12},
    {**BASE, "__metadata_version__": 1, "__user__": "1"},
    {**BASE, "__metadata_version__": None},
    {**BASE, "__metadata_version__": 0},
    {**BASE, "__metadata_version__": "2"},
    {**BASE, "__user__": ["a", "list"], "nested": {"a": [1, {"b": None}]}},
    {**BASE, "__timestamp__": datetime(2026, 1, 1, 12, 30)},  # noqa: DTZ001 (naive: UTC)
    {**BASE, "__timestamp__": datetime(2026, 1, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))},
    {**BASE, 1: "a key orjson refuses"},
    {**BASE, "big": 2**70},
    {k: v for k, v in BASE.items() if k != "__schema_version__"},
    # Refused: each as the reference refuses it.
    {**BASE, "__metadata_version__": 2**40},
    {**BASE, "__timestamp__": "not a time"},
    {**BASE, "__event_time__": 1700000000},
    {**BASE, "__metadata_version__": "two"},
    {**BASE, "__metadata_version__": [2]},
    {k: v for k, v in BASE.items() if k != "__timestamp__"},
    {k: v for k, v in BASE.items() if k != "__schema__"},
    {**BASE, "set": {1, 2}},
]


def shuffled_capsules(count: int) -> list[dict[str, Any]]:
    """Capsules with the capsule's fields and the event's keys in random orders and subsets."""
    rng = random.Random(20261207)  # noqa: S311 (a fixed seed: the same capsules each run)
    optional = {
        "__user__": ["alice", "bob", None, "ü"],
        "__client_id__": ["c-1", "c-2", None],
        "__event_time__": ["2026-12-07T16:00:00Z", None],
        "__key__": ["ab" * 16],
    }
    out = []
    for _ in range(count):
        items = list(BASE.items())
        items += [(k, rng.choice(v)) for k, v in optional.items() if rng.random() < 0.6]
        items += [(k, v) for k, v in EVENT.items() if rng.random() < 0.7]
        rng.shuffle(items)
        out.append(dict(items))
    return out


@pytest.fixture(autouse=True)
def _fixed_new_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows of events without a key and a client id get this key, so that they compare."""
    monkeypatch.setattr(pgrows, "new_key", lambda: FIXED_NEW_KEY)


@pytest.mark.parametrize("capsule", CAPSULES)
@pytest.mark.parametrize("key", [KEY, None], ids=["key", "no-key"])
def test_a_row_is_the_bytes_of_the_table_layout(capsule: dict[str, Any], key: bytes | None) -> None:
    """Metadata first or last, redacted, empty or not ASCII: the row holds each field as the
    layout says, and the capsule without its fields, in its order, as the data; a capsule no
    row can be made of is refused as the layout refuses it. Twice, once from the caches."""
    expected = outcome(reference_row, capsule, key)
    assert outcome(to_row, capsule, key) == expected
    assert outcome(to_row, capsule, key) == expected


def test_rows_of_shuffled_capsules_one_after_the_other() -> None:
    """Capsules that share fields or differ in one, one after the other (caches warm)."""
    for capsule in shuffled_capsules(400) + CAPSULES + CAPSULES[::-1]:
        for key in (KEY, None):
            assert outcome(to_row, capsule, key) == outcome(reference_row, capsule, key)


def test_values_equal_across_types_are_not_mixed_up() -> None:
    """`1 == 1.0 == True`, yet a user 1.0 is stored as "1.0": no cached field stands in for
    another value that compares equal."""
    for user in ("1", 1, 1.0, True, "True", None, "1"):
        for metadata in (1, True, 1.0, "1", 2, 2.0):
            capsule = {**BASE, "__metadata_version__": metadata, "__user__": user}
            assert to_row(capsule, KEY) == reference_row(capsule, KEY)
            stored = fields(to_row(capsule, KEY))[USER]
            assert stored == (None if user is None else str(user).encode())


def test_the_data_of_a_row_is_the_event() -> None:
    """Read back field by field: the data is the event's own JSON, without capsule fields."""
    capsule = {**BASE, "__user__": "ü", "__client_id__": "c-9", "__key__": "x", **EVENT}
    values = fields(to_row(capsule, KEY))
    assert values[1] == KEY
    assert values[USER : USER + 2] == ["ü".encode(), b"c-9"]
    data = values[DATA] or b""
    assert data[:1] == b"\x01"
    assert json.loads(data[1:]) == EVENT
    assert list(json.loads(data[1:])) == list(EVENT)


@pytest.mark.parametrize("count", [0, 1, 511, 512, 513, 1024, 1500])
def test_a_list_streams_as_the_same_bytes(count: int) -> None:
    """A list of tuples is joined a block at a time: the same stream as one made tuple by
    tuple."""
    tuples = [to_row({**BASE, "n": n}, KEY) for n in range(count)]
    whole = b"".join(stream(tuples))
    assert whole == b"".join(stream(iter(tuples)))
    assert whole == HEADER + b"".join(tuples) + TRAILER
