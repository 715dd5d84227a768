"""Starting the spawner process (``python -m rawexec.executor.spawner FD``), in a module light
enough to import first thing: ``rawexec run`` boots the spawner before it imports the agent, so
the spawner's own interpreter start and imports overlap the agent's instead of following them
(:func:`prestart`); the driver's :class:`~rawexec.driver.spawnclient.SpawnerClient` then takes it
over (:func:`take_prestarted`)."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import threading

__all__ = ["launch", "prestart", "raise_nofile_limit", "take_prestarted"]

# The soft RLIMIT_NOFILE this process started with, before raise_nofile_limit (None: not raised).
_ORIGINAL_NOFILE: int | None = None


def raise_nofile_limit() -> None:
    """Raise this process's soft open-file limit to the hard limit, as every Go program (Nomad's
    agent and plugins) does at start: with hundreds of tasks the driver holds a wait connection
    and a few stats files per task, past the usual soft limit of 1024. The spawner puts the
    original limit back for itself, so shims and tasks get what the host normally gives."""
    global _ORIGINAL_NOFILE
    if _ORIGINAL_NOFILE is not None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            with open("/proc/sys/fs/nr_open") as f:
                target = int(f.read())
        except (OSError, ValueError):
            return
    if soft == resource.RLIM_INFINITY or soft >= target:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError):
        return
    _ORIGINAL_NOFILE = soft


def launch() -> tuple[subprocess.Popen[bytes], socket.socket]:
    """A new spawner process and our end of its control socket pair."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        env = dict(os.environ)
        src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        if _ORIGINAL_NOFILE is not None:
            env["RAWEXEC_NOFILE_SOFT"] = str(_ORIGINAL_NOFILE)
        proc = subprocess.Popen(
            [sys.executable, "-m", "rawexec.executor.spawner", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env,
            start_new_session=True)
    except BaseException:
        mine.close()
        raise
    finally:
        theirs.close()
    return proc, mine


_prestarted: tuple[subprocess.Popen[bytes], socket.socket] | None = None
_prestarted_lock = threading.Lock()


def prestart() -> None:
    """Boot a spawner now for the next driver of this process to take over. One that no driver
    takes exits with this process (its end of the socket pair closes)."""
    global _prestarted
    raise_nofile_limit()  # first: the spawner's environment carries the original limit
    with _prestarted_lock:
        if _prestarted is None:
            _prestarted = launch()


def take_prestarted() -> tuple[subprocess.Popen[bytes], socket.socket] | None:
    """The spawner :func:`prestart` booted, if any and still running (once)."""
    global _prestarted
    with _prestarted_lock:
        got, _prestarted = _prestarted, None
    if got is not None and got[0].poll() is not None:
        got[1].close()
        return None
    return got
