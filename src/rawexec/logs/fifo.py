"""FifoWriter: a task stream into a FIFO that Nomad's client reads (``stdout_path``/``stderr_path``).

Same contract as :class:`rawexec.logs.FileRotator`: ``write`` never raises ``OSError`` and returns
how many leading bytes it accepted; the caller keeps the rest and offers it again later (when
:meth:`FifoWriter.fileno` is writable, or after :attr:`FifoWriter.retry_delay`).

The FIFO is opened non-blocking and never followed through a symlink (the log dir is writable by
tasks; see Nomad's CVE-2026-6959). By default it is opened ``O_RDWR`` (``hold_open``): the
pipe then always has a reader, so while Nomad's log reader restarts, bytes wait in the kernel's
pipe buffer instead of being lost to ``EPIPE``; once the buffer is full, writes are refused and the
task blocks. With ``hold_open=False`` it is opened ``O_WRONLY`` as Nomad's executor does: no
reader yet is ``ENXIO`` (retried), a reader that went away is ``EPIPE`` (reopened).

When the path is replaced by a new FIFO (a restarted reader recreated it), the writer notices at
its next write after ``recheck_interval`` and reopens the new one. ``/dev/null`` (Nomad's path when
``logs { disabled = true }``) and regular files work too.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
import termios
import time
from collections.abc import Callable

from rawexec.lazylog import get_logger

__all__ = ["FifoWriter"]

_log = get_logger(__name__)

_RETRY_MIN = 0.05
_RETRY_MAX = 1.0


class FifoWriter:
    """Write one stream into the FIFO (or device/file) at ``path``.

    Args:
        path: the FIFO Nomad's client passed (e.g. ``<alloc>/alloc/logs/.web.stdout.fifo``).
        on_error: called once per distinct failure with the ``OSError``.
        hold_open: open ``O_RDWR`` so the pipe keeps a reader (see the module docstring).
        recheck_interval: how often (seconds) to check that ``path`` is still our FIFO.
    """

    def __init__(self, path: str, on_error: Callable[[OSError], None] | None = None, *,
                 hold_open: bool = True, recheck_interval: float = 1.0) -> None:
        self.path = path
        self._on_error = on_error
        self._hold_open = hold_open
        self._recheck = recheck_interval
        self._fd = -1
        self._ident: tuple[int, int] = (0, 0)
        self._is_fifo = False
        self._next_check = 0.0
        self._closed = False
        self._failure: int | None = None
        self._last_error: OSError | None = None
        self._retry = 0.0
        self._blocked = False
        self._open()

    # ---------------------------------------------------------------- public API

    @property
    def healthy(self) -> bool:
        return self._fd >= 0 and self._failure is None

    @property
    def last_error(self) -> OSError | None:
        return self._last_error if self._failure is not None else None

    @property
    def retry_delay(self) -> float:
        """Seconds to wait before offering refused bytes again; 0 when healthy.

        When the pipe is merely full, this is 0 and :meth:`fileno` can be polled for writability
        (a short timer works as well).
        """
        if self._failure is not None:
            return self._retry
        return 0.0

    @property
    def blocked(self) -> bool:
        """True when the last write stopped because the pipe was full (poll :meth:`fileno`)."""
        return self._blocked

    def fileno(self) -> int | None:
        """The open fd (to wait for writability when :attr:`blocked`), or None when not open."""
        return self._fd if self._fd >= 0 else None

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write ``data``; return the number of leading bytes accepted (never raises OSError)."""
        if self._closed:
            raise ValueError("write to a closed FifoWriter")
        total = len(data)
        self._blocked = False
        if total == 0:
            return 0
        if self._fd < 0 and not self._open():
            return 0
        if self._recheck >= 0 and time.monotonic() >= self._next_check and not self._still_ours():
            self._drop()
            if not self._open():
                return 0
        view = memoryview(data)
        pos = 0
        while pos < total:
            try:
                n = os.write(self._fd, view[pos:])
            except BlockingIOError:
                self._blocked = True
                break
            except OSError as exc:
                # EPIPE: the reader went away; anything else: reopen next time.
                self._fail("write", exc)
                break
            pos += n
        if pos == total and self._failure is not None:
            self._failure = None
            self._retry = 0.0
        return pos

    def recover(self) -> bool:
        """Try to (re)open now; True when a writable fd is open."""
        if self._closed:
            return False
        return self._fd >= 0 or self._open()

    def pending(self) -> int:
        """Bytes written into the pipe that no reader has taken yet (0 for non-FIFOs)."""
        if self._fd < 0 or not self._is_fifo:
            return 0
        try:
            buf = fcntl.ioctl(self._fd, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return int(struct.unpack("i", buf)[0])

    def close(self, drain_timeout: float = 0.0) -> None:
        """Close; with ``hold_open``, first wait up to ``drain_timeout`` s for a reader to drain.

        (When this process holds the last reference to the pipe, closing discards what is
        still in it.) Idempotent.
        """
        if self._closed:
            return
        deadline = time.monotonic() + drain_timeout
        while drain_timeout > 0 and self.pending() > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        self._closed = True
        self._drop()

    def __enter__(self) -> FifoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    def _open(self) -> bool:
        mode = os.O_RDWR if self._hold_open else os.O_WRONLY
        flags = mode | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_APPEND
        try:
            fd = os.open(self.path, flags)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                exc = OSError(errno.ELOOP, "refusing to follow a symlink for a log FIFO", self.path)
            self._fail("open", exc)
            return False
        try:
            st = os.fstat(fd)
            if not (stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                raise OSError(errno.EINVAL, "log path is not a FIFO, device or file", self.path)
        except OSError as exc:
            os.close(fd)
            self._fail("open", exc)
            return False
        self._fd = fd
        self._ident = (st.st_dev, st.st_ino)
        self._is_fifo = stat.S_ISFIFO(st.st_mode)
        self._next_check = time.monotonic() + self._recheck
        return True

    def _still_ours(self) -> bool:
        """Whether ``path`` still names the object we hold open."""
        self._next_check = time.monotonic() + self._recheck
        try:
            st = os.lstat(self.path)
        except OSError:
            return True  # gone: keep writing to the open pipe (its reader may still hold it)
        return (st.st_dev, st.st_ino) == self._ident

    def _drop(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.close(fd)
            except OSError:
                pass

    def _fail(self, op: str, exc: OSError) -> None:
        self._drop()
        self._retry = _RETRY_MIN if self._failure is None else min(self._retry * 2, _RETRY_MAX)
        self._last_error = exc
        key = exc.errno or 0  # distinct failure = distinct errno (op is in the message)
        if key == self._failure:
            return
        self._failure = key
        _log.warning("log fifo %s: %s failed: %s", self.path, op, exc)
        if self._on_error is not None:
            try:
                self._on_error(exc)
            except Exception:
                _log.exception("log on_error callback failed")
