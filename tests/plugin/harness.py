"""A test harness that plays Nomad's client: launch the real plugin, handshake, call it over gRPC."""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rawexec.plugin.gen import base_pb2_grpc, driver_pb2_grpc, plugin_pb2, plugin_pb2_grpc
from rawexec.plugin.server import MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE

HANDSHAKE_RE = re.compile(r"^1\|(\d+)\|unix\|(/[^|]+)\|grpc\|?$")


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.01,
               message: str = "condition") -> Any:
    """Poll ``predicate`` until truthy; return its value or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@contextlib.contextmanager
def short_tmp_dir() -> Iterator[Path]:
    """A short directory for unix sockets (pytest's tmp_path can pass the 107-byte limit)."""
    d = tempfile.mkdtemp(prefix="rxp")
    try:
        yield Path(d)
    finally:
        for p in Path(d).glob("*"):
            with contextlib.suppress(OSError):
                p.unlink()
        with contextlib.suppress(OSError):
            os.rmdir(d)


def plugin_command(args: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "rawexec.plugin.main", *args]


def plugin_env(socket_dir: Path | None, cookie: str | None = MAGIC_COOKIE_VALUE,
               extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment Nomad's go-plugin client gives a plugin (facts §1.2)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGIN_") and k != MAGIC_COOKIE_KEY}
    env.update({"PLUGIN_MIN_PORT": "10000", "PLUGIN_MAX_PORT": "25000", "PLUGIN_PROTOCOL_VERSIONS": "2"})
    if cookie is not None:
        env[MAGIC_COOKIE_KEY] = cookie
    if socket_dir is not None:
        env["PLUGIN_UNIX_SOCKET_DIR"] = str(socket_dir)
    env.update(extra or {})
    return env


@dataclass
class Plugin:
    """A launched plugin process with its gRPC stubs."""

    proc: subprocess.Popen[bytes]
    line: str
    socket_path: str
    stderr_path: Path
    launch_seconds: float
    channel: grpc.Channel = field(init=False)

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(f"unix:{self.socket_path}")
        self.base = base_pb2_grpc.BasePluginStub(self.channel)
        self.driver = driver_pb2_grpc.DriverStub(self.channel)
        self.controller = plugin_pb2_grpc.GRPCControllerStub(self.channel)
        self.stdio = plugin_pb2_grpc.GRPCStdioStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def healthy(self) -> bool:
        resp = self.health.Check(health_pb2.HealthCheckRequest(service="plugin"), timeout=5)
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)

    def shutdown(self, timeout: float = 5.0) -> int:
        """go-plugin's Kill(): controller Shutdown, then wait for the exit."""
        with contextlib.suppress(grpc.RpcError):
            self.controller.Shutdown(plugin_pb2.Empty(), timeout=timeout)
        self.channel.close()
        return self.proc.wait(timeout=timeout)

    def kill9(self) -> None:
        self.channel.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stderr_lines(self) -> list[str]:
        return self.stderr_path.read_text(errors="replace").splitlines()

    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stderr_lines() if line.startswith("{")]

    def rest_of_stdout(self) -> bytes:
        assert self.proc.stdout is not None
        return self.proc.stdout.read()

    def close(self) -> None:
        if self.alive():
            try:
                self.shutdown(timeout=3)
            except (subprocess.TimeoutExpired, grpc.RpcError):
                self.kill9()
        self.channel.close()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def read_first_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The first stdout line, without blocking past ``timeout`` ('' if the process exited)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no handshake line within {timeout}s; got {buf!r}")
            if not sel.select(left):
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    finally:
        sel.close()
    line, _, rest = buf.partition(b"\n")
    assert rest == b"", f"more than the handshake line on stdout: {rest!r}"
    return line.decode()


def launch(workdir: Path, socket_dir: Path | None, args: Sequence[str] = (),
           env: Mapping[str, str] | None = None, timeout: float = 60.0,
           command: Sequence[str] | None = None, stderr_pipe: bool = False) -> Plugin:
    """Start the plugin like go-plugin does and complete the handshake.

    stderr goes to a file, or with ``stderr_pipe`` to a pipe (``proc.stderr``) like the agent's.
    """
    stderr_path = workdir / f"plugin-stderr-{time.monotonic_ns()}.log"
    t0 = time.monotonic()
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(list(command or plugin_command(args)), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE if stderr_pipe else err,
                                env=dict(env) if env is not None else plugin_env(socket_dir),
                                start_new_session=True)
    line = read_first_line(proc, timeout)
    elapsed = time.monotonic() - t0
    m = HANDSHAKE_RE.match(line)
    if not m:
        proc.kill()
        proc.wait()
        raise AssertionError(f"bad handshake line {line!r}; stderr: {stderr_path.read_text()}")
    assert m.group(1) == "2"
    return Plugin(proc=proc, line=line, socket_path=m.group(2), stderr_path=stderr_path,
                  launch_seconds=elapsed)


def run_without_handshake(workdir: Path, env: Mapping[str, str], args: Sequence[str] = (),
                          timeout: float = 20.0) -> subprocess.CompletedProcess[bytes]:
    """Run the plugin expecting it to refuse (no handshake)."""
    return subprocess.run(plugin_command(args), env=dict(env), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout, cwd=workdir, check=False)
