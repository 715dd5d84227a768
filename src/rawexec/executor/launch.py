"""Fork and exec one process in a task's context (runs in the single-threaded shim only).

Everything between fork and exec happens in the child in a fixed order: new process group (or
session + controlling tty), cgroup membership, oom_score_adj, stdio, signal reset, credentials,
working dir, then exec. A failure before exec is reported through a close-on-exec pipe, so
"exec succeeded" is exactly "the pipe hit EOF".
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import termios
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Credentials", "LaunchFailure", "spawn"]


@dataclass(frozen=True)
class Credentials:
    uid: int
    gid: int
    groups: tuple[int, ...]


class LaunchFailure(Exception):
    def __init__(self, stage: str, err: int, detail: str) -> None:
        super().__init__(f"{stage}: {detail}")
        self.stage = stage
        self.errno = err
        self.detail = detail


def _write_file(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    stdio: tuple[int, int, int],
    *,
    creds: Credentials | None = None,
    procs_files: Sequence[str] = (),
    oom_score_adj: int | None = None,
    ctty: bool = False,
) -> int:
    """Start ``argv`` and return its pid, or raise :class:`LaunchFailure` (nothing left running)."""
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    envb = {k.encode(): v.encode("utf-8", "surrogateescape") for k, v in env.items()}
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, exercised by every test that starts a task
        stage = "setup"
        try:
            if ctty:
                os.setsid()
                fcntl.ioctl(stdio[0], termios.TIOCSCTTY, 0)
            else:
                os.setpgid(0, 0)
            stage = "cgroup"
            for path in procs_files:
                _write_file(path, b"0")
            stage = "oom_score_adj"
            if oom_score_adj is not None:
                _write_file("/proc/self/oom_score_adj", str(oom_score_adj).encode())
            stage = "stdio"
            for target, fd in enumerate(stdio):
                os.dup2(fd, target, inheritable=True)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            for sig in (signal.SIGPIPE, signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                        signal.SIGQUIT, signal.SIGXFSZ, signal.SIGTTOU, signal.SIGTTIN, signal.SIGTSTP):
                signal.signal(sig, signal.SIG_DFL)
            stage = "credentials"
            if creds is not None:
                os.setgroups(list(creds.groups))
                os.setgid(creds.gid)
                os.setuid(creds.uid)
            stage = "work_dir"
            os.chdir(cwd)
            stage = "exec"
            os.closerange(3, err_w)
            os.closerange(err_w + 1, 1 << 20)
            os.execve(argv[0], list(argv), envb)
        except BaseException as e:
            code = e.errno if isinstance(e, OSError) and e.errno else errno.EINVAL
            msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            try:
                os.write(err_w, f"{stage}\0{code}\0{msg}".encode(errors="replace"))
            finally:
                os._exit(127)
    os.close(err_w)
    chunks = []
    while True:
        try:
            b = os.read(err_r, 4096)
        except InterruptedError:
            continue
        if not b:
            break
        chunks.append(b)
    os.close(err_r)
    if chunks:
        while True:
            try:
                os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                break
        parts = b"".join(chunks).decode(errors="replace").split("\0", 2)
        raise LaunchFailure(parts[0], int(parts[1]), parts[2])
    return pid
