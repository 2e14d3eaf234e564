"""The code of a request as recorded: cut to fit an event, with the whole code's hash and length."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

# The most bytes of JSON that the code takes in an event, so that an audit event always fits the
# 32 KiB a collector accepts (`max_event_size`) with room for the other fields.
CODE_LIMIT = 16 << 10
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Code:
    """The text recorded, the whole code's SHA-256 and length, and whether the text was cut."""

    text: str
    sha256: str
    length: int
    truncated: bool


def code_of(source: str, limit: int = CODE_LIMIT) -> Code:
    """Return `source` as recorded: cut to `limit` bytes of JSON, hashed and measured whole."""
    digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
    clean = encodable(source)
    text = cut(clean, limit)
    return Code(text, digest, len(source), len(text) < len(clean))


def encodable(text: str) -> str:
    """Return `text` with lone surrogates replaced, so that every JSON encoder writes it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def cut(text: str, limit: int) -> str:
    """Return the longest start of `text` whose JSON encoding takes at most `limit` bytes."""
    if len(text) * 12 + 2 <= limit:  # a character never takes more than 12 bytes (\uXXXX\uXXXX)
        return text
    if json_size(text) <= limit:
        return text
    low, high = 0, min(len(text), limit)  # each character takes at least one byte
    while low < high:
        middle = (low + high + 1) // 2
        if json_size(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def json_size(text: str) -> int:
    """Return how many bytes `text` takes as a JSON string written as ASCII (as the EventLog
    writes it), escapes and quotes included: the most it takes in any JSON."""
    return len(json.dumps(text))
