"""The client ``artifact {}`` block: limits and switches of the getter, with Nomad's defaults."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from rawexec.errors import InvalidConfigError

__all__ = ["GetterConfig", "parse_duration", "parse_size"]

_GB = 1000**3
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?i?b?)?\s*$", re.IGNORECASE)


def parse_duration(value: str | float | int, name: str) -> float:
    """Parse a Go duration (``"30m"``, ``"1h30m"``, ``"500ms"``) or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if text.startswith("-") and len(text) > 1:
        return -parse_duration(text[1:], name)  # range checks give Nomad's "must be > 0"
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise InvalidConfigError(f'{name}: invalid duration "{value}" (use a Go duration such as "30m" or "45s")')
    return total


def parse_size(value: str | int, name: str) -> int:
    """Parse a humanized size (``"100GB"``, ``"1GiB"``, ``"512MB"``) or a byte count."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise InvalidConfigError(f'{name}: invalid size "{value}" (use a size such as "100GB" or "512MiB")')
    number = float(m.group(1))
    unit = (m.group(2) or "").lower().rstrip("b")
    base = 1024 if unit.endswith("i") else 1000
    power = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}[unit.rstrip("i")]
    return int(number * base**power)


@dataclass(frozen=True)
class GetterConfig:
    """Client ``artifact {}`` options (Nomad's names and defaults) plus rawexec's retry knobs.

    Durations are seconds, sizes bytes; a limit or a timeout of 0 disables it.
    """

    http_read_timeout: float = 30 * 60.0
    http_max_size: int = 100 * _GB
    git_timeout: float = 30 * 60.0
    hg_timeout: float = 30 * 60.0
    s3_timeout: float = 30 * 60.0
    gcs_timeout: float = 30 * 60.0
    decompression_size_limit: int = 100 * _GB
    decompression_file_count_limit: int = 4096
    disable_filesystem_isolation: bool = False
    filesystem_isolation_extra_paths: tuple[str, ...] = ()
    set_environment_variables: str = ""
    #: Nomad removed ``file://``; rawexec allows it only when the operator opts in.
    allow_file: bool = False
    # rawexec additions
    http_connect_timeout: float = 30.0
    http_retries: int = 3
    retry_backoff: float = 1.0
    max_redirects: int = 10
    #: overall deadline of one fetch in seconds; 0 = Nomad's rule (see :attr:`deadline`)
    fetch_deadline: float = 0.0

    def __post_init__(self) -> None:
        # Nomad rejects negative durations with this text; 0 means no timeout
        for name in ("http_read_timeout", "git_timeout", "hg_timeout", "s3_timeout", "gcs_timeout"):
            if getattr(self, name) < 0:
                raise InvalidConfigError(f"{name} must be > 0")
        if self.http_connect_timeout <= 0:
            raise InvalidConfigError("http_connect_timeout must be > 0")
        for name in ("http_max_size", "decompression_size_limit", "decompression_file_count_limit",
                     "http_retries", "max_redirects"):
            if getattr(self, name) < 0:
                raise InvalidConfigError(f"{name} must be >= 0 (0 disables the limit)")
        if self.retry_backoff < 0:
            raise InvalidConfigError("retry_backoff must be >= 0")
        if self.fetch_deadline < 0:
            raise InvalidConfigError("fetch_deadline must be >= 0 (0 = the largest timeout + 1m)")

    @property
    def deadline(self) -> float:
        """Overall deadline of one fetch: the largest configured timeout, at least 30m, plus 1m."""
        if self.fetch_deadline:
            return self.fetch_deadline
        return max(30 * 60.0, self.http_read_timeout, self.git_timeout) + 60.0

    @property
    def passthrough_env(self) -> list[str]:
        return [v.strip() for v in self.set_environment_variables.split(",") if v.strip()]

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["filesystem_isolation_extra_paths"] = list(self.filesystem_isolation_extra_paths)
        return d

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> GetterConfig:
        """Build from the client ``artifact {}`` block: Go durations and humanized sizes accepted."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidConfigError(
                f"artifact: unknown option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        kw: dict[str, Any] = {}
        for key, value in raw.items():
            if key.endswith("_timeout"):
                kw[key] = parse_duration(value, key)
            elif key in ("http_max_size", "decompression_size_limit"):
                kw[key] = parse_size(value, key)
            elif key == "filesystem_isolation_extra_paths":
                kw[key] = tuple(str(p) for p in value)
            elif key in ("disable_filesystem_isolation", "allow_file"):
                if not isinstance(value, bool):
                    raise InvalidConfigError(f"{key} must be true or false; got {value!r}")
                kw[key] = value
            elif key in ("retry_backoff", "fetch_deadline"):
                kw[key] = parse_duration(value, key)
            elif key == "set_environment_variables":
                kw[key] = str(value)
            else:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise InvalidConfigError(f"{key} must be an integer; got {value!r}")
                kw[key] = value
        return cls(**kw)
