"""A task's resource usage in Nomad's ``TaskResourceUsage`` shape (facts §3.9).

Aggregate numbers come from the task's cgroup files when they exist — memory (``memory.stat``
and friends) and cpu (cgroup2 ``cpu.stat`` or v1 ``cpuacct``) — which is cheap: the
descriptors stay open and each call is a handful of ``pread``\\ s. Without cgroups the
aggregate is the sum over the task's process tree (a ``/proc`` walk from ``root_pid``).

Per-pid entries (RSS, Swap; System/User Mode and Percent) come from ``/proc/PID/{stat,status}``
and, when the aggregate comes from the cgroup, are refreshed every ``pid_refresh`` seconds
(Nomad caches them 5 s too). CPU percentages are deltas between two readings: the first
reading reports 0; 100 means one full core.
"""

from __future__ import annotations

import _thread
import functools
import os
import time
from collections.abc import Iterable

from rawexec.containment.cgroup import TaskCgroup
from rawexec.containment.fs import CgroupFS
from rawexec.containment.procs import descendants, read_proc_sample
from rawexec.errors import InvalidConfigError
from rawexec.types import CpuStats, MemoryStats, ResourceUsage, TaskResourceUsage

__all__ = ["PID_CPU_MEASURED", "PID_MEMORY_MEASURED", "StatsCollector", "host_total_mhz"]

PID_MEMORY_MEASURED = ("RSS", "Swap")
PID_CPU_MEASURED = ("System Mode", "User Mode", "Percent")


@functools.cache
def host_total_mhz() -> float:
    """The node's total compute in MHz (Σ per-cpu MHz), as Nomad fingerprints it."""
    total = 0.0
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    total += float(line.split(":", 1)[1])
    except (OSError, ValueError):
        total = 0.0
    if total > 0:
        return total
    n = os.cpu_count() or 1
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", encoding="ascii") as f:
            return int(f.read().strip()) / 1000.0 * n
    except (OSError, ValueError):
        return 1000.0 * n


#: Clocks (module attributes so tests can drive the cpu-percent arithmetic deterministically).
_monotonic_ns = time.monotonic_ns
_time_ns = time.time_ns


def _field(stat: bytes, key: bytes) -> int | None:
    """Value of ``key`` in a ``key value`` per line file given as ``b"\\n" + content``; None if absent.

    ``key`` may also be given ready as ``b"\\nkey "`` (saves the concatenation on hot paths).
    """
    needle = key if key[:1] == b"\n" else b"\n" + key + b" "
    i = stat.find(needle)
    if i < 0:
        return None
    i += len(needle)
    j = stat.find(b"\n", i)
    try:
        return int(stat[i:j] if j >= 0 else stat[i:])
    except ValueError:
        return None


def _pct(delta_ns: int, wall_ns: int) -> float:
    if delta_ns <= 0 or wall_ns <= 0:
        return 0.0
    return delta_ns / wall_ns * 100.0


