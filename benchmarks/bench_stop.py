"""Stop of N adversarial tasks (issue "Containment and stats": <= 0.5 s for 200, 0 survivors).

    .venv/bin/python benchmarks/bench_stop.py [--tasks 200] [--shapes plain,fork-storm,...]
                                              [--grace 0.1] [--supervisor-path DIR]
                                              [--repeat N] [--baseline-src DIR]

For each of the issue's six shapes (``tests/helpers/shapes.py``, as the containment tests), in one run:

* **rawexec**: a :class:`~rawexec.Driver` starts N ``sh -c SHAPE`` tasks, with cgroups (root, when
  the host has them) and without; once every process of every tree is up, N threads call
  ``stop_task(id, GRACE, "SIGTERM")`` at once (as an agent stopping a job does). Reported: the time
  until every call returned, and the survivors: live processes carrying the run's tag in their
  environment (every descendant inherits it), counted after the stop.
* **floor**: the same trees, not supervised: each in a cgroup2 dir of its own (or, without one,
  in its own process group under this process as their subreaper); stop = ``cgroup.kill`` (or
  SIGKILL to each group, then to what a /proc scan still finds by the tag, the scans counted in)
  of all of them and wait until every one is empty and reaped. No SIGTERM, no grace,
  no bookkeeping: what the kernel alone needs to end that many processes here. Our figure minus
  this one is the supervision's own cost.
* **supervisord** (with ``--supervisor-path DIR``, a ``pip install --target DIR supervisor==4.3.0``):
  one program per task, ``stopasgroup`` and ``killasgroup`` on, ``stopwaitsecs`` = GRACE rounded up
  to whole seconds (its unit); ``supervisorctl stop all``, timed, then survivors counted. What it
  leaks is killed afterwards.

``--grace`` is the SIGTERM grace before the tree is killed (default 0.1 s, as the containment
test uses; only the SIGTERM-ignoring shapes wait for it).

``--repeat N``: N rounds of every rawexec figure (and of the floor); each cell is then the median,
with the single runs after it. This VM varies by 20-40 % from run to run: compare medians.
``--baseline-src DIR``: also measure another tree (``git archive REV src | tar -x -C DIR``: a
``src/`` from before a change), alternating with this one in each round, and print its medians
and this tree's ratio to them. Every rawexec figure is then measured in a fresh worker process
with ``PYTHONPATH`` set to its tree.

Last column: the CPU time the whole machine was busy during rawexec's stop window (/proc/stat, all
CPUs; cgroups / none). When it is the window times the number of CPUs, the stop is CPU-bound: the
figure is then the work of the stop (the killed processes' own exits included), not a wait.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from rawexec import Driver, DriverConfig, TaskConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: its test helpers
from benchmarks import supervisord
from tests.helpers.shapes import PROCS, SHAPES
from tests.helpers.util import pids_with_tag as tagged
from tests.helpers.util import wait_until

TARGET_S = 0.5
UNIFIED = "/sys/fs/cgroup/unified" if os.path.exists("/sys/fs/cgroup/unified/cgroup.procs") else "/sys/fs/cgroup"


def busy_cpu_s() -> float:
    """CPU time the whole machine has spent busy so far (all CPUs; /proc/stat, in seconds)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")  # user nice system irq softirq


def wait_up(tag: str, shape: str, n: int, timeout: float, what: str) -> None:
    """Until all ``n`` trees of ``shape`` carrying ``tag`` have every process up."""
    wait_until(lambda: len(tagged(tag)) >= PROCS[shape] * n, timeout, interval=0.1, msg=what)


