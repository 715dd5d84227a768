"""The driver's side of the spawner: start it once, send spawn requests, read the shim's answer."""

from __future__ import annotations

import array
import logging
import os
import socket
import subprocess
import sys
import threading
from typing import Any

from rawexec.errors import UnavailableError
from rawexec.executor.protocol import SPAWN_REQUEST, Channel, ProtocolError, send_spec

__all__ = ["SpawnerClient"]

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
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "rawexec.executor.spawner", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env,
            start_new_session=True)
        theirs.close()
        self._ctl = mine
        return self._ctl

    def start(self) -> None:
        with self._lock:
            self._ensure()

    def spawn(self, spec: dict[str, Any]) -> tuple[dict[str, Any], Channel | None]:
        """Ask for a shim; return its first message (``ok`` True with identities, or an error) and,
        on success, the open connection, which the shim keeps as the driver's wait connection.

        The spawner only passes our end of a fresh socket pair to an idle shim; the task's spec
        goes straight to the shim on that socket (the spawner never sees it)."""
        reply_mine: socket.socket | None
        reply_mine, reply_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", (reply_theirs.fileno(),)))]
            with self._lock:
                for attempt in (1, 2):
                    ctl = self._ensure()
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
                send_spec(reply_mine, spec)
                msg, _ = ch.recv()
            except (ProtocolError, OSError) as e:
                raise UnavailableError(f"failed to create executor: no answer from the shim: {e}") from e
            if msg.get("ok"):
                keep, reply_mine = ch, None
                return msg, keep
            return msg, None
        finally:
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
