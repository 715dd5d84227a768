"""The agent's configuration files: HCL (python-hcl2) or JSON, with Nomad's names.

::

    data_dir   = "/var/lib/rawexec"
    name       = "node-1"            # default: the host name
    region     = "global"
    datacenter = "dc1"
    bind_addr  = "127.0.0.1"         # TCP listener only when bind_addr or ports.http is set
    ports { http = 4646 }
    log_level  = "INFO"
    acl { enabled = true }           # required for a non-loopback bind_addr
    client {
      meta             { rack = "r1" }
      options          { "env.denylist" = "AWS_SECRET_ACCESS_KEY" }
      max_kill_timeout = "30s"
      cgroup_parent    = "nomad.slice"
      artifact { http_read_timeout = "30m" ... }
    }
    plugin "raw_exec" {
      config { enabled = true  denied_host_uids = "0"  denied_envvars = ["*_TOKEN"] }
    }

Several ``-config`` files (or directories of ``*.hcl``/``*.json``) merge in order: later
scalars win, maps merge key by key. Unknown keys are errors that name the file and key and
suggest the nearest known one. raw_exec is disabled unless enabled (``-dev`` enables it),
either by the plugin block or the deprecated ``client.options["driver.raw_exec.enable"]``.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rawexec.errors import InvalidConfigError, ValidationError
from rawexec.taskenv import DEFAULT_ENV_DENYLIST

__all__ = [
    "AgentConfig",
    "ArtifactConfig",
    "ClientConfig",
    "RawExecPluginConfig",
    "bind_addr_problem",
    "load_config",
    "parse_bytes",
    "parse_config_text",
    "parse_duration",
    "parse_go_bool",
]

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF")
DEFAULT_HTTP_PORT = 4646
_EMPTY: Mapping[str, str] = MappingProxyType({})

# Keys Nomad knows but a single-node rawexec agent does not offer: a clearer error than "unknown".
_UNSUPPORTED = {
    "server", "consul", "vault", "telemetry", "tls", "autopilot", "addresses", "advertise", "sentinel",
    "audit", "ui", "limits", "plugin_dir", "log_file", "log_json", "enable_syslog", "syslog_facility",
    "disable_update_check", "leave_on_interrupt", "leave_on_terminate", "http_api_response_headers",
    "enable_debug", "servers", "server_join", "network_interface", "host_volume", "reserved", "drain_on_shutdown",
    "gc_interval", "template", "chroot_env", "rpc", "serf", "keyring", "reporting",
}


# -- scalar parsers (shared with other modules) -------------------------------------------------

_DUR_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
              "h": 3600 * 10**9}
_DUR_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str, *, field: str = "duration") -> float:
    """Parse a Go duration (``"30s"``, ``"1m30s"``, ``"1.5h"``, ``"250ms"``, ``"0"``) into seconds."""
    if not isinstance(text, str):
        raise InvalidConfigError(f'{field} must be a duration string like "30s", got {text!r}')
    s = text.strip()
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    pos, total_ns = 0, 0
    while pos < len(s):
        m = _DUR_RE.match(s, pos)
        if not m:
            break
        total_ns += round(float(m.group(1)) * _DUR_UNITS[m.group(2)])
        pos = m.end()
    if not s or pos != len(s):
        raise InvalidConfigError(
            f'{field}: invalid duration "{text}"; use a number with a unit (ns, us, ms, s, m, h), e.g. "30s"')
    return sign * total_ns / 1e9


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_SIZE_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
               "t": 10**12, "tb": 10**12, "p": 10**15, "pb": 10**15, "e": 10**18, "eb": 10**18,
               "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30,
               "ti": 2**40, "tib": 2**40, "pi": 2**50, "pib": 2**50, "ei": 2**60, "eib": 2**60}


def parse_bytes(value: object, *, field: str = "size") -> int:
    """Parse a size like go-humanize does: ``"100GB"`` = 100·10⁹, ``"1GiB"`` = 2³⁰, ints are bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise InvalidConfigError(f"{field} must not be negative, got {value}")
        return value
    if not isinstance(value, str):
        raise InvalidConfigError(f'{field} must be a size like "100GB", got {value!r}')
    m = _SIZE_RE.match(value)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _SIZE_UNITS:
        raise InvalidConfigError(f'{field}: invalid size "{value}"; use e.g. "512MB", "100GB" or "1GiB"')
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:\[\]]*)):(?P<port>\d+)$")


