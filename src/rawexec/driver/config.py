"""Plugin options (``plugin "raw_exec" { config {} }``) and the task's ``config {}`` block.

Names, defaults and error texts are Nomad's (facts §1). Validation refuses rather than guesses.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rawexec.errors import InvalidConfigError

__all__ = [
    "DriverConfig",
    "IdRange",
    "TaskDriverConfig",
    "env_denied",
    "filter_env",
    "parse_go_bool",
    "parse_id_ranges",
]

log = logging.getLogger("rawexec.driver")

_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_U32_MAX = 2**32 - 1


def parse_go_bool(value: object) -> bool | None:
    """Go's ``strconv.ParseBool`` spellings; None for anything else (Nomad ignores those)."""
    if isinstance(value, bool):
        return value
    s = str(value)
    if s in _GO_TRUE:
        return True
    if s in _GO_FALSE:
        return False
    return None


@dataclass(frozen=True)
class IdRange:
    """An inclusive uid/gid range from a deny list."""

    low: int
    high: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.low <= value <= self.high


def parse_id_ranges(spec: str | None, what: str) -> tuple[IdRange, ...]:
    """Parse ``"0-999,1001"``: comma-separated ``N`` or ``LOW-HIGH`` (inclusive); empty = none.

    ``what`` is ``deniedHostUIDs`` or ``deniedHostGIDs`` (Nomad's wording in the error).
    """
    if spec is None or spec == "":
        return ()
    if not isinstance(spec, str):
        raise InvalidConfigError(f"unable to start validator: {what} must be a string like \"0-999,1001\"")
    out: list[IdRange] = []
    for entry in spec.split(","):
        parts = entry.split("-")
        if len(parts) > 2:
            raise InvalidConfigError(
                f'unable to start validator: invalid range {what} "{entry}": range bound not valid')
        bounds: list[int] = []
        for raw_bound in parts:
            p = raw_bound.strip()
            if not p.isdigit() or int(p) > _U32_MAX:
                raise InvalidConfigError(
                    f'unable to start validator: invalid range {what} "{entry}": range bound not valid')
            bounds.append(int(p))
        low, high = bounds[0], bounds[-1]
        if low > high:
            raise InvalidConfigError(
                f'unable to start validator: invalid range {what} "{entry}": '
                "lower bound cannot be greater than upper bound")
        out.append(IdRange(low, high))
    return tuple(out)


