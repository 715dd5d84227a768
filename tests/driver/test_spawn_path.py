"""The start path's pieces: spec transfer, the spawner's request handling, the vfork launcher,
and the lazy loggers that keep :mod:`threading` out of the spawner."""

from __future__ import annotations

import array
import enum
import errno
import json
import os
import socket
import struct
import subprocess
import sys
import threading

import pytest

from rawexec import Driver
from rawexec.executor.launch import LaunchFailure, start_process
from rawexec.executor.protocol import SPAWN_REQUEST, Channel, ProtocolError, recv_spec, send_spec
from tests.conftest import TaskFactory


class _Color(enum.StrEnum):
    RED = "red"


def test_spec_round_trip_normalises_subclasses() -> None:
    a, b = socket.socketpair()
    with a, b:
        spec = {"argv": ["/bin/true", _Color.RED], "env": {"K": "v" * 300_000}, "n": 3, "x": None,
                "f": 1.5, "ok": True}
        sender = threading.Thread(target=send_spec, args=(a, spec))  # bigger than the socket buffer
        sender.start()
        got, fds = recv_spec(b)
        sender.join()
    assert fds == []
    assert got == {"argv": ["/bin/true", "red"], "env": {"K": "v" * 300_000}, "n": 3, "x": None, "f": 1.5,
                   "ok": True}
    assert type(got["argv"][1]) is str


def test_spec_carries_fds_and_refuses_extra_ones() -> None:
    a, b = socket.socketpair()
    r, w = os.pipe()
    with a, b:
        send_spec(a, {"x": 1}, [r])
        got, fds = recv_spec(b, want_fds=1)
        assert got == {"x": 1} and len(fds) == 1
        assert not os.get_inheritable(fds[0])  # close-on-exec from the start
        os.write(w, b"hi")
        assert os.read(fds[0], 2) == b"hi"  # the very pipe
        os.close(fds[0])
        send_spec(a, {"x": 2}, [r, w])
        with pytest.raises(ProtocolError, match="at most 1 expected"):
            recv_spec(b, want_fds=1)
    os.close(r)
    os.close(w)


def test_recv_spec_rejects_truncated_and_oversized_input() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack(">I", 100) + b"abc")
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(ProtocolError, match="connection closed"):
            recv_spec(b)
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack(">I", 2**31))
        with pytest.raises(ProtocolError, match="exceeds the limit"):
            recv_spec(b)
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack(">I", 3) + b"\xff\xff\xff")
        with pytest.raises(ProtocolError, match="malformed message"):
            recv_spec(b)


def test_channel_messages_are_compact_json_and_bad_ones_are_refused() -> None:
    """The shim's messages use json's C encoder and scanner directly (fewer page copies in a
    freshly forked shim): the bytes are exactly ``json.dumps``'s, and what ``json.loads`` would
    refuse, or a value with anything after it, is a malformed message."""
    msg = {"ok": True, "exit": {"exit_code": 143, "signal": 15, "err": None}, "completed_at": 1764370000.123456,
           "text": "caf\u00e9 \"q\" \\ \n \u2603", "list": [1, -2.5, False, None, {}]}
    a, b = socket.socketpair()
    with a, b:
        Channel(a).send(msg)
        (n,) = struct.unpack(">I", b.recv(4))
        raw = b.recv(n)
        assert raw == json.dumps(msg, separators=(",", ":")).encode()
        assert raw.isascii()
    a, b = socket.socketpair()
    with a, b:
        ca, cb = Channel(a), Channel(b)
        ca.send(msg)
        assert cb.recv() == (msg, [])
    for bad in (b'{"a":1} x', b'{"a":1}{}', b'{"a":', b"[1]", b'{"a":"\xff"}', b"\xff\xfe", b"", b" {}"):
        a, b = socket.socketpair()
        with a, b:
            a.sendall(struct.pack(">I", len(bad)) + bad)
            with pytest.raises(ProtocolError, match="malformed message"):
                Channel(b).recv()