class StatsCollector:
    """Collects one task's usage; keep one per task and call :meth:`collect` on each tick.

    ``cgroup``: the task's :class:`TaskCgroup` (None when cgroups are off); ``root_pid``: the
    top of the task's process tree for the ``/proc`` walk (used when there is no cgroup).
    ``cores``/``total_mhz`` turn a percentage into Nomad's ``TotalTicks`` (MHz consumed).
    Holds a few open descriptors on the cgroup files: call :meth:`close` (or use ``with``).
    """

    def __init__(self, cgroup: TaskCgroup | None, root_pid: int | None, *, cores: int | None = None,
                 total_mhz: float | None = None, pid_refresh: float = 5.0,
                 exclude_pids: Iterable[int] = ()) -> None:
        if cgroup is None and root_pid is None:
            raise InvalidConfigError("StatsCollector needs a cgroup or a root_pid to find the task's processes")
        self.cgroup = cgroup
        self.root_pid = root_pid
        self.cores = cores if cores and cores > 0 else (os.cpu_count() or 1)
        self.total_mhz = float(total_mhz) if total_mhz else host_total_mhz()
        self.pid_refresh = pid_refresh
        self.exclude = frozenset(exclude_pids)
        self._fs: CgroupFS = cgroup.fs if cgroup is not None else CgroupFS()
        self._fds: dict[str, int] = {}
        self._lock = _thread.allocate_lock()  # task_stats and a stats stream may share one collector
        self._prev_cpu: tuple[int, int, int, int] | None = None  # (wall, user, system, total) ns
        self._prev_pid: dict[int, tuple[int, int, int]] = {}  # pid -> (wall, user, system) ns
        self._pid_usage: dict[str, ResourceUsage] = {}
        self._pid_at: int | None = None
        self._mem_dir: str | None = None
        self._mem_v1 = False
        self._mem_plan: list[tuple[str, bytes | None, str | None]] | None = None
        self._cpu_src: str | None = None  # "v2" | "v1"
        self._throttle: str | None = None  # path of the cpu.stat with throttling numbers
        if cgroup is not None:
            self._mem_dir = cgroup.memory_dir
            self._mem_v1 = "memory" in cgroup.v1
            if cgroup.unified and self._fs.exists(cgroup.unified + "/cpu.stat"):
                self._cpu_src = "v2"
            elif "cpuacct" in cgroup.v1:
                self._cpu_src = "v1"
            if "cpu" in cgroup.v1:
                self._throttle = cgroup.v1["cpu"] + "/cpu.stat"
            elif cgroup.unified and self._cpu_src == "v2":
                self._throttle = cgroup.unified + "/cpu.stat"

    # -- plumbing --------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the descriptors kept on cgroup files (idempotent)."""
        fds, self._fds = getattr(self, "_fds", {}), {}
        for fd in fds.values():
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def __enter__(self) -> StatsCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def _read(self, path: str) -> bytes | None:
        """Content of a cgroup file via a cached descriptor; None when it does not exist."""
        fd = self._fds.get(path)
        if fd is None:
            try:
                fd = self._fs.open_fd(path)
            except FileNotFoundError:
                fd = -1
            except OSError:  # e.g. EMFILE: read without keeping a descriptor
                try:
                    return self._fs.read(path).encode()
                except OSError:
                    return None
            self._fds[path] = fd
        if fd < 0:
            return None
        try:
            return os.pread(fd, 65536, 0)
        except OSError:
            os.close(fd)
            self._fds[path] = -1
            return None

    def _int(self, path: str) -> int | None:
        raw = self._read(path)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            return None

    # -- collect ---------------------------------------------------------------------------------
    def collect(self) -> TaskResourceUsage:
        """One reading: aggregate + per-pid memory and cpu, UTC-ns timestamp (thread-safe)."""
        with self._lock:
            return self._collect()

    def _collect(self) -> TaskResourceUsage:
        ts = _time_ns()
        now = _monotonic_ns()
        mem = self._cgroup_memory()
        cpu = self._cgroup_cpu(now)
        if (mem is None or cpu is None or self._pid_at is None
                or now - self._pid_at >= self.pid_refresh * 1e9):
            # The cgroup's swap total is exact: when it is 0, no member swaps (skip /proc/PID/status).
            self._refresh_pids(now, with_swap=not (mem is not None and "Swap" in mem.measured and mem.swap == 0))
        if mem is None or cpu is None:
            rss = swap = 0
            user = system = total = 0.0
            for u in self._pid_usage.values():
                rss += u.memory_stats.rss
                swap += u.memory_stats.swap
                user += u.cpu_stats.user_mode
                system += u.cpu_stats.system_mode
                total += u.cpu_stats.percent
            if mem is None:
                mem = MemoryStats(rss=rss, swap=swap, measured=PID_MEMORY_MEASURED)
            if cpu is None:
                cpu = CpuStats(system_mode=system, user_mode=user, percent=total,
                               total_ticks=self._ticks(total), measured=PID_CPU_MEASURED)
        return TaskResourceUsage(resource_usage=ResourceUsage(memory_stats=mem, cpu_stats=cpu), timestamp=ts,
                                 pids=dict(self._pid_usage))

    def _ticks(self, percent: float) -> float:
        return percent / 100.0 * self.total_mhz / self.cores

    def _pids(self) -> list[int]:
        if self.cgroup is not None:
            raw = self._read(self.cgroup.primary + "/cgroup.procs")
            if raw is not None:
                return [int(x) for x in raw.split()]
            if self.root_pid is None:
                return []
        assert self.root_pid is not None
        return [self.root_pid, *descendants(self.root_pid)]

    def _refresh_pids(self, now: int, *, with_swap: bool = True) -> None:
        self._pid_at = now
        usage: dict[str, ResourceUsage] = {}
        prev: dict[int, tuple[int, int, int]] = {}
        for pid in self._pids():
            if pid in self.exclude:
                continue
            s = read_proc_sample(pid, with_swap=with_swap)
            if s is None:
                continue
            prev[pid] = (now, s.user_ns, s.system_ns)
            p = self._prev_pid.get(pid)
            user = system = total = 0.0
            if p is not None:
                wall = now - p[0]
                user = _pct(s.user_ns - p[1], wall)
                system = _pct(s.system_ns - p[2], wall)
                total = _pct(s.user_ns + s.system_ns - p[1] - p[2], wall)
            usage[str(pid)] = ResourceUsage(
                memory_stats=MemoryStats(rss=s.rss, swap=s.swap, measured=PID_MEMORY_MEASURED),
                cpu_stats=CpuStats(system_mode=system, user_mode=user, percent=total, measured=PID_CPU_MEASURED))
        self._prev_pid = prev
        self._pid_usage = usage

    def _memory_plan(self, d: str, stat: bytes) -> list[tuple[str, bytes | None, str | None]]:
        """(measured name, memory.stat key, or file) in Nomad's order, fixed per task on first read."""
        if self._mem_v1:
            pre = b"\ntotal_" if b"\ntotal_rss " in stat else b"\n"
            return [("RSS", pre + b"rss ", None), ("Cache", pre + b"cache ", None), ("Swap", pre + b"swap ", None),
                    ("Mapped File", pre + b"mapped_file ", None),
                    ("Usage", None, d + "/memory.usage_in_bytes"),
                    ("Max Usage", None, d + "/memory.max_usage_in_bytes"),
                    ("Kernel Usage", None, d + "/memory.kmem.usage_in_bytes"),
                    ("Kernel Max Usage", None, d + "/memory.kmem.max_usage_in_bytes")]
        return [("RSS", b"\nanon ", None), ("Cache", b"\nfile ", None), ("Swap", None, d + "/memory.swap.current"),
                ("Mapped File", b"\nfile_mapped ", None), ("Usage", None, d + "/memory.current"),
                ("Max Usage", None, d + "/memory.peak"), ("Kernel Usage", b"\nkernel ", None)]

    def _cgroup_memory(self) -> MemoryStats | None:
        d = self._mem_dir
        if d is None:
            return None
        raw = self._read(d + "/memory.stat")
        if raw is None:
            return None
        stat = b"\n" + raw
        if self._mem_plan is None:
            self._mem_plan = self._memory_plan(d, stat)
        measured: list[str] = []
        vals: dict[str, int] = {}
        for name, key, path in self._mem_plan:
            v = _field(stat, key) if key is not None else self._int(path)  # type: ignore[arg-type]
            if v is not None:
                vals[name] = v
                measured.append(name)
        g = vals.get
        return MemoryStats(rss=g("RSS", 0), cache=g("Cache", 0), swap=g("Swap", 0),
                           mapped_file=g("Mapped File", 0), usage=g("Usage", 0), max_usage=g("Max Usage", 0),
                           kernel_usage=g("Kernel Usage", 0), kernel_max_usage=g("Kernel Max Usage", 0),
                           measured=tuple(measured))

    def _cgroup_cpu(self, now: int) -> CpuStats | None:
        cg = self.cgroup
        if cg is None or self._cpu_src is None:
            return None
        if self._cpu_src == "v2":
            assert cg.unified is not None
            raw = self._read(cg.unified + "/cpu.stat")
            if raw is None:
                return None
            stat = b"\n" + raw
            u2, s2, t2 = _field(stat, b"\nuser_usec "), _field(stat, b"\nsystem_usec "), _field(stat, b"\nusage_usec ")
            if u2 is None or s2 is None or t2 is None:
                return None
            user, system, total = u2 * 1000, s2 * 1000, t2 * 1000
        else:
            d = cg.v1["cpuacct"]
            u = self._int(d + "/cpuacct.usage_user")
            s = self._int(d + "/cpuacct.usage_sys")
            if u is None or s is None:
                return None
            user, system, total = u, s, u + s
        prev, self._prev_cpu = self._prev_cpu, (now, user, system, total)
        pu = ps = pt = 0.0
        if prev is not None:
            wall = now - prev[0]
            pu, ps, pt = _pct(user - prev[1], wall), _pct(system - prev[2], wall), _pct(total - prev[3], wall)
        measured = ["System Mode", "User Mode", "Percent"]
        periods = throttled = 0
        if self._throttle is not None:
            raw = self._read(self._throttle)
            stat = b"\n" + raw if raw is not None else b""
            nr = _field(stat, b"\nnr_throttled ")
            if nr is not None:
                periods = nr
                ns = _field(stat, b"throttled_time")
                if ns is None:
                    us = _field(stat, b"throttled_usec")
                    ns = us * 1000 if us is not None else 0
                throttled = ns
                measured += ["Throttled Periods", "Throttled Time"]
        return CpuStats(system_mode=ps, user_mode=pu, percent=pt, total_ticks=self._ticks(pt),
                        throttled_periods=periods, throttled_time=throttled, measured=tuple(measured))
