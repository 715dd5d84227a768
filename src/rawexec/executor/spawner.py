"""The pre-warmed, single-threaded spawner: forks one shim per request.

Started once per driver as ``python -m rawexec.executor.spawner FD`` (never forked from the
driver, which may be threaded). It imports everything a shim needs, freezes the GC so forked
shims share those pages copy-on-write, then serves spawn requests on the inherited socket FD:
each request carries the task spec and, as SCM_RIGHTS, the socket the new shim answers on.
It exits when the driver's end closes (the driver died or closed): shims live on.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys

# What shims use later, imported now so each fork shares it.
import rawexec.executor.supervisor
from rawexec.executor.protocol import Channel, ProtocolError
from rawexec.executor.shim import run_shim

try:  # optional layers, present once their issues land
    import rawexec.containment
    import rawexec.logs  # noqa: F401
except ImportError:  # pragma: no cover
    pass


def serve(fd: int) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # shims are reaped by the kernel, never zombies
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctl = Channel(socket.socket(fileno=fd))
    gc.collect()
    gc.freeze()
    while True:
        try:
            msg, fds = ctl.recv()
        except (ProtocolError, OSError):
            return
        if msg.get("op") != "spawn" or len(fds) != 1:
            for f in fds:
                os.close(f)
            continue
        reply_fd = fds[0]
        pid = os.fork()
        if pid == 0:
            ctl.sock.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            run_shim(msg["spec"], socket.socket(fileno=reply_fd))
        os.close(reply_fd)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
