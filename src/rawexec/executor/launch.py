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
import sys
import termios
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

__all__ = ["Credentials", "LaunchFailure", "reaped", "spawn", "start_process"]


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


def _reap(pid: int) -> None:
    """Reap a child whose exec failed (it has exited or is about to)."""
    try:
        os.waitpid(pid, 0)  # EINTR is retried by Python
    except ChildProcessError:
        pass


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
        _reap(pid)
        parts = b"".join(chunks).decode(errors="replace").split("\0", 2)
        raise LaunchFailure(parts[0], int(parts[1]), parts[2])
    return pid


# Popen objects of processes started by start_process, until the shim's reaper reports them: the
# shim reaps with waitpid(-1), and a Popen that never learns its exit would try to reap its pid
# again later (subprocess._cleanup), possibly after the pid was reused.
_POPENS: dict[int, subprocess.Popen[bytes]] = {}


def reaped(pid: int, status: int) -> None:
    """Tell the launcher that ``pid`` was reaped by the shim's reaper."""
    p = _POPENS.pop(pid, None)
    if p is not None:
        p.returncode = os.waitstatus_to_exitcode(status)


def _self_cgroups() -> dict[str, str]:
    """The shim's own cgroup membership: hierarchy key (``0`` for cgroup2, else the v1 controller
    list) -> path."""
    out: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, ctrls, path = line.rstrip("\n").split(":", 2)
            out["" if hid == "0" else ctrls] = path
    return out


def _cgroup_mounts() -> list[tuple[str, str]]:
    """(mount point, hierarchy key) of every cgroup mount, longest mount point first."""
    mounts: list[tuple[str, str]] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _src, opts = [*right.split(), "", "", ""][:3]
            point = left.split()[4]
            if fstype == "cgroup2":
                mounts.append((point, ""))
            elif fstype == "cgroup":
                ctrls = [o for o in opts.split(",") if o not in ("rw", "ro", "relatime", "nosuid", "nodev",
                                                                 "noexec", "clone_children")]
                mounts.append((point, ",".join(ctrls)))
    return sorted(mounts, key=lambda m: len(m[0]), reverse=True)


def home_procs_files(task_procs_files: Sequence[str]) -> list[str]:
    """For each task ``cgroup.procs`` file, the same hierarchy's ``cgroup.procs`` of the cgroup the
    calling process is in now: where the shim returns after starting a child in the task cgroup."""
    if not task_procs_files:
        return []
    mine, mounts = _HOME if _HOME is not None else (_self_cgroups(), _cgroup_mounts())
    out: list[str] = []
    for path in task_procs_files:
        for point, key in mounts:
            if path.startswith(point.rstrip("/") + "/"):
                rel = mine.get(key)
                if rel is None:  # v1 key spelled differently (e.g. "cpu,cpuacct" vs mount opts order)
                    want = set(key.split(","))
                    rel = next((p for k, p in mine.items() if k and set(k.split(",")) == want), "/")
                out.append(os.path.join(point, rel.lstrip("/"), "cgroup.procs"))
                break
    return out


_OOM_ADJ_PATH = "/proc/self/oom_score_adj"
_adj_now: bytes | None = None  # this process's oom_score_adj as last read or written


def _current_adj() -> bytes:
    global _adj_now
    if _adj_now is None:
        fd = os.open(_OOM_ADJ_PATH, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _adj_now = os.read(fd, 64).strip()
        finally:
            os.close(fd)
    return _adj_now


# (own cgroups, cgroup mounts) as read by prime(): a forked shim is in its spawner's cgroups.
_HOME: tuple[dict[str, str], list[tuple[str, str]]] | None = None


def prime() -> None:
    """Read what :func:`start_process` needs about this process once, ahead (the spawner calls it:
    shims inherit the cached values instead of each reading and parsing /proc)."""
    global _HOME
    _current_adj()
    _HOME = (_self_cgroups(), _cgroup_mounts())


def _enter(procs_files: Sequence[str], oom_score_adj: int | None) -> tuple[list[str], bytes | None]:
    """Put the calling process temporarily in the task's cgroups and give it the task's
    oom_score_adj, so a child started next inherits both before it execs. Returns what
    :func:`_leave` needs to undo it. Plain calls, not a context manager: in a freshly forked shim
    every Python layer run costs page copies."""
    global _adj_now
    home = home_procs_files(procs_files)
    old_adj: bytes | None = None
    try:
        if oom_score_adj is not None:
            cur, want = _current_adj(), str(oom_score_adj).encode()
            if want != cur:
                _write_file(_OOM_ADJ_PATH, want)
                old_adj, _adj_now = cur, want
        for path in procs_files:
            try:
                _write_file(path, b"0")
            except OSError as e:
                raise LaunchFailure("cgroup", e.errno or 0, _join_error(path, e)) from None
    except BaseException:
        _leave(home, old_adj)
        raise
    return home, old_adj


def _join_error(procs_file: str, e: OSError) -> str:
    """Why a cgroup would not take us, in words that name the fix."""
    detail = f"cannot join cgroup {os.path.dirname(procs_file)}: {e.strerror}"
    if e.errno == errno.EINVAL and os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR):
        # The kernel refuses a real-time process in a cgroup with no real-time budget
        # (cpu.rt_runtime_us = 0, the default for a new cgroup with RT group scheduling).
        detail += ("; the agent runs with a real-time scheduling policy (chrt -f/-r), which the task would "
                   "inherit, and the cgroup has no real-time CPU budget (cpu.rt_runtime_us); run the agent "
                   "with a normal scheduling policy, or set the raw_exec option no_cgroups = true")
    return detail


