"""Adversarial process trees for kill tests, and survivor counting by an environment tag.

Every shape runs with ``RAWEXEC_TAG=<tag>`` in its environment; all descendants inherit it, so
survivors are found by scanning ``/proc/*/environ`` — not by pid lists, which a tree that
re-parents or forks during the kill would outrun.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from tests.helpers.util import pids_with_tag

TAG_VAR = "RAWEXEC_TAG"

_DOUBLE_FORK = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "1000"])
    os._exit(0)
os.wait()
os.execvp("sleep", ["sleep", "1000"])
"""

_IGNORE_TERM = """
import os, signal
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
if os.fork() == 0:
    os.execvp("sleep", ["sleep", "1000"])  # SIG_IGN survives exec
os.execvp("sleep", ["sleep", "1000"])
"""

_STOPPED = """
import os, signal
if os.fork() == 0:
    os.execvp("sleep", ["sleep", "1000"])
os.kill(os.getpid(), signal.SIGSTOP)
os.execvp("sleep", ["sleep", "1000"])
"""

_RESESSION = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.setsid()
        for _ in range(2):
            if os.fork() == 0:
                os.execvp("sleep", ["sleep", "1000"])
        os.execvp("sleep", ["sleep", "1000"])
    os._exit(0)
os.wait()
os.execvp("sleep", ["sleep", "1000"])
"""

# Forks continuously: a small binary tree (depth 2) whose 4 leaves churn fork+exit forever.
_STORM = """
import os, time
depth = 0
while depth < 2:
    try:
        pid = os.fork()
    except OSError:
        time.sleep(0.001)
        continue
    if pid == 0:
        depth += 1
        continue
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        depth += 1
        continue
    break
if depth >= 2:
    while True:
        try:
            if os.fork() == 0:
                os._exit(0)
            os.wait()
        except OSError:
            time.sleep(0.001)
while True:
    time.sleep(1000)
"""

#: name -> (argv, minimum number of live tagged processes once it is set up)
SHAPES: dict[str, tuple[list[str], int]] = {
    "plain": (["sleep", "1000"], 1),
    "setsid_child": (["sh", "-c", "setsid sleep 1000 & exec sleep 1000"], 2),
    "double_fork_daemon": ([sys.executable, "-c", _DOUBLE_FORK], 2),
    "ignores_sigterm": ([sys.executable, "-c", _IGNORE_TERM], 2),
    "sigstopped": ([sys.executable, "-c", _STOPPED], 2),
    "resession_fork_again": ([sys.executable, "-c", _RESESSION], 4),
    "fork_storm": ([sys.executable, "-c", _STORM], 7),
}


def tagged(tag: str) -> list[int]:
    """Live processes (not zombies) whose environment carries ``RAWEXEC_TAG=<tag>``."""
    return pids_with_tag(f"{TAG_VAR}={tag}")


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def start(argv: Sequence[str], tag: str, procs_files: Sequence[str] = (),
          extra_env: dict[str, str] | None = None, **kw: object) -> subprocess.Popen[bytes]:
    """Start ``argv`` tagged, joining ``procs_files`` (cgroup.procs) between fork and exec."""

    def join() -> None:
        for p in procs_files:
            fd = os.open(p, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    env = dict(os.environ)
    env[TAG_VAR] = tag
    env.update(extra_env or {})
    p: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
        list(argv), env=env, preexec_fn=join if procs_files else None,  # noqa: PLW1509
        stdin=subprocess.DEVNULL, **kw)
    return p
