"""A task's resource usage in Nomad's ``TaskResourceUsage`` shape (facts §3.9).

Aggregate numbers come from the task's cgroup files when they exist — memory (``memory.stat``
and friends) and cpu (cgroup2 ``cpu.stat`` or v1 ``cpuacct``) — which is cheap: a descriptor
stays open on each file read on every call (5 on v2, 7 hybrid, 8 v1; none per pid, none for
``cgroup.procs``) and each call is a handful of ``pread``\\ s parsed with ``bytes.find``; when
the bytes are those of the previous call, so is the result (no parsing). Without cgroups the
aggregate is the sum over the task's process tree (a ``/proc`` walk from ``root_pid``).

Per-pid entries (RSS, Swap; System/User Mode and Percent) come from ``/proc/PID/{stat,status}``
(``status`` only when some swap may be in use) and, when the aggregate comes from the cgroup,
are refreshed every ``pid_refresh`` seconds (Nomad caches them 5 s too). CPU percentages are
deltas between two readings: the first reading reports 0; 100 means one full core.
"""

from __future__ import annotations

import _thread
import dataclasses
import functools
import os
import time
from collections.abc import Callable, Iterable

from rawexec.containment.cgroup import TaskCgroup
from rawexec.containment.fs import CgroupFS
from rawexec.containment.procs import proc_samples, tree_samples
from rawexec.errors import InvalidConfigError
from rawexec.types import CpuStats, MemoryStats, ResourceUsage, TaskResourceUsage

__all__ = ["PID_CPU_MEASURED", "PID_MEMORY_MEASURED", "StatsCollector", "host_total_mhz"]

PID_MEMORY_MEASURED = ("RSS", "Swap")
PID_CPU_MEASURED = ("System Mode", "User Mode", "Percent")
_CPU_MEASURED = PID_CPU_MEASURED
_CPU_THROTTLE_MEASURED = (*PID_CPU_MEASURED, "Throttled Periods", "Throttled Time")


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

_new = object.__new__


# Frozen dataclasses set each field in ``__init__`` through ``object.__setattr__`` (~3x the cost of
# filling the instance dict); one reading builds four of them (and three more per pid on a refresh),
# 200 tasks a second. These build the very same objects (fields, ``==``, ``repr``, ``hash``) by
# filling ``__dict__``; :func:`_fast_builders_apply` checks at import that this stays true of the
# classes in ``rawexec.types`` (else the classes' own constructors are used).
def _memory_stats_fast(rss: int, cache: int, swap: int, mapped_file: int, usage: int, max_usage: int,
                       kernel_usage: int, kernel_max_usage: int, measured: tuple[str, ...]) -> MemoryStats:
    o = _new(MemoryStats)
    d = o.__dict__
    d["rss"] = rss
    d["cache"] = cache
    d["swap"] = swap
    d["mapped_file"] = mapped_file
    d["usage"] = usage
    d["max_usage"] = max_usage
    d["kernel_usage"] = kernel_usage
    d["kernel_max_usage"] = kernel_max_usage
    d["measured"] = measured
    return o


def _cpu_stats_fast(system_mode: float, user_mode: float, total_ticks: float, throttled_periods: int,
                    throttled_time: int, percent: float, measured: tuple[str, ...]) -> CpuStats:
    o = _new(CpuStats)
    d = o.__dict__
    d["system_mode"] = system_mode
    d["user_mode"] = user_mode
    d["total_ticks"] = total_ticks
    d["throttled_periods"] = throttled_periods
    d["throttled_time"] = throttled_time
    d["percent"] = percent
    d["measured"] = measured
    return o


def _resource_usage_fast(memory_stats: MemoryStats, cpu_stats: CpuStats) -> ResourceUsage:
    o = _new(ResourceUsage)
    d = o.__dict__
    d["memory_stats"] = memory_stats
    d["cpu_stats"] = cpu_stats
    return o


def _task_usage_fast(resource_usage: ResourceUsage, timestamp: int,
                     pids: dict[str, ResourceUsage]) -> TaskResourceUsage:
    o = _new(TaskResourceUsage)
    d = o.__dict__
    d["resource_usage"] = resource_usage
    d["timestamp"] = timestamp
    d["pids"] = pids
    return o


def _fast_builders_apply() -> bool:
    """Do the ``_*_fast`` builders make the same objects as the classes' constructors (same fields, in
    that order, all set by ``__init__``; no ``__post_init__``, no slots)?"""
    for cls, build in ((MemoryStats, _memory_stats_fast), (CpuStats, _cpu_stats_fast),
                       (ResourceUsage, _resource_usage_fast), (TaskResourceUsage, _task_usage_fast)):
        fields = dataclasses.fields(cls)
        params = build.__code__.co_varnames[:build.__code__.co_argcount]
        if (tuple(f.name for f in fields) != params or not all(f.init for f in fields)
                or hasattr(cls, "__post_init__") or hasattr(cls, "__slots__")):
            return False
    return True


