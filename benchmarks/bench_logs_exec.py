"""Logs and exec benchmark (issue "Logs and interactive exec"): run by hand on a quiet machine.

    .venv/bin/python benchmarks/bench_logs_exec.py [--mb 1024]

1. Log throughput of one task writing as fast as it can (``dd if=/dev/zero bs=64k``) through the
   shim into rotated files, vs. the same ``dd`` writing straight to a file on the same disk.
2. Exec round trip: ``exec_task(["true"])`` p50, vs. ``subprocess.run(["true"])`` from here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from rawexec import Driver, DriverConfig, LogConfig, TaskConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--execs", type=int, default=200)
    args = ap.parse_args()
    count = args.mb * 16  # 64 KiB blocks
    base = tempfile.mkdtemp(prefix="rxlog-", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    state = tempfile.mkdtemp(prefix="rxb-", dir="/tmp")
    d = Driver(DriverConfig(enabled=True, no_cgroups=True, state_dir=state))
    try:
        # baseline: dd straight to a file
        t0 = time.perf_counter()
        subprocess.run(["dd", "if=/dev/zero", f"of={base}/direct.out", "bs=64k", f"count={count}"], check=True,
                       stderr=subprocess.DEVNULL)
        direct = time.perf_counter() - t0
        os.unlink(f"{base}/direct.out")
        # through rawexec: dd to stdout -> pipe -> shim -> rotated files (100 MB files, keep all)
        cfg = TaskConfig(id="flood", name="flood", alloc_id="bench", alloc_dir=f"{base}/alloc",
                         driver_config={"command": "/bin/dd", "args": ["if=/dev/zero", "bs=64k", f"count={count}"]},
                         env={"PATH": "/usr/bin:/bin"}, logs=LogConfig(max_files=100, max_file_size=100))
        t0 = time.perf_counter()
        d.start_task(cfg)
        res = d.wait_task("flood", 600)
        piped = time.perf_counter() - t0
        assert res.successful, res
        logs = f"{base}/alloc/alloc/logs"
        total = sum(os.path.getsize(os.path.join(logs, f)) for f in os.listdir(logs) if ".stdout." in f)
        assert total == count * 65536, (total, count * 65536)
        d.destroy_task("flood")

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
    print(f"load average: {os.getloadavg()[0]:.2f}")
    print(f"{'metric':42} {'rawexec':>12} {'baseline':>12} {'ratio':>8}")
    print(f"{f'log throughput, {mb} MB (MB/s)':42} {mb / piped:12.1f} {mb / direct:12.1f} "
          f"{direct / piped:8.2f}   (baseline: dd of=file)")
    p50, b50 = statistics.median(lat), statistics.median(base_lat)
    print(f"{'exec round trip p50 (ms)':42} {p50:12.2f} {b50:12.2f} {p50 / b50:8.2f}   "
          "(baseline: subprocess.run from this process)")


if __name__ == "__main__":
    main()
