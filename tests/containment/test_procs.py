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
from rawexec.containment.procs import ProcSample
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


def test_read_proc_sample_swap_only_with_a_swap_area(monkeypatch: pytest.MonkeyPatch) -> None:
    status_reads: list[str] = []
    real_read = procs_mod._read

    def spy(path: str) -> bytes | None:
        if path.endswith("/status"):
            status_reads.append(path)
            return b"Name:\tx\nVmSwap:\t     12 kB\n"
        return real_read(path)

    monkeypatch.setattr(procs_mod, "_read", spy)
    monkeypatch.setattr(procs_mod, "host_has_swap", lambda: False)
    s = read_proc_sample(os.getpid())
    assert s is not None and s.swap == 0 and status_reads == []  # no swap area: VmSwap is 0, not read
    monkeypatch.setattr(procs_mod, "host_has_swap", lambda: True)
    s = read_proc_sample(os.getpid())
    assert s is not None and s.swap == 12 * 1024 and status_reads == [f"/proc/{os.getpid()}/status"]
    s = read_proc_sample(os.getpid(), with_swap=False)
    assert isinstance(s, ProcSample) and s.swap == 0 and len(status_reads) == 1


@pytest.mark.parametrize(("content", "want"), [(b"Filename\tType\tSize\tUsed\tPriority\n", False),
                                               (b"Filename\tType\tSize\tUsed\tPriority\n"
                                                b"/swap file 1048572 0 -2\n", True),
                                               (None, True)])
def test_host_has_swap_from_proc_swaps(monkeypatch: pytest.MonkeyPatch, content: bytes | None, want: bool) -> None:
    reads: list[str] = []

    def fake(path: str) -> bytes | None:
        reads.append(path)
        return content

    monkeypatch.setattr(procs_mod, "_read", fake)
    monkeypatch.setattr(procs_mod, "_swap_seen", [-(10**18), 1])
    assert procs_mod.host_has_swap() is want
    assert procs_mod.host_has_swap() is want
    assert reads == ["/proc/swaps"]  # looked at once, then cached for a second
    procs_mod._swap_seen[0] -= procs_mod._SWAP_TTL_NS
    procs_mod.host_has_swap()
    assert reads == ["/proc/swaps", "/proc/swaps"]


def test_host_has_swap_matches_the_kernel() -> None:
    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) for line in f if line.startswith("SwapTotal:"))
    assert procs_mod.host_has_swap() is (total > 0)


# A process whose child was forked by a second thread: the child is listed under that thread only.
_THREADED = """
import subprocess, threading, time
ready = threading.Event()
def spawn():
    subprocess.Popen(["sleep", "1000"])
    ready.set()
    time.sleep(1000)  # this thread (the child's parent) stays: the child is listed under it
t = threading.Thread(target=spawn)
t.start()
ready.wait()
print("ready", flush=True)
t.join()
"""


@pytest.mark.parametrize("children_files", [True, False])
def test_tree_samples_is_the_tree_with_samples(monkeypatch: pytest.MonkeyPatch, children_files: bool) -> None:
    if not children_files:
        monkeypatch.setattr(procs_mod, "_has_children_files", lambda: False)
    tag = uuid.uuid4().hex
    p = start(["sh", "-c", _TREE], tag)
    try:
        # Three descendants, each past its exec (mid-exec a process briefly has no memory: rss 0).
        def settled() -> bool:
            kids = descendants(p.pid)
            return len(kids) == 3 and all((s := read_proc_sample(k)) is not None and s.rss > 0 for k in kids)

        assert wait_until(settled, 10)
        samples = procs_mod.tree_samples(p.pid)
        assert [s[0] for s in samples] == [p.pid, *descendants(p.pid)]  # parents first, as descendants()
        for pid, user, system, rss, swap in samples:
            one = read_proc_sample(pid)
            assert one is not None and rss > 0 and swap >= 0 and 0 <= user <= one.user_ns and \
                0 <= system <= one.system_ns
        # an excluded pid is walked through (its children are there) but not sampled
        without_root = procs_mod.tree_samples(p.pid, exclude=frozenset([p.pid]))
        assert [s[0] for s in without_root] == descendants(p.pid)
    finally:
        _stop(p)
    assert procs_mod.tree_samples(p.pid) == []


def test_tree_samples_finds_children_of_every_thread() -> None:
    tag = uuid.uuid4().hex
    p = start([sys.executable, "-c", _THREADED], tag, stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        kids = descendants(p.pid)
        assert len(kids) == 1
        with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
            assert f.read().split() == []  # not the leader's child: the thread's
        assert [s[0] for s in procs_mod.tree_samples(p.pid)] == [p.pid, *kids]
    finally:
        _stop(p)


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
