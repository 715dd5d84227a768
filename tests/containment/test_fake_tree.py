"""TaskCgroup logic on fake v2, v1 and hybrid trees (no root, no kernel)."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from rawexec.containment import CgroupSystem, TaskCgroup, clear_detect_cache, detect
from rawexec.errors import ContainmentError, InvalidConfigError
from rawexec.types import Resources
from tests.containment.fakefs import FakeCgroupFS, build_tree

MB = 1024 * 1024
V1_TASK = ("cpu", "cpuacct", "cpuset", "freezer", "memory")
V1_JOINED = ("cpu", "cpuacct", "freezer", "memory")  # cpuset only with reserved cores


def system(tmp_path: Path, mode: str, **kw: object) -> tuple[CgroupSystem, FakeCgroupFS]:
    clear_detect_cache()
    fs = build_tree(tmp_path, mode, **kw)  # type: ignore[arg-type]
    s = detect(fs=fs)
    assert s.mode == mode
    return s, fs


def create(s: CgroupSystem, **kw: object) -> TaskCgroup:
    args: dict[str, object] = {"alloc_id": "a1b2", "task_name": "web"}
    args.update(kw)
    return TaskCgroup.create(s, **args)  # type: ignore[arg-type]


# -- layout -----------------------------------------------------------------------------------------
def test_v2_layout(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "v2")
    cg = create(s)
    assert cg.unified == "/sys/fs/cgroup/nomad.slice/a1b2.web.scope"
    assert cg.v1 == {}
    assert cg.dirs == (cg.unified,)
    assert cg.procs_files == (str(tmp_path) + "/sys/fs/cgroup/nomad.slice/a1b2.web.scope/cgroup.procs",)
    assert all(os.path.isfile(p) for p in cg.procs_files)
    assert cg.owned == (cg.unified,)
    # controllers enabled down the chain so the task dir gets them
    assert fs.read("/sys/fs/cgroup/cgroup.subtree_control").split() == ["cpuset", "cpu", "io", "memory", "pids"]
    assert set(fs.read(cg.unified + "/cgroup.controllers").split()) == {"cpuset", "cpu", "io", "memory", "pids"}


def test_v1_layout(tmp_path: Path) -> None:
    s, _fs = system(tmp_path, "v1")
    cg = create(s)
    assert cg.unified is None
    assert cg.v1 == {c: f"/sys/fs/cgroup/{c}/nomad/a1b2.web" for c in V1_JOINED}
    assert "pids" not in cg.v1  # Nomad never creates a pids cgroup for raw_exec
    assert cg.primary == "/sys/fs/cgroup/freezer/nomad/a1b2.web"
    assert len(cg.procs_files) == 4
    with_cores = create(s, task_name="db", resources=Resources(cores=1))
    assert with_cores.v1["cpuset"] == "/sys/fs/cgroup/cpuset/nomad/a1b2.db"


def test_hybrid_layout(tmp_path: Path) -> None:
    s, _fs = system(tmp_path, "hybrid")
    cg = create(s)
    assert cg.unified == "/sys/fs/cgroup/unified/nomad.slice/a1b2.web.scope"
    assert cg.v1["memory"] == "/sys/fs/cgroup/memory/nomad/a1b2.web"
    assert cg.primary == cg.unified
    assert cg.procs_files[0].endswith("/unified/nomad.slice/a1b2.web.scope/cgroup.procs")
    # cgroup2 does membership, kill and cpu stats: only the limit controllers are joined in v1
    assert sorted(cg.v1) == ["cpu", "memory"]
    assert len(cg.procs_files) == 3


def test_custom_parent_applies_to_every_hierarchy(tmp_path: Path) -> None:
    s, _fs = system(tmp_path, "hybrid")
    cg = create(s, parent="/custom/deep")
    assert cg.unified == "/sys/fs/cgroup/unified/custom/deep/a1b2.web.scope"
    assert cg.v1["memory"] == "/sys/fs/cgroup/memory/custom/deep/a1b2.web"


def test_comounted_cpu_cpuacct_share_one_dir(tmp_path: Path) -> None:
    s, _fs = system(tmp_path, "v1", cpu_cpuacct_together=True)
    cg = create(s)
    assert cg.v1["cpu"] == cg.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct/nomad/a1b2.web"
    assert len(cg.procs_files) == len(set(cg.procs_files)) == 3


def test_v1_cpuset_dirs_get_parent_cpus_and_mems(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "v1")
    cg = create(s, resources=Resources(cpuset=(2,)))
    assert fs.read(cg.v1["cpuset"] + "/cpuset.cpus") == "2"
    for d in ("/sys/fs/cgroup/cpuset/nomad",):
        assert fs.read(d + "/cpuset.cpus") == "0-3"
        assert fs.read(d + "/cpuset.mems") == "0"


# -- limits -------------------------------------------------------------------------------------------
def test_v2_limits(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "v2")
    cg = create(s, resources=Resources(cpu=500, memory=32))
    u = cg.unified
    assert u is not None
    assert fs.read(u + "/memory.max") == str(32 * MB)
    assert fs.read(u + "/memory.low") == "0"
    assert fs.read(u + "/memory.swap.max") == "0"
    assert fs.read(u + "/cpu.weight") == str(1 + (498 * 9999) // 262142)
    assert fs.read(u + "/cpuset.cpus") == ""  # no reserved cores: share the parent's


def test_v2_oversubscription_and_cores(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "v2")
    cg = create(s, resources=Resources(cpu=100, memory=64, memory_max=-1, cores=2))
    u = cg.unified
    assert u is not None
    assert fs.read(u + "/memory.max") == "max"
    assert fs.read(u + "/memory.low") == str(64 * MB)
    assert fs.read(u + "/memory.swap.max") == "max"  # untouched without a hard limit
    assert fs.read(u + "/cpuset.cpus") == "0-1"


def test_v1_limits(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "v1")
    cg = create(s, resources=Resources(cpu=500, memory=100, memory_max=200, cpuset=(1, 3)))
    m = cg.v1["memory"]
    assert fs.read(m + "/memory.limit_in_bytes") == str(200 * MB)
    assert fs.read(m + "/memory.soft_limit_in_bytes") == str(100 * MB)
    assert fs.read(m + "/memory.swappiness") == "0"
    assert fs.read(cg.v1["cpu"] + "/cpu.shares") == "500"
    assert fs.read(cg.v1["cpuset"] + "/cpuset.cpus") == "1,3"


def test_hybrid_limits_go_to_v1(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "hybrid")
    cg = create(s, resources={"cpu": 7, "memory": 32, "memory_max": 0, "cores": 0, "cpuset": []})
    assert fs.read(cg.v1["memory"] + "/memory.limit_in_bytes") == str(32 * MB)
    # no reservation: a fresh cgroup's soft limit stays the kernel's "unlimited" (not written again)
    assert fs.read(cg.v1["memory"] + "/memory.soft_limit_in_bytes") == "9223372036854771712"
    assert fs.read(cg.v1["cpu"] + "/cpu.shares") == "7"
    assert not fs.exists(str(cg.unified) + "/memory.max")


def test_v2_without_controllers_skips_limits_with_a_warning(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    s, fs = system(tmp_path, "v2", v2_controllers="pids")
    with caplog.at_level(logging.WARNING, logger="rawexec.containment"):
        cg = create(s, resources=Resources(memory=32))
    assert not fs.exists(str(cg.unified) + "/memory.max")
    assert any("memory,cpu controller(s) not enabled" in r.getMessage() for r in caplog.records)


def test_too_many_cores_is_a_clear_error_and_cleans_up(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "v1")
    with pytest.raises(InvalidConfigError, match=r"resources.cores = 9 but only 4 cpus"):
        create(s, resources=Resources(cores=9))
    for c in V1_TASK:
        assert not fs.exists(f"/sys/fs/cgroup/{c}/nomad")  # everything created was removed again


def test_unknown_resources_field(tmp_path: Path) -> None:
    s, _fs = system(tmp_path, "v2")
    with pytest.raises(InvalidConfigError, match="unknown field"):
        create(s, resources={"cpu": 1, "disk": 3})


# -- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field,value", [("alloc_id", ""), ("task_name", "a/b"), ("task_name", ".."),
                                         ("alloc_id", "x\ny")])
def test_bad_names(tmp_path: Path, field: str, value: str) -> None:
    s, _fs = system(tmp_path, "v2")
    with pytest.raises(InvalidConfigError, match=field):
        create(s, **{field: value})


def test_parent_with_dotdot_is_refused(tmp_path: Path) -> None:
    s, _fs = system(tmp_path, "v2")
    with pytest.raises(InvalidConfigError, match=r"must not contain '\.\.'"):
        create(s, parent="nomad.slice/../../etc")


def test_off_system_refuses(tmp_path: Path) -> None:
    clear_detect_cache()
    s = detect(no_cgroups=True, fs=build_tree(tmp_path, "v2"))
    with pytest.raises(ContainmentError, match="cgroups are off"):
        create(s)


def test_both_overrides_refused(tmp_path: Path) -> None:
    s, _fs = system(tmp_path, "hybrid")
    with pytest.raises(InvalidConfigError, match="both set; set only one"):
        create(s, v1_override={"pids": "x"}, v2_override="custom.slice/x.scope")


def test_v2_override(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "v2")
    fs.mkdir("/sys/fs/cgroup/custom.slice")
    fs.mkdir("/sys/fs/cgroup/custom.slice/test.scope")
    cg = create(s, v2_override="custom.slice/test.scope", resources=Resources(memory=32))
    assert cg.unified == "/sys/fs/cgroup/custom.slice/test.scope"
    assert cg.owned == ()
    assert fs.read(cg.unified + "/cgroup.procs") == ""
    # absolute form inside the mount is the same cgroup
    cg2 = create(s, v2_override="/sys/fs/cgroup/custom.slice/test.scope")
    assert cg2.unified == cg.unified
    # the operator's cgroup is not ours to remove
    cg.destroy()
    assert fs.isdir(cg.unified)


def test_missing_v2_override(tmp_path: Path) -> None:
    s, _fs = system(tmp_path, "v2")
    with pytest.raises(ContainmentError, match=r"unable to configure cgroups: no such file or directory: "
                                               r"/sys/fs/cgroup/custom.slice/test.scope"):
        create(s, v2_override="custom.slice/test.scope")


def test_v2_override_on_v1_host(tmp_path: Path) -> None:
    s, _fs = system(tmp_path, "v1")
    with pytest.raises(ContainmentError, match=r"no cgroup2 mount .* use cgroup_v1_override"):
        create(s, v2_override="custom.slice/test.scope")


def test_v1_override_per_controller(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "v1")
    fs.mkdir("/sys/fs/cgroup/pids/custom")
    fs.mkdir("/sys/fs/cgroup/pids/custom/path")
    fs.mkdir("/sys/fs/cgroup/memory/mine")
    cg = create(s, v1_override={"pids": "custom/path", "memory": "/sys/fs/cgroup/memory/mine"})
    assert cg.v1["pids"] == "/sys/fs/cgroup/pids/custom/path"
    assert cg.v1["memory"] == "/sys/fs/cgroup/memory/mine"
    assert cg.v1["freezer"] == "/sys/fs/cgroup/freezer/nomad/a1b2.web"  # the rest fall back to ours
    assert "cpuset" not in cg.v1
    assert "/sys/fs/cgroup/memory/mine" not in cg.owned
    assert cg.primary == cg.v1["freezer"]


def test_v1_override_unknown_controller(tmp_path: Path) -> None:
    s, _fs = system(tmp_path, "v1")
    with pytest.raises(ContainmentError, match="controller 'rdma', which is not mounted"):
        create(s, v1_override={"rdma": "x"})


def test_v1_override_missing(tmp_path: Path) -> None:
    s, _fs = system(tmp_path, "hybrid")
    with pytest.raises(ContainmentError, match=r"no such file or directory: /sys/fs/cgroup/pids/custom/path "
                                               r"\(cgroup_v1_override\['pids'\]"):
        create(s, v1_override={"pids": "custom/path"})


# -- kill / destroy -----------------------------------------------------------------------------------------
def test_v2_kill_all_uses_cgroup_kill(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "v2")
    cg = create(s)
    fs.set_procs(str(cg.unified), [101, 102])
    assert cg.pids() == [101, 102]
    cg.kill_all()
    assert cg.pids() == []
    assert (str(cg.unified) + "/cgroup.kill", "1") in fs.events
    assert not [e for e in fs.events if e[0] == "kill"]


def test_v2_kill_all_waits_for_a_slow_exit_instead_of_killing_again(tmp_path: Path) -> None:
    """cgroup.kill takes every member (and any fork racing it) at once. When hundreds of tasks stop
    together their processes need longer than a round to exit: wait for them, do not kill again."""
    s, fs = system(tmp_path, "v2")
    cg = create(s)
    fs.set_procs(str(cg.unified), [101])
    fs.immortal.add(101)  # killed, still exiting

    def exit_later() -> None:
        time.sleep(0.7)
        fs.immortal.discard(101)
        fs.set_procs(str(cg.unified), [])

    t = threading.Thread(target=exit_later)
    t.start()
    t0 = time.monotonic()
    cg.kill_all(timeout=5)
    t.join()
    assert time.monotonic() - t0 >= 0.6
    assert [e for e in fs.events if e[0].endswith("/cgroup.kill")] == [(str(cg.unified) + "/cgroup.kill", "1")]
    assert cg.pids() == []


def test_v1_kill_all_freezes_kills_thaws(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "v1")
    cg = create(s)
    for d in cg.dirs:
        fs.set_procs(d, [201, 202])
    fs.events.clear()
    cg.kill_all()
    fz = cg.v1["freezer"] + "/freezer.state"
    assert fs.events[0] == (fz, "FROZEN")
    assert sorted(fs.events[1:3]) == [("kill", f"201:{int(signal.SIGKILL)}"), ("kill", f"202:{int(signal.SIGKILL)}")]
    assert fs.events[3] == (fz, "THAWED")
    assert cg.pids() == []


def test_hybrid_kill_all_uses_cgroup_kill_and_clears_v1_too(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "hybrid")
    cg = create(s)
    for d in cg.dirs:
        fs.set_procs(d, [301])
    fs.set_procs(cg.v1["memory"], [301, 302])  # 302 somehow only in a v1 dir
    cg.kill_all()
    assert all(not fs.procs(d) for d in cg.dirs)
    assert ("kill", f"302:{int(signal.SIGKILL)}") in fs.events


def test_kill_all_is_bounded(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "v1")
    cg = create(s)
    fs.set_procs(cg.v1["freezer"], [401])
    fs.immortal.add(401)
    with pytest.raises(ContainmentError, match=r"1 processes survived SIGKILL .* \[401\]"):
        cg.kill_all(timeout=0.2)
    assert fs.read(cg.v1["freezer"] + "/freezer.state") == "THAWED"  # never left frozen


def test_destroy_removes_owned_dirs_keeps_parent_and_is_idempotent(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "hybrid")
    cg = create(s)
    for d in cg.dirs:
        fs.set_procs(d, [501])
    fs.busy_rmdirs = 3  # still draining: EBUSY a few times, then gone
    cg.destroy()
    assert not any(fs.exists(d) for d in cg.dirs)
    assert fs.isdir("/sys/fs/cgroup/unified/nomad.slice") and fs.isdir("/sys/fs/cgroup/memory/nomad")
    cg.destroy()


def test_destroy_gives_up_with_a_clear_error(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "v2")
    cg = create(s)
    fs.busy_rmdirs = 10**6
    with pytest.raises(ContainmentError, match=r"unable to remove cgroup .*a1b2.web.scope: Device or resource busy"):
        cg.destroy(timeout=0.2)


def test_leftover_dirs_are_thawed_killed_and_reused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s, fs = system(tmp_path, "v1")
    first = create(s)
    for d in first.dirs:
        fs.set_procs(d, [601, 602])
    fs.write(first.v1["freezer"] + "/freezer.state", "FROZEN")  # crashed mid-kill
    with caplog.at_level(logging.WARNING, logger="rawexec.containment"):
        again = create(s, resources=Resources(memory=10))
    assert again.dirs == first.dirs
    assert again.owned == first.owned
    assert again.pids() == []
    assert fs.read(again.v1["freezer"] + "/freezer.state") == "THAWED"
    assert any("reusing leftover cgroup" in r.getMessage() for r in caplog.records)


def test_leftover_kill_spares_override_cgroups(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "v1")
    fs.mkdir("/sys/fs/cgroup/memory/shared")
    fs.set_procs("/sys/fs/cgroup/memory/shared", [701])  # someone else's process
    create(s)  # makes our dirs
    create(s, v1_override={"memory": "shared"})  # reuse with the override: nothing of ours to kill
    assert fs.procs("/sys/fs/cgroup/memory/shared") == [701]


# -- OOM -----------------------------------------------------------------------------------------------
def test_oom_count_v2(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "v2")
    cg = create(s)
    assert cg.oom_kill_count() == 0
    fs.write(str(cg.unified) + "/memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n")
    assert cg.oom_kill_count() == 2


def test_oom_count_v1_and_baseline_on_reuse(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "v1")
    cg = create(s)
    fs.write(cg.v1["memory"] + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    assert cg.oom_kill_count() == 3
    again = create(s)  # leftover reused: old kills are not this run's
    assert again.oom_kill_count() == 0
    fs.write(cg.v1["memory"] + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n")
    assert again.oom_kill_count() == 1


def test_a_reused_leftover_gets_every_limit_written_again(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "hybrid")
    old = create(s, resources=Resources(memory=64, memory_max=128))  # reservation 64 MB, hard 128 MB
    assert fs.read(old.v1["memory"] + "/memory.soft_limit_in_bytes") == str(64 * MB)
    again = create(s, resources=Resources(memory=0, memory_max=-1))  # the leftover, now unlimited
    assert again.v1["memory"] == old.v1["memory"]
    assert fs.read(again.v1["memory"] + "/memory.limit_in_bytes") == "-1"
    assert fs.read(again.v1["memory"] + "/memory.soft_limit_in_bytes") == "-1"


def test_a_parent_removed_behind_our_back_is_made_again(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "hybrid")
    first = create(s, task_name="one")
    first.destroy()
    for d in ("/sys/fs/cgroup/unified/nomad.slice", "/sys/fs/cgroup/memory/nomad", "/sys/fs/cgroup/cpu/nomad"):
        fs.rmdir(d)  # e.g. an operator's cleanup while the agent runs
    second = create(s, task_name="two")
    assert all(fs.isdir(d) for d in second.dirs)


def test_oom_count_v1_old_kernel_uses_failcnt(tmp_path: Path) -> None:
    s, fs = system(tmp_path, "v1")
    cg = create(s)
    fs.write(cg.v1["memory"] + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n")
    fs.write(cg.v1["memory"] + "/memory.failcnt", "5")
    assert cg.oom_kill_count() == 5


def test_oom_count_after_removal_is_zero(tmp_path: Path) -> None:
    s, _fs = system(tmp_path, "v2")
    cg = create(s)
    cg.destroy()
    assert cg.oom_kill_count() == 0


# -- state ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["v2", "v1", "hybrid"])
def test_state_round_trip(tmp_path: Path, mode: str) -> None:
    s, fs = system(tmp_path, mode)
    cg = create(s, resources=Resources(memory=32))
    state = json.loads(json.dumps(cg.to_state()))
    back = TaskCgroup.from_state(state, fs=fs)
    assert back.to_state() == cg.to_state()
    assert back.procs_files == cg.procs_files
    fs.set_procs(back.primary, [801])
    back.destroy()
    assert not any(fs.exists(d) for d in cg.dirs)


@pytest.mark.parametrize("state,match", [
    ({}, "invalid cgroup state"),
    ({"version": 99}, "version 99 is not supported"),
    ({"version": 1, "mode": "v2", "alloc_id": "a", "task_name": "t", "unified": None, "v1": {}, "owned": []},
     "names no cgroup directory"),
    ({"version": 1, "mode": "v2", "alloc_id": "a", "task_name": "t", "unified": "rel/x", "v1": {}, "owned": []},
     "not an absolute path"),
])
def test_bad_state(state: dict[str, object], match: str) -> None:
    with pytest.raises(ContainmentError, match=match):
        TaskCgroup.from_state(state)


def test_destroy_all_kills_everything_first_then_removes(tmp_path: Path) -> None:
    from rawexec.containment import destroy_all

    s, fs = system(tmp_path, "v2")
    cgs = [create(s, task_name=f"t{i}") for i in range(3)]
    for i, cg in enumerate(cgs):
        fs.set_procs(str(cg.unified), [900 + i])
    fs.events.clear()
    assert destroy_all(cgs) == []
    kills = [i for i, e in enumerate(fs.events) if e[0].endswith("/cgroup.kill")]
    rmdirs = [i for i, e in enumerate(fs.events) if e[0] == "rmdir"]
    assert len(kills) == 3 and len(rmdirs) == 3
    assert max(kills) < min(rmdirs)  # all kills were sent before the first removal
    assert not any(fs.exists(str(cg.unified)) for cg in cgs)


def test_destroy_all_reports_each_failure(tmp_path: Path) -> None:
    from rawexec.containment import destroy_all

    s, fs = system(tmp_path, "v1")
    good, bad = create(s, task_name="good"), create(s, task_name="bad")
    fs.set_procs(bad.v1["freezer"], [999])
    fs.immortal.add(999)
    errors = destroy_all([bad, good], timeout=0.3)
    assert len(errors) == 1 and "survived SIGKILL" in str(errors[0])
    assert not any(fs.exists(d) for d in good.dirs)


@pytest.mark.parametrize("value", ["/", "/sys/fs/cgroup", "/sys/fs/cgroup/", "  "])
def test_override_naming_the_mount_root_is_refused(tmp_path: Path, value: str) -> None:
    s, _fs = system(tmp_path, "v2")
    with pytest.raises(InvalidConfigError, match="cgroup_v2_override"):
        create(s, v2_override=value)


@pytest.mark.parametrize("mode", ["v2", "v1"])
def test_cgroups_the_task_nested_below_its_own_are_killed_and_removed(tmp_path: Path, mode: str) -> None:
    s, fs = system(tmp_path, mode)
    cg = create(s)
    top = cg.primary
    fs.mkdir(top + "/inner")
    fs.mkdir(top + "/inner/deeper")
    fs.set_procs(top + "/inner/deeper", [1001])
    assert cg.pids() == [1001]
    cg.destroy()
    assert not fs.exists(top)
    assert fs.isdir(top.rsplit("/", 1)[0])  # the shared parent stays


def test_remove_parent_removes_only_empty_parents(tmp_path: Path) -> None:
    from rawexec.containment import remove_parent

    s, fs = system(tmp_path, "hybrid")
    cg = create(s, parent="test-parent/deep")
    left = remove_parent(s, "test-parent/deep")
    assert len(left) == 3 and all("Device or resource busy" in x for x in left)  # the task cgroup is still there
    assert fs.isdir(str(cg.unified))
    cg.destroy()
    assert remove_parent(s, "test-parent/deep") == []
    assert not fs.exists("/sys/fs/cgroup/unified/test-parent")
    assert not fs.exists("/sys/fs/cgroup/memory/test-parent")
    assert remove_parent(s, "test-parent/deep") == []  # idempotent
