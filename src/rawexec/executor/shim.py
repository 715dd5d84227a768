"""The per-task shim: set up, start the task, then hand over to the :class:`Supervisor` loop.

``run_shim`` runs in a process freshly forked from the spawner. It detaches (new session),
becomes a child subreaper, creates the task's containment, binds its control socket, starts the
task and answers the driver on ``reply`` with the identities needed to re-attach later.
"""

from __future__ import annotations

import _socket
import ctypes
import errno
import fcntl
import os
import signal
import time
from typing import Any, NoReturn

from rawexec.containment import TaskCgroup, descendants
from rawexec.executor.launch import Credentials, LaunchFailure, start_process
from rawexec.executor.protocol import (
    FD_SPACE,
    RELEASE_SIGNAL,
    Channel,
    ProtocolError,
    fds_from_ancdata,
    recv_spec,
    remove_socket,
    send_spec,
)
from rawexec.executor.sinks import open_sink
from rawexec.executor.supervisor import (
    KILL_BOUND_S,
    Supervisor,
    _csignal,
    _Stream,
    on_release,
    pass_stop_gate,
)

__all__ = ["idle_shim", "run_shim"]

PR_SET_CHILD_SUBREAPER = 36
PIPE_SIZE = 1024 * 1024
MAX_LOG_FDS = 2  # the driver opens each stream's current log file and sends it (stdout, stderr)
# Resolved once in the spawner and shared by every shim (a lookup in the shim would cost page copies).
# (Plain int arguments and result: ctypes' default conversion, no argtypes objects to run.)
# No use_errno: its per-thread errno swap allocates on first use; prctl(2) cannot fail here short of
# a kernel without subreapers (< 3.4), which the message names.
_prctl = ctypes.CDLL(None).prctl


#: (policy, param) a shim comes back to after its post-start setup ran as SCHED_IDLE; None: it
#: does not lower itself (coming back needs CAP_SYS_NICE). Set in the spawner: :func:`prime_sched`.
_SCHED_HOME: tuple[int, Any] | None = None
_CAP_SYS_NICE = 23


def prime_sched() -> None:
    """Called once in the spawner: the scheduling policy the shims inherit and return to."""
    global _SCHED_HOME
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    if int(line.split()[1], 16) >> _CAP_SYS_NICE & 1:
                        _SCHED_HOME = (os.sched_getscheduler(0), os.sched_getparam(0))
                    return
    except (OSError, ValueError):
        pass


def _noop(_sig: int, _frame: object) -> None:
    """A caught (not ignored) signal: the handler resets to default in the task on exec."""


def _set_subreaper() -> None:
    if _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(errno.EINVAL, "prctl(PR_SET_CHILD_SUBREAPER) failed (Linux 3.4 or later needed)")


