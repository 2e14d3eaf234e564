"""Sampling: which share of a schema's events is kept, decided once per event.

An event with a client id is kept when `share(schema_id, id) < rate`, so a retry gets the same
decision and the JupyterLab client (src/sampling.ts, the same function) can skip what the server
would drop. Without an id the decision is random. The share is public: a client that picks its
ids can have every event kept. Sampling controls volume; it is not a security control.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Mapping
from typing import Any

from .errors import SamplingError

SAMPLING_FORM = "{schema_id: rate} with 0 < rate <= 1, e.g. {'my.events/click': 0.25}"
_SPAN = 1 << 32


def parse_sampling(value: Any) -> dict[str, float]:
    """Return the rates below 1 by schema id; raise SamplingError saying the expected form."""
    if not isinstance(value, Mapping):
        msg = f"sampling: must be a dict {SAMPLING_FORM} (got {type(value).__name__})"
        raise SamplingError(msg)
    rates: dict[str, float] = {}
    for schema_id, rate in value.items():
        if not isinstance(schema_id, str) or not schema_id:
            msg = f"sampling: each key must be a schema id, a non-empty string: {SAMPLING_FORM}"
            raise SamplingError(msg)
        if not _is_rate(rate):
            msg = f"sampling[{schema_id!r}]: must be a number, 0 < rate <= 1 (got {rate!r})"
            raise SamplingError(msg)
        if rate < 1:
            rates[schema_id] = float(rate)
    return rates


def _is_rate(rate: Any) -> bool:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        return False
    return math.isfinite(rate) and 0 < rate <= 1


def share(schema_id: str, client_id: str) -> float:
    """Return the event's place in [0, 1): CRC-32 of UTF-8 `schema_id + "\\0" + client_id`."""
    text = f"{schema_id}\x00{client_id}".encode("utf-8", "surrogatepass")
    return zlib.crc32(text) / _SPAN


def keeps(rate: float, schema_id: str, client_id: Any) -> bool:
    """Return True when an event of a schema sampled at `rate` is kept."""
    if isinstance(client_id, str):
        return share(schema_id, client_id) < rate
    return random.random() < rate  # noqa: S311 - a volume control, not a secret
