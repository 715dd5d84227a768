"""A real ``rawexec agent`` subprocess and a helper to run CLI commands as subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.helpers.util import wait_until

RAWEXEC = os.path.join(os.path.dirname(sys.executable), "rawexec")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@dataclass
class AgentProc:
    data_dir: str
    args: list[str]
    proc: subprocess.Popen[str] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def sock(self) -> str:
        return os.path.join(self.data_dir, "api.sock")

    @property
    def address(self) -> str:
        return f"unix://{self.sock}"

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen([RAWEXEC, "agent", "-data-dir", self.data_dir, *self.args], text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read() if self.proc.stdout else ""
                raise AssertionError(f"agent exited with {self.proc.returncode}:\n{out}")
            if os.path.exists(self.sock):
                try:
                    if self.http().get("/v1/agent/self").status_code in (200, 403):
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        out = self.terminate()  # not left running when the fixture fails (its teardown never runs)
        raise AssertionError(f"agent did not start in {timeout:g}s:\n{out}")

    def http(self, token: str = "") -> httpx.Client:
        headers = {"X-Nomad-Token": token} if token else {}
        return httpx.Client(base_url="http://rawexec", transport=httpx.HTTPTransport(uds=self.sock), timeout=30,
                            headers=headers)

    def cli(self, *args: str, input: str | None = None, token: str = "", address: str | None = None,
            timeout: float = 60) -> CliResult:
        env = {**os.environ, "RAWEXEC_ADDR": address or self.address}
        env.pop("RAWEXEC_TOKEN", None)
        if token:
            env["RAWEXEC_TOKEN"] = token
        p = subprocess.run([RAWEXEC, *args], check=False, input=input, capture_output=True, text=True, env=env,
                           timeout=timeout)
        return CliResult(p.returncode, p.stdout, p.stderr)

    def terminate(self, timeout: float = 30.0) -> str:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out or ""

    def stop_all_jobs(self, token: str = "") -> None:
        """Stop and purge every job and wait until no allocation runs (test cleanup)."""
        with self.http(token) as c:
            for j in c.get("/v1/jobs").json():
                c.delete(f"/v1/job/{quote(j['ID'], safe='')}", params={"purge": "true"})

            def quiet() -> bool:
                r = c.get("/v1/allocations")
                return r.status_code == 200 and all(a.get("ClientStatus") != "running" for a in r.json())

            wait_until(quiet, 30, interval=0.1, msg="allocations still running")


@pytest.fixture
def data_dir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="rxcli-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def agent(data_dir: str) -> Iterator[AgentProc]:
    a = AgentProc(data_dir, ["-dev"])
    a.start()
    try:
        yield a
    finally:
        try:
            if a.proc is not None and a.proc.poll() is None:
                a.stop_all_jobs()
        finally:
            a.terminate()


def job_json(job_id: str, script: str, *, count: int = 1, task: str = "web", type_: str = "service"
             ) -> dict[str, Any]:
    return {"Job": {"ID": job_id, "Type": type_, "TaskGroups": [{"Name": "g", "Count": count, "Tasks": [
        {"Name": task, "Driver": "raw_exec", "KillTimeout": 1_000_000_000,  # 1 s: quick test teardown
         "Config": {"command": "/bin/sh", "args": ["-c", script]}}]}]}}