class _Log:
    """Appends the shim's own rare messages to ``<task_dir>/executor.out`` (Nomad's name)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, msg: str) -> None:
        try:
            with open(self.path, "a") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} [shim {os.getpid()}] {msg}\n")
        except OSError:
            pass


def _detach() -> int:
    """What every shim does first, done while idle in the pool (off a start's critical path):
    new session, child subreaper, signal dispositions (stdio is /dev/null already: the spawner's,
    inherited). Returns the read end of the signal wake-up pipe."""
    os.setsid()
    _set_subreaper()
    # Caught, not ignored: an ignored disposition would be inherited by the task across exec.
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        _csignal.signal(sig, _noop)
    _csignal.signal(RELEASE_SIGNAL, on_release)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    return wake_r


def _await_request(job: _socket.socket) -> int | None:
    """Block until the spawner hands over a driver connection; None if it went away first."""
    _data, anc, _flags, _addr = job.recvmsg(1, FD_SPACE)  # (EINTR is retried by Python)
    fds = fds_from_ancdata(anc)
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        return None
    os.set_inheritable(fds[0], False)
    return fds[0]


def idle_shim(job: _socket.socket) -> NoReturn:
    """Runs in a freshly forked pool shim: detach, wait for a driver connection, read the task's
    spec from it, run the task. Never returns."""
    try:
        wake_r = _detach()
        me = os.getpid()
        fd = _await_request(job)
    except BaseException:
        os._exit(1)
    job.close()
    if fd is None:
        os._exit(0)  # the spawner went away before giving us a task
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fd)  # no type probing, no Python __init__
    try:
        spec, fds = recv_spec(sock, want_fds=1 + MAX_LOG_FDS)
        if not fds:
            raise ProtocolError("the spec came without the control socket")
    except BaseException:
        os._exit(0)  # the driver went away before sending the task
    spec["fds"] = fds  # [control socket, open log files...]
    reply = Channel(sock)
    run_shim(spec, reply, wake_r, me)


def run_shim(spec: dict[str, Any], reply: Channel, wake_r: int, me: int) -> NoReturn:
    """Never returns: exits when the task and all its descendants are gone."""
    code = 0
    try:
        _main(spec, reply, wake_r, me)
    except BaseException as e:
        code = 1
        if not _answered:  # after the answer the connection carries Channel messages only
            try:
                send_spec(reply.sock, {"ok": False, "kind": "launch", "error": f"shim failed: {e!r}"})
            except OSError:
                pass
    try:
        _teardown_when_idle(spec.get("state_path"))
    finally:
        os._exit(code)


def _teardown_when_idle(state_path: str | None) -> None:
    """Everything is answered for: the task is gone, its exit recorded and sent, its cgroup and
    socket removed. What is left is the kernel unmapping this forked interpreter (about a third of
    a shim's CPU in a stop), which no one waits for: when hundreds of tasks stop at once, let it
    run after every one of them is answered.

    Two steps. The stop gate (:func:`~rawexec.executor.supervisor.pass_stop_gate`; a stopped
    shim passed it already, before its clean-up). Then the lowest priority for the exit itself,
    for the shim's session's autogroup as well as the process: the kernel weighs each session
    (autogroup) as one, so SCHED_IDLE alone would change nothing for a shim that is alone in its
    session."""
    pass_stop_gate(state_path)
    try:
        fd = os.open("/proc/self/autogroup", os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            os.write(fd, b"19")
        except OSError:
            pass
        os.close(fd)
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        pass


_answered = False  # set once the driver got our first answer (each shim is its own process)


def _main(spec: dict[str, Any], reply: Channel, wake_r: int, me: int) -> None:
    """``me``: the shim's pid. The driver reads its and the task's start times (the identities for
    re-attaching) from /proc itself, checking each parent: nothing to run here for them."""
    log = _Log(f"{spec['task_dir']}/executor.out")

    def fail(kind: str, error: str) -> None:
        global _answered
        _answered = True
        send_spec(reply.sock, {"ok": False, "kind": kind, "error": error})
        reply.close()

    # The driver bound the control socket, listens on it (non-blocking) and sent it: off our
    # critical path.
    fds: list[int] = spec.pop("fds")
    listener = fds[0]
    sock_path = spec["socket_path"]

    # The driver created the task's cgroup (warm code, no page copies) and sent its state.
    cgroup = None
    cg = spec.get("cgroup")
    if cg:
        try:
            cgroup = TaskCgroup.from_state(cg["state"])
        except Exception as e:
            remove_socket(sock_path)
            fail("containment", f"unable to configure cgroups: {e}")
            return
    for note in spec.get("notes") or ():
        log(str(note))

    pipes: list[tuple[int, dict[str, Any]]] = []
    child_fds: list[int] = []
    null_fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    for desc in (spec["stdout"], spec["stderr"]):
        if desc.get("mode") == "null":
            child_fds.append(null_fd)
            continue
        r, w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(r, False)
        if os.geteuid() == 0:
            # A bigger pipe: fewer wake-ups per MB for a chatty task. Root only: an unprivileged
            # user past fs.pipe-user-pages-soft would shrink every later pipe it makes instead.
            try:
                fcntl.fcntl(r, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass
        pipes.append((r, desc))
        child_fds.append(w)
    c = spec.get("creds")
    creds = Credentials(int(c[0]), int(c[1]), tuple(c[2])) if c else None
    try:
        pid = start_process(spec["argv"], spec["env"], spec["cwd"], (null_fd, child_fds[0], child_fds[1]),
                            creds=creds, procs_files=cgroup.procs_files if cgroup is not None else (),
                            oom_score_adj=spec.get("oom_score_adj"))
    except LaunchFailure as e:
        if cgroup is not None:
            cgroup.destroy()
        remove_socket(sock_path)
        msg = {
            "work_dir": f'failed to launch command with executor: chdir "{spec["cwd"]}": {e.detail}',
            "credentials": f"failed to launch command with executor: cannot switch user: {e.detail}",
            "cgroup": f"unable to configure cgroups: {e.detail}",
        }.get(e.stage, f'failed to start command path="{spec["argv"][0]}" --- args={spec["argv"][1:]!r}: '
                       f"{e.detail}")
        fail("launch", msg)
        return
    for fd in set(child_fds) | {null_fd}:
        os.close(fd)
    started_at = time.time()
    spec["started_at"] = started_at
    global _answered
    _answered = True
    send_spec(reply.sock, {"ok": True, "shim_pid": me, "pid": pid, "started_at": started_at,
                "cgroup": cgroup.to_state() if cgroup is not None else None})
    # The task runs. What the shim sets up now (supervisor, log sinks) is off this start's
    # critical path, and when many tasks start at once it runs as SCHED_IDLE, after the other
    # starts (the pipes buffer the task's output meanwhile); supervising runs at the agent's
    # priority again. Only where that priority can be restored (CAP_SYS_NICE).
    home = _SCHED_HOME
    if home is not None:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            home = None
    try:
        sup = Supervisor(spec=spec, listener=listener, main_pid=pid, streams=[], cgroup=cgroup, wakeup_r=wake_r,
                         creds=creds, log=log)
        sup.streams = [_Stream(r, open_sink(desc, on_error=lambda e: sup.event(f"task output could not be written "
                                                                              f"to its log: {e}; retrying, nothing "
                                                                              "lost"),
                                            fd=fds[desc["fd"]] if "fd" in desc else -1))
                       for r, desc in pipes]
        sup.adopt_waiter(reply)  # the start connection stays open as the driver's wait connection
        sup.prepare_exit_record()
        if home is not None:
            try:
                os.sched_setscheduler(0, *home)
            except OSError as e:
                log(f"cannot restore the scheduling policy after setup: {e}")
        sup.run()
    except BaseException as e:
        # Never leave the task running without its shim: nobody would reap, stop or log it.
        log(f"shim failed: {e!r}; killing the task, which must not run unsupervised")
        _kill_everything(pid, cgroup)
        raise


def _kill_everything(pid: int, cgroup: TaskCgroup | None) -> None:
    """SIGKILL the task, its group and every descendant (we are their subreaper); best effort."""
    if cgroup is not None:
        try:
            cgroup.kill_all(timeout=KILL_BOUND_S)
        except Exception:
            pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    for p in descendants(os.getpid()):
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
