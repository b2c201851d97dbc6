"""Docker's time formats: RFC 3339 with nanoseconds for every timestamp the Engine API returns
(`0001-01-01T00:00:00Z`, Go's zero time, for "never"), the `since`/`until` parameters of events,
logs and prune filters (unix seconds with an optional fraction, RFC 3339 and date forms, or a Go
duration counted back from now — moby `api/types/time/timestamp.go` GetTimestamp), and go-units'
HumanDuration ("Up 3 seconds", "Exited (0) About a minute ago").

Times travel as integer nanoseconds since the Unix epoch (Python's datetime stops at
microseconds); 0 stands for Go's zero time.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

from dockyard import units
from dockyard.errors import InvalidArgument

ZERO_TIME = "0001-01-01T00:00:00Z"
SECOND = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_INT64_MAX = 2**63 - 1



def now_ns() -> int:
    return time.time_ns()


def to_ns(value: int | float | datetime | str | None) -> int:
    """Nanoseconds since the epoch from an int (nanoseconds), a float (seconds, as time.time()
    gives; kept to the microsecond), a datetime (naive means UTC), an RFC 3339 string, or None/"" (the zero time, 0)."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise TypeError("a time cannot be a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, float):  # a float holds microseconds at best near today
        return int(round(value * 1_000_000)) * 1000
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        delta = value - _EPOCH
        return (delta.days * 86400 + delta.seconds) * SECOND + delta.microseconds * 1000
    if isinstance(value, str):
        return parse_rfc3339(value)
    raise TypeError(f"not a time: {value!r}")


def format_rfc3339(value: int | float | datetime | str | None) -> str:
    """Go's RFC3339Nano in UTC (`2024-05-01T10:00:00.123456789Z`, trailing fraction zeros
    dropped), the form of Created/StartedAt/FinishedAt; the zero time for 0/None."""
    ns = to_ns(value)
    if ns == 0:
        return ZERO_TIME
    seconds, frac = divmod(ns, SECOND)
    try:
        dt = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        raise InvalidArgument(f"time out of range: {ns}ns") from None
    text = (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}"
            f"T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})")


def parse_rfc3339(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (any fraction length, any offset);
    Go's zero time gives 0."""
    m = _RFC3339.fullmatch(text)
    if not m:
        raise InvalidArgument(f"invalid RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    offset = timezone.utc if zone in ("Z", "z") else _offset(zone)
    return _compose(text, year, month, day, hour, minute, second, frac, offset)


def _offset(zone: str) -> timezone:
    sign = -1 if zone[0] == "-" else 1
    hours, minutes = int(zone[1:3]), int(zone[4:6])
    if hours > 23 or minutes > 59:
        raise InvalidArgument(f"invalid time zone offset: {zone!r}")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _compose(text, year, month, day, hour, minute, second, frac, tz) -> int:
    try:
        dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                      tzinfo=tz)
    except ValueError as e:
        raise InvalidArgument(f"invalid time {text!r}: {e}") from None
    ns = to_ns(dt)
    if frac:
        ns += int(frac[:9].ljust(9, "0"))
    return 0 if ns == _ZERO_NS else ns


_ZERO_NS = to_ns(datetime(1, 1, 1, tzinfo=timezone.utc))


# Go's time.ParseDuration: a sequence of decimal numbers with units, optional sign; "0" alone.
_DURATION_UNITS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
                   "s": SECOND, "m": 60 * SECOND, "h": 3600 * SECOND}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?([a-z\u00b5\u03bc]+)")


def parse_duration(text: str) -> int:
    """Nanoseconds of a Go duration string ("1h30m", "1.5s", "-10m", "300ms", "0")."""
    s = text
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise InvalidArgument(f"invalid duration {text!r}")
    total = 0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m or not (m.group(1) or m.group(2)) or m.group(3) not in _DURATION_UNITS:
            raise InvalidArgument(f"invalid duration {text!r}")
        whole, frac, unit = m.group(1) or "0", m.group(2) or "", _DURATION_UNITS[m.group(3)]
        total += int(whole) * unit
        if frac:
            total += int(frac) * unit // 10 ** len(frac)
        if total > _INT64_MAX:
            raise InvalidArgument(f"invalid duration {text!r}: out of range")
        pos = m.end()
    return sign * total


_UNIX = re.compile(r"([+-]?\d+)(?:\.(\d+))?")


def parse_unix(text: str) -> int:
    """Nanoseconds of Docker's wire form of since/until: unix seconds with an optional fraction
    ("1700000000", "1700000000.123456789")."""
    m = _UNIX.fullmatch(text)
    if not m:
        raise InvalidArgument(f"invalid timestamp {text!r}")
    seconds = int(m.group(1))
    if abs(seconds) > _INT64_MAX // SECOND:
        raise InvalidArgument(f"invalid timestamp {text!r}: out of range")
    # Like moby's parseTimestamp, the fraction is added even to negative seconds.
    return seconds * SECOND + int((m.group(2) or "")[:9].ljust(9, "0"))


# The date and RFC 3339-like forms GetTimestamp accepts, each with an optional zone.
_DATE_FORMS = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[Tt](\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?"
    r"([Zz]|[+-]\d{2}:\d{2})?")


def parse_timestamp(value: str, now: int | None = None) -> int:
    """Nanoseconds since the epoch of a since/until value as dockerd accepts it: a Go duration
    ("10m", "1h30m": that long before `now`), unix seconds ("1700000000.5"), an RFC 3339 time,
    or its shorter forms "2006-01-02", "2006-01-02T15", "2006-01-02T15:04",
    "2006-01-02T15:04:05[.999999999]" — with a zone, or in the daemon's local zone without."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"invalid timestamp {value!r}")
    if value != "0":
        try:
            duration = parse_duration(value)
        except InvalidArgument:
            pass
        else:
            return (now_ns() if now is None else now) - duration
    m = _DATE_FORMS.fullmatch(value)
    if m:
        year, month, day, hour, minute, second, frac, zone = m.groups()
        if zone is None:
            tz = _local_zone(now)
        elif zone in ("Z", "z"):
            tz = timezone.utc
        else:
            tz = _offset(zone)
        return _compose(value, year, month, day, hour or "0", minute or "0", second or "0",
                        frac, tz)
    if "-" in value:  # meant as a date, as moby reads it
        raise InvalidArgument(f"invalid timestamp {value!r}: not an RFC 3339 time")
    if _UNIX.fullmatch(value):
        return parse_unix(value)
    raise InvalidArgument(f"failed to parse value as time or duration: {value!r}")


def _local_zone(now: int | None) -> timezone:
    # Go parses zone-less forms in the fixed zone of the reference time (the daemon's now).
    at = (now_ns() if now is None else now) / SECOND
    offset = datetime.fromtimestamp(at).astimezone().utcoffset() or timedelta(0)
    return timezone(offset)


def human_duration(ns: int) -> str:
    """go-units HumanDuration of `ns` nanoseconds ("Up 3 seconds", "2 minutes ago")."""
    return units.human_duration(ns / SECOND)
