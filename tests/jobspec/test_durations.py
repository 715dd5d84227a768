from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawexec.jobspec.durations import format_duration, ns_to_seconds, parse_duration_ns, seconds_to_ns


@pytest.mark.parametrize(("text", "ns"), [
    ("0", 0), ("5s", 5_000_000_000), ("1m30s", 90_000_000_000), ("1.5h", 5_400_000_000_000),
    ("300ms", 300_000_000), ("10us", 10_000), ("10µs", 10_000), ("7ns", 7), ("-5s", -5_000_000_000),
    ("2h45m", 9_900_000_000_000), (".5s", 500_000_000), ("1h0m0s", 3_600_000_000_000),
])
def test_parse_like_go(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize(("text", "message"), [
    ("", 'time: invalid duration ""'),
    ("5", 'time: missing unit in duration "5"'),
    ("5x", 'time: unknown unit "x" in duration "5x"'),
    ("1d", 'time: unknown unit "d" in duration "1d"'),
    ("s", 'time: invalid duration "s"'),
    ("1..5s", 'time: missing unit in duration "1..5s"'),
    ("9999999999h", 'time: invalid duration "9999999999h"'),
])
def test_bad_durations_have_gos_messages(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.").replace("(", r"\(") + "$"):
        parse_duration_ns(text)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (5, "5s"), (90, "1m30s"), (3600, "1h0m0s"), (0.25, "250ms"), (1.5, "1.5s"), (86400, "24h0m0s"),
])
def test_format_like_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**15))
def test_ns_seconds_round_trip_is_exact(ns: int) -> None:
    assert seconds_to_ns(ns_to_seconds(ns)) == ns
    assert parse_duration_ns(format_duration(ns_to_seconds(ns))) == ns
