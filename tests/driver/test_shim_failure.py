"""A shim that fails after its task started kills the task: nothing runs unsupervised."""

from __future__ import annotations

import marshal
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

from rawexec import Driver, DriverConfig, TaskConfig
from tests.helpers.util import pids_with_tag, wait_until

# Runs run_shim in a child process as the spawner's idle shim would, with a spec whose stdout
# log "file" the rotator cannot take over (a directory): the failure comes after the task started.
_SHIM = """
import os, socket, sys
from rawexec.executor.protocol import Channel
from rawexec.executor.shim import run_shim

d, tag, reply_fd = sys.argv[1], sys.argv[2], int(sys.argv[3])
k, v = tag.split("=", 1)
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(os.path.join(d, "ctl.sock"))
listener.listen(1)
listener.setblocking(False)
wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
not_a_file = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
spec = {
    "task_id": "t", "task_dir": d, "argv": ["/bin/sleep", "30"], "env": {k: v, "PATH": "/usr/bin:/bin"},
    "cwd": d, "creds": None, "oom_score_adj": None, "cgroup": None, "notes": [],
    "stdout": {"mode": "file", "dir": d, "base": "t.stdout", "max_files": 1, "max_file_size": 1,
               "fd": 1, "index": 0, "oldest": 0},
    "stderr": {"mode": "null"},
    "socket_path": os.path.join(d, "ctl.sock"), "state_path": os.path.join(d, "exit.json"),
    "fds": [listener.detach(), not_a_file],
}
run_shim(spec, Channel(socket.socket(fileno=reply_fd)), wake_r, os.getpid())
"""


def test_shim_failing_after_the_start_kills_its_task(tmp_path: Path, tag: str) -> None:
    mine, theirs = socket.socketpair()
    with mine:
        proc = subprocess.Popen([sys.executable, "-c", _SHIM, str(tmp_path), tag, str(theirs.fileno())],
                                pass_fds=[theirs.fileno()], stderr=subprocess.PIPE)
        theirs.close()
        mine.settimeout(30)
        hdr = mine.recv(4, socket.MSG_WAITALL)
        answer = marshal.loads(mine.recv(struct.unpack("!I", hdr)[0], socket.MSG_WAITALL))
        assert answer["ok"] and answer["pid"] > 0  # the task did start
        assert proc.wait(30) == 1
    wait_until(lambda: not pids_with_tag(tag), 5, msg="the task outlived its failed shim")
    out = (tmp_path / "executor.out").read_text()
    assert "shim failed" in out and "killing the task" in out


def test_shim_supervises_at_the_agents_scheduling_policy(tmp_path: Path, state_dir: str) -> None:
    """The shim sets up after the start as SCHED_IDLE (behind other starts) and returns to the
    policy it inherited before it supervises; it never stays idle-class."""
    d = Driver(DriverConfig(enabled=True, no_cgroups=True, state_dir=state_dir))
    try:
        cfg = TaskConfig(id="t1", name="t", alloc_id="a1", alloc_dir=str(tmp_path / "a1"),
                         driver_config={"command": "/bin/sleep", "args": ["30"]})
        h = d.start_task(cfg)
        shim = int(h.driver_state["shim_pid"])
        wait_until(lambda: os.sched_getscheduler(shim) == os.sched_getscheduler(0), 5,
                   msg="the shim kept SCHED_IDLE after its setup")
        d.stop_task("t1", 0, "SIGKILL")
        d.destroy_task("t1")
    finally:
        d.close()
