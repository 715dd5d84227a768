"""Durations the way Nomad (Go's ``time.ParseDuration``) writes them.

The job model keeps every duration as **seconds (float)**. The API JSON carries integer
nanoseconds; :func:`seconds_to_ns` / :func:`ns_to_seconds` convert without drift (every value
is parsed to whole nanoseconds first, so ``ns → s → ns`` is exact for any sane duration).
"""

from __future__ import annotations

import re

__all__ = ["format_duration", "ns_to_seconds", "parse_duration_ns", "seconds_to_ns"]

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]*)")
_MAX_NS = (1 << 63) - 1

HINT = 'write a number and a unit: ns, us, ms, s, m or h, e.g. "30s", "1m30s", "1h"'


#: Durations already parsed (a job file repeats the same few: "10s", "5m"...); bounded in size.
_PARSED: dict[str, int] = {}
_PARSED_MAX = 1024


def parse_duration_ns(text: str) -> int:
    """Parse a Go duration string (``"1m30s"``, ``"1.5h"``, ``"-5s"``, ``"0"``) to nanoseconds.

    Raises ``ValueError`` with Go's message (``time: invalid duration "x"``) when malformed.
    """
    if type(text) is not str:
        return _parse_duration_ns(text)
    ns = _PARSED.get(text)
    if ns is None:
        ns = _parse_duration_ns(text)
        if len(_PARSED) < _PARSED_MAX:
            _PARSED[text] = ns
    return ns


def _parse_duration_ns(text: str) -> int:
    orig = text
    if not isinstance(text, str):
        raise ValueError(f"time: invalid duration {orig!r}")
    neg = False
    if text[:1] in ("-", "+"):
        neg = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0
    if text == "":
        raise ValueError(f'time: invalid duration "{orig}"')
    total = 0
    pos = 0
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f'time: invalid duration "{orig}"')
        num, unit = m.group(1), m.group(2)
        if num in ("", "."):
            raise ValueError(f'time: invalid duration "{orig}"')
        if unit == "":
            raise ValueError(f'time: missing unit in duration "{orig}"')
        scale = _UNITS.get(unit)
        if scale is None:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{orig}"')
        whole, _, frac = num.partition(".")
        value = int(whole or "0") * scale
        if frac:
            value += int(frac) * scale // (10 ** len(frac))
        total += value
        if total > _MAX_NS:
            raise ValueError(f'time: invalid duration "{orig}"')
        pos = m.end()
    return -total if neg else total


def ns_to_seconds(ns: int) -> float:
    return ns / 1e9


def seconds_to_ns(seconds: float) -> int:
    return round(seconds * 1e9)


def format_duration(seconds: float) -> str:
    """Format like Go's ``Duration.String()`` (``"1m30s"``, ``"5s"``, ``"1h0m0s"``, ``"0s"``)."""
    ns = seconds_to_ns(seconds)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, scale in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= scale:
                return f"{sign}{_trim(ns / scale)}{unit}"
    h, rem = divmod(ns, 3600 * 1_000_000_000)
    m, rem = divmod(rem, 60 * 1_000_000_000)
    s = _trim(rem / 1e9)
    if h:
        return f"{sign}{h}h{m}m{s}s"
    if m:
        return f"{sign}{m}m{s}s"
    return f"{sign}{s}s"


def _trim(x: float) -> str:
    text = f"{x:.9f}".rstrip("0").rstrip(".")
    return text or "0"