def _leave(home: list[str], old_adj: bytes | None) -> None:
    global _adj_now
    for path in home:
        try:
            _write_file(path, b"0")
        except OSError:
            pass
    if old_adj is not None:
        try:
            _write_file(_OOM_ADJ_PATH, old_adj)
            _adj_now = old_adj
        except OSError:
            pass  # lowering needs CAP_SYS_RESOURCE; the shim keeps the task's value


def start_process(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    stdio: tuple[int, int, int],
    *,
    creds: Credentials | None = None,
    procs_files: Sequence[str] = (),
    oom_score_adj: int | None = None,
    tty: bool = False,
) -> int:
    """Start a process in the task's context and return its pid (fast path: vfork via
    ``_posixsubprocess``, else ``subprocess``). A TTY session needs setsid + TIOCSCTTY in the
    child, so it uses :func:`spawn`."""
    if tty:
        return spawn(argv, env, cwd, stdio, creds=creds, procs_files=procs_files, oom_score_adj=oom_score_adj,
                     ctty=True)
    if _fork_exec is not None:
        home, old_adj = _enter(procs_files, oom_score_adj)
        try:
            return _vfork_exec(argv, env, cwd, stdio, creds)
        finally:
            _leave(home, old_adj)
    import subprocess  # the fallback only: importing it imports threading (see rawexec.lazylog)

    home, old_adj = _enter(procs_files, oom_score_adj)
    try:
        try:
            p = subprocess.Popen(
                list(argv), executable=argv[0], stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], cwd=cwd,
                env=dict(env), close_fds=True, restore_signals=True, process_group=0,
                user=creds.uid if creds else None, group=creds.gid if creds else None,
                extra_groups=list(creds.groups) if creds else None)
        except OSError as e:
            stage = "work_dir" if e.filename == cwd and e.filename != argv[0] else "exec"
            raise LaunchFailure(stage, e.errno or errno.EINVAL, e.strerror or str(e)) from None
        except (ValueError, subprocess.SubprocessError) as e:
            raise LaunchFailure("exec", errno.EINVAL, str(e)) from None
    finally:
        _leave(home, old_adj)
    _POPENS[p.pid] = p
    return p.pid


# CPython 3.11's own vfork+exec primitive, the one ``subprocess.Popen`` calls. Calling it directly
# skips Popen's Python layers: in a freshly forked shim every Python function it runs costs
# copy-on-write page faults, so this is ~120 fewer faults (~1 ms) per task start. Its argument
# list is private and changes between minor versions, hence the version check (Popen otherwise).
_fork_exec: Any = None
if sys.version_info[:2] == (3, 11):
    try:
        from _posixsubprocess import fork_exec as _fork_exec
    except ImportError:  # pragma: no cover - every CPython on Linux has it
        _fork_exec = None


def _vfork_exec(argv: Sequence[str], env: Mapping[str, str], cwd: str, stdio: tuple[int, int, int],
                creds: Credentials | None) -> int:
    """Start ``argv`` like ``Popen(..., close_fds=True, restore_signals=True, process_group=0)``
    would, and return its pid; the same errors as :func:`start_process` documents."""
    env_list = []
    for k, v in env.items():
        kb = k.encode("utf-8", "surrogateescape")
        if b"=" in kb:
            raise LaunchFailure("exec", errno.EINVAL, f"illegal environment variable name {k!r}: a name cannot "
                                "contain '='")
        env_list.append(kb + b"=" + v.encode("utf-8", "surrogateescape"))
    exe = argv[0].encode("utf-8", "surrogateescape")
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            pid: int = _fork_exec(
                list(argv), (exe,), True, (err_w,), cwd, env_list,
                stdio[0], -1, -1, stdio[1], -1, stdio[2], err_r, err_w,
                True, False, 0,  # restore_signals, call_setsid, pgid_to_set (own group)
                creds.gid if creds else None, list(creds.groups) if creds else None,
                creds.uid if creds else None, -1, None, True)  # umask, preexec_fn, allow_vfork
        except (ValueError, TypeError) as e:
            raise LaunchFailure("exec", errno.EINVAL, str(e)) from None
        os.close(err_w)
        err_w = -1
        data = b""
        while True:
            try:
                part = os.read(err_r, 4096)
            except InterruptedError:
                continue
            if not part:
                break
            data += part
    finally:
        os.close(err_r)
        if err_w >= 0:
            os.close(err_w)
    if not data:
        return pid
    _reap(pid)  # exec failed: the child is gone
    # "ExceptionName:hex errno:message"; message "noexec" means chdir (before exec) failed.
    name, _, rest = data.partition(b":")
    hex_errno, _, msg = rest.partition(b":")
    try:
        code = int(hex_errno, 16)
    except ValueError:
        code = 0
    if name == b"OSError" and code:
        stage = "work_dir" if msg == b"noexec" and cwd != argv[0] else "exec"
        raise LaunchFailure(stage, code, os.strerror(code))
    raise LaunchFailure("exec", code or errno.EINVAL, msg.decode(errors="replace") or name.decode(errors="replace"))