def kill_tagged(tag: str) -> None:
    for _ in range(50):
        pids = tagged(tag)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def reap_orphans() -> None:
    """Reap what was reparented to us (the subreaper) and died: no zombies pile up between shapes."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _new_tag() -> tuple[str, str]:
    return "RAWEXEC_BENCH_TAG", uuid.uuid4().hex


# ---------------------------------------------------------------------------------------- rawexec
def bench_rawexec(shape: str, n: int, grace: float, cgroups: bool) -> tuple[float, int, float]:
    key, value = _new_tag()
    tag = f"{key}={value}"
    state = tempfile.mkdtemp(prefix="rxs-", dir="/tmp")
    alloc = tempfile.mkdtemp(prefix="rxs-alloc-")
    parent = f"rawexec-bench-stop-{uuid.uuid4().hex[:6]}"
    d = Driver(DriverConfig(enabled=True, no_cgroups=not cgroups, state_dir=state, cgroup_parent=parent))
    ids = []
    try:
        for i in range(n):
            cfg = TaskConfig(id=f"s{i}-{uuid.uuid4().hex[:6]}", name="t", alloc_id=f"a{i}",
                             alloc_dir=os.path.join(alloc, f"a{i}"),
                             driver_config={"command": "/bin/sh", "args": ["-c", SHAPES[shape]]},
                             env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), key: value})
            d.start_task(cfg)
            ids.append(cfg.id)
        wait_up(tag, shape, n, 60, f"{n} {shape} trees")
        time.sleep(0.5)
        threads = [threading.Thread(target=d.stop_task, args=(tid, grace, "SIGTERM")) for tid in ids]
        c0 = busy_cpu_s()
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        busy = busy_cpu_s() - c0
        survivors = len(tagged(tag))
        return elapsed, survivors, busy
    finally:
        for tid in ids:
            try:
                d.destroy_task(tid, force=True)
            except Exception:
                pass
        d.close()
        kill_tagged(tag)
        if cgroups:
            from rawexec.containment import detect, remove_parent

            remove_parent(detect(), parent)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(alloc, ignore_errors=True)


# ------------------------------------------------------------------------------------------ floor
def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans of the trees come back to us


def bench_floor(shape: str, n: int) -> float:
    """The trees in cgroup2 dirs of their own (root), else process groups: kill all, wait until gone."""
    key, value = _new_tag()
    tag = f"{key}={value}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), key: value}
    base = os.path.join(UNIFIED, f"rawexec-bench-floor-{value[:6]}")
    use_cg = os.geteuid() == 0 and os.path.exists(os.path.join(UNIFIED, "cgroup.kill"))
    dirs: list[str] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if use_cg:
            os.mkdir(base)
        for i in range(n):
            if use_cg:
                cg = os.path.join(base, f"t{i}")
                os.mkdir(cg)
                dirs.append(cg)
                procs.append(subprocess.Popen(["/bin/sh", "-c", SHAPES[shape]], env=env, stdin=subprocess.DEVNULL,
                                              process_group=0, preexec_fn=_joiner(cg)))  # noqa: PLW1509
            else:
                procs.append(subprocess.Popen(["/bin/sh", "-c", SHAPES[shape]], env=env, stdin=subprocess.DEVNULL,
                                              process_group=0))
        wait_up(tag, shape, n, 60, f"{n} unsupervised {shape} trees")
        time.sleep(0.5)
        t0 = time.perf_counter()
        if use_cg:
            for cg in dirs:
                with open(os.path.join(cg, "cgroup.kill"), "w") as f:
                    f.write("1")
            for cg in dirs:
                while True:
                    with open(os.path.join(cg, "cgroup.events")) as f:
                        if "populated 0" in f.read():
                            break
                    time.sleep(0.001)
        else:
            for p in procs:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            while left := tagged(tag):  # what left the group (setsid) is found by its tag
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        while True:  # reap all: our children and the orphans we are the subreaper of
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
        return time.perf_counter() - t0
    finally:
        kill_tagged(tag)
        for cg in reversed(dirs):
            try:
                os.rmdir(cg)
            except OSError:
                pass
        if use_cg:
            try:
                os.rmdir(base)
            except OSError:
                pass


def _joiner(cg: str) -> Callable[[], None]:
    def join() -> None:
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write("0")
    return join


# ------------------------------------------------------------------------------------ supervisord
def bench_supervisord(path: str, shape: str, n: int, grace: float) -> tuple[float, int] | None:
    key, value = _new_tag()
    tag = f"{key}={value}"
    work = tempfile.mkdtemp(prefix="rxs-supd-")
    stopwait = max(1, math.ceil(grace))
    # supervisord splits the command as a shell would (shlex), expands %(name)s (escape %) and ends
    # the line at " ;" (an INI comment): no space before a shell ";" (same script for sh)
    command = "/bin/sh -c " + shlex.quote(SHAPES[shape].replace(" ;", ";")).replace("%", "%%")
    progs = "".join(textwrap.dedent(f"""
        [program:t{i}]
        command={command}
        environment={key}="{value}"
        autostart=true
        autorestart=false
        startsecs=0
        stopsignal=TERM
        stopwaitsecs={stopwait}
        stopasgroup=true
        killasgroup=true
        stdout_logfile=NONE
        stderr_logfile=NONE
        """) for i in range(n))
    conf = supervisord.write_conf(work, progs)
    supd = supervisord.popen(path, conf, start_new_session=True)
    try:
        wait_up(tag, shape, n, 120, f"supervisord's {n} {shape} trees")
        time.sleep(0.5)
        t0 = time.perf_counter()
        supervisord.ctl(path, conf, "stop", "all")
        elapsed = time.perf_counter() - t0
        return elapsed, len(tagged(tag))
    finally:
        supd.terminate()
        try:
            supd.wait(30)
        except subprocess.TimeoutExpired:
            supd.kill()
            supd.wait()
        kill_tagged(tag)
        reap_orphans()
        shutil.rmtree(work, ignore_errors=True)


def run_worker(src: str, shape: str, n: int, grace: float, cgroups: bool) -> tuple[float, int, float]:
    """:func:`bench_rawexec` in a fresh process that imports the tree ``src``."""
    env = dict(os.environ, PYTHONPATH=src)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--shapes", shape, "--tasks", str(n),
           "--grace", str(grace)] + (["--cgroups"] if cgroups else [])
    out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    t, left, busy = json.loads(out.strip().splitlines()[-1])
    return float(t), int(left), float(busy)


def _cell(runs: list[tuple[float, int, float]], single: bool) -> str:
    t = statistics.median(r[0] for r in runs)
    left = max(r[1] for r in runs)
    return f"{t:.3f} s, {left} left" + ("" if single else " (" + ", ".join(f"{r[0]:.3f}" for r in runs) + ")")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated, from: " + ", ".join(SHAPES))
    ap.add_argument("--grace", type=float, default=0.1, help="SIGTERM grace before the kill (s)")
    ap.add_argument("--supervisor-path", help="a dir with supervisor 4.3 installed (pip install --target DIR)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; each cell is the median")
    ap.add_argument("--baseline-src", help="another src/ tree, measured in alternation with this one")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cgroups", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    for s in shapes:
        if s not in SHAPES:
            raise SystemExit(f"--shapes: unknown shape {s!r}; choose from {', '.join(SHAPES)}")
    if args.repeat < 1:
        raise SystemExit("--repeat: at least 1")
    _become_subreaper()
    n = args.tasks
    if args.worker:
        print(json.dumps(bench_rawexec(shapes[0], n, args.grace, cgroups=args.cgroups)))
        return
    from rawexec.containment import detect

    cg_ok = os.geteuid() == 0 and detect().enabled
    modes = [True, False] if cg_ok else [False]
    this_src = str(Path(__file__).resolve().parents[1] / "src")
    trees = {"this": this_src}
    if args.baseline_src:
        trees["baseline"] = os.path.abspath(args.baseline_src)
    single = args.repeat == 1
    print(f"stop of {n} tasks per shape; SIGTERM grace {args.grace:g} s; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; cgroups {'yes' if cg_ok else 'no (not root or none here)'}"
          + ("" if single else f"; {args.repeat} rounds, medians (single runs in brackets)")
          + (f"; baseline tree {args.baseline_src}, alternating" if args.baseline_src else ""))
    mode_names = ["cgroups" if m else "none" for m in modes]
    cols = [f"rawexec ({m})" for m in mode_names]
    if args.baseline_src:
        cols += [f"baseline ({m})" for m in mode_names] + ["ratio"]
    cols.append("floor")
    if args.supervisor_path:
        cols.append("supervisord 4.3")
    width = 22 if single else 21 + 7 * args.repeat  # "0.402 s, 0 left (" and a run each, never run together
    print(f"{'shape':26s}" + "".join(f"{c:>{width if c.startswith(('rawexec', 'baseline')) else 22}s}"
                                      for c in cols) + "   target")
    for shape in shapes:
        runs: dict[tuple[str, bool], list[tuple[float, int, float]]] = {(t, m): [] for t in trees for m in modes}
        floors: list[float] = []
        for _ in range(args.repeat):
            for tree, src in trees.items():
                for m in modes:
                    runs[tree, m].append(run_worker(src, shape, n, args.grace, m) if args.baseline_src
                                         else bench_rawexec(shape, n, args.grace, cgroups=m))
            floors.append(bench_floor(shape, n))
        cells = [f"{_cell(runs['this', m], single):>{width}s}" for m in modes]
        if args.baseline_src:
            cells += [f"{_cell(runs['baseline', m], single):>{width}s}" for m in modes]
            ratios = [statistics.median(r[0] for r in runs["this", m]) / statistics.median(r[0] for r in
                                                                                           runs["baseline", m])
                      for m in modes]
            cells.append(f"{' / '.join(f'{x:.2f}' for x in ratios):>22s}")
        cells.append(f"{statistics.median(floors):.3f} s".rjust(22))
        if args.supervisor_path:
            sr = bench_supervisord(args.supervisor_path, shape, n, args.grace)
            cells.append(("failed" if sr is None else f"{sr[0]:.3f} s, {sr[1]} left").rjust(22))
        worst = max(statistics.median(r[0] for r in runs["this", m]) for m in modes)
        busy = [statistics.median(r[2] for r in runs["this", m]) for m in modes]
        print(f"{shape:26s}" + "".join(cells)
              + f"   <= {TARGET_S} s: {'met' if worst <= TARGET_S else 'NOT met'} ({worst / TARGET_S:.2f}x)"
              + f"   busy CPU in the window: {' / '.join(f'{x:.2f}' for x in busy)} s")


if __name__ == "__main__":
    main()
