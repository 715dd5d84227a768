"""Engine benchmark (issue "Engine"): run by hand on a quiet machine.

    .venv/bin/python benchmarks/bench_engine.py [--tasks 200] [--cgroups] [--repeat N]
                                                [--baseline-src DIR] [--rest SECONDS] [--dir DIR]
                                                [--state-dir DIR]

Baseline: subprocess.Popen of the same command from this (warm) Python process. Prints, side by
side in one run: start latency p50, 200 concurrent starts until all running (and the driver
process's CPU for them), USS of one idle shim, stop of 200 tasks, CPU used by 200 idle shims
over 3 s.

``--repeat N``: N rounds; each figure is shown per round, then the median.
``--baseline-src DIR``: also measure another tree (a copy of ``src/`` from before a change, e.g.
``git archive <rev> src | tar -x -C /tmp/base``), alternating with this one round by round, and
print both with their ratio. The machine's speed drifts over minutes (on this VM largely because
its ext4 root has no journal: making an inode skips every inode deleted in the last minutes, and
each round makes thousands of files and dirs), so only figures taken in alternation compare.
The rounds' dirs are removed only after the last round, so no round pays for the previous one's
cleanup; the engine's own deletions (a destroyed task's state files) still count. ``--rest SECONDS``
waits that long before each round, for the file system to forget the previous round's deletions
(ext4 skips an inode deleted 1-60 s ago, up to 360 s while its inode table block is dirty).
``--dir DIR`` puts the alloc dirs and the driver's state dir there (default: the temp dir): a
tmpfs such as ``/dev/shm`` takes the file system out of an A/B comparison of code (not for the
issue's figures, which are on the disk a node uses: ``benchmarks/node-disk.sh DIR`` mounts an ext4
with its journal, mkfs's default, on a loop device over this same disk; the VM's own root file
system has no journal, see that script). ``--state-dir DIR``: where the driver's
state dir goes (default: ``--dir``); its default in production is ``/run/rawexec``, a tmpfs on
a usual host (not on this VM, where ``/run`` is on the root file system).

Each tree is measured in a fresh worker process (``--worker``), with ``PYTHONPATH`` set to it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]


def popen_start(n: int) -> tuple[list[float], float, float]:
    lat: list[float] = []
    procs = []
    for _ in range(n):
        t0 = time.perf_counter()
        procs.append(subprocess.Popen(["/bin/sleep", "100"], process_group=0, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        lat.append((time.perf_counter() - t0) * 1000)
    for p in procs:
        p.kill()
        p.wait()
    # concurrent: n starts from a thread pool
    procs = []
    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as ex:
        procs = list(ex.map(lambda _: subprocess.Popen(["/bin/sleep", "100"], process_group=0,
                                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE), range(n)))
    conc = time.perf_counter() - t0
    t0 = time.perf_counter()
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()
    stop = time.perf_counter() - t0
    for p in procs:
        assert p.stdout and p.stderr
        p.stdout.close()
        p.stderr.close()
    return lat, conc, stop


def cfg(root: str, i: int, prefix: str) -> Any:
    from rawexec import TaskConfig

    # One alloc per task, as a job with ``count = 200`` gets from Nomad (each alloc its own dir).
    return TaskConfig(id=f"{prefix}{i}", name="sleep", alloc_id=f"{prefix}{i}",
                      alloc_dir=os.path.join(root, f"{prefix}{i}"),
                      driver_config={"command": "/bin/sleep", "args": ["100"]}, env={"PATH": "/usr/bin:/bin"})


def _cpu_self() -> float:
    t = os.times()
    return t.user + t.system


def measure(n: int, cgroups: bool, where: str | None, state_where: str | None) -> dict[str, Any]:
    """The rawexec side, in this process (a ``--worker``): every figure as a dict."""
    from rawexec import Driver, DriverConfig
    from rawexec.driver.prepare import build_task_dirs

    state = tempfile.mkdtemp(prefix="rxb-", dir=state_where or where or "/tmp")
    alloc = tempfile.mkdtemp(prefix="rxb-alloc-", dir=where)
    d = Driver(DriverConfig(enabled=True, no_cgroups=not cgroups, state_dir=state,
                            cgroup_parent=f"rawexec-bench-{uuid.uuid4().hex[:6]}"))
    try:
        # Nomad's client builds the task dirs before StartTask (task_dir hook): do it up front.
        for prefix in ("s", "c"):
            for i in range(n):
                build_task_dirs(os.path.join(alloc, f"{prefix}{i}"), "sleep")
        d.start_task(cfg(alloc, 0, "w"))  # warm: starts the spawner
        d.stop_task("w0", 0, "SIGKILL")
        d.destroy_task("w0")
        time.sleep(0.3)

        lat: list[float] = []
        for i in range(n):
            t0 = time.perf_counter()
            d.start_task(cfg(alloc, i, "s"))
            lat.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.002)  # sequential starts, each on a quiet engine
        c0 = _cpu_self()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(lambda i: d.start_task(cfg(alloc, i, "c")), range(n)))
        conc = time.perf_counter() - t0
        conc_cpu = _cpu_self() - c0

        time.sleep(1.0)
        shims = [psutil.Process(int(d.task_record(f"c{i}").driver_state["shim_pid"])) for i in range(n)]
        uss = statistics.median(p.memory_full_info().uss for p in shims[:20]) / 1024 / 1024
        cpu0 = sum(sum(p.cpu_times()[:2]) for p in shims)
        time.sleep(3.0)
        cpu1 = sum(sum(p.cpu_times()[:2]) for p in shims)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(lambda i: d.stop_task(f"c{i}", 5, "SIGTERM"), range(n)))
        stop = time.perf_counter() - t0
        for i in range(n):
            d.stop_task(f"s{i}", 0, "SIGKILL")
        for tid in d.task_ids():
            d.destroy_task(tid, force=True)
    except BaseException:
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(alloc, ignore_errors=True)
        raise
    finally:
        d.close()
        if cgroups:
            from rawexec.containment import detect, remove_parent

            remove_parent(detect(), str(d.config.cgroup_parent))
    # The dirs are removed by the parent once every round ran: thousands of deletions right before
    # the next round would slow its file creations (see the module docs).
    return {"p50": statistics.median(lat), "p90": sorted(lat)[int(n * .9)], "conc": conc, "conc_cpu": conc_cpu,
            "stop": stop, "uss": uss, "idle_cpu": cpu1 - cpu0, "dirs": [state, alloc]}


def run_worker(src: str, n: int, cgroups: bool, where: str | None, state_where: str | None) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=src)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--tasks", str(n)]
    if cgroups:
        cmd.append("--cgroups")
    if where:
        cmd += ["--dir", where]
    if state_where:
        cmd += ["--state-dir", state_where]
    out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


ROWS = [  # key, label, format, target (the issue's, or None)
    ("p50", "start latency p50 (ms)", "{:.2f}", 5.0),
    ("p90", "start latency p90 (ms)", "{:.2f}", None),
    ("conc", "{n} concurrent starts, all running (s)", "{:.3f}", 0.5),
    ("conc_cpu", "  driver process CPU for them (s)", "{:.3f}", None),
    ("stop", "stop of {n} tasks (s)", "{:.3f}", 0.3),
    ("uss", "USS of one idle shim (MB)", "{:.2f}", 1.5),
    ("idle_cpu", "CPU of {n} idle shims over 3 s (s)", "{:.3f}", None),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--cgroups", action="store_true", help="place tasks in cgroups (root only)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--baseline-src", help="another src/ tree, measured in alternation with this one")
    ap.add_argument("--rest", type=float, default=0.0, help="seconds to wait before each round")
    ap.add_argument("--dir", help="where the alloc dirs and the state dir go (default: the temp dir)")
    ap.add_argument("--state-dir", help="where the driver's state dir goes (default: --dir)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    n = args.tasks
    if args.worker:
        print(json.dumps(measure(n, args.cgroups, args.dir, args.state_dir)))
        return

    trees = {"rawexec": str(ROOT / "src")}
    if args.baseline_src:
        trees["baseline"] = os.path.abspath(args.baseline_src)
    load = os.getloadavg()[0]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in trees}
    try:
        for r in range(args.repeat):
            for name, src in (trees.items() if r % 2 == 0 else reversed(trees.items())):
                time.sleep(args.rest)
                runs[name].append(run_worker(src, n, args.cgroups, args.dir, args.state_dir))
    finally:
        for result in (x for rs in runs.values() for x in rs):
            for d in result.pop("dirs"):
                shutil.rmtree(d, ignore_errors=True)
    plat, pconc, pstop = popen_start(n)
    popen = {"p50": statistics.median(plat), "p90": sorted(plat)[int(n * .9)], "conc": pconc, "stop": pstop}

    print(f"load average before: {load:.2f}   cgroups: {args.cgroups}   tasks: {n}   rounds: {args.repeat}"
          + (f"   rest: {args.rest:g} s" if args.rest else "") + (f"   dir: {args.dir}" if args.dir else "")
          + (f"   state dir: {args.state_dir}" if args.state_dir else "")
          + (f"   baseline tree: {args.baseline_src} (alternating)" if args.baseline_src else ""))
    cols = ["rawexec", *(["baseline", "ratio"] if args.baseline_src else []), "Popen", "vs Popen", "target"]
    print(f"{'metric (median of the rounds)':44} " + " ".join(f"{c:>10}" for c in cols))
    for key, label, fmt, target in ROWS:
        mine = statistics.median(x[key] for x in runs["rawexec"])
        cells = [fmt.format(mine)]
        if args.baseline_src:
            base = statistics.median(x[key] for x in runs["baseline"])
            cells += [fmt.format(base), f"{mine / base:.2f}" if base else "n/a"]
        cells += [fmt.format(popen[key]) if key in popen else "", f"{mine / popen[key]:.2f}" if key in popen else "",
                  f"<= {target:g}" if target is not None else ""]
        print(f"{label.format(n=n):44} " + " ".join(f"{c:>10}" for c in cells))
        if args.repeat > 1:
            for name in trees:
                print(f"{'':46}{name}: " + " ".join(fmt.format(x[key]) for x in runs[name]))


if __name__ == "__main__":
    main()
