"""The driver's side of the spawner: start it once, send spawn requests, read the shim's answer."""

from __future__ import annotations

import array
import logging
import os
import socket
import subprocess
import threading
from typing import Any

from rawexec.errors import UnavailableError
from rawexec.executor import procfs
from rawexec.executor.protocol import (
    SPAWN_REQUEST,
    Channel,
    ProtocolError,
    recv_spec,
    remove_socket,
    send_spec,
    sockaddr,
)
from rawexec.executor.spawnboot import launch, raise_nofile_limit, take_prestarted

__all__ = ["SpawnerClient", "raise_nofile_limit"]

log = logging.getLogger("rawexec.driver")


class SpawnerClient:
    """Thread-safe. The spawner process is started lazily and restarted if it died."""

    def __init__(self, reply_timeout: float = 30.0) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctl: socket.socket | None = None
        self.reply_timeout = reply_timeout

    def _ensure(self) -> socket.socket:
        if self._ctl is not None and self._proc is not None and self._proc.poll() is None:
            return self._ctl
        if self._ctl is not None:
            self._ctl.close()
        booted = take_prestarted()
        self._proc, self._ctl = booted if booted is not None else launch()
        return self._ctl

    def start(self) -> None:
        with self._lock:
            self._ensure()

    def spawn(self, spec: dict[str, Any], extra_fds: list[int] | None = None) -> tuple[dict[str, Any], Channel | None]:
        """Ask for a shim; return its first message (``ok`` True with identities, or an error) and,
        on success, the open connection, which the shim keeps as the driver's wait connection.

        The spawner only passes our end of a fresh socket pair to an idle shim; the task's spec
        goes straight to the shim on that socket (the spawner never sees it), with the control
        socket and ``extra_fds`` (the task's open log files; ours stay ours to close)."""
        listener = _listen(spec["socket_path"])
        reply_mine: socket.socket | None
        reply_mine, reply_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ok = False
        try:
            fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", (reply_theirs.fileno(),)))]
            with self._lock:
                for attempt in (1, 2):
                    ctl = self._ensure()
                    assert self._proc is not None
                    spawner_pid = self._proc.pid
                    try:
                        ctl.sendmsg([SPAWN_REQUEST], fds)
                        break
                    except OSError as e:
                        log.warning("spawner unreachable (%s); restarting it", e)
                        self._close_locked()
                        if attempt == 2:
                            raise UnavailableError(f"failed to create executor: spawner unavailable: {e}") from e
            reply_theirs.close()
            assert reply_mine is not None
            reply_mine.settimeout(self.reply_timeout)
            ch = Channel(reply_mine)
            try:
                send_spec(reply_mine, spec, [listener.fileno(), *(extra_fds or ())], version=0)
                listener.close()
                msg, _ = recv_spec(reply_mine)
            except (ProtocolError, OSError) as e:
                raise UnavailableError(f"failed to create executor: no answer from the shim: {e}") from e
            if not isinstance(msg, dict):
                raise UnavailableError("failed to create executor: malformed answer from the shim")
            if msg.get("ok"):
                # The identities for re-attaching, read here rather than in the shim (in a fresh
                # fork every step costs page copies). The parent check rules out a reused pid:
                # the task is the shim's child (a zombie until the shim reaps it), the shim ours.
                shim_pid, pid = int(msg["shim_pid"]), int(msg["pid"])
                if "shim_start" not in msg:
                    msg["shim_start"] = (procfs.child_start_time(shim_pid, spawner_pid)
                                         or procfs.process_start_time(shim_pid))
                if "pid_start" not in msg:
                    msg["pid_start"] = procfs.child_start_time(pid, shim_pid)
                ok = True
                keep, reply_mine = ch, None
                return msg, keep
            return msg, None
        finally:
            listener.close()
            if not ok:  # a shim that took over the socket removes it itself; make sure either way
                remove_socket(spec["socket_path"])
            reply_theirs.close()
            if reply_mine is not None:
                reply_mine.close()

    def _close_locked(self) -> None:
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def close(self) -> None:
        with self._lock:
            self._close_locked()


def _listen(path: str) -> socket.socket:
    """The task's control socket, bound and listening for its shim to take over: binding here
    keeps it off the shim's start path. The shim checks every peer's uid on accept.

    ``path`` is an abstract name (``@...``, see :func:`sockaddr`), or a file (0600; a stale socket
    of an earlier run is replaced)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if path.startswith("@"):
            s.bind(sockaddr(path))
        else:
            try:
                s.bind(path)
            except OSError:
                os.unlink(path)
                s.bind(path)
            # No umask dance (process-wide, and the driver is threaded): the state dir is 0700.
            os.chmod(path, 0o600)
        s.listen(64)
        s.setblocking(False)  # for the shim's event loop (the flag travels with the fd)
    except OSError as e:
        s.close()
        raise UnavailableError(f"failed to create executor: control socket {path}: {e.strerror or e}") from e
    return s
