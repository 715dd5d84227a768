"""No-cgroup containment over /proc: descendants, killing a subreaper's whole tree, oom_score_adj, stats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from rawexec.containment import StatsCollector, apply_oom_score_adj, descendants, kill_process_tree, read_proc_sample
from rawexec.containment import procs as procs_mod
from rawexec.errors import ContainmentError, InvalidConfigError
from tests.containment.shapes import SHAPES, start, tagged, wait_until

_TREE = "sleep 1000 & (sleep 1000 & wait) & wait"


def _stop(p: subprocess.Popen[bytes]) -> None:
    try:
        kill_process_tree(p.pid, timeout=10)
    finally:
        p.wait(timeout=10)


@pytest.mark.parametrize("children_files", [True, False])
def test_descendants_finds_the_whole_tree(monkeypatch: pytest.MonkeyPatch, children_files: bool) -> None:
    if not children_files:  # the fallback: one scan of /proc/*/stat
        monkeypatch.setattr(procs_mod, "_has_children_files", lambda: False)
    tag = uuid.uuid4().hex
    p = start(["sh", "-c", _TREE], tag)
    try:
        assert wait_until(lambda: len(tagged(tag)) == 4, 10)  # sh, sleep, subshell, sleep
        assert wait_until(lambda: set(descendants(p.pid)) == set(tagged(tag)) - {p.pid}, 10)
        d = descendants(p.pid)
        assert len(d) == 3 and p.pid not in d
    finally:
        _stop(p)
    assert descendants(p.pid) == []


# A subreaper (as the shim is) running adversarial shapes and reaping whatever dies.
_SUBREAPER = """
import ctypes, json, os, subprocess, sys, time
assert ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
for argv in json.loads(sys.argv[1]):
    subprocess.Popen(argv, stdin=subprocess.DEVNULL)