_memory_stats: Callable[..., MemoryStats] = MemoryStats
_cpu_stats: Callable[..., CpuStats] = CpuStats
_resource_usage: Callable[..., ResourceUsage] = ResourceUsage
_task_usage: Callable[..., TaskResourceUsage] = TaskResourceUsage
if _fast_builders_apply():
    _memory_stats, _cpu_stats = _memory_stats_fast, _cpu_stats_fast
    _resource_usage, _task_usage = _resource_usage_fast, _task_usage_fast

#: pread sizes: a cgroup integer file is ≤ 21 bytes (a small read avoids a 64 KiB buffer per call);
#: a ``key value`` file is read whole.
_INT_READ = 128
_STAT_READ = 65536


def _field(stat: bytes, needle: bytes) -> int | None:
    """Value of a line ``key value`` in ``stat`` (a file's content after a ``b"\\n"``); None if absent.

    ``needle`` is ``b"\\nkey "``.
    """
    i = stat.find(needle)
    if i < 0:
        return None
    i += len(needle)
    j = stat.find(b"\n", i)
    try:
        return int(stat[i:j] if j >= 0 else stat[i:])
    except ValueError:
        return None


def _int(raw: bytes | None) -> int | None:
    """A one-number file's value; None when absent or not a number."""
    if raw is None:
        return None
    try:
        return int(raw)
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

    Every reading reads every file again; when a group of files (memory, cpu) reads back
    byte-for-byte what it did last time, the numbers are the same and the previous (immutable)
    object is returned instead of parsing again — an idle task costs little more than its preads.
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
        self._fds: dict[str, int] = {}  # path -> descriptor, -1 once the file is known missing
        self._lock = _thread.allocate_lock()  # task_stats and a stats stream may share one collector
        self._prev_cpu: tuple[int, int, int, int] | None = None  # (wall, user, system, total) ns
        self._prev_pid: dict[int, tuple[int, int, int]] = {}  # pid -> (wall, user, system) ns
        self._pid_usage: dict[str, ResourceUsage] = {}
        # pid -> (sample, key, entry) of pids idle at their last reading (0 % cpu): reused while unchanged
        self._pid_memo: dict[int, tuple[tuple[int, int, int, int, int], str, ResourceUsage]] = {}
        self._pid_at: int | None = None
        self._procs: str | None = None  # cgroup.procs listing the task's pids
        # memory: memory.stat, then the one-number files of the plan (fixed on the first reading)
        self._mem_stat: str | None = None
        self._mem_v1 = False
        self._mem_plan: tuple[tuple[str, int, bytes | None, int], ...] | None = None
        self._mem_files: tuple[str, ...] = ()
        self._mem_memo: tuple[list[bytes | None], MemoryStats] | None = None  # last inputs -> result
        # cpu: what to read (path, pread size), how ("v2" cgroup2 cpu.stat | "v1" cpuacct files)
        self._cpu_src: str | None = None
        self._cpu_reads: tuple[tuple[str, int], ...] = ()
        self._throttle_at = -1  # index in _cpu_reads of the cpu.stat with throttling numbers, -1: none
        self._cpu_memo: tuple[list[bytes | None], tuple[int, int, int], CpuStats] | None = None
        self._ru_memo: ResourceUsage | None = None
        if cgroup is not None:
            self._procs = cgroup.primary + "/cgroup.procs"
            mem_dir = cgroup.memory_dir
            if mem_dir is not None:
                self._mem_stat = mem_dir + "/memory.stat"
            self._mem_v1 = "memory" in cgroup.v1
            reads: list[tuple[str, int]] = []
            if cgroup.unified and self._fs.exists(cgroup.unified + "/cpu.stat"):
                self._cpu_src = "v2"
                reads.append((cgroup.unified + "/cpu.stat", _STAT_READ))
            elif "cpuacct" in cgroup.v1:
                self._cpu_src = "v1"
                d = cgroup.v1["cpuacct"]
                reads += [(d + "/cpuacct.usage_user", _INT_READ), (d + "/cpuacct.usage_sys", _INT_READ)]
            if "cpu" in cgroup.v1:
                self._throttle_at = len(reads)
                reads.append((cgroup.v1["cpu"] + "/cpu.stat", _STAT_READ))
            elif cgroup.unified and self._cpu_src == "v2":
                self._throttle_at = 0  # pure v2: the same cpu.stat
            self._cpu_reads = tuple(reads)

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

    def _read(self, path: str, size: int = _STAT_READ) -> bytes | None:
        """Content of a cgroup file via a kept descriptor (``pread`` at 0); None when it does not exist."""
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
            raw = os.pread(fd, size, 0)
            if len(raw) == size < _STAT_READ:  # longer than expected: read it whole
                raw = os.pread(fd, _STAT_READ, 0)
        except OSError:  # e.g. ENODEV: the cgroup was removed
            os.close(fd)
            self._fds[path] = -1
            return None
        return raw

    def _read_once(self, path: str) -> bytes | None:
        """Content of a file read rarely (``cgroup.procs``): no descriptor kept."""
        try:
            fd = self._fs.open_fd(path)
        except OSError:
            return None
        try:
            return os.pread(fd, _STAT_READ, 0)
        except OSError:
            return None
        finally:
            os.close(fd)

    # -- collect ---------------------------------------------------------------------------------
    def collect(self) -> TaskResourceUsage:
        """One reading: aggregate + per-pid memory and cpu, UTC-ns timestamp (thread-safe)."""
        with self._lock:
            return self._collect()

    def _collect(self) -> TaskResourceUsage:
        ts = _time_ns()
        now = _monotonic_ns()
        mem = self._cgroup_memory() if self._mem_stat is not None else None
        cpu = self._cgroup_cpu(now) if self._cpu_src is not None else None
        if (mem is None or cpu is None or self._pid_at is None
                or now - self._pid_at >= self.pid_refresh * 1e9):
            # The cgroup's swap total is exact: when it is 0, no member swaps (skip /proc/PID/status).
            self._refresh_pids(now, with_swap=not (mem is not None and mem.swap == 0 and "Swap" in mem.measured))
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
                mem = _memory_stats(rss, 0, swap, 0, 0, 0, 0, 0, PID_MEMORY_MEASURED)
            if cpu is None:
                cpu = _cpu_stats(system, user, self._ticks(total), 0, 0, total, PID_CPU_MEASURED)
        ru = self._ru_memo
        if ru is None or ru.memory_stats is not mem or ru.cpu_stats is not cpu:
            ru = self._ru_memo = _resource_usage(mem, cpu)
        return _task_usage(ru, ts, dict(self._pid_usage))

    def _ticks(self, percent: float) -> float:
        return percent / 100.0 * self.total_mhz / self.cores

    def _samples(self, with_swap: bool) -> list[tuple[int, int, int, int, int]]:
        """(pid, user_ns, system_ns, rss, swap) of every process of the task (``exclude`` left out)."""
        if self._procs is not None:
            raw = self._read_once(self._procs)
            if raw is not None:
                return proc_samples(map(int, raw.split()), exclude=self.exclude, with_swap=with_swap)
            if self.root_pid is None:
                return []
        assert self.root_pid is not None
        return tree_samples(self.root_pid, exclude=self.exclude, with_swap=with_swap)

    def _refresh_pids(self, now: int, *, with_swap: bool = True) -> None:
        self._pid_at = now
        usage: dict[str, ResourceUsage] = {}
        prev: dict[int, tuple[int, int, int]] = {}
        old, memo = self._prev_pid, self._pid_memo
        idle: dict[int, tuple[tuple[int, int, int, int, int], str, ResourceUsage]] = {}
        for s in self._samples(with_swap):
            pid, user_ns, system_ns, rss, swap = s
            prev[pid] = (now, user_ns, system_ns)
            m = memo.get(pid)
            if m is not None and m[0] == s:  # the same sample as an idle last reading: the same entry
                usage[m[1]] = m[2]
                idle[pid] = m
                continue
            p = old.get(pid)
            user = system = total = 0.0
            if p is not None:
                wall = now - p[0]
                user = _pct(user_ns - p[1], wall)
                system = _pct(system_ns - p[2], wall)
                total = _pct(user_ns + system_ns - p[1] - p[2], wall)
            key = str(pid)
            ru = usage[key] = _resource_usage(
                _memory_stats(rss, 0, swap, 0, 0, 0, 0, 0, PID_MEMORY_MEASURED),
                _cpu_stats(system, user, 0.0, 0, 0, total, PID_CPU_MEASURED))
            if total == user == system == 0.0:
                idle[pid] = (s, key, ru)
        self._prev_pid = prev
        self._pid_memo = idle
        self._pid_usage = usage

    def _set_memory_plan(self, stat: bytes) -> tuple[tuple[str, int, bytes | None, int], ...]:
        """Fix, on the first reading, where each memory number comes from, in Nomad's order.

        Plan entries: (measured name, slot in :class:`MemoryStats`' field order — rss, cache, swap,
        mapped_file, usage, max_usage, kernel_usage, kernel_max_usage —, ``memory.stat`` needle or
        None, else index of the one-number file in the reading's inputs).
        """
        assert self._mem_stat is not None
        d = self._mem_stat.rsplit("/", 1)[0]
        plan: tuple[tuple[str, int, bytes | None, int], ...]
        if self._mem_v1:
            pre = b"\ntotal_" if b"\ntotal_rss " in stat else b"\n"
            self._mem_files = (d + "/memory.usage_in_bytes", d + "/memory.max_usage_in_bytes",
                               d + "/memory.kmem.usage_in_bytes", d + "/memory.kmem.max_usage_in_bytes")
            plan = (("RSS", 0, pre + b"rss ", 0), ("Cache", 1, pre + b"cache ", 0), ("Swap", 2, pre + b"swap ", 0),
                    ("Mapped File", 3, pre + b"mapped_file ", 0), ("Usage", 4, None, 1), ("Max Usage", 5, None, 2),
                    ("Kernel Usage", 6, None, 3), ("Kernel Max Usage", 7, None, 4))
        else:
            self._mem_files = (d + "/memory.swap.current", d + "/memory.current", d + "/memory.peak")
            plan = (("RSS", 0, b"\nanon ", 0), ("Cache", 1, b"\nfile ", 0), ("Swap", 2, None, 1),
                    ("Mapped File", 3, b"\nfile_mapped ", 0), ("Usage", 4, None, 2), ("Max Usage", 5, None, 3),
                    ("Kernel Usage", 6, b"\nkernel ", 0))
        self._mem_plan = plan
        return plan

    def _cgroup_memory(self) -> MemoryStats | None:
        assert self._mem_stat is not None
        raw = self._read(self._mem_stat)
        if raw is None:
            return None
        plan = self._mem_plan
        if plan is None:
            plan = self._set_memory_plan(b"\n" + raw)
        raws: list[bytes | None] = [raw]
        for path in self._mem_files:
            raws.append(self._read(path, _INT_READ))
        memo = self._mem_memo
        if memo is not None and memo[0] == raws:
            return memo[1]  # the same bytes as last time: the same numbers
        stat = b"\n" + raw
        vals = [0, 0, 0, 0, 0, 0, 0, 0]
        measured: list[str] = []
        for name, slot, needle, at in plan:
            v = _field(stat, needle) if needle is not None else _int(raws[at])
            if v is not None:
                vals[slot] = v
                measured.append(name)
        mem = _memory_stats(*vals, tuple(measured))
        self._mem_memo = (raws, mem)
        return mem

    def _cgroup_cpu(self, now: int) -> CpuStats | None:
        raws: list[bytes | None] = []
        for path, size in self._cpu_reads:
            raws.append(self._read(path, size))
        memo = self._cpu_memo
        if memo is not None and memo[0] == raws:
            # Counters as last time: no cpu used since, same throttling; only the reading's time moves.
            self._prev_cpu = (now, *memo[1])
            return memo[2]
        if self._cpu_src == "v2":
            raw = raws[0]
            if raw is None:
                return None
            stat = b"\n" + raw
            u2, s2, t2 = _field(stat, b"\nuser_usec "), _field(stat, b"\nsystem_usec "), _field(stat, b"\nusage_usec ")
            if u2 is None or s2 is None or t2 is None:
                return None
            user, system, total = u2 * 1000, s2 * 1000, t2 * 1000
        else:
            u, s = _int(raws[0]), _int(raws[1])
            if u is None or s is None:
                return None
            user, system, total = u, s, u + s
        prev, self._prev_cpu = self._prev_cpu, (now, user, system, total)
        pu = ps = pt = 0.0
        if prev is not None:
            wall = now - prev[0]
            pu, ps, pt = _pct(user - prev[1], wall), _pct(system - prev[2], wall), _pct(total - prev[3], wall)
        periods = throttled = 0
        measured: tuple[str, ...] = _CPU_MEASURED
        if self._throttle_at >= 0:
            raw = raws[self._throttle_at]
            stat = b"\n" + raw if raw is not None else b""
            nr = _field(stat, b"\nnr_throttled ")
            if nr is not None:
                periods = nr
                ns = _field(stat, b"\nthrottled_time ")
                if ns is None:
                    us = _field(stat, b"\nthrottled_usec ")
                    ns = us * 1000 if us is not None else 0
                throttled = ns
                measured = _CPU_THROTTLE_MEASURED
        cpu = _cpu_stats(ps, pu, self._ticks(pt), periods, throttled, pt, measured)
        # Idle since the previous reading (all percentages 0): the next reading with the same bytes is this.
        self._cpu_memo = (raws, (user, system, total), cpu) if pt == pu == ps == 0.0 else None
        return cpu
