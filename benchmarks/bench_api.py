"""HTTP API latency: ``GET /v1/allocations`` with 1,000 allocations (target p50 <= 20 ms), and the
agent's RSS (target <= 60 MB).

Starts a real ``rawexec agent -dev`` on a scratch data dir, registers a batch job with
``count = N`` ``/bin/true`` tasks (so N allocations exist without N live processes), waits until
every allocation completed, then times sequential requests over the unix socket (keep-alive
client, as a CLI or a Nomad API client would) and over TCP; "after a change" stops one (already
finished) allocation before each timed request, so every list is built anew (no cached body).

    .venv/bin/python benchmarks/bench_api.py [N] [REQUESTS] [--baseline-src DIR]

``--baseline-src DIR``: also run the same measurement with ``PYTHONPATH=DIR`` (a copy of ``src/``
from before a change, e.g. ``git archive <rev> src | tar -x -C /tmp/base``), in the same run, and
print both side by side with the ratio.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
RAWEXEC = ROOT / ".venv" / "bin" / "rawexec"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _job(n: int) -> dict[str, object]:
    return {"Job": {"ID": "bench-api", "Type": "batch", "TaskGroups": [{
        "Name": "g", "Count": n, "Tasks": [{"Name": "t", "Driver": "raw_exec",
                                           "Config": {"command": "/bin/true"},
                                           "LogConfig": {"MaxFiles": 1, "MaxFileSizeMB": 1}}]}]}}


def _timed(client: httpx.Client, path: str, requests: int) -> tuple[list[float], int]:
    samples = []
    size = 0
    for _ in range(requests):
        t0 = time.perf_counter()
        r = client.get(path)
        samples.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text
        size = len(r.content)
    return samples, size


def _timed_raw(sock_path: str, path: str, requests: int) -> list[float]:
    """Keep-alive HTTP/1.1 over the unix socket with a minimal client: the server's own latency."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    req = f"GET {path} HTTP/1.1\r\nHost: rawexec\r\n\r\n".encode()
    samples = []
    buf = b""
    for _ in range(requests):
        t0 = time.perf_counter()
        s.sendall(req)
        while b"\r\n\r\n" not in buf:
            buf += s.recv(1 << 20)
        head, _, buf = buf.partition(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(buf) < length:
            buf += s.recv(1 << 20)
        buf = buf[length:]
        samples.append((time.perf_counter() - t0) * 1000)
    s.close()
    return samples


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def measure(n: int, requests: int, src: str | None) -> dict[str, float]:
    """One agent (this tree, or ``src`` on PYTHONPATH): the figures by name (ms, MiB, s)."""
    out: dict[str, float] = {}
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryDirectory(prefix="bench-api-", dir="/tmp") as tmp:
        port = _free_port()
        cfg = Path(tmp, "agent.hcl")
        cfg.write_text(f'bind_addr = "127.0.0.1"\nports {{ http = {port} }}\n')
        data = Path(tmp, "d")
        proc = subprocess.Popen([str(RAWEXEC), "agent", "-dev", "-data-dir", str(data), "-config", str(cfg),
                                 "-log-level", "ERROR"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env)
        sock = data / "api.sock"
        try:
            deadline = time.monotonic() + 60
            while not sock.exists():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("agent did not start")
                time.sleep(0.05)
            unix = httpx.Client(base_url="http://rawexec", transport=httpx.HTTPTransport(uds=str(sock)), timeout=120)
            tcp = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
            time.sleep(1.0)
            out["rss_empty"] = psutil.Process(proc.pid).memory_info().rss / 2**20
            t0 = time.monotonic()
            r = unix.put("/v1/jobs", json=_job(n))
            assert r.status_code == 200, r.text
            while True:
                allocs = unix.get("/v1/allocations", params={"task_states": "false"}).json()
                done = sum(1 for a in allocs if a["ClientStatus"] in ("complete", "failed"))
                if len(allocs) >= n and done >= n:
                    break
                if time.monotonic() - t0 > 600:
                    raise SystemExit(f"only {done}/{n} allocations finished in 600 s")
                time.sleep(0.5)
            out["placed"] = time.monotonic() - t0
            time.sleep(3.0)  # let the agent settle (group commits, event fan-out, idle housekeeping)
            out["rss"] = psutil.Process(proc.pid).memory_info().rss / 2**20
            _timed(unix, "/v1/allocations", 5)  # warm-up
            us, size = _timed(unix, "/v1/allocations", requests)
            out["size_kib"] = size / 1024
            ts, _ = _timed(tcp, "/v1/allocations", requests)
            raw = _timed_raw(str(sock), "/v1/allocations", requests)
            ids = [a["ID"] for a in allocs]
            changed: list[float] = []
            for i in range(requests):
                assert unix.put(f"/v1/allocation/{ids[i % len(ids)]}/stop").status_code == 200
                changed.extend(_timed(unix, "/v1/allocations", 1)[0])
            small, _ = _timed(unix, "/v1/agent/self", requests)
            for name, smp in (("unix", us), ("tcp", ts), ("raw", raw), ("changed", changed), ("self", small)):
                out[f"{name}_p50"] = statistics.median(smp)
                out[f"{name}_p90"] = _pct(smp, 0.9)
                out[f"{name}_p99"] = _pct(smp, 0.99)
            unix.close()
            tcp.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    return out


ROWS = (("GET /v1/allocations unix", "unix", 20.0), ("GET /v1/allocations tcp", "tcp", 20.0),
        ("GET /v1/allocations raw", "raw", 20.0), ("GET /v1/allocations after a change", "changed", 20.0),
        ("GET /v1/agent/self unix", "self", None))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", nargs="?", type=int, default=1000, help="allocations (count of the job), default 1000")
    ap.add_argument("requests", nargs="?", type=int, default=200, help="timed requests per row, default 200")
    ap.add_argument("--baseline-src", metavar="DIR", help="also measure this copy of src/, in the same run")
    opts = ap.parse_args()
    base_src, n, requests = opts.baseline_src, opts.n, opts.requests
    runs = {"this tree": measure(n, requests, None)}
    if base_src:
        runs["baseline"] = measure(n, requests, base_src)
    cur = runs["this tree"]
    base = runs.get("baseline")
    print(f"allocations: {n} (batch /bin/true, all finished {cur['placed']:.1f} s after register"
          + (f"; baseline {base['placed']:.1f} s" if base else "") + f"); response {cur['size_kib']:.0f} KiB; "
          f"host: {os.cpu_count() or 1} cores, load {os.getloadavg()[0]:.1f}")
    for label, key, target in ROWS:
        line = (f"{label:36s} p50 {cur[key + '_p50']:7.2f} ms  p90 {cur[key + '_p90']:7.2f} ms  "
                f"p99 {cur[key + '_p99']:7.2f} ms  (n={requests})")
        if base:
            line += f"  baseline p50 {base[key + '_p50']:7.2f} ms ({cur[key + '_p50'] / base[key + '_p50']:.2f}x)"
        if target:
            line += f"  target p50 <= {target:.0f} ms ({cur[key + '_p50'] / target:.2f}x of it)"
        print(line)
    line = (f"agent RSS: {cur['rss_empty']:.1f} MiB idle with no jobs, {cur['rss']:.1f} MiB with {n} allocs "
            f"(target <= 60 MB: {cur['rss'] * 2**20 / 1e6 / 60:.2f}x of it)")
    if base:
        line += (f"; baseline {base['rss_empty']:.1f} / {base['rss']:.1f} MiB "
                 f"({cur['rss'] / base['rss']:.2f}x)")
    print(line)


if __name__ == "__main__":
    main()