def bind_addr_problem(value: str, *, acl_enabled: bool, name: str = "bind_addr") -> str | None:
    """Why ``value`` cannot be the HTTP API's TCP address, or None when it can.

    As Nomad's ``bind_addr`` (and ``-bind``), it is an IP address only: the port is ``ports { http }``.
    A non-loopback address would expose the API to the network, so it needs ACLs. ``name`` is how
    the operator gave it (``bind_addr`` in a config file, ``-bind`` on the command line).
    """
    flag = name.startswith("-")
    acl_fix = ("pass -acl-enabled (or set acl { enabled = true } in a config file)" if flag
               else "set acl { enabled = true } (or pass -acl-enabled)")

    def setting(v: str) -> str:
        return f'{name} "{v}"' if flag else f'{name} = "{v}"'

    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        m = _HOST_PORT.match(value)
        if m:
            host = m.group("v6") if m.group("v6") is not None else m.group("host")
            return (f'{name} "{value}" includes a port: {name} takes an address only; use '
                    f'{setting(host or "127.0.0.1")} and set the port with ports {{ http = {m.group("port")} }}'
                    + (" in a config file" if flag else ""))
        if value.startswith("[") and value.endswith("]"):
            return f'{name} "{value}": write the IPv6 address without brackets, e.g. "{value[1:-1]}"'
        return f'{name} "{value}" is not an IP address (e.g. "127.0.0.1")'
    if not ip.is_loopback and not acl_enabled:
        return (f'{name} "{ip}" is not a loopback address: the HTTP API would be reachable from the network '
                f"without authentication; {acl_fix}, or use {setting('127.0.0.1')}")
    return None


def parse_go_bool(value: str) -> bool | None:
    """Go's ``strconv.ParseBool``; None when unparsable (Nomad then ignores the option)."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def _parse_id_ranges(spec: str, name: str) -> None:
    """Validate a deny-range list (``"0,10-15"``) with Nomad's messages."""
    if not spec:
        return
    for entry in spec.split(","):
        bounds = entry.split("-")
        reason = ""
        if len(bounds) > 2:
            reason = "range bound not valid"
        else:
            nums: list[int] = []
            for b in bounds:
                if not b.isdigit() or int(b) > 0xFFFFFFFF:
                    reason = "range bound not valid"
                    break
                nums.append(int(b))
            if not reason and len(nums) == 2 and nums[0] > nums[1]:
                reason = "lower bound cannot be greater than upper bound"
        if reason:
            raise InvalidConfigError(f'unable to start validator: invalid range {name} "{entry}": {reason}')


# -- the config values --------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactConfig:
    """``client { artifact {} }``: durations in seconds, sizes in bytes; Nomad's defaults."""

    http_read_timeout: float = 1800.0
    http_max_size: int = 100 * 10**9
    gcs_timeout: float = 1800.0
    git_timeout: float = 1800.0
    hg_timeout: float = 1800.0
    s3_timeout: float = 1800.0
    decompression_file_count_limit: int = 4096
    decompression_size_limit: int = 100 * 10**9
    disable_filesystem_isolation: bool = False
    set_environment_variables: str = ""
    allow_file: bool = False  # ours: file:// sources (Nomad dropped them); off by default