@functools.lru_cache(maxsize=64)
def _deny_regex(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex for a set of deny globs (``*`` matches anything, anywhere); None for no globs.
    Cached: the same deny lists come with every start."""
    if not patterns:
        return None
    alts = (".*".join(re.escape(part) for part in p.split("*")) for p in patterns)
    return re.compile("(?:" + "|".join(alts) + ")$", re.DOTALL)


def env_denied(key: str, patterns: Iterable[str]) -> bool:
    """True when ``key`` matches one of the deny globs (``*`` matches anything, anywhere)."""
    r = _deny_regex(tuple(patterns))
    return r is not None and r.match(key) is not None


def filter_env(env: Mapping[str, str], patterns: Iterable[str]) -> dict[str, str]:
    """The task env minus every key matching a deny glob, sorted by key (Nomad's buildEnvList)."""
    r = _deny_regex(tuple(patterns))
    if r is None:
        return {k: env[k] for k in sorted(env)}
    match = r.match
    return {k: env[k] for k in sorted(env) if match(k) is None}


def _str_list(value: object, field_name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        raise InvalidConfigError(f"{field_name} must be a list of strings, e.g. [\"AWS_*\"]; got a string")
    if not isinstance(value, Iterable) or not all(isinstance(v, str) for v in value):
        raise InvalidConfigError(f"{field_name} must be a list of strings, e.g. [\"AWS_*\"]")
    return tuple(value)


def default_state_dir() -> str:
    """Where shims keep their control sockets and exit records (short path: unix socket limit)."""
    if os.geteuid() == 0:
        return "/run/rawexec"
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return os.path.join(base, f"rawexec-{os.geteuid()}")


_PLUGIN_KEYS = {"enabled", "no_cgroups", "denied_host_uids", "denied_host_gids", "denied_envvars"}


@dataclass(frozen=True)
class DriverConfig:
    """The raw_exec plugin options. Disabled unless ``enabled`` (secure by default).

    ``state_dir`` (ours, not Nomad's) holds each shim's control socket and exit record.
    ``stop_tasks_with_driver`` (ours, not a plugin option): when this driver process goes away
    without stopping its tasks (killed, crashed), each task's shim stops the task (its
    ``SIGTERM``, then after :data:`~rawexec.executor.supervisor.DRIVER_GONE_GRACE_S` the whole
    tree killed) instead of keeping it for a later driver to re-attach. For owners that no later
    driver can follow: ``rawexec run`` with its temporary data dir.
    """

    enabled: bool = False
    no_cgroups: bool = False
    denied_host_uids: str = ""
    denied_host_gids: str = ""
    denied_envvars: tuple[str, ...] = ()
    state_dir: str = field(default_factory=default_state_dir)
    cgroup_parent: str | None = None
    stop_tasks_with_driver: bool = False

    def __post_init__(self) -> None:
        # Validate eagerly so a bad deny list is reported at SetConfig time, as Nomad does.
        self.uid_ranges()
        self.gid_ranges()
        object.__setattr__(self, "denied_envvars", _str_list(self.denied_envvars, "denied_envvars"))

    def uid_ranges(self) -> tuple[IdRange, ...]:
        return parse_id_ranges(self.denied_host_uids, "deniedHostUIDs")

    def gid_ranges(self) -> tuple[IdRange, ...]:
        return parse_id_ranges(self.denied_host_gids, "deniedHostGIDs")

    @classmethod
    def from_plugin_config(cls, config: Mapping[str, Any] | None, **extra: Any) -> DriverConfig:
        """From ``plugin "raw_exec" { config { ... } }`` (an HCL-decoded dict)."""
        config = dict(config or {})
        unknown = sorted(set(config) - _PLUGIN_KEYS)
        if unknown:
            raise InvalidConfigError(
                f"unknown raw_exec plugin option {unknown[0]!r}; valid options are: "
                + ", ".join(sorted(_PLUGIN_KEYS)))
        kwargs: dict[str, Any] = {}
        for key in ("enabled", "no_cgroups"):
            if key in config and config[key] is not None:
                val = config[key]
                b = parse_go_bool(val) if isinstance(val, str) else val
                if not isinstance(b, bool):
                    raise InvalidConfigError(f"{key} must be a boolean (true or false); got {val!r}")
                kwargs[key] = b
        for key in ("denied_host_uids", "denied_host_gids"):
            if config.get(key) is not None:
                if not isinstance(config[key], str):
                    raise InvalidConfigError(f'{key} must be a string like "0-999,1001"; got {config[key]!r}')
                kwargs[key] = config[key]
        if config.get("denied_envvars") is not None:
            kwargs["denied_envvars"] = _str_list(config["denied_envvars"], "denied_envvars")
        kwargs.update(extra)
        return cls(**kwargs)

    @classmethod
    def from_client_options(cls, options: Mapping[str, Any] | None, **extra: Any) -> DriverConfig:
        """From the deprecated ``client { options = { "driver.raw_exec.enable" = "1" } }`` form."""
        options = options or {}
        kwargs: dict[str, Any] = {}
        for opt, key in (("driver.raw_exec.enable", "enabled"), ("driver.raw_exec.no_cgroups", "no_cgroups")):
            if opt in options:
                log.warning("client option %r is deprecated; use plugin \"raw_exec\" { config { %s = ... } }",
                            opt, key)
                b = parse_go_bool(options[opt])
                if b is None:
                    log.warning("ignoring unparsable boolean %r for client option %r", options[opt], opt)
                else:
                    kwargs[key] = b
        kwargs.update(extra)
        return cls(**kwargs)


_TASK_KEYS = {"command", "args", "work_dir", "oom_score_adj", "cgroup_v1_override", "cgroup_v2_override",
              "denied_envvars"}


@dataclass(frozen=True)
class TaskDriverConfig:
    """The job's ``config {}`` block for a raw_exec task, decoded and validated."""

    command: str
    args: tuple[str, ...] = ()
    work_dir: str = ""
    oom_score_adj: int = 0
    cgroup_v1_override: Mapping[str, str] = field(default_factory=dict)
    cgroup_v2_override: str = ""
    denied_envvars: tuple[str, ...] = ()

    @classmethod
    def decode(cls, raw: Mapping[str, Any] | None) -> TaskDriverConfig:
        """Decode and validate; errors read ``failed to decode driver config: ...`` or
        ``failed driver config validation: ...`` as Nomad's do."""
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise InvalidConfigError("failed to decode driver config: config must be a map")
        unknown = sorted(set(raw) - _TASK_KEYS)
        if unknown:
            raise InvalidConfigError(
                f'failed to decode driver config: unsupported argument "{unknown[0]}"; raw_exec accepts: '
                + ", ".join(sorted(_TASK_KEYS)))
        command = raw.get("command")
        if command is None or (isinstance(command, str) and command.strip() == ""):
            raise InvalidConfigError(
                'failed to decode driver config: Missing required argument: The argument "command" is '
                "required, but no definition was found (set config { command = \"/path/to/binary\" })")
        if not isinstance(command, str):
            raise InvalidConfigError(f"failed to decode driver config: command must be a string; got {command!r}")
        args = raw.get("args") or []
        if isinstance(args, str) or not isinstance(args, list | tuple):
            raise InvalidConfigError(
                f'failed to decode driver config: args must be a list of strings, e.g. ["-flag", "1"]; got {args!r}')
        args_t = tuple(a if isinstance(a, str) else _scalar_str(a, "args") for a in args)
        oom = raw.get("oom_score_adj", 0)
        if oom is None:
            oom = 0
        if isinstance(oom, bool) or not isinstance(oom, int | float) or int(oom) != oom:
            raise InvalidConfigError(f"failed to decode driver config: oom_score_adj must be an integer; got {oom!r}")
        work_dir = raw.get("work_dir") or ""
        if not isinstance(work_dir, str):
            raise InvalidConfigError(f"failed to decode driver config: work_dir must be a string; got {work_dir!r}")
        v2 = raw.get("cgroup_v2_override") or ""
        if not isinstance(v2, str):
            raise InvalidConfigError(
                f"failed to decode driver config: cgroup_v2_override must be a string; got {v2!r}")
        v1 = _decode_v1_override(raw.get("cgroup_v1_override"))
        cfg = cls(command=command, args=args_t, work_dir=work_dir, oom_score_adj=int(oom),
                  cgroup_v1_override=v1, cgroup_v2_override=v2,
                  denied_envvars=_str_list(raw.get("denied_envvars"), "denied_envvars"))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Nomad's ``TaskConfig.validate`` checks, in its order, with its texts."""
        msg = None
        if self.cgroup_v1_override and self.cgroup_v2_override:
            msg = "only one of cgroups_v1_override and cgroups_v2_override may be set"
        elif self.oom_score_adj < 0:
            msg = "oom_score_adj must not be negative"
        elif self.oom_score_adj > 1000:
            msg = "oom_score_adj must be at most 1000"
        elif self.work_dir and not os.path.isabs(self.work_dir):
            msg = "work_dir must be an absolute path"
        if msg:
            raise InvalidConfigError(f"failed driver config validation: {msg}")

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "args": list(self.args), "work_dir": self.work_dir,
                "oom_score_adj": self.oom_score_adj, "cgroup_v1_override": dict(self.cgroup_v1_override),
                "cgroup_v2_override": self.cgroup_v2_override, "denied_envvars": list(self.denied_envvars)}


def _scalar_str(value: object, field_name: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise InvalidConfigError(f"failed to decode driver config: {field_name} must be a list of strings; "
                             f"got element {value!r}")


def _decode_v1_override(value: object) -> dict[str, str]:
    """``cgroup_v1_override`` arrives as a map, or (HCL block-ish form) a list of maps."""
    if value is None or value in ({}, []):
        return {}
    maps: list[Mapping[str, Any]]
    if isinstance(value, Mapping):
        maps = [value]
    elif isinstance(value, list) and all(isinstance(m, Mapping) for m in value):
        maps = list(value)
    else:
        raise InvalidConfigError(
            'failed to decode driver config: cgroup_v1_override must be a map of controller to path, '
            'e.g. { pids = "custom/path" }')
    out: dict[str, str] = {}
    for m in maps:
        for k, v in m.items():
            if not isinstance(v, str):
                raise InvalidConfigError(
                    f"failed to decode driver config: cgroup_v1_override[{k!r}] must be a path string")
            out[str(k)] = v
    return out
