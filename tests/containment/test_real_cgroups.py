"""Real-kernel containment: placement, zero survivors for adversarial trees, destroy, reuse, OOM, stats.

Runs as root on a host with cgroups (CI: hybrid — v1 controllers plus cgroup2 at
/sys/fs/cgroup/unified). Each test uses its own parent cgroup and removes it afterwards.
``variant`` forces the v1 freezer path or the cgroup2-only path on a hybrid host, so every
kill strategy runs against the kernel.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid

import pytest

from rawexec.containment import CgroupSystem, StatsCollector, TaskCgroup
from rawexec.errors import ContainmentError
from rawexec.types import Resources
from tests.containment.conftest import variant
from tests.containment.shapes import SHAPES, start, tagged, wait_until

pytestmark = [pytest.mark.root]
MB = 1024 * 1024
# The kill/limit paths each test runs: the host as detected, and (on hybrid) each hierarchy alone.
NATIVE = pytest.param("native", id="native")
V1 = pytest.param("v1", id="v1", marks=pytest.mark.cgroup_v1)
V2 = pytest.param("v2", id="v2", marks=pytest.mark.cgroup_v2)


def _create(system: CgroupSystem, parent: str, **kw: object) -> TaskCgroup:
    args: dict[str, object] = {"alloc_id": uuid.uuid4().hex[:8], "task_name": "t", "parent": parent}
    args.update(kw)
    return TaskCgroup.create(system, **args)  # type: ignore[arg-type]


def _reap(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("path", [NATIVE, V1, V2])
def test_kill_all_leaves_zero_survivors(host: CgroupSystem, parent: str, path: str, shape: str) -> None:
    system = variant(host, path)
    cg = _create(system, parent)
    argv, minimum = SHAPES[shape]
    tag = uuid.uuid4().hex
    procs = [start(argv, tag, cg.procs_files) for _ in range(2)]
    try:
        assert wait_until(lambda: len(tagged(tag)) >= 2 * minimum, 60), f"{shape} did not come up: {tagged(tag)}"
        if shape != "fork_storm":  # every tagged process is in the cgroup (re-check: exits race the scan)
            assert wait_until(lambda: set(tagged(tag)) <= set(cg.pids()), 10), (tagged(tag), cg.pids())
        cg.kill_all()
        assert tagged(tag) == []  # immediately: kill_all returns only once the cgroup is empty
        assert cg.pids() == []
    finally:
        _reap(procs)
        cg.destroy()
    assert not any(os.path.exists(cg.fs.host_path(d)) for d in cg.dirs)
    assert tagged(tag) == []


def test_task_is_placed_before_exec(host: CgroupSystem, parent: str) -> None:
    cg = _create(host, parent)
    try:
        p = start(["cat", "/proc/self/cgroup"], "x", cg.procs_files, stdout=subprocess.PIPE)
        out, _ = p.communicate(timeout=10)
        lines = out.decode().splitlines()
        name = f"{cg.alloc_id}.t"
        if cg.unified:
            assert f"0::/{parent}/{name}.scope" in lines
        for ctrl in ("freezer", "memory", "cpuset"):
            if ctrl in cg.v1:
                assert any(ln.endswith(f":{ctrl}:/{parent}/{name}") for ln in lines), lines
    finally:
        cg.destroy()


def test_destroy_removes_dirs_and_is_idempotent(host: CgroupSystem, parent: str) -> None:
    cg = _create(host, parent, resources=Resources(cpu=200, memory=64))
    tag = uuid.uuid4().hex
    p = start(SHAPES["setsid_child"][0], tag, cg.procs_files)
    assert wait_until(lambda: len(tagged(tag)) >= 2, 10)
    cg.destroy()
    _reap([p])
    assert not any(os.path.exists(d) for d in cg.dirs)
    assert tagged(tag) == []
    cg.destroy()
    cg.kill_all()
    assert cg.pids() == []


def test_recovered_from_state_in_a_new_object(host: CgroupSystem, parent: str) -> None:
    cg = _create(host, parent)
    tag = uuid.uuid4().hex
    p = start(SHAPES["double_fork_daemon"][0], tag, cg.procs_files)
    assert wait_until(lambda: len(tagged(tag)) >= 2, 10)
    back = TaskCgroup.from_state(cg.to_state())
    # (two reads: the daemon's intermediate process may exit between them; the sets settle)
    assert wait_until(lambda: sorted(back.pids()) == sorted(cg.pids()) and bool(back.pids()), 10)
    back.destroy()
    _reap([p])
    assert tagged(tag) == []
    assert not any(os.path.exists(d) for d in cg.dirs)


def test_leftover_dirs_are_reused_and_their_processes_killed(host: CgroupSystem, parent: str) -> None:
    first = _create(host, parent, alloc_id="crashed")
    tag = uuid.uuid4().hex
    old = start(SHAPES["ignores_sigterm"][0], tag, first.procs_files)
    assert wait_until(lambda: len(tagged(tag)) >= 2, 10)
    if "freezer" in first.v1:  # crashed in the middle of a v1 kill: left frozen
        with open(first.v1["freezer"] + "/freezer.state", "w") as f:
            f.write("FROZEN")
    again = _create(host, parent, alloc_id="crashed", resources=Resources(memory=64))
    try:
        assert again.dirs == first.dirs
        assert old.wait(timeout=10) == -9
        assert tagged(tag) == []
        tag2 = uuid.uuid4().hex
        new = start(["sleep", "1000"], tag2, again.procs_files)
        assert wait_until(lambda: new.pid in again.pids(), 10)
    finally:
        again.destroy()
    _reap([new])
    assert not any(os.path.exists(d) for d in again.dirs)


_HOG = """
import sys
chunks = []
for i in range(400):
    chunks.append(b"x" * (1024 * 1024))