def _wait_exit(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_vfork_launch_runs_in_its_own_group_with_env_and_cwd(tmp_path: pytest.TempPathFactory) -> None:
    out = os.path.join(str(tmp_path), "out")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
    null = os.open(os.devnull, os.O_RDWR)
    try:
        pid = start_process(["/bin/sh", "-c", 'echo "$FOO $(pwd) $(ps -o pgid= $$)"'], {"FOO": "bar"},
                            str(tmp_path), (null, fd, fd))
    finally:
        os.close(fd)
        os.close(null)
    assert _wait_exit(pid) == 0
    with open(out) as f:
        foo, cwd, pgid = f.read().split()
    assert (foo, cwd, int(pgid)) == ("bar", str(tmp_path), pid)


@pytest.mark.parametrize(("argv", "cwd", "env", "stage", "err"), [
    (["/nonexistent/binary"], "/", {}, "exec", errno.ENOENT),
    (["/bin/true"], "/nonexistent/dir", {}, "work_dir", errno.ENOENT),
    (["@plain"], "/", {}, "exec", errno.EACCES),
    (["/bin/true"], "/", {"A=B": "c"}, "exec", errno.EINVAL),
])
def test_vfork_launch_failures_name_the_stage(argv: list[str], cwd: str, env: dict[str, str], stage: str,
                                              err: int, tmp_path: pytest.TempPathFactory) -> None:
    if argv == ["@plain"]:  # a file that is not executable
        argv = [os.path.join(str(tmp_path), "plain")]
        with open(argv[0], "w") as f:
            f.write("#!/bin/sh\n")
    null = os.open(os.devnull, os.O_RDWR)
    try:
        with pytest.raises(LaunchFailure) as ei:
            start_process(argv, env, cwd, (null, null, null))
    finally:
        os.close(null)
    assert (ei.value.stage, ei.value.errno) == (stage, err)
    if env:  # the key is named
        assert "illegal environment variable name 'A=B'" in str(ei.value)


def test_lazy_logger_keeps_logging_unimported_until_a_warning() -> None:
    code = (
        "import sys\n"
        "from rawexec.lazylog import get_logger\n"
        "log = get_logger('rawexec.test')\n"
        "log.info('quiet %s', 1); log.debug('quiet')\n"
        "print('logging' in sys.modules, 'threading' in sys.modules)\n"
        "log.warning('loud %s', 2)\n"
        "print('logging' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert r.stdout.split() == ["False", "False", "True"]
    assert "loud 2" in r.stderr


def test_spawner_imports_no_threading() -> None:
    code = ("import sys, rawexec.executor.spawner\n"
            "print(sorted({'threading', 'logging', 'subprocess'} & set(sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert r.stdout.strip() == "[]"


def test_spawner_ignores_malformed_requests(driver: Driver, make_task: TaskFactory) -> None:
    ctl = driver._spawner._ensure()
    ctl.sendmsg([b"X"])  # wrong byte, no socket
    a, b = socket.socketpair()
    with a, b:  # two sockets where one is expected
        fds = array.array("i", (a.fileno(), b.fileno()))
        ctl.sendmsg([SPAWN_REQUEST], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    cfg = make_task({"command": "/bin/sh", "args": ["-c", "exit 3"]})
    driver.start_task(cfg)  # the same spawner still serves
    res = driver.wait_task(cfg.id, timeout=10)
    assert res.exit_code == 3
    proc = driver._spawner._proc
    assert proc is not None and proc.poll() is None


def test_driver_raises_its_nofile_limit_but_tasks_get_the_original(tmp_path: pytest.TempPathFactory) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 600:
        pytest.skip(f"needs a finite hard RLIMIT_NOFILE above 600 (have {hard})")
    code = f"""
import os, resource, sys, tempfile
resource.setrlimit(resource.RLIMIT_NOFILE, (512, {hard}))
from rawexec import Driver, DriverConfig, TaskConfig
d = Driver(DriverConfig(enabled=True, no_cgroups=True, state_dir=tempfile.mkdtemp(prefix="rxn-")))
print("driver", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
out = os.path.join({str(tmp_path)!r}, "out")
cfg = TaskConfig(id="t1", name="t", alloc_id="a", alloc_dir=os.path.join({str(tmp_path)!r}, "alloc"),
                 driver_config={{"command": "/bin/sh", "args": ["-c", "ulimit -n > " + out]}})
d.start_task(cfg)
print("exit", d.wait_task("t1", timeout=20).exit_code)
d.destroy_task("t1", force=True)
d.close()
import shutil; shutil.rmtree(d.config.state_dir, ignore_errors=True)
print("task", open(out).read().strip())
"""
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["driver", str(hard), "exit", "0", "task", "512"]
