"""Parsing the RFC 3339 timestamps that browsers send (`new Date().toISOString()` and kin)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

# RFC 3339 date-time: any number of fractional digits, `Z` or an offset. A trailing `Z` after
# an offset is tolerated because jupyter_server's /api/events documents that form.
_RFC3339 = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[Tt ]"
    r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})"
    r"(?:\.(?P<fraction>\d+))?"
    r"(?:(?P<utc>[Zz])|(?P<sign>[+-])(?P<hours>\d{2}):(?P<minutes>\d{2})[Zz]?)"
)
EXAMPLE = "2024-05-01T12:30:00.000Z"


class TimestampError(ValueError):
    """A timestamp is not an RFC 3339 date-time with a UTC offset."""


def parse_timestamp(text: str) -> datetime:
    """Return the UTC datetime an RFC 3339 timestamp stands for, or raise TimestampError."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        msg = f"must be an RFC 3339 date-time with `Z` or a UTC offset, e.g. {EXAMPLE}"
        raise TimestampError(msg)
    try:
        return _build(match).astimezone(timezone.utc)
    except (ValueError, OverflowError) as e:
        msg = f"is not a valid date-time: {e}"
        raise TimestampError(msg) from None


def _build(match: re.Match[str]) -> datetime:
    second = min(int(match["second"]), 59)  # a leap second (:60) is recorded as :59
    fraction = (match["fraction"] or "0")[:6].ljust(6, "0")
    year, month, day = int(match["year"]), int(match["month"]), int(match["day"])
    hour, minute = int(match["hour"]), int(match["minute"])
    return datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=_zone(match))


def _zone(match: re.Match[str]) -> timezone:
    if match["utc"]:
        return timezone.utc
    offset = timedelta(hours=int(match["hours"]), minutes=int(match["minutes"]))
    return timezone(-offset if match["sign"] == "-" else offset)


def corrected_event_time(received_at: datetime, sent_at: datetime, timestamp: datetime) -> datetime:
    """Return the client's event time by the server's clock: received_at - (sent_at - timestamp)."""
    return received_at - (sent_at - timestamp)
