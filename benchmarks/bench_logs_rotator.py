"""FileRotator throughput vs. ``dd`` writing the same amount to one file on the same disk.

Feeds N bytes (default 1 GiB) in 64 KiB chunks (what the shim reads from a pipe) of log-like
lines into a FileRotator with Nomad's defaults (10 files x 10 MB: rotation and purge every 10 MB),
and compares with, in the same run and the same directory:

* ``dd if=/dev/zero of=FILE bs=64K count=...`` (the target: rotator >= 70 % of dd),
* a bare Python ``os.write`` loop of the same chunks into one file (the floor for Python),
* the rotator fed zeros, i.e. dd's very bytes: with no newline every file is filled to exactly
  10 MiB, so writes stay 64 KiB-aligned in the file. With log lines each file ends on a newline,
  the next starts with the rest of the chunk, and every later 64 KiB write straddles a 64 KiB
  boundary — on this kernel (large page-cache folios) that alone costs ~40 % more kernel CPU per
  byte than aligned writes; it is the price of Nomad's newline rule, not of Python,
* the rotator keeping every file (rotation without the purge's unlinks, whose page-cache
  freeing is real kernel work the baselines do not pay inside their timing),
* the shim's pump without the shim: ``dd`` -> a pipe (1 MiB when allowed) -> this process ->
  FileRotator, once with ``write_from`` (splice(2) through a relay pipe, what the shim does) and
  once with ``os.read`` + ``write`` (what it did before). Wall time includes dd filling the
  pipe on the other CPU; the CPU column is this process only (the pump).

Each variant runs ``--repeat`` times (best kept); files are deleted between runs.

    .venv/bin/python benchmarks/bench_logs_rotator.py [--dir DIR] [--mib 1024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable

from rawexec.logs import FileRotator

CHUNK = 64 * 1024
PIPE = 1024 * 1024  # the shim's pipe size and read chunk


def make_chunk() -> bytes:
    lines = b"".join(b"2026-11-28T01:02:03.%06dZ [INFO] request id=%08d path=/api/v1/items status=200\n"
                     % (i, i * 7919) for i in range(2000))
    return lines[:CHUNK]


Timing = tuple[float, float]  # (wall seconds, CPU seconds user+system)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def bench_dd(d: str, count: int) -> Timing:
    path = os.path.join(d, "dd.out")
    c0 = _children_cpu()
    t0 = time.perf_counter()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", f"bs={CHUNK}", f"count={count}"],
                   check=True, capture_output=True)
    dt = time.perf_counter() - t0
    cpu = _children_cpu() - c0
    os.unlink(path)
    return dt, cpu


def bench_os_write(d: str, count: int, chunk: bytes) -> Timing:
    path = os.path.join(d, "py.out")
    c0 = time.process_time()
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        for _ in range(count):
            os.write(fd, chunk)
    finally:
        os.close(fd)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    os.unlink(path)
    return dt, cpu


def bench_rotator(d: str, count: int, chunk: bytes, max_files: int = 10) -> Timing:
    logs = os.path.join(d, "logs")
    os.mkdir(logs)
    c0 = time.process_time()
    t0 = time.perf_counter()
    with FileRotator(logs, "bench.stdout", max_files, 10) as r:
        w = r.write
        for _ in range(count):
            if w(chunk) != CHUNK:
                raise SystemExit("rotator refused bytes: " + repr(r.last_error))
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    files = sorted(os.listdir(logs))
    shutil.rmtree(logs)
    expect = min(max_files, -(-count * CHUNK // (10 * 1024 * 1024)))
    if len(files) != expect:
        raise SystemExit(f"expected {expect} kept files, found {len(files)}")
    return dt, cpu


def bench_pipe(d: str, count: int, splice: bool) -> Timing:
    """dd -> pipe -> FileRotator (10 x 10 MB) in this process, as the shim's pump does."""
    import fcntl
    import selectors

    logs = os.path.join(d, "logs")
    os.mkdir(logs)
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(r, fcntl.F_SETPIPE_SZ, PIPE)
    except OSError:
        pass
    os.set_blocking(r, False)
    sel = selectors.DefaultSelector()
    sel.register(r, selectors.EVENT_READ)
    total = 0
    c0 = time.process_time()
    t0 = time.perf_counter()
    with FileRotator(logs, "bench.stdout", 10, 10) as rot:
        proc = subprocess.Popen(["dd", "if=/dev/zero", f"bs={CHUNK}", f"count={count}"], stdout=w,
                                stderr=subprocess.DEVNULL)
        os.close(w)
        while True:
            sel.select()
            try:
                if splice:
                    n, refused = rot.write_from(r, PIPE)
                else:
                    data = os.read(r, PIPE)
                    n = len(data)
                    refused = data[rot.write(data):]
            except BlockingIOError:
                continue
            if refused:
                raise SystemExit("rotator refused bytes: " + repr(rot.last_error))
            if n == 0:
                break
            total += n
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    proc.wait()
    sel.close()
    os.close(r)
    shutil.rmtree(logs)
    if total != count * CHUNK:
        raise SystemExit(f"pumped {total} bytes, expected {count * CHUNK}")
    return dt, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None, help="directory on the disk to test (default: a temp dir)")
    ap.add_argument("--mib", type=int, default=1024, help="MiB to write per run (default 1024)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    count = args.mib * 1024 * 1024 // CHUNK
    chunk = make_chunk()
    d = tempfile.mkdtemp(prefix="bench-logs-", dir=args.dir)
    try:
        variants: dict[str, Callable[[], Timing]] = {
            "dd": lambda: bench_dd(d, count),
            "os.write": lambda: bench_os_write(d, count, chunk),
            "FileRotator": lambda: bench_rotator(d, count, chunk),
            "zeros": lambda: bench_rotator(d, count, bytes(CHUNK)),
            "keep-all": lambda: bench_rotator(d, count, chunk, max_files=100_000),
            "pipe splice": lambda: bench_pipe(d, count, splice=True),
            "pipe read": lambda: bench_pipe(d, count, splice=False),
        }
        wall = dict.fromkeys(variants, float("inf"))
        cpu = dict.fromkeys(variants, float("inf"))
        for _ in range(args.repeat):  # interleaved so drift hits all variants alike
            for name, run in variants.items():
                w, c = run()
                wall[name] = min(wall[name], w)
                cpu[name] = min(cpu[name], c)
        total = count * CHUNK
        print(f"{args.mib} MiB in 64 KiB chunks, dir {d}, best of {args.repeat}, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"  {'':12s} {'wall s':>8s} {'MB/s':>8s} {'CPU s':>8s}")
        for name in variants:
            print(f"  {name:12s} {wall[name]:8.3f} {total / wall[name] / 1e6:8.0f} {cpu[name]:8.3f}")
        for name, note in (("FileRotator", "log lines, 10 x 10 MB: rotates + purges every 10 MB"),
                           ("zeros", "dd's bytes (no newline): files stay 64 KiB-aligned"),
                           ("keep-all", "log lines, max_files large: rotation without purge"),
                           ("pipe splice", "dd | write_from (the shim's pump: splice via a relay pipe)"),
                           ("pipe read", "dd | os.read + write (the pump before write_from)")):
            print(f"  {name} / dd: throughput {wall['dd'] / wall[name]:.2f} (target >= 0.70), "
                  f"CPU-time ratio {cpu['dd'] / cpu[name]:.2f}   [{note}]")
        print(f"  FileRotator / os.write: throughput {wall['os.write'] / wall['FileRotator']:.2f}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