@dataclass(frozen=True)
class RawExecPluginConfig:
    """``plugin "raw_exec" { config {} }``."""

    enabled: bool = False
    no_cgroups: bool = False
    denied_host_uids: str = ""
    denied_host_gids: str = ""
    denied_envvars: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClientConfig:
    """``client {}``."""

    enabled: bool = True
    meta: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    options: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    max_kill_timeout: float = 30.0
    cgroup_parent: str = ""
    node_class: str = ""
    node_pool: str = "default"
    min_dynamic_port: int = 20000
    max_dynamic_port: int = 32000
    artifact: ArtifactConfig = field(default_factory=ArtifactConfig)


@dataclass(frozen=True)
class AgentConfig:
    data_dir: str | None = None
    name: str = field(default_factory=socket.gethostname)
    region: str = "global"
    datacenter: str = "dc1"
    bind_addr: str | None = None
    http_port: int | None = None
    log_level: str = "INFO"
    acl_enabled: bool = False
    client: ClientConfig = field(default_factory=ClientConfig)
    raw_exec: RawExecPluginConfig = field(default_factory=RawExecPluginConfig)
    sources: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    """Non-fatal notes for the operator (deprecated or ignored settings), to log at start."""

    def __post_init__(self) -> None:
        # Nomad's agent works on an absolute data dir: a relative one is taken from the current
        # directory now, once (alloc dirs, the API socket and the driver need absolute paths)
        if self.data_dir and not os.path.isabs(self.data_dir):
            object.__setattr__(self, "data_dir", os.path.abspath(self.data_dir))

    @property
    def raw_exec_enabled(self) -> bool:
        return self.raw_exec.enabled

    @property
    def env_denylist(self) -> tuple[str, ...]:
        """Host env vars never passed to tasks: ``client.options["env.denylist"]`` or Nomad's default."""
        opts = self.client.options
        raw = opts.get("env.denylist", opts.get("env.blacklist"))
        if raw is None:
            return DEFAULT_ENV_DENYLIST
        return tuple(k.strip() for k in raw.split(",") if k.strip())

    @property
    def cgroup_parent(self) -> str:
        """The configured parent, else Nomad's default (``nomad.slice`` on cgroup v2, ``/nomad`` on v1)."""
        if self.client.cgroup_parent:
            return self.client.cgroup_parent
        return "nomad.slice" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "/nomad"

    def http_address(self) -> tuple[str, int] | None:
        """(host, port) of the TCP listener, or None when only the unix socket is served."""
        if self.bind_addr is None and self.http_port is None:
            return None
        return (self.bind_addr or "127.0.0.1", self.http_port or DEFAULT_HTTP_PORT)

    def with_dev(self) -> AgentConfig:
        """``-dev``: raw_exec enabled (as Nomad's dev agent does)."""
        return replace(self, raw_exec=replace(self.raw_exec, enabled=True))

    def with_data_dir(self, data_dir: str | os.PathLike[str]) -> AgentConfig:
        return replace(self, data_dir=os.path.abspath(os.fspath(data_dir)))

    def require_data_dir(self) -> str:
        if not self.data_dir:
            raise InvalidConfigError('no data_dir: set data_dir in a config file or pass -data-dir DIR')
        return self.data_dir


# -- schema ------------------------------------------------------------------------------------


class _Errors:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, msg: str) -> None:
        self.items.append(f"{where}: {msg}" if where else msg)


def _str(v: Any, path: str) -> str:
    if isinstance(v, str):
        return v
    raise InvalidConfigError(f"{path} must be a string, got {json.dumps(v)}")


def _bool(v: Any, path: str) -> bool:
    if isinstance(v, bool):
        return v
    raise InvalidConfigError(f"{path} must be true or false, got {json.dumps(v)}")


