"""RFC 3339 timestamps: formatting the capsule's, parsing those browsers send (`toISOString()`)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from .errors import TimestampError

# RFC 3339 date-time: any number of fractional digits, `Z` or an offset. A trailing `Z` after
# an offset is tolerated because jupyter_server's /api/events documents that form.
_RFC3339 = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[Tt ]"
    r"(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})"
    r"(?:\.(?P<fraction>\d+))?"
    r"(?:(?P<utc>[Zz])|(?P<sign>[+-])(?P<hours>\d{2}):(?P<minutes>\d{2})[Zz]?)"
)
EXAMPLE = "2024-05-01T12:30:00.000Z"
# The current time in nanoseconds since the epoch, as `time.time_ns` returns it.
Clock = Callable[[], int]


class Timestamps:
    """Formats RFC 3339 UTC timestamps ending in `Z`; the current time comes from `clock`.

    Each keeps a one-entry cache: the text of the current second (events share it), and that of
    the last instant formatted (a batch's events share a receive time).
    """

    def __init__(self, clock: Clock = time.time_ns) -> None:
        """Read the current time from `clock` (nanoseconds since the epoch)."""
        self.clock = clock
        self._second: tuple[int, str] = (-1, "")
        self._last: tuple[datetime | None, str] = (None, "")

    def now(self) -> str:
        """Return the current time, to the microsecond."""
        seconds, fraction = divmod(self.clock() // 1000, 1_000_000)
        cached = self._second
        if cached[0] != seconds:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            cached = self._second = (seconds, text)
        return f"{cached[1]}.{fraction:06d}Z"

    def format(self, when: datetime | None = None) -> str:
        """Return `when` (None: now); a naive datetime is taken as UTC."""
        if when is None:
            return self.now()
        cached = self._last
        if cached[0] is not None and when == cached[0]:  # equal instants: the same UTC text
            return cached[1]
        text = _format(when)
        self._last = (when, text)
        return text


def _format(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    elif when.tzinfo is not timezone.utc:
        when = when.astimezone(timezone.utc)
    return when.isoformat(timespec="microseconds")[:-6] + "Z"


_CLOCK_TIME = Timestamps()


def format_timestamp(when: datetime | None = None) -> str:
    """Return an RFC 3339 UTC timestamp ending in `Z`; a naive datetime is taken as UTC."""
    return _CLOCK_TIME.format(when)


def parse_timestamp(text: str) -> datetime:
    """Return the UTC datetime an RFC 3339 timestamp stands for, or raise TimestampError."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        msg = f"must be an RFC 3339 date-time with `Z` or a UTC offset, e.g. {EXAMPLE}"
        raise TimestampError(msg)
    try:
        return _build(match).astimezone(timezone.utc)
    except (ValueError, OverflowError):  # Python's message may quote a part of the value
        msg = (
            "is not a valid date-time: a part is out of range (the year, the month, the day "
            "of that month, the hour, the minute, or an offset of 24 h or more)"
        )
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
