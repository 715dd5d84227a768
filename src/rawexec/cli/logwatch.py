"""Wake ``rawexec run``'s loop when a task writes a log file (Linux inotify), instead of polling.

An idle run then makes no system calls at all: the loop sleeps in ``select`` on the inotify
descriptor and a wake-up pipe (signals, state commits) until something happens. Where inotify is
unavailable (or a watch cannot be added) the caller keeps polling.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import struct

__all__ = ["LogDirWatch", "Waker"]

_IN_MODIFY = 0x00000002
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_Q_OVERFLOW = 0x00004000
_MASK = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)


class LogDirWatch:
    """inotify watches on log directories; :meth:`changes` says which files were written."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self._libc = libc
        self.fd = fd
        self._dirs: dict[int, str] = {}
        self._watched: set[str] = set()

    def watch(self, path: str) -> bool:
        """Watch a directory (again: no-op). False when it does not exist (yet) or no watch is left."""
        if path in self._watched:
            return True
        wd = int(self._libc.inotify_add_watch(self.fd, os.fsencode(path), _MASK))
        if wd < 0:
            return False
        self._dirs[wd] = path
        self._watched.add(path)
        return True

    def changes(self) -> set[tuple[str, str]] | None:
        """Drain the pending events: ``{(directory, file name)}`` written or created since the last
        call, or None when the kernel's queue overflowed (then everything may have changed)."""
        out: set[tuple[str, str]] = set()
        overflow = False
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise
            if not buf:
                break
            off = 0
            while off + _EVENT.size <= len(buf):
                wd, mask, _cookie, length = _EVENT.unpack_from(buf, off)
                name = buf[off + _EVENT.size:off + _EVENT.size + length].rstrip(b"\0")
                off += _EVENT.size + length
                if mask & _IN_Q_OVERFLOW:
                    overflow = True
                d = self._dirs.get(wd)
                if d is not None and name:
                    out.add((d, os.fsdecode(name)))
        return None if overflow else out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Waker:
    """A self-pipe: :meth:`wake` from a signal handler or another thread ends :meth:`wait` early."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wake(self) -> None:
        try:
            os.write(self._w, b"\0")
        except OSError:  # full pipe: a wake-up is pending anyway
            pass

    def wake_on_signals(self) -> int:
        """Also wake for every signal that has a Python handler, from the C handler in whichever
        thread the kernel delivers it to (``signal.set_wakeup_fd``): a Python handler runs only
        in the main thread, once it runs Python code again. Main thread only; returns the old
        wake-up fd, for ``signal.set_wakeup_fd`` to restore."""
        return signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)

    def wait(self, timeout: float | None, *fds: int) -> bool:
        """Sleep until woken, one of ``fds`` is readable, or ``timeout``. True when woken."""
        try:
            ready, _, _ = select.select([self._r, *fds], [], [], timeout)
        except InterruptedError:
            return True
        woken = self._r in ready
        if woken:
            try:
                while os.read(self._r, 4096):
                    pass
            except BlockingIOError:
                pass
        return woken

    def close(self) -> None:
        for fd in (self._r, self._w):
            os.close(fd)
