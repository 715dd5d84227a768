"""Logs and exec benchmark (issue "Logs and interactive exec"): run by hand on a quiet machine.

    .venv/bin/python benchmarks/bench_logs_exec.py [--mb 1024] [--repeat 3]

1. Log throughput of one task writing as fast as it can (``dd if=/dev/zero bs=64k``) through the
   shim into rotated files, vs. the same ``dd`` writing straight to a file on the same disk
   (target: >= 0.70 of dd). Interleaved ``--repeat`` times, best kept, median ratio shown too.
   Also the CPU time of the writer: the shim (sampled from /proc) vs. ``dd of=file`` -- steadier
   than wall time on a shared machine -- and of the whole pipeline: the shim plus the task's own
   ``dd`` writing into the pipe (the shim's reaped children, from /proc), which runs on the other
   CPU meanwhile when there is one. Next to them, the least any log collector behind a pipe pays:
   ``dd | dd of=file`` (a plain reader copying the pipe into a file, as Nomad's logmon copies its
   FIFO into the log file), the same bytes, interleaved too. Every round is printed: on a VM the
   cost of the copy out of a pipe can change from one round to the next (see benchmarks/README.md).
2. Exec round trip: ``exec_task(["true"])`` p50, vs. ``subprocess.run(["true"])`` from here.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import threading
import time

from rawexec import Driver, DriverConfig, LogConfig, TaskConfig

_TCK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> tuple[float, float] | None:
    """User + system CPU seconds of a live process and of its reaped children (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TCK, (int(fields[13]) + int(fields[14])) / _TCK


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_direct(base: str, count: int) -> tuple[float, float]:
    """dd straight to a file: (wall s, CPU s)."""
    c0 = _children_cpu()
    t0 = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={base}/direct.out", "bs=64k", f"count={count}"], check=True,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    cpu = _children_cpu() - c0
    os.unlink(f"{base}/direct.out")
    return wall, cpu


def run_shell_pipe(base: str, count: int) -> float:
    """``dd | dd of=file``: the same bytes through a pipe and a plain copy loop into a file (wall s)."""
    t0 = time.perf_counter()
    subprocess.run(["sh", "-c", f"dd if=/dev/zero bs=64k count={count} | dd of={base}/pipe.out bs=1M iflag=fullblock"],
                   check=True, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    os.unlink(f"{base}/pipe.out")
    return wall


def run_piped(d: Driver, base: str, count: int, n: int) -> tuple[float, float, float]:
    """dd to stdout -> pipe -> shim -> rotated files (100 MB files, keep all): (wall s, shim CPU s,
    task CPU s)."""
    alloc = f"{base}/alloc{n}"
    task_id = f"flood{n}"
    cfg = TaskConfig(id=task_id, name="flood", alloc_id=f"bench{n}", alloc_dir=alloc,
                     driver_config={"command": "/bin/dd", "args": ["if=/dev/zero", "bs=64k", f"count={count}"]},
                     env={"PATH": "/usr/bin:/bin"}, logs=LogConfig(max_files=100, max_file_size=100))
    t0 = time.perf_counter()
    handle = d.start_task(cfg)
    shim = int(handle.driver_state["shim_pid"])
    last = [(0.0, 0.0)]
    done = threading.Event()

    def sample() -> None:  # fallback if the shim is gone before we look after the wait
        while not done.wait(0.01):
            v = _proc_cpu(shim)
            if v is not None:
                last[0] = v

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    res = d.wait_task(task_id, 600)
    wall = time.perf_counter() - t0
    # The shim drained the pipe and reaped the task (its children's CPU) before it reported the exit.
    v = _proc_cpu(shim)
    done.set()
    th.join()
    assert res.successful, res
    logs = f"{alloc}/alloc/logs"
    total = sum(os.path.getsize(os.path.join(logs, f)) for f in os.listdir(logs) if ".stdout." in f)
    assert total == count * 65536, (total, count * 65536)
    d.destroy_task(task_id)
    shutil.rmtree(alloc, ignore_errors=True)
    shim_cpu, task_cpu = v if v is not None else last[0]
    return wall, shim_cpu, (task_cpu if task_cpu > 0 else float("nan"))  # nan: gone before the reap was seen


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--execs", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    count = args.mb * 16  # 64 KiB blocks
    base = tempfile.mkdtemp(prefix="rxlog-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    state = tempfile.mkdtemp(prefix="rxb-", dir="/tmp")
    d = Driver(DriverConfig(enabled=True, no_cgroups=True, state_dir=state))
    try:
        direct: list[tuple[float, float]] = []
        piped: list[tuple[float, float, float]] = []
        shell: list[float] = []
        for n in range(args.repeat):  # interleaved so drift hits all alike
            direct.append(run_direct(base, count))
            piped.append(run_piped(d, base, count, n))
            shell.append(run_shell_pipe(base, count))
            (dw, dc), (pw, pc, tc) = direct[-1], piped[-1]
            print(f"  round {n + 1}: dd of=file {dw:.3f} s (CPU {dc:.2f}) | rawexec {pw:.3f} s (shim CPU {pc:.2f}, "
                  f"task {tc:.2f}), ratio {dw / pw:.2f} | dd | dd of=file {shell[-1]:.3f} s, "
                  f"ratio {dw / shell[-1]:.2f}",
                  flush=True)

        # exec round trip
        cfg2 = TaskConfig(id="sleeper", name="sleeper", alloc_id="bench", alloc_dir=f"{base}/alloc",
                          driver_config={"command": "/bin/sleep", "args": ["600"]}, env={"PATH": "/usr/bin:/bin"})
        d.start_task(cfg2)
        lat = []
        for _ in range(args.execs):
            t0 = time.perf_counter()
            r = d.exec_task("sleeper", ["true"], 5)
            lat.append((time.perf_counter() - t0) * 1000)
            assert r.exit_result.successful
        base_lat = []
        for _ in range(args.execs):
            t0 = time.perf_counter()
            subprocess.run(["true"], check=True)
            base_lat.append((time.perf_counter() - t0) * 1000)
        d.stop_task("sleeper", 0, "SIGKILL")
        d.destroy_task("sleeper")
    finally:
        d.close()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    mb = args.mb
    best_p, best_d = min(w for w, _, _ in piped), min(w for w, _ in direct)
    cpu_p, cpu_d = min(c for _, c, _ in piped), min(c for _, c in direct)
    cpu_all = min((c + t for _, c, t in piped if not math.isnan(t)), default=float("nan"))
    med = statistics.median(dw / pw for (dw, _), (pw, _, _) in zip(direct, piped, strict=True))
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; log runs: best of {args.repeat}")
    print(f"{'metric':42} {'rawexec':>12} {'baseline':>12} {'ratio':>8}")
    print(f"{f'log throughput, {mb} MB (MB/s)':42} {mb / best_p:12.1f} {mb / best_d:12.1f} "
          f"{best_d / best_p:8.2f}   (target >= 0.70; baseline: dd of=file; median ratio {med:.2f})")
    best_s, med_s = min(shell), statistics.median(dw / sw for (dw, _), sw in zip(direct, shell, strict=True))
    print(f"{f'dd | dd of=file, {mb} MB (MB/s)':42} {mb / best_s:12.1f} {mb / best_d:12.1f} {best_d / best_s:8.2f}   "
          f"(a plain copy loop behind a pipe, for reference; median ratio {med_s:.2f})")
    print(f"{f'log writer CPU, {mb} MB (s)':42} {cpu_p:12.2f} {cpu_d:12.2f} {cpu_d / cpu_p:8.2f}   "
          "(shim vs. dd of=file; ratio = dd / shim)")
    print(f"{f'log pipeline CPU, {mb} MB (s)':42} {cpu_all:12.2f} {cpu_d:12.2f} {cpu_d / cpu_all:8.2f}   "
          "(shim + task's dd into the pipe vs. dd of=file)")
    p50, b50 = statistics.median(lat), statistics.median(base_lat)
    print(f"{'exec round trip p50 (ms)':42} {p50:12.2f} {b50:12.2f} {p50 / b50:8.2f}   "
          "(baseline: subprocess.run from this process)")


if __name__ == "__main__":
    main()
