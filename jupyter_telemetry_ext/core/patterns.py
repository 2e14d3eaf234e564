"""Matching property names against `patternProperties` with the validator's own regex engine.

The validator (jsonschema-rs) decides which patterns a key matches; asking it again, rather than
Python's `re` (whose syntax and semantics differ), gives the same answer and cannot backtrack
without bound.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jsonschema_rs


@lru_cache(maxsize=1024)
def _matcher(pattern: str) -> Any:
    return jsonschema_rs.Draft202012Validator({"patternProperties": {pattern: False}})


def pattern_matches(pattern: str, key: str) -> bool:
    """Return True when `key` matches the regular expression `pattern` (a search, as JSON
    Schema's `patternProperties` does)."""
    return not _matcher(pattern).is_valid({key: None})
