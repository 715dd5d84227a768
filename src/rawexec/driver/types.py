"""The driver's value types, in Nomad's vocabulary (plugins/drivers)."""

from __future__ import annotations

import base64
import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rawexec.errors import InvalidConfigError
from rawexec.types import ExitResult, LogConfig, Resources

__all__ = [
    "Capabilities",
    "ExecResult",
    "Fingerprint",
    "HealthState",
    "TaskConfig",
    "TaskEvent",
    "TaskHandle",
    "TaskState",
    "TaskStatus",
]


class HealthState(enum.StrEnum):
    UNDETECTED = "undetected"
    UNHEALTHY = "unhealthy"
    HEALTHY = "healthy"


@dataclass(frozen=True)
class Fingerprint:
    health: HealthState
    description: str
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    send_signals: bool = True
    exec: bool = True
    fs_isolation: str = "none"
    network_isolation_modes: tuple[str, ...] = ("host", "group")
    mount_configs: str = "none"
    must_initiate_network: bool = False
    remote_tasks: bool = False
    disable_log_collection: bool = False


class TaskState(enum.StrEnum):
    UNKNOWN = "unknown"
    RUNNING = "running"
    EXITED = "exited"


@dataclass(frozen=True)
class TaskConfig:
    """What Nomad's client passes to StartTask (the subset raw_exec uses).

    ``driver_config`` is the job's ``config {}`` block as a dict. ``stdout_path``/``stderr_path``
    None means: the shim writes Nomad-style rotated files under ``<alloc_dir>/alloc/logs``.
    """

    id: str
    name: str
    alloc_id: str
    alloc_dir: str
    driver_config: Mapping[str, Any]
    env: Mapping[str, str] = field(default_factory=dict)
    user: str = ""
    stdout_path: str | None = None
    stderr_path: str | None = None
    resources: Resources | None = None
    logs: LogConfig = field(default_factory=LogConfig)
    job_name: str = ""
    task_group_name: str = ""

    @property
    def task_dir(self) -> str:
        import os

        return os.path.join(self.alloc_dir, self.name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (no deep copy: the caller serialises it right away)."""
        res = self.resources
        return {
            "id": self.id, "name": self.name, "alloc_id": self.alloc_id, "alloc_dir": self.alloc_dir,
            "driver_config": self.driver_config, "env": dict(self.env), "user": self.user,
            "stdout_path": self.stdout_path, "stderr_path": self.stderr_path,
            "resources": None if res is None else {"cpu": res.cpu, "memory": res.memory, "memory_max": res.memory_max,
                                                   "cores": res.cores, "cpuset": list(res.cpuset)},
            "logs": {"max_files": self.logs.max_files, "max_file_size": self.logs.max_file_size,
                     "disabled": self.logs.disabled},
            "job_name": self.job_name, "task_group_name": self.task_group_name,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskConfig:
        d = dict(d)
        res = d.get("resources")
        if res is not None:
            res = dict(res)
            res["cpuset"] = tuple(res.get("cpuset") or ())
            d["resources"] = Resources(**res)
        d["logs"] = LogConfig(**(d.get("logs") or {}))
        return cls(**d)


@dataclass(frozen=True)
class TaskStatus:
    id: str
    name: str
    state: TaskState
    started_at: datetime | None
    completed_at: datetime | None
    exit_result: ExitResult | None
    driver_attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskEvent:
    """Something the driver wants the task runner (and the user) to know, as Nomad's DriverTaskEvent."""

    task_id: str
    alloc_id: str
    task_name: str
    timestamp: datetime
    message: str
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecResult:
    output: bytes
    exit_result: ExitResult


_MAGIC = "rawexec-task-handle"
HANDLE_VERSION = 1


@dataclass(frozen=True)
class TaskHandle:
    """Everything needed to re-attach to a running task from a new process (Nomad's TaskHandle).

    ``driver_state`` is the shim's identity (pid + start time), its socket, the task pid and the
    cgroup state. ``dumps()`` gives a versioned, checksummed blob; ``loads()`` refuses anything else.
    """

    config: TaskConfig
    driver_state: Mapping[str, Any]
    version: int = HANDLE_VERSION
    state: TaskState = TaskState.RUNNING

    def dumps(self) -> bytes:
        body = json.dumps({"version": self.version, "state": str(self.state), "config": self.config.to_dict(),
                           "driver_state": dict(self.driver_state)}, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(body.encode()).hexdigest()[:16]
        return f"{_MAGIC} {self.version} {digest} ".encode() + base64.b64encode(body.encode())

    @classmethod
    def loads(cls, blob: bytes) -> TaskHandle:
        try:
            head, _, rest = blob.partition(b" ")
            version_b, _, rest = rest.partition(b" ")
            digest_b, _, payload = rest.partition(b" ")
            if head.decode() != _MAGIC:
                raise ValueError("not a rawexec task handle")
            version = int(version_b)
            if version != HANDLE_VERSION:
                raise ValueError(f"handle version {version} is not supported (this driver reads version "
                                 f"{HANDLE_VERSION})")
            body = base64.b64decode(payload, validate=True).decode()
            if hashlib.sha256(body.encode()).hexdigest()[:16] != digest_b.decode():
                raise ValueError("checksum mismatch (truncated or corrupt)")
            d = json.loads(body)
            return cls(config=TaskConfig.from_dict(d["config"]), driver_state=d["driver_state"],
                       version=version, state=TaskState(d.get("state", "running")))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise InvalidConfigError(f"failed to decode task state from handle: {e}") from None