print("survived", flush=True)
"""


@pytest.mark.parametrize("path", [NATIVE, V1])
def test_oom_is_detected(host: CgroupSystem, parent: str, path: str) -> None:
    system = variant(host, path)
    cg = _create(system, parent, resources=Resources(cpu=100, memory=32))
    if cg.memory_dir is None:
        pytest.skip("no memory controller for task cgroups on this host")
    try:
        assert cg.oom_kill_count() == 0
        p = start([sys.executable, "-c", _HOG], "oom", cg.procs_files, stdout=subprocess.PIPE)
        out, _ = p.communicate(timeout=60)
        assert p.returncode == -9, out
        assert cg.oom_kill_count() >= 1
    finally:
        cg.destroy()


def test_v2_override_is_used_and_kept(host: CgroupSystem, parent: str) -> None:
    if host.unified_mount is None:
        pytest.skip("no cgroup2 mount")
    os.makedirs(f"{host.unified_mount}/{parent}/custom.scope")
    cg = _create(host, parent, v2_override=f"{parent}/custom.scope")
    assert cg.unified == f"{host.unified_mount}/{parent}/custom.scope"
    tag = uuid.uuid4().hex
    p = start(SHAPES["setsid_child"][0], tag, cg.procs_files)
    assert wait_until(lambda: len(tagged(tag)) >= 2, 10)
    cg.destroy()
    _reap([p])
    assert tagged(tag) == []
    assert os.path.isdir(f"{host.unified_mount}/{parent}/custom.scope")
    with pytest.raises(ContainmentError, match="no such file or directory"):
        _create(host, parent, v2_override=f"{parent}/missing.scope")


# -- stats --------------------------------------------------------------------------------------------
def _on_cpu_ns(pid: int) -> int:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def test_stats_busy_loop_is_one_core(host: CgroupSystem, parent: str) -> None:
    # The highest cpu weight, so the loop gets its core even while other tests load the machine.
    cg = _create(host, parent, resources=Resources(cpu=262144, memory=256))
    for d in {cg.v1.get("cpu"), cg.unified if host.mode == "v2" else None} - {None}:
        knob = "cpu.shares" if d == cg.v1.get("cpu") else "cpu.weight"
        up = str(d).rsplit("/", 1)[0] + "/" + knob  # the test's own parent competes with the machine too
        if os.path.exists(up):
            with open(up, "w") as f:
                f.write("262144" if knob == "cpu.shares" else "10000")
    p = start([sys.executable, "-c", "while True: pass"], "busy", cg.procs_files)
    try:
        with StatsCollector(cg, p.pid, cores=2, total_mhz=4000.0, pid_refresh=0.0) as sc:
            first = sc.collect()
            assert first.resource_usage.cpu_stats.percent == 0.0  # no delta yet
            seen: list[tuple[float, float]] = []
            last = []

            def one_core() -> bool:
                t0, c0 = time.monotonic(), _on_cpu_ns(p.pid)
                sc.collect()
                wait_until(lambda: time.monotonic() - t0 >= 0.3, 1)
                u = sc.collect()
                last.append(u)
                truth = (_on_cpu_ns(p.pid) - c0) / ((time.monotonic() - t0) * 1e9) * 100
                seen.append((u.resource_usage.cpu_stats.percent, truth))
                return 70.0 <= seen[-1][0] <= 130.0 and abs(seen[-1][0] - truth) < 15

            assert wait_until(one_core, 20, interval=0), seen
            u = last[-1]
            cpu = u.resource_usage.cpu_stats
            assert {"System Mode", "User Mode", "Percent"} <= set(cpu.measured)
            assert cpu.total_ticks == pytest.approx(cpu.percent / 100 * 4000.0 / 2)
            assert cpu.user_mode > cpu.system_mode
            assert list(u.pids) == [str(p.pid)]
            assert u.pids[str(p.pid)].cpu_stats.measured == ("System Mode", "User Mode", "Percent")
            assert abs(u.timestamp - time.time_ns()) < 5 * 10**9
    finally:
        cg.destroy()
        _reap([p])


_HOLD = """
import sys, time
data = b"x" * (100 * 1024 * 1024)
print("ready", flush=True)
time.sleep(1000)
"""


def test_stats_rss_of_a_100mb_process(host: CgroupSystem, parent: str) -> None:
    cg = _create(host, parent)
    p = start([sys.executable, "-c", _HOLD], "rss", cg.procs_files, stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        with StatsCollector(cg, p.pid) as sc:
            u = sc.collect()
            mem = u.resource_usage.memory_stats
            assert mem.rss >= 100 * MB
            assert "RSS" in mem.measured
            if "Usage" in mem.measured:
                assert mem.usage >= 100 * MB
            if "Max Usage" in mem.measured:
                assert mem.max_usage >= mem.usage
            assert u.pids[str(p.pid)].memory_stats.rss >= 100 * MB
            assert u.pids[str(p.pid)].memory_stats.measured == ("RSS", "Swap")
            latencies = []
            for _ in range(200):
                t0 = time.perf_counter()
                sc.collect()
                latencies.append(time.perf_counter() - t0)
            assert statistics.median(latencies) < 0.001, f"median collect {statistics.median(latencies) * 1e3:.3f} ms"
    finally:
        cg.destroy()
        _reap([p])


def test_destroy_all_many_adversarial_tasks(host: CgroupSystem, parent: str) -> None:
    from rawexec.containment import destroy_all

    tag = uuid.uuid4().hex
    shapes = ["setsid_child", "double_fork_daemon", "ignores_sigterm", "sigstopped", "resession_fork_again"]
    cgs = [_create(host, parent, task_name=f"t{i}") for i in range(20)]
    procs = [start(SHAPES[shapes[i % len(shapes)]][0], tag, cg.procs_files) for i, cg in enumerate(cgs)]
    minimum = sum(SHAPES[shapes[i % len(shapes)]][1] for i in range(len(cgs)))
    try:
        assert wait_until(lambda: len(tagged(tag)) >= minimum, 30), (len(tagged(tag)), minimum)
        assert destroy_all(cgs) == []
        assert tagged(tag) == []
    finally:
        _reap(procs)
        destroy_all(cgs)
    assert not any(os.path.exists(d) for cg in cgs for d in cg.dirs)


@pytest.mark.parametrize("path", [NATIVE, V1])
def test_processes_in_cgroups_nested_below_the_task_are_killed(host: CgroupSystem, parent: str, path: str) -> None:
    """A root task may make sub-cgroups of its own and move children there: still killed, still removed."""
    system = variant(host, path)
    cg = _create(system, parent)
    nested = []
    for d in cg.dirs:
        os.makedirs(f"{d}/inner/deeper")
        nested.append(f"{d}/inner/deeper/cgroup.procs")
    tag = uuid.uuid4().hex
    p = start(SHAPES["double_fork_daemon"][0], tag, tuple(nested))
    try:
        # until the shape settles: its middle process forks and exits, and may be seen by one
        # read and gone by the other
        assert wait_until(lambda: len(tagged(tag)) >= 2 and set(tagged(tag)) <= set(cg.pids()), 20), \
            (tagged(tag), cg.pids())
        cg.kill_all()
        assert tagged(tag) == []
    finally:
        _reap([p])
        cg.destroy()
    assert not any(os.path.exists(d) for d in cg.dirs)
