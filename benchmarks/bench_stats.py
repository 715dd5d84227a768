"""Benchmark: stats for 200 running tasks every second, cgroup create cost, and stop of 200 tasks.

Run as root: ``.venv/bin/python benchmarks/bench_stats.py [--tasks 200] [--seconds 10]``.

Prints, side by side in one run:
* cgroup create cost per task (``TaskCgroup.create`` with limits), and what joining the cgroup
  between fork and exec adds to a process start (spawn with vs. without ``procs_files``);
* collecting stats of every task once a second: CPU used by the collector as % of one core
  (targets: < 2 %), and single ``collect()`` latency (target: < 1 ms) — with cgroups, and the
  no-cgroup ``/proc`` walk for the same tasks;
* stopping all tasks (each a ``setsid`` child + a double-fork daemon): ``destroy()`` of every cgroup,
  total wall time, and survivors found by an environment tag (target: 0, ≤ 0.5 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid

from rawexec.containment import CgroupSystem, StatsCollector, TaskCgroup, destroy_all, detect
from rawexec.types import Resources

__all__ = ["main"]

_SHAPE = """
import os
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "1000"])
    os._exit(0)
os.wait()
os.execvp("sh", ["sh", "-c", "setsid sleep 1000 & exec sleep 1000"])
"""


def _join(files: tuple[str, ...]) -> None:
    for p in files:
        fd = os.open(p, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def _spawn(argv: list[str], env: dict[str, str], files: tuple[str, ...]) -> subprocess.Popen[bytes]:
    # Always a preexec_fn (fork + Python in the child), so with and without cgroups compare like for like.
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                            preexec_fn=lambda: _join(files))  # noqa: PLW1509


def _join_cost(files: tuple[str, ...]) -> float:
    """Seconds the writes to ``files`` take inside a freshly forked child (what the shim's child pays)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        t = time.perf_counter()
        _join(files)
        os.write(w, repr(time.perf_counter() - t).encode())
        os._exit(0)
    os.close(w)
    try:
        return float(os.read(r, 64))
    finally:
        os.close(r)
        os.waitpid(pid, 0)


def _tagged(tag: str) -> int:
    needle = f"RAWEXEC_TAG={tag}".encode()
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        n += 1
            except OSError:
                pass
    return n


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _poll(collectors: list[StatsCollector], seconds: float) -> tuple[float, float, list[float]]:
    """Collect every task once per second for ``seconds``: (cpu % of one core, cpu seconds, call latencies)."""
    lat: list[float] = []
    for c in collectors:  # warm: first call opens descriptors and seeds the cpu deltas
        c.collect()
    cpu0, wall0 = time.process_time(), time.monotonic()
    ticks = max(1, int(seconds))
    for i in range(ticks):
        for c in collectors:
            t = time.perf_counter()
            c.collect()
            lat.append(time.perf_counter() - t)
        next_tick = wall0 + i + 1
        while time.monotonic() < next_tick:
            time.sleep(max(0.0, next_tick - time.monotonic()))
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    return cpu / wall * 100, cpu, lat


def _cleanup_parent(system: CgroupSystem, parent: str) -> None:
    for m in set(system.v1_mounts.values()) | ({system.unified_mount} if system.unified_mount else set()):
        try:
            os.rmdir(f"{m}/{parent}")
        except OSError:
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    system = detect()
    print(f"cgroup mode: {system.mode} ({system.reason})")
    if not system.enabled:
        sys.exit("cgroups are off here: run as root on a host with cgroups")
    parent = f"rawexec-bench-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex
    env = dict(os.environ, RAWEXEC_TAG=tag)
    cgs: list[TaskCgroup] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        create_s: list[float] = []
        for i in range(args.tasks):
            t = time.perf_counter()
            cgs.append(TaskCgroup.create(system, alloc_id=f"bench{i:04d}", task_name="t", parent=parent,
                                         resources=Resources(cpu=100, memory=64)))
            create_s.append(time.perf_counter() - t)
        # What joining adds to a start: spawn `true` with and without the cgroup writes.
        plain: list[float] = []
        joined: list[float] = []
        for i in range(100):
            for files, out in (((), plain), (cgs[i % len(cgs)].procs_files, joined)):
                t = time.perf_counter()
                _spawn(["true"], dict(os.environ), files).wait()
                out.append(time.perf_counter() - t)
        join = [_join_cost(cgs[i % len(cgs)].procs_files) for i in range(100)]
        for cg in cgs:
            procs.append(_spawn([sys.executable, "-c", _SHAPE], env, cg.procs_files))
        want = 3 * args.tasks
        deadline = time.monotonic() + 60
        while _tagged(tag) < want and time.monotonic() < deadline:
            time.sleep(0.2)
        running = _tagged(tag)

        print(f"\n{args.tasks} tasks, {running} processes (each task: setsid child + double-fork daemon)")
        print(f"cgroup create (dirs + limits): median {statistics.median(create_s) * 1e3:.3f} ms, "
              f"p95 {_pct(create_s, 0.95) * 1e3:.3f} ms per task ({len(cgs[0].dirs)} dirs each)")
        extra = statistics.median(joined) - statistics.median(plain)
        print(f"start latency of `true`: plain {statistics.median(plain) * 1e3:.3f} ms, joining the cgroup "
              f"{statistics.median(joined) * 1e3:.3f} ms (adds {extra * 1e3:+.3f} ms)")
        print(f"joining ({len(cgs[0].procs_files)} cgroup.procs writes in the child): median "
              f"{statistics.median(join) * 1e3:.3f} ms, p95 {_pct(join, 0.95) * 1e3:.3f} ms")
        print(f"=> cgroup setup per task start (create + join, medians): "
              f"{(statistics.median(create_s) + statistics.median(join)) * 1e3:.3f} ms")

        rows = []
        with_cg = [StatsCollector(cg, p.pid) for cg, p in zip(cgs, procs, strict=True)]
        rows.append(("cgroup files", *_poll(with_cg, args.seconds)))
        no_cg = [StatsCollector(None, p.pid) for p in procs]
        rows.append(("/proc walk (no cgroups)", *_poll(no_cg, args.seconds)))
        for c in with_cg + no_cg:
            c.close()
        print(f"\nstats of {args.tasks} tasks every 1 s, over {args.seconds:g} s:")
        print(f"  {'source':<26}{'CPU % of one core':>18}{'CPU per call':>14}{'wall median':>13}{'p99':>10}")
        for name, cpu, cpu_s, lat in rows:
            per_call = cpu_s / len(lat)
            print(f"  {name:<26}{cpu:>17.2f}%{per_call * 1e6:>11.0f} µs{statistics.median(lat) * 1e6:>10.0f} µs"
                  f"{_pct(lat, 0.99) * 1e6:>7.0f} µs")
        print(f"  (host load average now: {os.getloadavg()[0]:.1f}; wall latencies include waiting for a cpu)")

        half = len(cgs) // 2
        t = time.perf_counter()
        for cg in cgs[:half]:
            cg.destroy()
        one_by_one = time.perf_counter() - t
        t = time.perf_counter()
        errors = destroy_all(cgs[half:])
        batch = time.perf_counter() - t
        for p in procs:
            p.wait()
        survivors = _tagged(tag)
        print(f"\nstop ({running // len(cgs)} processes per task):")
        print(f"  destroy() one by one, {half} tasks: {one_by_one * 1e3:.1f} ms "
              f"({one_by_one / half * 1e3:.2f} ms/task)")
        print(f"  destroy_all(), {len(cgs) - half} tasks: {batch * 1e3:.1f} ms "
              f"({batch / (len(cgs) - half) * 1e3:.2f} ms/task); errors: {len(errors)}")
        print(f"  survivors (tagged processes left): {survivors}")
    finally:
        for cg in cgs:
            try:
                cg.destroy()
            except Exception as e:
                print(f"cleanup of {cg} failed: {e}", file=sys.stderr)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        _cleanup_parent(system, parent)


if __name__ == "__main__":
    main()
