"""Value types shared by every layer (the bottom of the import graph).

All are frozen dataclasses: an outcome is data.
"""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass, field

__all__ = [
    "CpuStats",
    "ExitResult",
    "LogConfig",
    "MemoryStats",
    "ResourceUsage",
    "Resources",
    "TaskResourceUsage",
    "exit_result_from_wait_status",
]


@dataclass(frozen=True)
class ExitResult:
    """How a task (or an exec'd command) ended.

    Killed by signal N ⇒ ``exit_code == 128 + N`` and ``signal == N`` (Nomad's mapping).
    ``err`` is set when the exit could not be observed (e.g. the shim was lost): then
    ``exit_code`` is -1.
    """

    exit_code: int = 0
    signal: int = 0
    oom_killed: bool = False
    err: str | None = None

    @property
    def successful(self) -> bool:
        return self.exit_code == 0 and self.signal == 0 and self.err is None

    def to_dict(self) -> dict[str, object]:
        return {"exit_code": self.exit_code, "signal": self.signal, "oom_killed": self.oom_killed,
                "err": self.err}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> ExitResult:
        err = d.get("err")
        return cls(exit_code=int(d.get("exit_code", 0)),  # type: ignore[call-overload]
                   signal=int(d.get("signal", 0)),  # type: ignore[call-overload]
                   oom_killed=bool(d.get("oom_killed", False)),
                   err=None if err is None else str(err))


def exit_result_from_wait_status(status: int, oom_killed: bool = False) -> ExitResult:
    """Decode an ``os.waitpid`` status into an :class:`ExitResult` (the one place this is done)."""
    import os

    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return ExitResult(exit_code=128 + sig, signal=sig, oom_killed=oom_killed)
    if os.WIFEXITED(status):
        return ExitResult(exit_code=os.WEXITSTATUS(status), signal=0, oom_killed=oom_killed)
    return ExitResult(exit_code=1, signal=0, oom_killed=oom_killed,
                      err=f"unexpected wait status {status:#x}")


def signal_name(signum: int) -> str:
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@dataclass(frozen=True)
class Resources:
    """A task's resources, in Nomad's units: cpu in MHz, memory in MB.

    ``memory_max``: 0 = no oversubscription (memory is the hard limit); -1 = no hard limit
    (memory becomes the reservation); > 0 = hard limit, memory the reservation.
    ``cores``: number of reserved cores (0 = share the node's CPUs by weight).
    ``cpuset``: the cores actually reserved (filled by the agent when ``cores`` > 0).
    """

    cpu: int = 100
    memory: int = 300
    memory_max: int = 0
    cores: int = 0
    cpuset: tuple[int, ...] = ()

    def memory_limits(self) -> tuple[int | None, int | None]:
        """(hard limit bytes or None for no limit, reservation bytes or None) — Nomad 1.7+ rule."""
        mb = 1024 * 1024
        if self.memory_max == -1:
            return None, self.memory * mb if self.memory > 0 else None
        if self.memory_max <= 0:
            return (self.memory * mb if self.memory > 0 else None), None
        return self.memory_max * mb, (self.memory * mb if self.memory > 0 else None)


@dataclass(frozen=True)
class LogConfig:
    """The task's ``logs {}`` block: sizes in MB, Nomad's defaults."""

    max_files: int = 10
    max_file_size: int = 10
    disabled: bool = False


@dataclass(frozen=True)
class MemoryStats:
    rss: int = 0
    cache: int = 0
    swap: int = 0
    mapped_file: int = 0
    usage: int = 0
    max_usage: int = 0
    kernel_usage: int = 0
    kernel_max_usage: int = 0
    measured: tuple[str, ...] = ()


@dataclass(frozen=True)
class CpuStats:
    system_mode: float = 0.0
    user_mode: float = 0.0
    total_ticks: float = 0.0
    throttled_periods: int = 0
    throttled_time: int = 0
    percent: float = 0.0
    measured: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResourceUsage:
    memory_stats: MemoryStats = field(default_factory=MemoryStats)
    cpu_stats: CpuStats = field(default_factory=CpuStats)


@dataclass(frozen=True)
class TaskResourceUsage:
    """Nomad's TaskResourceUsage: the aggregate, a UTC-nanosecond timestamp, and per-pid usage."""

    resource_usage: ResourceUsage
    timestamp: int
    pids: dict[str, ResourceUsage] = field(default_factory=dict)
