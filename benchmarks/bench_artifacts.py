"""Benchmark: fetch + verify + unpack a ~200 MB tar.gz from a loopback server, side by side with
``curl -s URL | tee >(sha256sum) | tar xz`` on the same file, in the same run (target: ours ≥ 70 %
of the shell pipeline's speed).

Run: ``.venv/bin/python benchmarks/bench_artifacts.py [--size-mb 200] [--rounds 3]``.
The archive is generated once (cached under the system temp dir) from a mix of incompressible
and text-like files; the server is a separate process that answers with ``sendfile``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

from rawexec.artifacts import ArtifactSpec, GetterConfig, fetch_artifact

__all__ = ["main", "make_archive"]

_SERVER = r"""
import http.server, os, sys
root = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        path = os.path.join(root, os.path.basename(self.path))
        size = os.path.getsize(path)
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.flush()
        with open(path, "rb") as f:
            self.connection.sendfile(f)
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def make_archive(path: str, target_mb: int) -> None:
    """A tar.gz of ~``target_mb`` MB compressed: files of 0.5-6 MB, half random, half text-like."""
    rng = random.Random(42)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10)))
             for _ in range(5000)]
    tmp = path + ".tmp"
    with tarfile.open(tmp, "w:gz", compresslevel=1) as tf:
        i = 0
        while os.path.getsize(tmp) < target_mb * 1_000_000:
            size = rng.randint(512 << 10, 6 << 20)
            if i % 2:
                data = rng.randbytes(size)
            else:
                buf = io.BytesIO()
                while buf.tell() < size:
                    buf.write(b" ".join(rng.choices(words, k=200)) + b"\n")
                data = buf.getvalue()[:size]
            info = tarfile.TarInfo(f"pkg/dir{i % 16}/file{i:05d}.bin")
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
            tf.fileobj.flush()  # type: ignore[attr-defined]
            i += 1
    os.replace(tmp, path)


def _child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _time_ours(url: str, checksum: str, work: str) -> tuple[float, float]:
    alloc = tempfile.mkdtemp(dir=work)
    task = os.path.join(alloc, "web")
    os.makedirs(os.path.join(task, "local"))
    c0 = _child_cpu() + _self_cpu()
    t0 = time.perf_counter()
    res = fetch_artifact(ArtifactSpec(url, options={"checksum": checksum}), task_dir=task, alloc_dir=alloc,
                         config=GetterConfig())
    dt = time.perf_counter() - t0
    cpu = _child_cpu() + _self_cpu() - c0
    assert res.kind == "dir" and res.files > 0, res
    shutil.rmtree(alloc)
    return dt, cpu


def _time_curl(url: str, work: str) -> tuple[float, float]:
    out = tempfile.mkdtemp(dir=work)
    cmd = f"set -o pipefail; curl -s {url} | tee >(sha256sum > {out}/.sum) | tar xz -C {out}"
    c0 = _child_cpu()
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", cmd], check=True)
    dt = time.perf_counter() - t0
    cpu = _child_cpu() - c0
    shutil.rmtree(out)
    return dt, cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if shutil.which("curl") is None:
        print("curl not found: this benchmark needs curl for the baseline", file=sys.stderr)
        return 2
    cache = os.path.join(tempfile.gettempdir(), "rawexec-bench-artifacts")
    os.makedirs(cache, exist_ok=True)
    archive = os.path.join(cache, f"bench-{args.size_mb}.tar.gz")
    if not os.path.exists(archive):
        print(f"generating {archive} ...", flush=True)
        make_archive(archive, args.size_mb)
    size = os.path.getsize(archive)
    h = hashlib.sha256()
    with open(archive, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    checksum = f"sha256:{h.hexdigest()}"
    server = subprocess.Popen([sys.executable, "-c", _SERVER, cache], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}/{os.path.basename(archive)}"
        work = tempfile.mkdtemp(prefix="bench-artifacts-")
        ours: list[float] = []
        curl: list[float] = []
        ours_cpu: list[float] = []
        curl_cpu: list[float] = []
        for _ in range(args.rounds):  # interleaved so both see the same machine state
            dt, cpu = _time_curl(url, work)
            curl.append(dt)
            curl_cpu.append(cpu)
            dt, cpu = _time_ours(url, checksum, work)
            ours.append(dt)
            ours_cpu.append(cpu)
        shutil.rmtree(work)
    finally:
        server.kill()
        server.wait()
    mo, mc = statistics.median(ours), statistics.median(curl)
    mb = size / 1e6
    print(f"archive: {mb:.1f} MB tar.gz, {args.rounds} rounds, median wall time")
    print(f"  curl | tee >(sha256sum) | tar xz : {mc:6.2f} s  {mb / mc:7.1f} MB/s   {[round(x, 2) for x in curl]}")
    print(f"  rawexec fetch_artifact (sha256)  : {mo:6.2f} s  {mb / mo:7.1f} MB/s   {[round(x, 2) for x in ours]}")
    print(f"  ratio (rawexec speed / curl speed): {mc / mo:.2f}  (target >= 0.70)")
    print(f"  best round ratio: {min(curl) / min(ours):.2f}; CPU seconds (user+sys, median): "
          f"curl pipeline {statistics.median(curl_cpu):.2f}, rawexec {statistics.median(ours_cpu):.2f}")
    print(f"  load average at end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
