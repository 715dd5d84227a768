"""Build a task's environment exactly as Nomad's client does for raw_exec (facts §5.2).

Precedence, later wins: ``NOMAD_*`` variables -> ``NOMAD_META_*`` -> the agent's own
environment (only keys not set yet, minus the client ``env.denylist``) -> the task's
``env {}`` (each value ``${}``-interpolated) -> hook envs. Finally keys with a port/meta prefix
are cleaned (every character outside ``[A-Za-z0-9_.]`` becomes ``_``).

Deliberate choice: a task ``env {}`` value is interpolated against the environment built *before*
the task's own ``env {}`` (Nomad walks a Go map, so there one env var seeing another is random).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any, Protocol

from rawexec.artifacts.spec import ArtifactSpec
from rawexec.taskenv.hclexpr import EvalContext, evaluate_config, node_variables
from rawexec.taskenv.interp import replace_env
from rawexec.types import Resources

__all__ = [
    "DEFAULT_ENV_DENYLIST",
    "NodeInfo",
    "PortInfo",
    "TaskEnv",
    "TaskEnvBuilder",
    "filter_denied_envvars",
    "go_glob",
]

DEFAULT_ENV_DENYLIST: tuple[str, ...] = (
    "CONSUL_TOKEN", "CONSUL_HTTP_TOKEN", "VAULT_TOKEN", "NOMAD_LICENSE", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS",
)
"""Nomad's default client ``env.denylist``."""

_CLEANED_PREFIXES = ("NOMAD_ADDR_", "NOMAD_IP_", "NOMAD_PORT_", "NOMAD_HOST_PORT_", "NOMAD_META_")
_EMPTY: Mapping[str, str] = MappingProxyType({})


_UNCLEAN = re.compile(r"[^A-Za-z0-9_.]")


def _clean_key(key: str) -> str:
    """Nomad's key cleaning: bytes outside ``[A-Za-z0-9_.]`` (and a leading digit) become ``_``."""
    out = _UNCLEAN.sub(lambda m: "_" * len(m.group().encode()), key)
    return "_" + out[1:] if out[:1].isdigit() else out


def go_glob(pattern: str, subj: str) -> bool:
    """ryanuber/go-glob: ``*`` matches any run of characters, anywhere in the pattern."""
    if pattern == "":
        return subj == ""
    if pattern == "*":
        return True
    parts = pattern.split("*")
    if len(parts) == 1:
        return subj == pattern
    leading, trailing = pattern.startswith("*"), pattern.endswith("*")
    end = len(parts) - 1
    for i in range(end):
        idx = subj.find(parts[i])
        if i == 0:
            if not leading and idx != 0:
                return False
        elif idx < 0:
            return False
        subj = subj[idx + len(parts[i]):]
    return trailing or subj.endswith(parts[end])


def filter_denied_envvars(env: Mapping[str, str], patterns: Iterable[str]) -> dict[str, str]:
    """Drop keys matching any of the driver's ``denied_envvars`` globs (applied to the final env)."""
    pats = [p for p in patterns if p]
    return {k: v for k, v in env.items() if not any(go_glob(p, k) for p in pats)}


class _Port(Protocol):
    @property
    def label(self) -> str: ...
    @property
    def value(self) -> int: ...
    @property
    def to(self) -> int: ...
    @property
    def host_ip(self) -> str: ...


@dataclass(frozen=True)
class PortInfo:
    """A port as the env builder needs it (``rawexec.agent.ports.AllocatedPort`` fits too)."""

    label: str
    value: int
    to: int = 0
    host_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class NodeInfo:
    """The node facts tasks can see: as NOMAD_* values and as ``${node.*}``/``${attr.*}``/``${meta.*}``."""

    id: str = ""
    name: str = ""
    datacenter: str = "dc1"
    region: str = "global"
    node_class: str = ""
    node_pool: str = "default"
    attributes: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    meta: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    cgroup_parent: str = ""

    def node_attrs(self) -> dict[str, str]:
        """Nomad's interpolation map: ``node.unique.id``, ``node.region``, ..., ``attr.<k>``, ``meta.<k>``."""
        return dict(self._node_attrs)

    @cached_property
    def _node_attrs(self) -> dict[str, str]:
        out = {"node.unique.id": self.id, "node.unique.name": self.name, "node.datacenter": self.datacenter,
               "node.region": self.region, "node.class": self.node_class, "node.pool": self.node_pool}
        out.update({f"attr.{k}": str(v) for k, v in self.attributes.items()})
        out.update({f"meta.{k}": str(v) for k, v in self.meta.items()})
        return out

    @cached_property
    def eval_variables(self) -> dict[str, Any]:
        """The ``node``/``attr``/``meta`` objects of the config {} eval context (computed once per node)."""
        return node_variables(self._node_attrs)


