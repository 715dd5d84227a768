"""The pre-warmed, single-threaded spawner: keeps idle shims forked ahead and hands each request
to one.

Started once per driver as ``python -m rawexec.executor.spawner FD`` (never forked from the
driver, which may be threaded). It imports everything a shim needs, freezes the GC so forked
shims share those pages copy-on-write, and keeps a few shims forked ahead of time, idle and
already detached, so a start costs no fork on its critical path.

The spawner never looks at a task: a request is one byte with, as SCM_RIGHTS, the socket the
driver talks to the shim on. The spawner passes that socket to an idle shim, which then reads
the task's spec from it directly. Keeping the spawner's per-request work this small matters:
after every fork each page the spawner writes is copied again, so work here costs twice.
It exits when the driver's end closes (the driver died or closed); shims already running live
on, idle ones see EOF and exit.
"""

from __future__ import annotations

import _socket
import array
import ctypes
import gc
import os
import resource
import select
import signal
import socket
import sys

from rawexec import _dccache

_dccache.install()  # before the modules below make their dataclasses

# What shims use later, imported now so each fork shares it.
import rawexec.executor.supervisor  # noqa: E402
from rawexec.executor import launch  # noqa: E402
from rawexec.executor.protocol import FD_SPACE, SPAWN_REQUEST, fds_from_ancdata  # noqa: E402
from rawexec.executor.shim import idle_shim, prime_sched  # noqa: E402

import rawexec.logs  # noqa: F401, E402  isort: skip

__all__ = ["POOL_SIZE", "serve"]

POOL_SIZE = 8
_MAX_FD = os.sysconf("SC_OPEN_MAX")


def _prepare() -> None:
    """Work every shim would repeat, done once here: forked shims inherit the cached results."""
    try:
        from rawexec.containment import detect

        detect(no_cgroups=False)
    except Exception:
        pass
    try:
        launch.prime()
    except OSError:
        pass
    prime_sched()


def _recv_fd(sock: _socket.socket) -> int | None:
    """One request's socket, -1 for a malformed request, None on EOF."""
    data, anc, _flags, _addr = sock.recvmsg(1, FD_SPACE)
    fds = fds_from_ancdata(anc)
    if not data and not fds:
        return None
    if data != SPAWN_REQUEST or len(fds) != 1:
        for fd in fds:
            os.close(fd)
        return -1
    return fds[0]


class Spawner:
    def __init__(self, ctl: _socket.socket) -> None:
        self.ctl = ctl
        self.idle: list[_socket.socket] = []

    def refill(self) -> None:
        """Fork one more idle shim; the child never returns from here."""
        # _socket's objects, not socket.socket's: no Python-level __init__/close run here or in
        # the shim (after each fork every page the spawner writes is copied again).
        mine, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            # Close every inherited fd but stdio and our own end: the driver's socket and the
            # other idle shims' sockets. Raw closes, no socket objects touched: in a fresh fork
            # each Python object touched costs a page copy.
            keep = theirs.fileno()
            os.closerange(3, keep)
            os.closerange(keep + 1, _MAX_FD)
            idle_shim(theirs)  # NoReturn
        theirs.close()
        self.idle.append(mine)

    def dispatch(self, fd: int) -> None:
        msg = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", (fd,)))]
        while True:
            if not self.idle:
                self.refill()
            job = self.idle.pop()
            try:
                job.sendmsg([SPAWN_REQUEST], msg)
                return
            except OSError:
                continue  # that idle shim died; try the next
            finally:
                job.close()

    def serve(self) -> None:
        ready = [self.ctl]
        while True:
            if len(self.idle) < POOL_SIZE and not select.select(ready, (), (), 0)[0]:
                self.refill()
                continue
            try:
                fd = _recv_fd(self.ctl)
            except OSError:
                return
            if fd is None:
                return
            if fd >= 0:
                self.dispatch(fd)
                os.close(fd)


def _restore_nofile() -> None:
    """The driver raised its open-file limit (raise_nofile_limit); shims and tasks get the original."""
    soft = os.environ.pop("RAWEXEC_NOFILE_SOFT", "")
    if soft.isdigit():
        try:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(int(soft), hard), hard))
        except (OSError, ValueError):
            pass


def _trim_heap() -> None:
    """Give the C heap's free pages back (glibc ``malloc_trim``): every fork copies the page
    table entries of every resident anonymous page, so ~1.2 MB less to copy per shim."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass  # not glibc


def _stdio_to_devnull() -> None:
    """Shims inherit fds 0-2 and must not hold the driver's stdio open (a reader of the agent's
    output would never see EOF): point them at /dev/null once, here, so no shim repeats it.
    The spawner's own errors still reach the driver's stderr, through a copy of it that every
    shim closes with the rest of its inherited fds."""
    err = os.dup(2)
    sys.stderr = open(err, "w", buffering=1, errors="backslashreplace")  # noqa: SIM115 (lives as long as we do)
    devnull = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(devnull, std)
    os.close(devnull)


def serve(fd: int) -> None:
    _restore_nofile()
    _stdio_to_devnull()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # shims are reaped by the kernel, never zombies
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _prepare()
    _dccache.release()  # every class is made: write new entries, drop the table before forking
    ctl = socket.socket(fileno=fd)
    gc.collect()
    gc.freeze()
    _trim_heap()
    spawner = Spawner(ctl)
    spawner.serve()
    for s in spawner.idle:  # idle shims see EOF and exit
        s.close()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
