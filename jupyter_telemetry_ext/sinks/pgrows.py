"""Rows of the PostgreSQL event table, made once per event in PostgreSQL's binary COPY format.

A row is the bytes of the event's tuple in the binary COPY stream of the events table, its
idempotency key included (see `row_key`). A waiting event then holds one bytes object (no dict
for the garbage collector), the writer joins them into its COPY without converting anything
(the ids table of a partitioned store takes a slice of each), and a spooled event is read back
from its JSON line, which holds the key as `__key__` (only there: never in a capsule).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from hashlib import sha256
from struct import Struct
from typing import Any

import orjson

from jupyter_telemetry_ext.core.errors import RowError
from jupyter_telemetry_ext.core.event_keys import KEY_BYTES, new_key

Row = bytes
COLUMNS = (
    "received", "event_time", "schema_id", "schema_version", "metadata_version",
    "username", "client_id", "data",
)  # fmt: skip  # the capsule's columns, as read back
# The fields of a row, in order: the key second, at a fixed place (`key_of` slices it).
TUPLE_COLUMNS = ("received", "key", *COLUMNS[1:])
SPOOLED_KEY = "__key__"  # a spooled line's key, in hex
ID_COLUMNS = ("key", "received")
# The binary COPY format: a signature, flags and header extension, tuples, then -1.
HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" * 2
TRAILER = b"\xff\xff"
_BLOCK = 512  # tuples joined into one write of a COPY
INVALID_DATETIME = "22007"  # the SQLSTATE PostgreSQL gives a timestamp it cannot read
OUT_OF_RANGE = "22003"  # and a number that does not fit its column
NOT_A_CAPSULE = "not an event capsule"

_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)  # PostgreSQL's timestamps count from it
_MICROSECOND = timedelta(microseconds=1)
_NULL = b"\xff\xff\xff\xff"
_INT = Struct(">i")
_FIELDS = len(TUPLE_COLUMNS).to_bytes(2, "big")
_KEY = b"\x00\x00\x00\x10"  # the size of a key field (16 bytes)
_ID_FIELDS = b"\x00\x02"
_STAMP = Struct(">iq")
_JSONB = b"\x01"  # the version byte that starts jsonb's binary format
# jsonb cannot hold U+0000 (SQLSTATE 22P05): the row keeps each as the six characters \u0000,
# written `\\u0000` in the JSON text (a `\u0000` after an even run of backslashes is U+0000).
_NUL_ESCAPE = b"\\u0000"
_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


class _Cache(dict[Any, bytes]):
    """Encoded fields that repeat from event to event (a schema, a user, a receive time)."""

    def __init__(self, encode: Any) -> None:
        super().__init__()
        self.encode = encode

    def __missing__(self, value: Any) -> bytes:
        if len(self) >= 1024:
            self.clear()
        encoded: bytes = self.encode(value)
        self[value] = encoded
        return encoded


def _text(value: str) -> bytes:
    data = value.encode()
    return _INT.pack(len(data)) + data


def _stamp(value: Any) -> bytes:
    """Return a timestamptz field of an RFC 3339 timestamp (or a datetime; naive is UTC)."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str):
        try:  # Python 3.10 reads no trailing Z
            when = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in "Zz" else value)
        except ValueError:
            raise RowError(INVALID_DATETIME) from None
    else:
        raise RowError(INVALID_DATETIME)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return _STAMP.pack(8, (when - _EPOCH) // _MICROSECOND)


def _int4(value: int) -> bytes:
    try:
        return b"\x00\x00\x00\x04" + value.to_bytes(4, "big", signed=True)
    except OverflowError:
        raise RowError(OUT_OF_RANGE) from None


def _received(value: Any) -> bytes:
    """Return a row up to its key: the count of fields, the receive time, the key's size."""
    return _FIELDS + _stamp(value) + _KEY


_RECEIVED, _TEXTS, _INT4S = _Cache(_received), _Cache(_text), _Cache(_int4)


def _head(schema: Any, version: Any, metadata: Any, user: Any) -> bytes:
    """Return the fields from schema_id to username of a capsule's values."""
    return b"".join((
        _TEXTS[str(schema)], _TEXTS[str(version)], _INT4S[int(metadata or 1)],
        _NULL if user is None else _TEXTS[str(user)],
    ))  # fmt: skip


class _Heads(dict[tuple[Any, Any, Any, Any], bytes]):
    """The fields from schema_id to username by (schema, version, metadata version, user): most
    events of a batch share them. Only strings (user None too) and an integer metadata version
    are kept, so that a value equal to a key gives the same fields (`1.0 == 1`, `int(1.0) == 1`)."""

    def __missing__(self, key: tuple[Any, Any, Any, Any]) -> bytes:
        head = _head(*key)
        schema, version, metadata, user = key
        if (type(schema) is str and type(version) is str and type(metadata) is int
                and (user is None or type(user) is str)):  # fmt: skip
            if len(self) >= 1024:
                self.clear()
            self[key] = head
        return head


_HEADS = _Heads()


def to_row(capsule: Mapping[str, Any], key: bytes | None = None) -> Row:
    """Return the row of a capsule, with its store `key` (see `row_key`); RowError (or
    KeyError, TypeError, ValueError) for none."""
    data = dict(capsule)  # the data: a copy without the capsule's fields, each taken out once
    pop = data.pop
    received, schema = pop("__timestamp__"), pop("__schema__")
    version, metadata = pop("__schema_version__", None), pop("__metadata_version__", None)
    user, client = pop("__user__", None), pop("__client_id__", None)
    event_time = pop("__event_time__", None)
    pop(SPOOLED_KEY, None)
    try:
        text = orjson.dumps(data)
    except TypeError:  # what orjson does not take (say non-string keys) the json module may
        text = json.dumps(data, separators=(",", ":")).encode()
    if _NUL_ESCAPE in text:
        text = _NUL.sub(rb"\1\\\\u0000", text)
    if key is None:
        key = row_key(capsule, None)
    start = _RECEIVED[received]
    event_field = _NULL if event_time is None else _stamp(event_time)
    try:
        head = _HEADS[schema, version, metadata, user]
    except TypeError:  # a value that is no dictionary key (say a list)
        head = _head(schema, version, metadata, user)
    if client is None:
        return b"".join((start, key, event_field, head, _NULL, _INT.pack(len(text) + 1), _JSONB,
                         text))  # fmt: skip
    client_text = str(client).encode()
    return b"".join((start, key, event_field, head, _INT.pack(len(client_text)), client_text,
                     _INT.pack(len(text) + 1), _JSONB, text))  # fmt: skip


def row_key(capsule: Mapping[str, Any], key: bytes | None) -> bytes:
    """Return the store key of an event: `key`, the one it was received with (see
    `event_keys`); else, for an event recorded by a program, the hash of its (user, client id)
    when it has a client id (`id_key`), or a new one (`event_keys.new_key`)."""
    if key is not None:
        return key
    user, client = capsule.get("__user__"), capsule.get("__client_id__")
    if client is None:
        return new_key()
    return id_key(b"" if user is None else str(user).encode(), str(client).encode())


def id_key(user: bytes, client: bytes) -> bytes:
    """Return the key of a (UTF-8 user, UTF-8 client id) of an event recorded by a program (and
    of every event before keys were made at reception): see `pgtable.KEY_SQL`."""
    return sha256(b"%s\x00%s" % (user, client)).digest()[:KEY_BYTES]


def keyed_line(line: str, key: bytes) -> str:
    """Return a capsule's JSON line with its store key added, as the spool keeps it."""
    head = f'{{"{SPOOLED_KEY}":"{key.hex()}"'
    return head + ("," + line[1:] if line[1:2] != "}" else "}")


def fields(tuple_: bytes) -> list[bytes | None]:
    """Return the fields of one tuple of a binary COPY stream (None for NULL)."""
    (count,) = Struct(">h").unpack_from(tuple_)
    values: list[bytes | None] = []
    at = 2
    for _ in range(count):
        (size,) = _INT.unpack_from(tuple_, at)
        at += 4
        values.append(None if size < 0 else tuple_[at : at + size])
        at += max(size, 0)
    return values


def received_of(row: Row) -> datetime:
    """Return a row's receive time."""
    return _time(row[6:14])


def key_of(row: Row) -> bytes | None:
    """Return the key of a row (None for none: rows made before every event had one)."""
    return row[18:34] if row[14:18] == _KEY else None


def id_tuple(row: Row) -> bytes | None:
    """Return a row's tuple in the ids table (key, received), None without a key."""
    return _ID_FIELDS + row[14:34] + row[2:14] if row[14:18] == _KEY else None


def _time(field: bytes) -> datetime:
    return _EPOCH + int.from_bytes(field, "big", signed=True) * _MICROSECOND


def row_line(row: Row) -> str:
    """Return the capsule of a row as one JSON line (how a waiting event is spooled)."""
    received, key, event_time, schema_id, version, metadata, user, client, data = fields(row)
    head: dict[str, Any] = {SPOOLED_KEY: key.hex()} if key is not None else {}
    head.update({
        "__timestamp__": _time(received or b"").isoformat(),
        "__schema__": (schema_id or b"").decode(),
        "__schema_version__": (version or b"").decode(),
        "__metadata_version__": int.from_bytes(metadata or b"", "big", signed=True),
    })  # fmt: skip
    if event_time is not None:
        head["__event_time__"] = _time(event_time).isoformat()
    for name, value in (("__user__", user), ("__client_id__", client)):
        if value is not None:
            head[name] = value.decode()
    line = orjson.dumps(head)
    body = (data or b"")[2:]  # the data's members, after the version byte and "{"
    return (line[:-1] + b"," + body if body != b"}" else line).decode()


def line_row(line: str) -> Row:
    """Return the row of a spooled line; RowError when it is damaged or no capsule."""
    try:
        capsule = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise RowError(NOT_A_CAPSULE) from None
    if not isinstance(capsule, dict):
        raise RowError(NOT_A_CAPSULE)
    key = capsule.pop(SPOOLED_KEY, None)  # none in a line spooled by an earlier version
    if key is None:
        return to_row(capsule)
    try:
        raw = bytes.fromhex(key)
    except (TypeError, ValueError):
        raise RowError(NOT_A_CAPSULE) from None
    if len(raw) != KEY_BYTES:
        raise RowError(NOT_A_CAPSULE)
    return to_row(capsule, raw)


def stream(tuples: Iterable[bytes]) -> Iterable[bytes]:
    """Yield a binary COPY stream of tuples, in blocks (the caller sends each as it comes)."""
    if isinstance(tuples, list):  # joined a block at a time, with no step per tuple
        yield from _list_stream(tuples)
        return
    block = [HEADER]
    for tuple_ in tuples:
        block.append(tuple_)
        if len(block) >= _BLOCK:
            yield b"".join(block)
            block = []
    block.append(TRAILER)
    yield b"".join(block)


def _list_stream(tuples: list[bytes]) -> Iterator[bytes]:
    end = len(tuples)
    for at in range(0, max(end, 1), _BLOCK):
        block = tuples[at : at + _BLOCK]
        if at == 0:
            block.insert(0, HEADER)
        if at + _BLOCK >= end:
            block.append(TRAILER)
        yield b"".join(block)