def _join_host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _format_cpuset(cores: Sequence[int]) -> str:
    """``(0, 1, 2, 5)`` -> ``"0-2,5"``."""
    cs = sorted(set(cores))
    out: list[str] = []
    i = 0
    while i < len(cs):
        j = i
        while j + 1 < len(cs) and cs[j + 1] == cs[j] + 1:
            j += 1
        out.append(str(cs[i]) if i == j else f"{cs[i]}-{cs[j]}")
        i = j + 1
    return ",".join(out)


class TaskEnv:
    """A built task environment plus the node attributes; the interpolation entry points."""

    def __init__(self, env: Mapping[str, str], node_attrs: Mapping[str, str], *,
                 node_vars: Mapping[str, Any] | None = None) -> None:
        self.env: dict[str, str] = dict(env)
        self.node_attrs: dict[str, str] = dict(node_attrs)
        self._node_vars = node_vars
        self._ctx: EvalContext | None = None

    def env_list(self) -> list[str]:
        """``KEY=value`` entries, sorted (what the driver passes to the process)."""
        return [f"{k}={v}" for k, v in sorted(self.env.items())]

    def replace(self, text: str) -> str:
        """Simple ``${name}`` interpolation: env, then node attributes; unknown names stay."""
        return replace_env(text, self.env, self.node_attrs)

    def replace_all(self, items: Iterable[str]) -> list[str]:
        return [self.replace(s) for s in items]

    def replace_map(self, m: Mapping[str, str]) -> dict[str, str]:
        """Interpolate the values of a map (meta, headers, options)."""
        return {k: self.replace(v) for k, v in m.items()}

    def replace_artifact(self, spec: ArtifactSpec) -> ArtifactSpec:
        """An artifact with ``source``, ``destination``, ``options`` and ``headers`` interpolated."""
        return replace(spec, source=self.replace(spec.source), destination=self.replace(spec.destination),
                       options=MappingProxyType(self.replace_map(spec.options)),
                       headers=MappingProxyType(self.replace_map(spec.headers)))

    def eval_context(self) -> EvalContext:
        if self._ctx is None:
            self._ctx = EvalContext.for_task(self.env, self.node_attrs, node_vars=self._node_vars)
        return self._ctx

    def parse_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Evaluate the driver ``config {}`` (every string is an HCL template).

        Raises :class:`rawexec.errors.InvalidConfigError` ``failed to parse config: ...``.
        """
        out: dict[str, Any] = evaluate_config(dict(config), self.eval_context())
        return out


class TaskEnvBuilder:
    """Collects what Nomad's client knows about a task, then :meth:`build` s its env.

    Every setter returns the builder, so calls chain. Only what is set (non-empty) is exported.
    """

    def __init__(self, node: NodeInfo | None = None) -> None:
        self.node = node or NodeInfo()
        self._alloc: dict[str, str] = {}
        self._task_name = ""
        self._task_env: dict[str, str] = {}
        self._meta: dict[str, str] = {}
        self._resources: Resources | None = None
        self._dirs: dict[str, str] = {}
        self._ports: list[_Port] = []
        self._task_ports: dict[str, list[_Port]] = {}
        self._host_env: dict[str, str] = {}
        self._hook_envs: list[dict[str, str]] = []
        self._region: str | None = None

    def set_alloc(self, *, alloc_id: str, job_id: str, group: str, index: int = 0, job_name: str = "",
                  alloc_name: str = "", parent_id: str = "", namespace: str = "default",
                  region: str = "") -> TaskEnvBuilder:
        if index < 0:
            raise ValueError(f"alloc index must not be negative, got {index}")
        job_name = job_name or job_id
        self._alloc = {
            "NOMAD_ALLOC_ID": alloc_id, "NOMAD_SHORT_ALLOC_ID": alloc_id[:8],
            "NOMAD_ALLOC_NAME": alloc_name or f"{job_id}.{group}[{index}]",
            "NOMAD_ALLOC_INDEX": str(index), "NOMAD_GROUP_NAME": group, "NOMAD_JOB_ID": job_id,
            "NOMAD_JOB_NAME": job_name, "NOMAD_JOB_PARENT_ID": parent_id, "NOMAD_NAMESPACE": namespace,
        }
        self._region = region or None
        return self

    def set_task(self, name: str, *, env: Mapping[str, str] | None = None,
                 meta: Iterable[Mapping[str, str]] | Mapping[str, str] = (),
                 resources: Resources | None = None) -> TaskEnvBuilder:
        """The task: name, its ``env {}`` (not yet interpolated), meta (job, group, task maps in that
        order: later wins) and resources."""
        self._task_name = name
        self._task_env = dict(env or {})
        maps = [meta] if isinstance(meta, Mapping) else list(meta)
        self._meta = {}
        for m in maps:
            self._meta.update({str(k): str(v) for k, v in m.items()})
        self._resources = resources
        return self

    def set_alloc_dir(self, alloc_dir: str | os.PathLike[str]) -> TaskEnvBuilder:
        """Host paths under the allocation dir (raw_exec has no chroot): needs :meth:`set_task` first."""
        if not self._task_name:
            raise ValueError("set_task() must be called before set_alloc_dir()")
        root = os.fspath(alloc_dir)
        return self.set_dirs(alloc_dir=os.path.join(root, "alloc"),
                             task_dir=os.path.join(root, self._task_name, "local"),
                             secrets_dir=os.path.join(root, self._task_name, "secrets"))

    def set_dirs(self, *, alloc_dir: str = "", task_dir: str = "", secrets_dir: str = "") -> TaskEnvBuilder:
        self._dirs = {"NOMAD_ALLOC_DIR": alloc_dir, "NOMAD_TASK_DIR": task_dir, "NOMAD_SECRETS_DIR": secrets_dir}
        return self

    def set_ports(self, ports: Iterable[_Port]) -> TaskEnvBuilder:
        """The allocation's (group network) ports."""
        self._ports = list(ports)
        return self

    def set_task_ports(self, task: str, ports: Iterable[_Port]) -> TaskEnvBuilder:
        """Another task's own ports (``NOMAD_ADDR_<task>_<label>`` ...)."""
        self._task_ports[task] = list(ports)
        return self

    def set_host_env(self, env: Mapping[str, str] | None = None,
                     denylist: Iterable[str] = DEFAULT_ENV_DENYLIST) -> TaskEnvBuilder:
        """The agent's environment (default ``os.environ``) minus ``denylist`` (exact names).

        An agent building many tasks should pass one snapshot (``dict(os.environ)``): cheaper.
        """
        deny = set(denylist)
        src = os.environ if env is None else env
        self._host_env = {k: v for k, v in src.items() if k not in deny}
        return self

    def add_hook_env(self, env: Mapping[str, str]) -> TaskEnvBuilder:
        """Env vars from a task hook; applied after the task's env, in the order added."""
        self._hook_envs.append(dict(env))
        return self

    # -- build ------------------------------------------------------------------------------

    def _nomad_vars(self) -> dict[str, str]:
        env: dict[str, str] = {}
        env.update(self._dirs)
        r = self._resources
        if r is not None:
            if r.memory > 0:
                env["NOMAD_MEMORY_LIMIT"] = str(r.memory)
            if r.memory_max > 0:
                env["NOMAD_MEMORY_MAX_LIMIT"] = str(r.memory_max)
            if r.cpu > 0:
                env["NOMAD_CPU_LIMIT"] = str(r.cpu)
            if r.cpuset:
                env["NOMAD_CPU_CORES"] = _format_cpuset(r.cpuset)
        env.update(self._alloc)
        env["NOMAD_TASK_NAME"] = self._task_name
        env["NOMAD_DC"] = self.node.datacenter
        env["NOMAD_REGION"] = self._region or self.node.region
        env["NOMAD_PARENT_CGROUP"] = self.node.cgroup_parent
        for p in self._ports:
            port = str(p.to if p.to > 0 else p.value)
            host = str(p.value)
            env[f"NOMAD_IP_{p.label}"] = p.host_ip
            env[f"NOMAD_HOST_IP_{p.label}"] = p.host_ip
            env[f"NOMAD_PORT_{p.label}"] = port
            env[f"NOMAD_ALLOC_PORT_{p.label}"] = port
            env[f"NOMAD_HOST_PORT_{p.label}"] = host
            env[f"NOMAD_ADDR_{p.label}"] = _join_host_port(p.host_ip, p.value)
            env[f"NOMAD_HOST_ADDR_{p.label}"] = _join_host_port(p.host_ip, p.value)
        for task, ports in self._task_ports.items():
            for p in ports:
                env[f"NOMAD_IP_{task}_{p.label}"] = p.host_ip
                env[f"NOMAD_PORT_{task}_{p.label}"] = str(p.to if p.to > 0 else p.value)
                env[f"NOMAD_ADDR_{task}_{p.label}"] = _join_host_port(p.host_ip, p.value)
        return {k: v for k, v in env.items() if v != ""}

    def build(self) -> TaskEnv:
        env = self._nomad_vars()
        for k, v in self._meta.items():
            env[f"NOMAD_META_{k}"] = v
            env[f"NOMAD_META_{k.upper()}"] = v
        for k, v in self._host_env.items():
            env.setdefault(k, v)
        attrs = self.node._node_attrs
        base = dict(env)
        for k, v in self._task_env.items():
            env[k] = replace_env(v, base, attrs)
        for hook in self._hook_envs:
            env.update(hook)
        cleaned: dict[str, str] = {}
        for k, v in env.items():
            cleaned[_clean_key(k) if k.startswith(_CLEANED_PREFIXES) else k] = v
        return TaskEnv(cleaned, attrs, node_vars=self.node.eval_variables)
