"""The pre-warmed, single-threaded spawner: hands each spawn request to a shim.

Started once per driver as ``python -m rawexec.executor.spawner FD`` (never forked from the
driver, which may be threaded). It imports everything a shim needs, freezes the GC so forked
shims share those pages copy-on-write, and keeps a few shims forked ahead of time, idle, so a
start costs no fork on its critical path. Requests arrive on the inherited socket FD, each with
the task spec and, as SCM_RIGHTS, the socket the shim answers on. It exits when the driver's end
closes (the driver died or closed); shims already running live on, idle ones exit.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import sys
from typing import Any

# What shims use later, imported now so each fork shares it.
import rawexec.executor.supervisor
from rawexec.executor.protocol import Channel, ProtocolError
from rawexec.executor.shim import run_shim

import rawexec.logs  # noqa: F401  isort: skip

POOL_SIZE = 8


def _prepare_containment() -> None:
    try:
        from rawexec.containment import detect

        detect(no_cgroups=False)  # cached for every shim forked from here
    except Exception:
        pass


class Spawner:
    def __init__(self, ctl: Channel) -> None:
        self.ctl = ctl
        self.idle: list[socket.socket] = []

    def _fork(self) -> tuple[int, socket.socket | None]:
        """Fork a shim; in the child return (0, its job socket), never touching the driver's socket."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            self.ctl.sock.close()
            mine.close()
            for s in self.idle:
                s.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            return 0, theirs
        theirs.close()
        self.idle.append(mine)
        return pid, None

    def refill(self) -> None:
        pid, job = self._fork()
        if pid == 0:
            assert job is not None
            self._idle_shim(job)

    @staticmethod
    def _idle_shim(job: socket.socket) -> None:
        ch = Channel(job)
        try:
            msg, fds = ch.recv()
        except (ProtocolError, OSError):
            os._exit(0)  # the spawner went away before giving us a task
        job.close()
        if len(fds) != 1:
            os._exit(1)
        run_shim(msg["spec"], socket.socket(fileno=fds[0]))

    def dispatch(self, msg: dict[str, Any], reply_fd: int) -> None:
        while self.idle:
            job = self.idle.pop()
            try:
                Channel(job).send({"spec": msg["spec"], "nfds": 1}, [reply_fd])
                return
            except OSError:
                continue  # that idle shim died; try the next
            finally:
                job.close()
        self.refill()
        self.dispatch(msg, reply_fd)

    def serve(self) -> None:
        while True:
            got = self.ctl.buffered()
            if got is None:
                if len(self.idle) < POOL_SIZE and not select.select([self.ctl.sock], [], [], 0)[0]:
                    self.refill()
                    continue
                try:
                    got = self.ctl.recv()
                except (ProtocolError, OSError):
                    return
            msg, fds = got
            if msg.get("op") != "spawn" or len(fds) != 1:
                for f in fds:
                    os.close(f)
                continue
            self.dispatch(msg, fds[0])
            os.close(fds[0])


def serve(fd: int) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # shims are reaped by the kernel, never zombies
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _prepare_containment()
    ctl = Channel(socket.socket(fileno=fd))
    gc.collect()
    gc.freeze()
    spawner = Spawner(ctl)
    spawner.serve()
    for s in spawner.idle:  # idle shims see EOF and exit
        s.close()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
