"""Engine benchmark (issue "Engine"): run by hand on a quiet machine.

    .venv/bin/python benchmarks/bench_engine.py [--tasks 200] [--cgroups]

Baseline: subprocess.Popen of the same command from this (warm) Python process. Prints, side by
side in one run: start latency p50, 200 concurrent starts until all running, USS of one idle
shim, stop of 200 tasks, CPU used by 200 idle shims over 3 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psutil

from rawexec import Driver, DriverConfig, TaskConfig
from rawexec.driver.prepare import build_task_dirs


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


def cfg(root: str, i: int, prefix: str) -> TaskConfig:
    # One alloc per task, as a job with ``count = 200`` gets from Nomad (each alloc its own dir).
    return TaskConfig(id=f"{prefix}{i}", name="sleep", alloc_id=f"{prefix}{i}",
                      alloc_dir=os.path.join(root, f"{prefix}{i}"),
                      driver_config={"command": "/bin/sleep", "args": ["100"]}, env={"PATH": "/usr/bin:/bin"})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--cgroups", action="store_true", help="place tasks in cgroups (root only)")
    args = ap.parse_args()
    n = args.tasks
    state = tempfile.mkdtemp(prefix="rxb-", dir="/tmp")
    alloc = tempfile.mkdtemp(prefix="rxb-alloc-")
    d = Driver(DriverConfig(enabled=True, no_cgroups=not args.cgroups, state_dir=state,
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
        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(lambda i: d.start_task(cfg(alloc, i, "c")), range(n)))
        conc = time.perf_counter() - t0

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
    finally:
        d.close()
        if args.cgroups:
            from rawexec.containment import detect, remove_parent

            remove_parent(detect(), str(d.config.cgroup_parent))
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(alloc, ignore_errors=True)

    plat, pconc, pstop = popen_start(n)
    p50, pp50 = statistics.median(lat), statistics.median(plat)
    print(f"load average before: {os.getloadavg()[0]:.2f}   cgroups: {args.cgroups}   tasks: {n}")
    print(f"{'metric':44} {'rawexec':>12} {'Popen':>12} {'ratio':>8}")
    print(f"{'start latency p50 (ms)':44} {p50:12.2f} {pp50:12.2f} {p50 / pp50:8.2f}")
    print(f"{'start latency p90 (ms)':44} {sorted(lat)[int(n * .9)]:12.2f} {sorted(plat)[int(n * .9)]:12.2f}")
    print(f"{f'{n} concurrent starts, all running (s)':44} {conc:12.3f} {pconc:12.3f} {conc / pconc:8.2f}")
    print(f"{f'stop of {n} tasks (s)':44} {stop:12.3f} {pstop:12.3f} {stop / pstop:8.2f}")
    print(f"{'USS of one idle shim (MB)':44} {uss:12.2f}")
    print(f"{f'CPU of {n} idle shims over 3 s (s)':44} {cpu1 - cpu0:12.3f}")


if __name__ == "__main__":
    main()
