"""The typed, immutable job model (Nomad's job specification).

Field names are Nomad's jobspec (HCL) names in snake_case; defaults are Nomad's (facts §6).
Conventions:

- Every duration is **seconds as a float** (``kill_timeout=5.0``).
- Lists are tuples, maps are read-only mappings (``types.MappingProxyType``); ``Task.config``
  holds the driver's ``config {}`` block as nested read-only mappings/tuples of JSON values.
- Runtime interpolation (``${NOMAD_*}``, ``${attr.*}``, ``${meta.*}``, ``${node.*}``,
  ``${env["..."]}``) is kept verbatim in strings; the agent resolves it.
- Defaults are filled in at parse time: a parsed ``Job`` is complete (``Task.restart`` is the
  effective policy: job-type default, overridden by the group's, overridden by the task's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from rawexec.artifacts.spec import ArtifactSpec
from rawexec.types import LogConfig, Resources

__all__ = [
    "JOB_TYPES",
    "ArtifactSpec",
    "Constraint",
    "EphemeralDisk",
    "Identity",
    "Job",
    "Lifecycle",
    "LogConfig",
    "Network",
    "Parameterized",
    "Periodic",
    "Port",
    "ReschedulePolicy",
    "Resources",
    "RestartPolicy",
    "Service",
    "ServiceCheck",
    "Task",
    "TaskGroup",
    "Template",
    "UpdateStrategy",
    "Vault",
    "Volume",
    "VolumeMount",
    "default_reschedule",
    "default_restart",
    "freeze",
    "thaw",
]

JOB_TYPES = ("service", "batch", "system", "sysbatch")

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _map() -> Mapping[str, Any]:
    return _EMPTY


def freeze(value: Any) -> Any:
    """Make a JSON-like value immutable: dicts → read-only mappings, lists → tuples."""
    t = type(value)
    if t is str or t is int or t is float or t is bool or value is None:
        return value
    if t is dict:  # the common case, without the abstract-base-class check below
        return MappingProxyType({k if type(k) is str else str(k): v if type(v) is str else freeze(v)
                                 for k, v in value.items()})
    if t is list or t is tuple:
        return tuple([freeze(v) for v in value])
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of :func:`freeze`: plain dicts and lists (for JSON)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Constraint:
    """``constraint {}``: ``attribute`` ``operator`` ``value`` (LTarget, Operand, RTarget)."""

    attribute: str = ""
    operator: str = "="
    value: str = ""


@dataclass(frozen=True)
class RestartPolicy:
    """``restart {}``: attempts within interval, delay between, mode ``fail`` | ``delay``."""

    attempts: int
    interval: float
    delay: float
    mode: str = "fail"
    render_templates: bool = False


def default_restart(job_type: str) -> RestartPolicy:
    """Nomad's defaults: batch 3 in 24h; service/system/sysbatch 2 in 30m; delay 15s, mode fail."""
    if job_type == "batch":
        return RestartPolicy(attempts=3, interval=24 * 3600.0, delay=15.0, mode="fail")
    return RestartPolicy(attempts=2, interval=30 * 60.0, delay=15.0, mode="fail")


@dataclass(frozen=True)
class ReschedulePolicy:
    """``reschedule {}`` (server-side in Nomad; kept for the API JSON)."""

    attempts: int = 0
    interval: float = 0.0
    delay: float = 30.0
    delay_function: str = "exponential"
    max_delay: float = 3600.0
    unlimited: bool = True


def default_reschedule(job_type: str) -> ReschedulePolicy:
    """Nomad's defaults: service unlimited 30s exponential (max 1h); batch 1 per 24h, 5s constant."""
    if job_type == "batch":
        return ReschedulePolicy(attempts=1, interval=24 * 3600.0, delay=5.0, delay_function="constant",
                                max_delay=0.0, unlimited=False)
    return ReschedulePolicy()


@dataclass(frozen=True)
class EphemeralDisk:
    """``ephemeral_disk {}``: size in MB."""

    size: int = 300
    sticky: bool = False
    migrate: bool = False


@dataclass(frozen=True)
class Port:
    """``port "label" { static, to, host_network }``: ``static`` 0 means a dynamic port."""

    label: str
    static: int = 0
    to: int = 0
    host_network: str = "default"


@dataclass(frozen=True)
class Network:
    """``network {}``: ``mode`` host | bridge | none | cni/<name>; the ports (static ones first)."""

    mode: str = "host"
    ports: tuple[Port, ...] = ()
    hostname: str = ""


@dataclass(frozen=True)
class Lifecycle:
    """``lifecycle { hook = prestart|poststart|poststop, sidecar }``."""

    hook: str
    sidecar: bool = False


@dataclass(frozen=True)
class Template:
    """``template {}`` (parsed and kept; rawexec does not render templates)."""

    source: str = ""
    destination: str = ""
    data: str = ""
    change_mode: str = "restart"
    change_signal: str = ""
    splay: float = 5.0
    perms: str = "0644"
    left_delimiter: str = "{{"
    right_delimiter: str = "}}"
    env: bool = False
    error_on_missing_key: bool = False


