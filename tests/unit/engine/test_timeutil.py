from datetime import datetime, timezone

import pytest
from hypothesis import given, strategies as st

from dockyard.engine.timeutil import (SECOND, ZERO_TIME, format_rfc3339, human_duration,
                                      parse_duration, parse_rfc3339, parse_timestamp, parse_unix,
                                      to_ns)
from dockyard.errors import InvalidArgument

T0 = 1_700_000_000 * SECOND  # 2023-11-14T22:13:20Z


def test_format():
    assert format_rfc3339(0) == ZERO_TIME
    assert format_rfc3339(None) == ZERO_TIME
    assert format_rfc3339(T0) == "2023-11-14T22:13:20Z"
    assert format_rfc3339(T0 + 123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert format_rfc3339(T0 + 500_000_000) == "2023-11-14T22:13:20.5Z"
    assert format_rfc3339(T0 + 1) == "2023-11-14T22:13:20.000000001Z"
    assert format_rfc3339(datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)) == \
        "2023-11-14T22:13:20Z"
    assert format_rfc3339(1_700_000_000.25) == "2023-11-14T22:13:20.25Z"
    assert format_rfc3339(-SECOND) == "1969-12-31T23:59:59Z"


def test_parse_rfc3339():
    assert parse_rfc3339(ZERO_TIME) == 0
    assert parse_rfc3339("2023-11-14T22:13:20Z") == T0
    assert parse_rfc3339("2023-11-14T23:13:20.5+01:00") == T0 + SECOND // 2
    assert parse_rfc3339("2023-11-14T22:13:20.1234567891234Z") == T0 + 123_456_789
    for bad in ("2023-11-14", "2023-13-14T22:13:20Z", "2023-11-14T22:13:20", "yesterday",
                "2023-11-14T22:13:20+25:00", "2023-11-14T22:13:20Z\n"):
        with pytest.raises(InvalidArgument):
            parse_rfc3339(bad)


@given(st.integers(min_value=-(10**18), max_value=253402300799 * SECOND))
def test_rfc3339_round_trip(ns):
    if ns == parse_rfc3339(ZERO_TIME) or ns == 0:
        return
    assert parse_rfc3339(format_rfc3339(ns)) == ns


@pytest.mark.parametrize("text, ns", [
    ("0", 0), ("1s", SECOND), ("1.5s", 3 * SECOND // 2), ("10m", 600 * SECOND),
    ("1h30m", 5400 * SECOND), ("-10m", -600 * SECOND), ("+5s", 5 * SECOND), ("300ms", 300_000_000),
    ("2us", 2000), ("2µs", 2000), ("7ns", 7), (".5s", SECOND // 2), ("1.s", SECOND),
])
def test_parse_duration(text, ns):
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "-", "1", "s", ".s", "1d", "1h 2m", "1.2.3s", "9999999999h"])
def test_bad_durations(text):
    with pytest.raises(InvalidArgument):
        parse_duration(text)


def test_parse_timestamp_forms():
    assert parse_timestamp("10m", now=T0) == T0 - 600 * SECOND
    assert parse_timestamp("-1h", now=T0) == T0 + 3600 * SECOND
    assert parse_timestamp("1700000000", now=T0) == T0
    assert parse_timestamp("1700000000.5") == T0 + SECOND // 2
    assert parse_timestamp("1700000000.000000001") == T0 + 1
    assert parse_timestamp("0") == 0
    assert parse_timestamp("2023-11-14T22:13:20Z") == T0
    assert parse_timestamp("2023-11-14T22:13:20.25Z") == T0 + SECOND // 4
    assert parse_timestamp("2023-11-14T23:13:20+01:00") == T0
    assert parse_timestamp("2023-11-14Z") == T0 - (22 * 3600 + 13 * 60 + 20) * SECOND
    assert parse_timestamp("2023-11-14T22Z") == T0 - (13 * 60 + 20) * SECOND
    assert parse_timestamp("2023-11-14T22:13Z") == T0 - 20 * SECOND
    # Without a zone: the daemon's local time.
    local = datetime(2023, 11, 14, 22, 13, 20).astimezone()
    assert parse_timestamp("2023-11-14T22:13:20", now=to_ns(local)) == to_ns(local)


@pytest.mark.parametrize("text", ["", "yesterday", "2023-13-01", "2023-11-14T25:00:00Z", "-5",
                                  "1700000000.", "12:30", "1e9"])
def test_bad_timestamps(text):
    with pytest.raises(InvalidArgument):
        parse_timestamp(text, now=T0)


@given(st.text(max_size=40))
def test_parse_timestamp_never_raises_but_invalid_argument(text):
    try:
        parse_timestamp(text, now=T0)
    except InvalidArgument:
        pass


def test_parse_unix():
    assert parse_unix("1700000000") == T0
    assert parse_unix("-1.5") == -SECOND + SECOND // 2  # moby adds the fraction as given
    for bad in ("abc", "99999999999999999999"):
        with pytest.raises(InvalidArgument):
            parse_unix(bad)


@pytest.mark.parametrize("seconds, text", [
    (0, "Less than a second"), (0.999, "Less than a second"), (-5, "Less than a second"),
    (1, "1 second"), (2, "2 seconds"), (59, "59 seconds"), (60, "About a minute"),
    (119, "About a minute"), (120, "2 minutes"), (59 * 60 + 59, "59 minutes"),
    (3600, "About an hour"), (5399, "About an hour"), (5400, "2 hours"), (47 * 3600, "47 hours"),
    (48 * 3600, "2 days"), (13 * 86400, "13 days"), (14 * 86400, "2 weeks"),
    (59 * 86400, "8 weeks"), (60 * 86400, "2 months"), (729 * 86400, "24 months"),
    (730 * 86400, "2 years"),
])
def test_human_duration(seconds, text):
    assert human_duration(int(seconds * SECOND)) == text
