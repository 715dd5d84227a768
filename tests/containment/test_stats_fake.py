"""StatsCollector on fake trees: which files feed which field, measured lists, cpu-percent arithmetic."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

from rawexec.containment import StatsCollector, TaskCgroup, clear_detect_cache, detect, read_proc_sample
from rawexec.containment import stats as stats_mod
from rawexec.types import CpuStats, MemoryStats, ResourceUsage, TaskResourceUsage
from tests.containment.fakefs import FakeCgroupFS, build_tree
from tests.containment.shapes import wait_until

V1_MEASURED = ("RSS", "Cache", "Swap", "Mapped File", "Usage", "Max Usage", "Kernel Usage", "Kernel Max Usage")


class Clock:
    def __init__(self) -> None:
        self.now = 10**12

    def __call__(self) -> int:
        return self.now


def task(tmp_path: Path, mode: str) -> tuple[TaskCgroup, FakeCgroupFS]:
    clear_detect_cache()
    fs = build_tree(tmp_path, mode)
    cg = TaskCgroup.create(detect(fs=fs), alloc_id="a", task_name="t")
    return cg, fs


def test_v1_memory_files(tmp_path: Path) -> None:
    cg, fs = task(tmp_path, "v1")
    m = cg.v1["memory"]
    fs.write(m + "/memory.stat", "cache 1\nrss 2\ntotal_cache 100\ntotal_rss 200\ntotal_swap 300\n"
                                 "total_mapped_file 400\n")
    for f, v in (("usage_in_bytes", 500), ("max_usage_in_bytes", 600), ("kmem.usage_in_bytes", 700),
                 ("kmem.max_usage_in_bytes", 800)):
        fs.write(f"{m}/memory.{f}", f"{v}\n")
    with StatsCollector(cg, None) as sc:
        mem = sc.collect().resource_usage.memory_stats
    assert (mem.rss, mem.cache, mem.swap, mem.mapped_file, mem.usage, mem.max_usage, mem.kernel_usage,
            mem.kernel_max_usage) == (200, 100, 300, 400, 500, 600, 700, 800)
    assert mem.measured == V1_MEASURED


def test_v1_memory_without_swap_accounting(tmp_path: Path) -> None:
    cg, fs = task(tmp_path, "v1")
    fs.write(cg.v1["memory"] + "/memory.stat", "rss 7\ncache 8\n")
    with StatsCollector(cg, None) as sc:
        mem = sc.collect().resource_usage.memory_stats
    assert (mem.rss, mem.cache, mem.swap) == (7, 8, 0)
    assert "Swap" not in mem.measured


def test_v2_memory_files(tmp_path: Path) -> None:
    cg, fs = task(tmp_path, "v2")
    u = str(cg.unified)
    fs.write(u + "/memory.stat", "anon 11\nfile 12\nkernel 13\nfile_mapped 14\nshmem 99\n")
    fs.write(u + "/memory.current", "15\n")
    fs.write(u + "/memory.peak", "16\n")
    fs.write(u + "/memory.swap.current", "17\n")
    with StatsCollector(cg, None) as sc:
        mem = sc.collect().resource_usage.memory_stats
    assert (mem.rss, mem.cache, mem.kernel_usage, mem.mapped_file, mem.usage, mem.max_usage, mem.swap) == \
        (11, 12, 13, 14, 15, 16, 17)
    assert mem.measured == ("RSS", "Cache", "Swap", "Mapped File", "Usage", "Max Usage", "Kernel Usage")


def test_cpu_percent_from_cgroup2_deltas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(stats_mod, "_monotonic_ns", clock)
    cg, fs = task(tmp_path, "hybrid")
    u = str(cg.unified)
    fs.write(u + "/cpu.stat", "usage_usec 1000000\nuser_usec 800000\nsystem_usec 200000\n")
    fs.write(cg.v1["cpu"] + "/cpu.stat", "nr_periods 9\nnr_throttled 3\nthrottled_time 12345\n")
    with StatsCollector(cg, None, cores=4, total_mhz=8000) as sc:
        first = sc.collect().resource_usage.cpu_stats
        assert (first.percent, first.user_mode, first.system_mode, first.total_ticks) == (0, 0, 0, 0)
        clock.now += 2 * 10**9  # 2 s later the task used 3 s of cpu: 1.5 cores
        fs.write(u + "/cpu.stat", "usage_usec 4000000\nuser_usec 3300000\nsystem_usec 700000\n")
        cpu = sc.collect().resource_usage.cpu_stats
    assert cpu.percent == pytest.approx(150.0)
    assert cpu.user_mode == pytest.approx(125.0)
    assert cpu.system_mode == pytest.approx(25.0)
    assert cpu.total_ticks == pytest.approx(1.5 * 8000 / 4)
    assert (cpu.throttled_periods, cpu.throttled_time) == (3, 12345)
    assert cpu.measured == ("System Mode", "User Mode", "Percent", "Throttled Periods", "Throttled Time")


def test_cpu_percent_from_v1_cpuacct(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(stats_mod, "_monotonic_ns", clock)
    cg, fs = task(tmp_path, "v1")
    a = cg.v1["cpuacct"]
    with StatsCollector(cg, None, cores=1, total_mhz=1000) as sc:
        sc.collect()
        clock.now += 10**9
        fs.write(a + "/cpuacct.usage_user", str(int(0.5e9)))
        fs.write(a + "/cpuacct.usage_sys", str(int(0.25e9)))
        cpu = sc.collect().resource_usage.cpu_stats
        assert (cpu.user_mode, cpu.system_mode, cpu.percent) == pytest.approx((50.0, 25.0, 75.0))
        clock.now += 10**9  # idle second
        assert sc.collect().resource_usage.cpu_stats.percent == 0.0


def test_v2_throttling_from_cgroup2_cpu_stat(tmp_path: Path) -> None:
    cg, fs = task(tmp_path, "v2")
    fs.write(str(cg.unified) + "/cpu.stat", "usage_usec 1\nuser_usec 1\nsystem_usec 0\nnr_periods 5\n"
                                            "nr_throttled 2\nthrottled_usec 7\n")
    with StatsCollector(cg, None) as sc:
        cpu = sc.collect().resource_usage.cpu_stats
    assert (cpu.throttled_periods, cpu.throttled_time) == (2, 7000)


def test_per_pid_entries_come_from_proc_and_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(stats_mod, "_monotonic_ns", clock)
    cg, fs = task(tmp_path, "v2")
    me = os.getpid()
    fs.set_procs(str(cg.unified), [me, 2**22 + 12345])  # a pid that does not exist is skipped
    with StatsCollector(cg, None, pid_refresh=5.0) as sc:
        u = sc.collect()
        assert list(u.pids) == [str(me)]
        assert u.pids[str(me)].memory_stats.rss > 0
        fs.set_procs(str(cg.unified), [])
        clock.now += 4 * 10**9
        assert list(sc.collect().pids) == [str(me)]  # within pid_refresh: cached
        clock.now += 2 * 10**9
        assert sc.collect().pids == {}


def test_without_a_memory_cgroup_the_aggregate_is_the_pid_sum(tmp_path: Path) -> None:
    cg, fs = task(tmp_path, "hybrid")
    cg.v1.pop("memory")
    fs.set_procs(str(cg.unified), [os.getpid()])
    with StatsCollector(cg, None) as sc:
        u = sc.collect()
    mem = u.resource_usage.memory_stats
    assert mem.measured == ("RSS", "Swap")
    assert mem.rss == u.pids[str(os.getpid())].memory_stats.rss > 0


def test_descriptors_are_kept_and_closed(tmp_path: Path) -> None:
    cg, _fs = task(tmp_path, "hybrid")
    before = len(os.listdir("/proc/self/fd"))
    sc = StatsCollector(cg, None)
    sc.collect()
    opened = len(os.listdir("/proc/self/fd")) - before
    assert opened >= 3  # memory.stat, cpu.stat, ... stay open between calls
    sc.collect()
    assert len(os.listdir("/proc/self/fd")) - before == opened  # and are reused, not reopened
    sc.close()
    assert len(os.listdir("/proc/self/fd")) == before
    sc.close()


def test_removed_cgroup_gives_empty_measurements_not_errors(tmp_path: Path) -> None:
    cg, _fs = task(tmp_path, "v1")
    with StatsCollector(cg, None) as sc:
        cg.destroy()
        u = sc.collect()
    assert u.pids == {}


# -- cheap repeated readings: same bytes, same numbers; any change is seen ------------------------------
def test_fast_builders_make_the_same_objects_as_the_constructors() -> None:
    assert stats_mod._fast_builders_apply()  # else the plain constructors are in use (still correct, slower)
    mem = stats_mod._memory_stats(1, 2, 3, 4, 5, 6, 7, 8, ("RSS",))
    want = MemoryStats(rss=1, cache=2, swap=3, mapped_file=4, usage=5, max_usage=6, kernel_usage=7,
                       kernel_max_usage=8, measured=("RSS",))
    cpu = stats_mod._cpu_stats(1.5, 2.5, 3.5, 4, 5, 6.5, ("Percent",))
    want_cpu = CpuStats(system_mode=1.5, user_mode=2.5, total_ticks=3.5, throttled_periods=4, throttled_time=5,
                        percent=6.5, measured=("Percent",))
    ru = stats_mod._resource_usage(mem, cpu)
    tru = stats_mod._task_usage(ru, 9, {"1": ru})
    for got, exp in ((mem, want), (cpu, want_cpu), (ru, ResourceUsage(memory_stats=want, cpu_stats=want_cpu)),
                     (tru, TaskResourceUsage(resource_usage=ResourceUsage(memory_stats=want, cpu_stats=want_cpu),
                                             timestamp=9, pids={"1": ResourceUsage(want, want_cpu)}))):
        assert type(got) is type(exp)
        assert got == exp and repr(got) == repr(exp)
        assert dataclasses.asdict(got) == dataclasses.asdict(exp)
    assert hash(mem) == hash(want) and hash(cpu) == hash(want_cpu)
    with pytest.raises(dataclasses.FrozenInstanceError):
        mem.rss = 0  # type: ignore[misc]


def test_an_unchanged_reading_is_reused_and_any_changed_file_is_seen(tmp_path: Path) -> None:
    cg, fs = task(tmp_path, "v1")
    m = cg.v1["memory"]
    fs.write(m + "/memory.stat", "total_rss 200\ntotal_cache 100\ntotal_swap 0\ntotal_mapped_file 400\n")
    with StatsCollector(cg, None) as sc:
        first = sc.collect().resource_usage.memory_stats
        assert sc.collect().resource_usage.memory_stats is first  # same bytes: the same object
        for f, field, v in (("memory.usage_in_bytes", "usage", 5), ("memory.max_usage_in_bytes", "max_usage", 6),
                            ("memory.kmem.usage_in_bytes", "kernel_usage", 7),
                            ("memory.kmem.max_usage_in_bytes", "kernel_max_usage", 8)):
            fs.write(f"{m}/{f}", f"{v}\n")
            assert getattr(sc.collect().resource_usage.memory_stats, field) == v, f
        fs.write(m + "/memory.stat", "total_rss 201\ntotal_cache 100\ntotal_swap 0\ntotal_mapped_file 400\n")
        mem = sc.collect().resource_usage.memory_stats
    assert (mem.rss, mem.cache, mem.mapped_file, mem.usage, mem.max_usage, mem.kernel_usage,
            mem.kernel_max_usage) == (201, 100, 400, 5, 6, 7, 8)
    assert mem.measured == V1_MEASURED


def test_cpu_after_an_idle_reading_is_measured_from_that_reading(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(stats_mod, "_monotonic_ns", clock)
    cg, fs = task(tmp_path, "hybrid")
    u = str(cg.unified)
    fs.write(u + "/cpu.stat", "usage_usec 1000000\nuser_usec 1000000\nsystem_usec 0\n")
    with StatsCollector(cg, None, cores=1, total_mhz=1000) as sc:
        sc.collect()
        clock.now += 10**9
        idle = sc.collect().resource_usage.cpu_stats
        assert (idle.percent, idle.user_mode, idle.system_mode, idle.total_ticks) == (0, 0, 0, 0)
        clock.now += 10**9
        assert sc.collect().resource_usage.cpu_stats is idle  # still idle, same bytes: same object
        clock.now += 10**9  # 1 s after the last (idle) reading the task used 0.5 s
        fs.write(u + "/cpu.stat", "usage_usec 1500000\nuser_usec 1400000\nsystem_usec 100000\n")
        cpu = sc.collect().resource_usage.cpu_stats
        assert (cpu.percent, cpu.user_mode, cpu.system_mode) == pytest.approx((50.0, 40.0, 10.0))
        assert cpu.total_ticks == pytest.approx(500.0)
        clock.now += 10**9  # throttling numbers alone change: seen, cpu idle
        fs.write(cg.v1["cpu"] + "/cpu.stat", "nr_periods 9\nnr_throttled 3\nthrottled_time 12345\n")
        cpu = sc.collect().resource_usage.cpu_stats
    assert (cpu.percent, cpu.throttled_periods, cpu.throttled_time) == (0.0, 3, 12345)


def test_a_one_number_file_longer_than_expected_is_read_whole(tmp_path: Path) -> None:
    cg, fs = task(tmp_path, "v1")
    fs.write(cg.v1["memory"] + "/memory.usage_in_bytes", " " * 300 + "12345\n")
    with StatsCollector(cg, None) as sc:
        assert sc.collect().resource_usage.memory_stats.usage == 12345


def test_descriptors_are_bounded_per_task(tmp_path: Path) -> None:
    cg, fs = task(tmp_path, "hybrid")
    fs.set_procs(str(cg.unified), [os.getpid()])
    before = len(os.listdir("/proc/self/fd"))
    with StatsCollector(cg, None, pid_refresh=0.0) as sc:
        for _ in range(3):
            sc.collect()
        # memory.stat + 4 one-number memory files + 2 cpu.stat; cgroup.procs and /proc are not kept open
        assert len(os.listdir("/proc/self/fd")) - before == 7
    assert len(os.listdir("/proc/self/fd")) == before


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_per_pid_entries_of_idle_pids_are_reused_and_busy_ones_measured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(stats_mod, "_monotonic_ns", clock)
    cg, fs = task(tmp_path, "v2")
    sleeper = subprocess.Popen(["sleep", "1000"])
    me = os.getpid()
    try:
        fs.set_procs(str(cg.unified), [sleeper.pid, me])
        seen: list[object] = []

        def settled() -> bool:  # `sleep` has started (exec done): its sample stays the same between polls
            seen.append(read_proc_sample(sleeper.pid))
            return os.readlink(f"/proc/{sleeper.pid}/exe").endswith("/sleep") and seen[-2:] == [seen[-1]] * 2

        assert wait_until(settled, 10)
        with StatsCollector(cg, None, pid_refresh=0.0) as sc:
            first = sc.collect().pids
            assert list(first) == [str(sleeper.pid), str(me)]
            for _ in range(2):
                clock.now += 10**9
                t0 = _cpu_ticks(me)
                while _cpu_ticks(me) == t0:  # this process uses cpu between the readings; the sleeper does not
                    pass
                pids = sc.collect().pids
                assert pids[str(sleeper.pid)] is first[str(sleeper.pid)]  # same sample, idle: the same entry
                assert pids[str(sleeper.pid)].cpu_stats.percent == 0.0
                busy = pids[str(me)].cpu_stats
                assert busy.percent > 0 and busy.percent == pytest.approx(busy.user_mode + busy.system_mode)
    finally:
        sleeper.kill()
        sleeper.wait()
