"""HTTP API latency: ``GET /v1/allocations`` with 1,000 allocations (target p50 <= 20 ms), and the
agent's RSS (target <= 60 MB).

Starts a real ``rawexec agent -dev`` on a scratch data dir, registers a batch job with
``count = N`` ``/bin/true`` tasks (so N allocations exist without N live processes), waits until
every allocation completed, then times sequential requests over the unix socket (keep-alive
client, as a CLI or a Nomad API client would) and over TCP.

    .venv/bin/python benchmarks/bench_api.py [N] [REQUESTS]
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
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


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    requests = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    with tempfile.TemporaryDirectory(prefix="bench-api-", dir="/tmp") as tmp:
        port = _free_port()
        cfg = Path(tmp, "agent.hcl")
        cfg.write_text(f'bind_addr = "127.0.0.1"\nports {{ http = {port} }}\n')
        data = Path(tmp, "d")
        proc = subprocess.Popen([str(RAWEXEC), "agent", "-dev", "-data-dir", str(data), "-config", str(cfg),
                                 "-log-level", "ERROR"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sock = data / "api.sock"
        try:
            deadline = time.monotonic() + 60
            while not sock.exists():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("agent did not start")
                time.sleep(0.05)
            unix = httpx.Client(base_url="http://rawexec", transport=httpx.HTTPTransport(uds=str(sock)), timeout=120)
            tcp = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
            rss_empty = psutil.Process(proc.pid).memory_info().rss
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
            placed = time.monotonic() - t0
            time.sleep(1.0)  # let the agent settle (group commits, event fan-out)
            rss = psutil.Process(proc.pid).memory_info().rss
            _timed(unix, "/v1/allocations", 5)  # warm-up
            us, size = _timed(unix, "/v1/allocations", requests)
            ts, _ = _timed(tcp, "/v1/allocations", requests)
            raw = _timed_raw(str(sock), "/v1/allocations", requests)
            small, _ = _timed(unix, "/v1/agent/self", requests)
            cpu = os.cpu_count() or 1
            print(f"allocations: {n} (batch /bin/true, all finished {placed:.1f} s after register); "
                  f"response {size / 1024:.0f} KiB; host: {cpu} cores, load {os.getloadavg()[0]:.1f}")
            for name, s in (("GET /v1/allocations unix", us), ("GET /v1/allocations tcp", ts),
                            ("GET /v1/allocations raw", raw),
                            ("GET /v1/agent/self unix", small)):
                print(f"{name:29s} p50 {statistics.median(s):7.2f} ms  p90 {_pct(s, 0.9):7.2f} ms  "
                      f"p99 {_pct(s, 0.99):7.2f} ms  (n={len(s)})")
            print(f"agent RSS: {rss_empty / 2**20:.1f} MiB idle with no jobs, {rss / 2**20:.1f} MiB with {n} allocs "
                  "(target <= 60 MB)")
            unix.close()
            tcp.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
