"""Benchmark: stats for 200 running tasks every second, cgroup create cost, and stop of 200 tasks.

Run as root: ``.venv/bin/python benchmarks/bench_stats.py [--tasks 200] [--seconds 10] [--rounds 3]
[--baseline-rev REV]``.

Prints, side by side in one run:
* cgroup create cost per task (``TaskCgroup.create`` with limits), and what joining the cgroup
  between fork and exec adds to a process start (spawn with vs. without ``procs_files``);
* collecting stats of every task once a second: CPU used by the collector as % of one core
  (targets: < 2 %), and single ``collect()`` latency (target: < 1 ms) — with cgroups, and the
  no-cgroup ``/proc`` walk for the same tasks. The baseline is the ``StatsCollector`` of
  ``--baseline-rev`` (its ``stats.py`` and ``procs.py`` loaded from git, skipped if git cannot),
  polled in the same run: ``--rounds`` rounds alternate baseline and current, medians reported;
  the CPU figure is the collector's process CPU time (user + system), not wall time;
* stopping all tasks (each a ``setsid`` child + a double-fork daemon): ``destroy()`` of every cgroup,
  total wall time, and survivors found by an environment tag (target: 0, ≤ 0.5 s).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Callable

from rawexec.containment import CgroupSystem, StatsCollector, TaskCgroup, destroy_all, detect
from rawexec.types import Resources

__all__ = ["main"]

#: The last commit before the stats cost work (issue 3): the baseline collector.
BASELINE_REV = "ec2a0de27c7454fbdd2f106036425b841a34cd68"
CPU_TARGET_PCT = 2.0
CALL_TARGET_S = 1e-3
SETUP_TARGET_S = 2e-3

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


def _load_baseline(rev: str) -> type[StatsCollector] | None:
    """``StatsCollector`` as of ``rev`` (its stats.py with that rev's procs.py), or None without git."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def show(path: str) -> str:
        return subprocess.run(["git", "-C", root, "show", f"{rev}:{path}"], capture_output=True, check=True,
                              text=True).stdout

    try:
        procs_src = show("src/rawexec/containment/procs.py")
        stats_src = show("src/rawexec/containment/stats.py")
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"(no baseline: git show {rev} failed: {e})", file=sys.stderr)
        return None
    mods: list[tuple[str, str, str]] = [("_bench_baseline_procs", procs_src, "procs.py"),
                                        ("_bench_baseline_stats", stats_src.replace(
                                            "from rawexec.containment.procs import",
                                            "from _bench_baseline_procs import"), "stats.py")]
    for name, src, fname in mods:
        mod = types.ModuleType(name)
        sys.modules[name] = mod  # dataclasses look their module up while the class is built
        exec(compile(src, f"{rev[:12]}:{fname}", "exec"), mod.__dict__)  # our own git history
    cls: type[StatsCollector] = sys.modules["_bench_baseline_stats"].StatsCollector
    return cls


def _with_cgroups(cls: type[StatsCollector], cgs: list[TaskCgroup],
                  procs: list[subprocess.Popen[bytes]]) -> list[StatsCollector]:
    return [cls(cg, p.pid) for cg, p in zip(cgs, procs, strict=True)]


def _without_cgroups(cls: type[StatsCollector], procs: list[subprocess.Popen[bytes]]) -> list[StatsCollector]:
    return [cls(None, p.pid) for p in procs]


Row = tuple[float, float, list[float]]  # (cpu % of one core, cpu seconds, call latencies)


def _rounds(variants: list[tuple[str, Callable[[], list[StatsCollector]]]], seconds: float,
            rounds: int) -> dict[str, list[Row]]:
    """Poll each variant's collectors for ``seconds``, ``rounds`` times, alternating the order."""
    out: dict[str, list[Row]] = {name: [] for name, _ in variants}
    for r in range(rounds):
        for name, make in (variants if r % 2 == 0 else variants[::-1]):
            collectors = make()
            try:
                out[name].append(_poll(collectors, seconds))
            finally:
                for c in collectors:
                    c.close()
    return out


def _cleanup_parent(system: CgroupSystem, parent: str) -> None:
    for m in set(system.v1_mounts.values()) | ({system.unified_mount} if system.unified_mount else set()):
        try:
            os.rmdir(f"{m}/{parent}")
        except OSError:
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of one polling round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per variant (baseline and current alternate)")
    ap.add_argument("--baseline-rev", default=BASELINE_REV, help="git revision of the baseline collector")
    args = ap.parse_args()
    baseline = _load_baseline(args.baseline_rev)
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
        setup = statistics.median(create_s) + statistics.median(join)
        print(f"=> cgroup setup per task start (create + join, medians): {setup * 1e3:.3f} ms "
              f"(target ≤ {SETUP_TARGET_S * 1e3:g} ms: {setup / SETUP_TARGET_S:.2f}x of it)")

        base_name = f"baseline {args.baseline_rev[:7]}"
        variants: list[tuple[str, Callable[[], list[StatsCollector]]]] = []
        for label, cls in (("current", StatsCollector), (base_name, baseline)):
            if cls is None:
                continue
            variants.append((f"cgroup files, {label}", functools.partial(_with_cgroups, cls, cgs, procs)))
            variants.append((f"/proc walk (no cgroups), {label}", functools.partial(_without_cgroups, cls, procs)))
        results = _rounds(variants, args.seconds, max(1, args.rounds))
        print(f"\nstats of {args.tasks} tasks every 1 s, {max(1, args.rounds)} rounds of {args.seconds:g} s each "
              f"(CPU = process user+system time; medians over rounds):")
        print(f"  {'source':<30}{'CPU % of one core':>18}{'baseline':>10}{'target':>9}{'ratio':>7}"
              f"{'CPU/call':>10}{'wall p50':>10}{'p99':>9}{'target':>9}   rounds (CPU %)")
        for name, rows in results.items():
            if base_name in name:
                continue
            cpu = statistics.median(r[0] for r in rows)
            per_call = statistics.median(r[1] / len(r[2]) for r in rows)
            lat = [x for r in rows for x in r[2]]
            base_rows = results.get(name.replace("current", base_name))
            base = statistics.median(r[0] for r in base_rows) if base_rows else float("nan")
            target = f"< {CPU_TARGET_PCT:g} %" if name.startswith("cgroup") else "-"
            call_target = f"< {CALL_TARGET_S * 1e3:g} ms" if name.startswith("cgroup") else "-"
            print(f"  {name:<30}{cpu:>17.2f}%{base:>9.2f}%{target:>9}{cpu / base:>6.2f}x"
                  f"{per_call * 1e6:>7.0f} µs{statistics.median(lat) * 1e6:>7.0f} µs{_pct(lat, 0.99) * 1e6:>6.0f} µs"
                  f"{call_target:>9}   {' '.join(f'{r[0]:.2f}' for r in rows)}")
            if base_rows:
                b = base_name
                blat = [x for r in base_rows for x in r[2]]
                print(f"  {'  ' + b:<30}{'':>18}{'':>10}{'':>9}{'':>7}"
                      f"{statistics.median(r[1] / len(r[2]) for r in base_rows) * 1e6:>7.0f} µs"
                      f"{statistics.median(blat) * 1e6:>7.0f} µs{_pct(blat, 0.99) * 1e6:>6.0f} µs"
                      f"{'':>9}   {' '.join(f'{r[0]:.2f}' for r in base_rows)}")
        print(f"  (ratio = current / baseline; host load average now: {os.getloadavg()[0]:.1f}; "
              "wall latencies include waiting for a cpu)")

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