def _int(v: Any, path: str) -> int:
    if isinstance(v, str) and v.strip().isdigit():
        return int(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise InvalidConfigError(f"{path} must be an integer, got {json.dumps(v)}")


def _port(v: Any, path: str) -> int:
    n = _int(v, path)
    if not 1 <= n <= 65535:
        raise InvalidConfigError(f"{path} must be a port number between 1 and 65535, got {n}")
    return n


def _nonneg_duration(v: Any, path: str) -> float:
    d = parse_duration(v, field=path)
    if d < 0:
        raise InvalidConfigError(f"{path} must be > 0")
    return d


def _positive_duration(v: Any, path: str) -> float:
    d = parse_duration(v, field=path)
    if d <= 0:
        raise InvalidConfigError(f"{path} must be > 0")
    return d


def _strmap(v: Any, path: str) -> dict[str, str]:
    blocks = v if isinstance(v, list) else [v]
    out: dict[str, str] = {}
    for b in blocks:
        if not isinstance(b, Mapping):
            raise InvalidConfigError(f"{path} must be a map of strings, got {json.dumps(v)}")
        for raw_key, val in b.items():
            k = str(raw_key)
            if k.startswith("${") and k.endswith("}"):  # an unquoted dotted key: a.b.c = "x"
                k = k[2:-1]
            if isinstance(val, bool):
                out[str(k)] = "true" if val else "false"
            elif isinstance(val, int | float | str):
                out[str(k)] = str(val)
            else:
                raise InvalidConfigError(f'{path}["{k}"] must be a string, got {json.dumps(val)}')
    return out


def _strlist(v: Any, path: str) -> tuple[str, ...]:
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return tuple(v)
    raise InvalidConfigError(f"{path} must be a list of strings, got {json.dumps(v)}")


_Conv = Callable[[Any, str], Any]

_TOP: dict[str, _Conv] = {"data_dir": _str, "name": _str, "region": _str, "datacenter": _str,
                          "bind_addr": _str, "log_level": _str}
_PORTS: dict[str, _Conv] = {"http": _port}
_ACL: dict[str, _Conv] = {"enabled": _bool}
_CLIENT: dict[str, _Conv] = {"enabled": _bool, "meta": _strmap, "options": _strmap,
                             "max_kill_timeout": _positive_duration, "cgroup_parent": _str,
                             "node_class": _str, "node_pool": _str, "min_dynamic_port": _port,
                             "max_dynamic_port": _port}
_ARTIFACT: dict[str, _Conv] = {
    "http_read_timeout": _nonneg_duration, "http_max_size": lambda v, p: parse_bytes(v, field=p),
    "gcs_timeout": _nonneg_duration, "git_timeout": _nonneg_duration, "hg_timeout": _nonneg_duration,
    "s3_timeout": _nonneg_duration, "decompression_file_count_limit": _int,
    "decompression_size_limit": lambda v, p: parse_bytes(v, field=p),
    "disable_filesystem_isolation": _bool, "set_environment_variables": _str, "allow_file": _bool}
_RAW_EXEC: dict[str, _Conv] = {"enabled": _bool, "no_cgroups": _bool, "denied_host_uids": _str,
                               "denied_host_gids": _str, "denied_envvars": _strlist}


def _unknown(key: str, known: Sequence[str], where: str) -> str:
    if key in _UNSUPPORTED:
        return f'"{key}" is a Nomad setting that rawexec does not support; remove it'
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    hint = f' (did you mean "{close[0]}"?)' if close else f"; known keys here: {', '.join(sorted(known))}"
    return f'unknown key "{key}" in {where}{hint}'


def _blocks(v: Any, path: str) -> list[Mapping[str, Any]]:
    """A block may arrive as one map (JSON, ``x = {}``) or as a list of maps (repeated HCL blocks)."""
    items = v if isinstance(v, list) else [v]
    for it in items:
        if not isinstance(it, Mapping):
            raise InvalidConfigError(f"{path} must be a block, got {json.dumps(v)}")
    return items


def _section(raw: Any, schema: Mapping[str, _Conv], path: str, where: str, errs: _Errors,
             nested: Mapping[str, Callable[[Any, str], dict[str, Any]]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    nested = nested or {}
    try:
        blocks = _blocks(raw, path)
    except InvalidConfigError as e:
        errs.add(where, str(e))
        return out
    for blk in blocks:
        for key, val in blk.items():
            sub = f"{path}.{key}" if path else key
            if key in nested:
                merged = out.get(key, {})
                merged.update(nested[key](val, sub))
                out[key] = merged
            elif key in schema:
                try:
                    conv = schema[key](val, sub)
                except InvalidConfigError as e:
                    errs.add(where, str(e))
                    continue
                if isinstance(conv, dict) and isinstance(out.get(key), dict):
                    out[key].update(conv)
                else:
                    out[key] = conv
            else:
                errs.add(where, _unknown(key, [*schema, *nested], path or "the top level"))
    return out


def _parse_tree(tree: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate one file's tree into a partial config dict (only the keys it sets)."""
    errs = _Errors()

    def sub(schema: Mapping[str, _Conv], nested: Mapping[str, Any] | None = None) -> Callable[[Any, str], Any]:
        return lambda v, p: _section(v, schema, p, where, errs, nested)

    def plugins(v: Any, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for blk in _blocks(v, path):
            for name, body in blk.items():
                if name != "raw_exec":
                    errs.add(where, f'plugin "{name}": only the built-in "raw_exec" plugin can be configured')
                    continue
                for b in _blocks(body, f'plugin "{name}"'):
                    for k, cfg in b.items():
                        if k == "config":
                            out.update(_section(cfg, _RAW_EXEC, 'plugin "raw_exec".config', where, errs))
                        elif k in ("args",):
                            errs.add(where, f'plugin "raw_exec".{k} is only for external plugins; remove it')
                        else:
                            errs.add(where, _unknown(k, ["config"], 'plugin "raw_exec"'))
        return out

    def wrap(fn: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
        def call(v: Any, p: str) -> Any:
            try:
                return fn(v, p)
            except InvalidConfigError as e:
                errs.add(where, str(e))
                return {}
        return call

    nested: dict[str, Callable[[Any, str], dict[str, Any]]] = {
        "ports": wrap(sub(_PORTS)),
        "acl": wrap(sub(_ACL)),
        "client": wrap(sub(_CLIENT, {"artifact": wrap(sub(_ARTIFACT))})),
        "plugin": wrap(plugins),
    }
    out = _section(tree, _TOP, "", where, errs, nested)
    if errs.items:
        raise ValidationError(errs.items)
    return out


# Nomad reads agent config with HCL1, where ``options { "driver.raw_exec.enable" = "1" }`` (a block
# with quoted keys) is common; HCL2 only accepts that as an object: ``options = { ... }``.
_HCL1_MAP_BLOCK = re.compile(r"(^|[\s{])(options|meta)\s*\{", re.MULTILINE)


def parse_config_text(text: str, source: str = "<config>", *, json_format: bool | None = None) -> dict[str, Any]:
    """Parse one config file's text (HCL, or JSON when ``json_format`` or it starts with ``{``)."""
    if json_format is None:
        json_format = source.endswith(".json") or text.lstrip().startswith("{")
    try:
        if json_format:
            tree = json.loads(text)
        else:
            import hcl2  # only for HCL config files: `rawexec run` and JSON configs do not load it

            opts = hcl2.SerializationOptions(strip_string_quotes=True, with_comments=False,
                                             explicit_blocks=False)
            tree = hcl2.loads(_HCL1_MAP_BLOCK.sub(r"\1\2 = {", text), serialization_options=opts)
    except Exception as e:  # the parsers raise assorted exception types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InvalidConfigError(f"{source}: cannot parse config: {first}") from None
    if not isinstance(tree, Mapping):
        raise InvalidConfigError(f"{source}: a config file must hold an object at the top level")
    return _parse_tree(tree, source)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix in (".hcl", ".json") and f.is_file()))
        elif p.exists():
            out.append(p)
        else:
            raise InvalidConfigError(f'config file "{p}" does not exist')
    return out


def load_config(paths: Sequence[str | os.PathLike[str]] = (), *, texts: Sequence[tuple[str, str]] = (),
                acl_enabled: bool = False) -> AgentConfig:
    """Load and merge config files (and/or ``(source, text)`` pairs) into a validated :class:`AgentConfig`.

    ``acl_enabled`` (the agent's ``-acl-enabled``) turns ACLs on whatever the files say, so that a
    non-loopback ``bind_addr`` of theirs is allowed. All problems of all files are reported at once
    (:class:`ValidationError`).
    """
    merged: dict[str, Any] = {}
    errors: list[str] = []
    sources: list[str] = []
    items: list[tuple[str, str]] = []
    for f in _files(paths):
        try:
            items.append((str(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            errors.append(f"{f}: cannot read config: {e}")
    items.extend(texts)
    for source, text in items:
        sources.append(source)
        try:
            merged = _merge(merged, parse_config_text(text, source))
        except ValidationError as e:
            errors.extend(e.errors)
        except InvalidConfigError as e:
            errors.append(str(e))
    if errors:
        raise ValidationError(errors)
    return _build(merged, tuple(sources), acl_enabled=acl_enabled)


def _build(d: Mapping[str, Any], sources: tuple[str, ...], *, acl_enabled: bool = False) -> AgentConfig:
    errs: list[str] = []
    client_d = dict(d.get("client", {}))
    art = ArtifactConfig(**client_d.pop("artifact", {}))
    options = client_d.get("options", {})
    plugin_d = dict(d.get("plugin", {}))
    warnings: list[str] = []
    for opt, key in (("driver.raw_exec.enable", "enabled"), ("driver.raw_exec.no_cgroups", "no_cgroups")):
        if opt not in options:
            continue
        flag = parse_go_bool(options[opt])
        if key in plugin_d:
            warnings.append(f'client.options["{opt}"] is ignored: plugin "raw_exec" config sets {key}')
        elif flag is None:
            warnings.append(f'client.options["{opt}"] = "{options[opt]}" is not a boolean and is ignored')
        else:
            plugin_d[key] = flag
            warnings.append(f'client.options["{opt}"] is deprecated; use plugin "raw_exec" '
                            f"{{ config {{ {key} = {'true' if flag else 'false'} }} }}")
    for key, name in (("denied_host_uids", "deniedHostUIDs"), ("denied_host_gids", "deniedHostGIDs")):
        try:
            _parse_id_ranges(plugin_d.get(key, ""), name)
        except InvalidConfigError as e:
            errs.append(f'plugin "raw_exec".config.{key}: {e}')
    client = ClientConfig(**client_d, artifact=art)
    if client.min_dynamic_port > client.max_dynamic_port:
        errs.append(f"client.min_dynamic_port ({client.min_dynamic_port}) must not be greater than "
                    f"client.max_dynamic_port ({client.max_dynamic_port})")
    top = {k: d[k] for k in _TOP if k in d}
    level = str(top.get("log_level", "INFO")).upper()
    if level not in LOG_LEVELS:
        errs.append(f'Invalid log level: "{top["log_level"]}". Valid log levels are: [{" ".join(LOG_LEVELS)}]')
    top["log_level"] = level
    if "data_dir" in top:
        if not top["data_dir"]:
            errs.append("data_dir must not be empty")
        else:
            top["data_dir"] = os.path.abspath(top["data_dir"])
    for key in ("name", "region", "datacenter"):
        if key in top and not top[key]:
            errs.append(f"{key} must not be empty")
    acl = acl_enabled or bool(d.get("acl", {}).get("enabled", False))
    if "bind_addr" in top:
        problem = bind_addr_problem(top["bind_addr"], acl_enabled=acl)
        if problem:
            errs.append(problem)
    if errs:
        raise ValidationError(errs)
    return AgentConfig(**top, http_port=d.get("ports", {}).get("http"), acl_enabled=acl, client=client,
                       raw_exec=RawExecPluginConfig(**plugin_d), sources=sources,
                       warnings=tuple(warnings))
