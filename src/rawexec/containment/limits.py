"""Nomad 1.7+ resource → cgroup value rules (pure functions, no I/O).

* memory: :meth:`rawexec.types.Resources.memory_limits` gives (hard, reservation) bytes.
* cpu: the task's MHz are its v1 ``cpu.shares`` (clamped to the kernel's 2..262144); v2
  ``cpu.weight`` is the same shares mapped onto 1..10000 (runc/libcontainer's formula).
* cores: the reserved cores become ``cpuset.cpus``.
"""

from __future__ import annotations

from rawexec.errors import InvalidConfigError
from rawexec.types import Resources

__all__ = [
    "MAX_CPU_SHARES",
    "MIN_CPU_SHARES",
    "cpu_shares",
    "cpu_weight",
    "format_cpu_list",
    "parse_cpu_list",
    "task_cpuset",
]

MIN_CPU_SHARES = 2
MAX_CPU_SHARES = 262144


def cpu_shares(mhz: int) -> int:
    """v1 ``cpu.shares`` for a task asking ``mhz`` MHz."""
    return max(MIN_CPU_SHARES, min(MAX_CPU_SHARES, int(mhz)))


def cpu_weight(shares: int) -> int:
    """v2 ``cpu.weight`` (1..10000) for v1-style ``shares``."""
    shares = max(MIN_CPU_SHARES, min(MAX_CPU_SHARES, shares))
    return 1 + ((shares - MIN_CPU_SHARES) * 9999) // (MAX_CPU_SHARES - MIN_CPU_SHARES)


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """``"0-2,5"`` → ``(0, 1, 2, 5)`` (the kernel's cpulist format)."""
    cpus: set[int] = set()
    for raw in text.strip().split(","):
        part = raw.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                cpus.update(range(int(lo), int(hi) + 1))
            else:
                cpus.add(int(part))
        except ValueError:
            raise InvalidConfigError(f"invalid cpu list {text!r}: expected e.g. \"0-2,5\"") from None
    return tuple(sorted(cpus))


def format_cpu_list(cpus: tuple[int, ...] | list[int]) -> str:
    """``(0, 1, 2, 5)`` → ``"0-2,5"``."""
    out: list[str] = []
    ordered = sorted(set(cpus))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def task_cpuset(resources: Resources, available: tuple[int, ...]) -> str | None:
    """The ``cpuset.cpus`` value for a task, or None to share the parent's cpus.

    ``resources.cpuset`` (filled by the agent) wins; with only ``cores = N`` the first N of the
    ``available`` cpus are taken. Asking for cpus the host does not offer is an error.
    """
    if resources.cpuset:
        missing = sorted(set(resources.cpuset) - set(available))
        if missing:
            raise InvalidConfigError(
                f"resources.cpuset {format_cpu_list(list(resources.cpuset))} names cpus this host does not "
                f"offer ({format_cpu_list(missing)}); available: {format_cpu_list(list(available))}")
        return format_cpu_list(list(resources.cpuset))
    if resources.cores <= 0:
        return None
    if resources.cores > len(available):
        raise InvalidConfigError(
            f"resources.cores = {resources.cores} but only {len(available)} cpus are available "
            f"({format_cpu_list(list(available))}); lower cores")
    return format_cpu_list(list(available[:resources.cores]))
