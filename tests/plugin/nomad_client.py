"""Helpers that do what Nomad's client does around a driver plugin (config, task config, FIFOs)."""

from __future__ import annotations

import contextlib
import os
import selectors
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rawexec.plugin import cty, hclspec
from rawexec.plugin.gen import base_pb2, driver_pb2
from tests.plugin.harness import Plugin


def plugin_config(body: Mapping[str, Any]) -> bytes:
    """``plugin "raw_exec" { config {...} }`` as Nomad encodes it for SetConfig."""
    return cty.encode(cty.hcldec(hclspec.plugin_config_spec(), body))


def set_config(p: Plugin, body: Mapping[str, Any] | None = None, validation_only: bool = False) -> None:
    req = base_pb2.SetConfigRequest(msgpack_config=plugin_config({"enabled": True} if body is None else body),
                                    plugin_api_version="0.1.0")
    if not validation_only:
        req.nomad_config.driver.ClientMinPort = 14000
        req.nomad_config.driver.ClientMaxPort = 14512
    p.base.SetConfig(req, timeout=10)


def task_config(alloc_dir: Path, config: Mapping[str, Any], name: str = "web",
                env: Mapping[str, str] | None = None, stdout_path: str = "", stderr_path: str = "",
                task_name_var: bool = True) -> Any:
    """A TaskConfig message like the client's ``buildTaskConfig`` (facts §3.5)."""
    alloc_id = str(uuid.uuid4())
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NOMAD_TASK_NAME": name,
                "NOMAD_ALLOC_ID": alloc_id, "NOMAD_ALLOC_DIR": str(alloc_dir / "alloc"),
                "NOMAD_TASK_DIR": str(alloc_dir / name / "local")}
    full_env.update(env or {})
    body = cty.hcldec(hclspec.task_config_spec(), config, full_env if task_name_var else {})
    return driver_pb2.TaskConfig(
        id=f"{alloc_id}/{name}/{uuid.uuid4().hex[:8]}", name=name, alloc_id=alloc_id, alloc_dir=str(alloc_dir),
        msgpack_driver_config=cty.encode(body), env=full_env, stdout_path=stdout_path, stderr_path=stderr_path,
        job_name="example", job_id="example", task_group_name="group", namespace="default",
        resources=driver_pb2.Resources(
            allocated_resources=driver_pb2.AllocatedTaskResources(
                cpu=driver_pb2.AllocatedCpuResources(cpu_shares=100),
                memory=driver_pb2.AllocatedMemoryResources(memory_mb=64))))


class FifoReader:
    """Plays logmon: creates the task's FIFO and keeps reading it into a buffer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        # A write end of our own: no EOF between writers (a recovered task reopens the FIFO).
        self._keep = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        self._wake_r, self._wake_w = os.pipe()
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.fd, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while True:
                for key, _ in sel.select():
                    if key.fd == self._wake_r:
                        return
                    try:
                        data = os.read(self.fd, 65536)
                    except BlockingIOError:
                        continue
                    with self._lock:
                        self._buf += data
        finally:
            sel.close()

    @property
    def data(self) -> bytes:
        with self._lock:
            return bytes(self._buf)

    def close(self) -> None:
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self.fd, self._keep, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.contextmanager
def task_fifos(alloc_dir: Path, name: str = "web") -> Iterator[tuple[FifoReader, FifoReader]]:
    logs = alloc_dir / "alloc" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out = FifoReader(logs / f".{name}.stdout.fifo")
    err = FifoReader(logs / f".{name}.stderr.fifo")
    try:
        yield out, err
    finally:
        out.close()
        err.close()


def exec_stream_requests(task_id: str, command: Sequence[str], stdin: bytes = b"", tty: bool = False,
                         close: bool = True) -> list[Any]:
    """The client's input for one exec session (facts §8.5 shape)."""
    reqs: list[Any] = [driver_pb2.ExecTaskStreamingRequest(
        setup=driver_pb2.ExecTaskStreamingRequest.Setup(task_id=task_id, command=list(command), tty=tty))]
    if tty:
        reqs.append(driver_pb2.ExecTaskStreamingRequest(
            tty_size=driver_pb2.ExecTaskStreamingRequest.TerminalSize(height=100, width=100)))
    reqs.append(driver_pb2.ExecTaskStreamingRequest(
        stdin=driver_pb2.ExecTaskStreamingIOOperation(data=stdin)))
    if close and not tty:
        reqs.append(driver_pb2.ExecTaskStreamingRequest(
            stdin=driver_pb2.ExecTaskStreamingIOOperation(close=True)))
    return reqs


def collect_exec(responses: Iterator[Any]) -> tuple[bytes, bytes, Any, list[str]]:
    """(stdout, stderr, result, closes seen) from an ExecTaskStreaming response stream."""
    out, err, closes = bytearray(), bytearray(), []
    result = None
    for r in responses:
        if r.HasField("stdout"):
            out += r.stdout.data
            if r.stdout.close:
                closes.append("stdout")
        if r.HasField("stderr"):
            err += r.stderr.data
            if r.stderr.close:
                closes.append("stderr")
        if r.exited:
            result = r.result
    return bytes(out), bytes(err), result, closes
