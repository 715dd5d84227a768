"""Interactive exec (``nomad alloc exec``) over file descriptors handed over by the shim.

The shim forks the command in the task's context and passes its stdio (three pipes, or a pty
master) to the driver; the driver talks to the process directly, with no copy through the shim.
This object is transport-neutral: the HTTP websocket and the gRPC stream are thin adapters.
"""

from __future__ import annotations

import errno
import fcntl
import os
import selectors
import struct
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from rawexec.executor.protocol import Channel
from rawexec.types import ExitResult

__all__ = ["ExecFrame", "ExecSession"]

_DRAIN_AFTER_EXIT_S = 1.0
_CHUNK = 4096


@dataclass(frozen=True)
class ExecFrame:
    """One output frame: ``stream`` is ``stdout`` or ``stderr``; ``close`` marks that stream's end."""

    stream: str
    data: bytes = b""
    close: bool = False


class ExecSession:
    """A running exec. Use :meth:`frames` for output, :meth:`write_stdin`/:meth:`close_stdin` for
    input, :meth:`resize` for the TTY size; :attr:`result` is set once it exited. :meth:`close`
    kills the command if it still runs (a client that goes away leaves nothing behind)."""

    def __init__(self, channel: Channel, pid: int, fds: list[int], tty: bool) -> None:
        self.channel = channel
        self.pid = pid
        self.tty = tty
        self.result: ExitResult | None = None
        self._closed = False
        # Input (a client's thread), output (another) and close may run at once: every close of a
        # descriptor and every write to stdin happen under this lock, after checking the number is
        # still ours. A number closed twice would close whatever the process opened in between.
        self._fd_lock = threading.RLock()
        if tty:
            (master,) = fds
            self._stdin: int | None = master
            self._outs: dict[int, str] = {master: "stdout"}
        else:
            stdin_w, out_r, err_r = fds
            self._stdin = stdin_w
            self._outs = {out_r: "stdout", err_r: "stderr"}
        for fd in self._outs:
            os.set_blocking(fd, False)
        channel.sock.setblocking(False)

    # ------------------------------------------------------------------ input
    def write_stdin(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            with self._fd_lock:  # (not held while waiting: a close must not wait for a full pipe)
                if self._stdin is None:
                    raise ValueError("stdin is closed")
                try:
                    n = os.write(self._stdin, view)
                except BlockingIOError:
                    n = -1
            if n < 0:
                time.sleep(0.001)
                continue
            view = view[n:]

    def close_stdin(self) -> None:
        """EOF to the command. With a TTY this sends the terminal's EOF character (Ctrl-D)."""
        if self.tty:
            if self._stdin is not None:
                self.write_stdin(b"\x04")
            return
        with self._fd_lock:
            if self._stdin is None:
                return
            os.close(self._stdin)
            self._stdin = None

    def resize(self, rows: int, cols: int) -> None:
        if not self.tty:
            return
        with self._fd_lock:
            fd = next(iter(self._outs), None)
            if fd is not None and rows > 0 and cols > 0:
                fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    # ------------------------------------------------------------------ output
    def frames(self, poll_timeout: float | None = None) -> Iterator[ExecFrame]:
        """Yield output frames until the command exited and its output is drained, then one close
        frame per stream. With ``poll_timeout`` the iterator also returns (yielding nothing) when
        nothing happened for that long, so callers can interleave input; call again to continue."""
        sel = selectors.DefaultSelector()
        try:
            for fd in self._outs:
                sel.register(fd, selectors.EVENT_READ, fd)
            if not self.channel.eof:
                sel.register(self.channel.sock, selectors.EVENT_READ, None)
            exited_at: float | None = None if self.result is None else time.monotonic()
            while self._outs or self.result is None:
                if exited_at is not None:
                    if self.tty or time.monotonic() - exited_at > _DRAIN_AFTER_EXIT_S:
                        for fd in list(self._outs):
                            yield from self._read_all(fd)
                        break
                    timeout: float | None = _DRAIN_AFTER_EXIT_S
                else:
                    timeout = poll_timeout
                events = sel.select(timeout)
                if not events:
                    if timeout is None:
                        continue  # a wake-up for nothing we still watch: keep waiting
                    if exited_at is None:
                        return  # poll_timeout passed with nothing to report
                    if not self._outs:
                        break
                for key, _ in events:
                    if key.data is None:
                        self._on_channel()
                        if self.channel.eof:
                            sel.unregister(self.channel.sock)
                        if self.result is not None and exited_at is None:
                            exited_at = time.monotonic()
                        continue
                    fd = key.data
                    frame = self._read_once(fd, sel)
                    if frame is None:
                        continue
                    yield frame
        finally:
            sel.close()

    def _on_channel(self) -> None:
        try:
            msgs = self.channel.poll()
        except OSError:
            msgs = []
            self.channel.eof = True
        for msg, _ in msgs:
            if msg.get("event") == "exit":
                self.result = ExitResult.from_dict(msg["exit"])
        if self.channel.eof and self.result is None:
            self.result = ExitResult(exit_code=-2, err="exec: the task's shim went away")

    def _read_once(self, fd: int, sel: selectors.BaseSelector | None = None) -> ExecFrame | None:
        stream = self._outs[fd]
        try:
            data = os.read(fd, _CHUNK)
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: pty slave closed
                raise
            data = b""
        if data:
            return ExecFrame(stream, data)
        if sel is not None:
            sel.unregister(fd)  # before the close: the number may be reused at once
        self._close_out(fd)
        return ExecFrame(stream, close=True)

    def _read_all(self, fd: int) -> Iterator[ExecFrame]:
        while fd in self._outs:
            frame = self._read_once(fd)
            if frame is None:
                stream = self._outs[fd]
                self._close_out(fd)
                yield ExecFrame(stream, close=True)
                return
            yield frame

    def _close_out(self, fd: int) -> None:
        with self._fd_lock:
            if self._outs.pop(fd, None) is None:
                return  # closed already (by close(), on another thread)
            if self.tty and fd == self._stdin:
                self._stdin = None
            os.close(fd)

    def wait(self, timeout: float | None = None) -> ExitResult:
        """Consume the output (discarding it) until the command exits; return its result."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.result is None or self._outs:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("exec still running")
            for _ in self.frames(poll_timeout=left):
                pass
            if self.result is not None and not self._outs:
                break
            if self.result is None and not self._outs:
                self._on_channel_blocking(left)
        assert self.result is not None
        return self.result

    def _on_channel_blocking(self, timeout: float | None) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(self.channel.sock, selectors.EVENT_READ)
            if sel.select(timeout):
                self._on_channel()
        finally:
            sel.close()

    def close(self) -> None:
        """Kill the command if still running and release every descriptor."""
        with self._fd_lock:
            if self._closed:
                return
            self._closed = True
            for fd in list(self._outs):
                self._close_out(fd)
            if self._stdin is not None:
                os.close(self._stdin)
                self._stdin = None
        self.channel.close()

    def __enter__(self) -> ExecSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