print("ready", flush=True)
while True:
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        time.sleep(0.005)
"""


def test_kill_process_tree_of_a_subreaper_leaves_zero_survivors() -> None:
    tag = uuid.uuid4().hex
    shapes = [n for n in SHAPES if n != "plain"]
    argvs = [SHAPES[n][0] for n in shapes]
    minimum = 1 + sum(SHAPES[n][1] for n in shapes)
    helper = start([sys.executable, "-c", _SUBREAPER, json.dumps(argvs)], tag, stdout=subprocess.PIPE)
    try:
        assert helper.stdout is not None and helper.stdout.readline() == b"ready\n"
        assert wait_until(lambda: len(tagged(tag)) >= minimum, 20), tagged(tag)
        t0 = time.monotonic()
        kill_process_tree(helper.pid, include_root=False, timeout=10)
        took = time.monotonic() - t0
        # only the subreaper itself is left; orphans of the double forks were in its tree
        assert tagged(tag) == [helper.pid], tagged(tag)
        assert took < 5
    finally:
        helper.kill()
        helper.wait()
    assert tagged(tag) == []


def test_kill_process_tree_including_root() -> None:
    tag = uuid.uuid4().hex
    p = start(["sh", "-c", _TREE], tag)
    assert wait_until(lambda: len(tagged(tag)) == 4, 10)
    kill_process_tree(p.pid)
    assert p.wait(timeout=10) == -9
    assert wait_until(lambda: tagged(tag) == [], 5)  # the rest are orphans reaped by init


def test_kill_process_tree_is_bounded_for_a_process_it_cannot_kill() -> None:
    # A process that never dies (a task stuck in D state): simulated, so the bound is what is tested.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(procs_mod, "is_zombie", lambda pid: False)
        mp.setattr(procs_mod, "descendants", lambda pid: [])
        mp.setattr(procs_mod, "_send_signal", lambda pid, sig: None)
        with pytest.raises(ContainmentError, match=r"1 processes of the tree of pid 424242 survived SIGKILL"):
            kill_process_tree(424242, timeout=0.1)


def test_oom_score_adj_is_applied_in_the_child_not_inherited() -> None:
    script = (
        "import subprocess, sys\n"
        "from rawexec.containment import apply_oom_score_adj\n"
        "apply_oom_score_adj(300)\n"  # the 'agent' has its own value...
        "out = subprocess.run(['cat', '/proc/self/oom_score_adj'], capture_output=True,\n"
        "                     preexec_fn=lambda: apply_oom_score_adj(0)).stdout.decode().strip()\n"
        "print(open('/proc/self/oom_score_adj').read().strip(), out)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True, timeout=30)
    assert out.stdout.decode().split() == ["300", "0"]  # ...the task gets the configured one


def _has_cap_sys_resource() -> bool:
    with open("/proc/self/status") as f:
        eff = next(line for line in f if line.startswith("CapEff:"))
    return bool(int(eff.split()[1], 16) & (1 << 24))


@pytest.mark.skipif(not _has_cap_sys_resource(), reason="lowering oom_score_adj needs CAP_SYS_RESOURCE")
def test_negative_oom_score_adj_as_root() -> None:
    out = subprocess.run(["cat", "/proc/self/oom_score_adj"], capture_output=True, check=True,
                         preexec_fn=lambda: apply_oom_score_adj(-500))
    assert out.stdout.decode().strip() == "-500"


@pytest.mark.skipif(_has_cap_sys_resource(), reason="checks the error without CAP_SYS_RESOURCE")
def test_negative_oom_score_adj_without_the_capability_is_a_clear_error() -> None:
    script = ("from rawexec.containment import apply_oom_score_adj\n"
              "try:\n    apply_oom_score_adj(-500)\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True, timeout=30)
    assert out.stdout.decode().strip() == ("ContainmentError unable to set oom_score_adj to -500: Permission denied "
                                           "(lowering it needs CAP_SYS_RESOURCE)")


@pytest.mark.parametrize("bad", [1001, -1001, True, "5"])
def test_oom_score_adj_bad_values(bad: object) -> None:
    with pytest.raises(InvalidConfigError, match="oom_score_adj must be an integer from -1000 to 1000"):
        apply_oom_score_adj(bad)  # type: ignore[arg-type]


def test_read_proc_sample() -> None:
    s = read_proc_sample(os.getpid())
    assert s is not None and s.rss > 1024 * 1024 and s.user_ns >= 0 and s.swap >= 0
    p = subprocess.Popen(["true"])
    p.wait()
    assert read_proc_sample(p.pid) is None


# -- stats without cgroups ----------------------------------------------------------------------------
def test_stats_of_a_tree_without_cgroups() -> None:
    tag = uuid.uuid4().hex
    p = start(["sh", "-c", _TREE], tag)
    try:
        assert wait_until(lambda: len(descendants(p.pid)) == 3, 10)
        with StatsCollector(None, p.pid) as sc:
            u = sc.collect()
            assert set(u.pids) == {str(x) for x in [p.pid, *descendants(p.pid)]}
            mem = u.resource_usage.memory_stats
            assert mem.measured == ("RSS", "Swap")
            assert mem.rss == sum(v.memory_stats.rss for v in u.pids.values()) > 0
            assert u.resource_usage.cpu_stats.measured == ("System Mode", "User Mode", "Percent")
        with StatsCollector(None, p.pid, exclude_pids=[p.pid]) as sc:
            assert str(p.pid) not in sc.collect().pids
    finally:
        _stop(p)


def test_stats_busy_loop_without_cgroups_matches_the_kernel() -> None:
    p = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with StatsCollector(None, p.pid, cores=2, total_mhz=2000.0) as sc:
            sc.collect()
            seen: list[tuple[float, float]] = []

            def close_to_truth() -> bool:
                with open(f"/proc/{p.pid}/stat") as f:
                    c0 = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13])
                t0 = time.monotonic()
                sc.collect()
                wait_until(lambda: time.monotonic() - t0 >= 0.5, 1)
                u = sc.collect()
                with open(f"/proc/{p.pid}/stat") as f:
                    c1 = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13])
                truth = (c1 - c0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0) * 100
                seen.append((u.resource_usage.cpu_stats.percent, truth))
                return seen[-1][0] > 10 and abs(seen[-1][0] - truth) < 15

            assert wait_until(close_to_truth, 20, interval=0), seen
    finally:
        p.kill()
        p.wait()


def test_stats_needs_something_to_watch() -> None:
    with pytest.raises(InvalidConfigError, match="needs a cgroup or a root_pid"):
        StatsCollector(None, None)