@dataclass(frozen=True)
class ServiceCheck:
    """``check {}`` inside ``service {}``."""

    name: str = ""
    type: str = ""
    path: str = ""
    command: str = ""
    args: tuple[str, ...] = ()
    port: str = ""
    protocol: str = ""
    interval: float = 0.0
    timeout: float = 0.0


@dataclass(frozen=True)
class Service:
    """``service {}`` (parsed and kept; rawexec does not register services)."""

    name: str = ""
    port: str = ""
    tags: tuple[str, ...] = ()
    provider: str = "consul"
    address_mode: str = "auto"
    meta: Mapping[str, str] = field(default_factory=_map)
    checks: tuple[ServiceCheck, ...] = ()


@dataclass(frozen=True)
class Vault:
    """``vault {}`` (parsed and kept; rawexec fetches no Vault tokens)."""

    policies: tuple[str, ...] = ()
    role: str = ""
    namespace: str = ""
    change_mode: str = "restart"
    change_signal: str = ""
    env: bool = True


@dataclass(frozen=True)
class Identity:
    """``identity {}`` (workload identity; parsed and kept)."""

    name: str = "default"
    audience: tuple[str, ...] = ()
    env: bool = False
    file: bool = False
    ttl: float = 0.0


@dataclass(frozen=True)
class VolumeMount:
    """``volume_mount {}`` in a task (parsed and kept; raw_exec mounts nothing)."""

    volume: str = ""
    destination: str = ""
    read_only: bool = False


@dataclass(frozen=True)
class Volume:
    """``volume "name" {}`` in a group (parsed and kept)."""

    name: str
    type: str = "host"
    source: str = ""
    read_only: bool = False


@dataclass(frozen=True)
class UpdateStrategy:
    """``update {}`` (accepted; the single-node agent replaces allocations in place)."""

    max_parallel: int = 1
    health_check: str = "checks"
    min_healthy_time: float = 10.0
    healthy_deadline: float = 300.0
    progress_deadline: float = 600.0
    auto_revert: bool = False
    auto_promote: bool = False
    canary: int = 0
    stagger: float = 30.0


@dataclass(frozen=True)
class Periodic:
    """``periodic {}``: cron specs (``crons``; the old ``cron`` string is folded in)."""

    crons: tuple[str, ...] = ()
    prohibit_overlap: bool = False
    time_zone: str = "UTC"
    enabled: bool = True


@dataclass(frozen=True)
class Parameterized:
    """``parameterized {}``: dispatch payload and meta keys."""

    payload: str = "optional"
    meta_required: tuple[str, ...] = ()
    meta_optional: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    """``task "name" {}``."""

    name: str
    driver: str = ""
    config: Mapping[str, Any] = field(default_factory=_map)
    user: str = ""
    env: Mapping[str, str] = field(default_factory=_map)
    meta: Mapping[str, str] = field(default_factory=_map)
    artifacts: tuple[ArtifactSpec, ...] = ()
    logs: LogConfig = field(default_factory=LogConfig)
    resources: Resources = field(default_factory=Resources)
    kill_timeout: float = 5.0
    kill_signal: str = ""
    shutdown_delay: float = 0.0
    lifecycle: Lifecycle | None = None
    leader: bool = False
    restart: RestartPolicy = field(default_factory=lambda: default_restart("service"))
    constraints: tuple[Constraint, ...] = ()
    templates: tuple[Template, ...] = ()
    services: tuple[Service, ...] = ()
    vault: Vault | None = None
    identities: tuple[Identity, ...] = ()
    volume_mounts: tuple[VolumeMount, ...] = ()


@dataclass(frozen=True)
class TaskGroup:
    """``group "name" {}``."""

    name: str
    count: int = 1
    tasks: tuple[Task, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    restart: RestartPolicy = field(default_factory=lambda: default_restart("service"))
    reschedule: ReschedulePolicy = field(default_factory=ReschedulePolicy)
    ephemeral_disk: EphemeralDisk = field(default_factory=EphemeralDisk)
    meta: Mapping[str, str] = field(default_factory=_map)
    networks: tuple[Network, ...] = ()
    shutdown_delay: float = 0.0
    services: tuple[Service, ...] = ()
    volumes: tuple[Volume, ...] = ()
    update: UpdateStrategy | None = None

    def task(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)


@dataclass(frozen=True)
class Job:
    """``job "id" {}``: the root of the model."""

    id: str
    name: str = ""
    type: str = "service"
    namespace: str = "default"
    region: str = "global"
    datacenters: tuple[str, ...] = ("*",)
    node_pool: str = "default"
    priority: int = 50
    all_at_once: bool = False
    meta: Mapping[str, str] = field(default_factory=_map)
    constraints: tuple[Constraint, ...] = ()
    groups: tuple[TaskGroup, ...] = ()
    update: UpdateStrategy | None = None
    periodic: Periodic | None = None
    parameterized: Parameterized | None = None

    def group(self, name: str) -> TaskGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)
