"""FileRotator: a task stream into ``<base>.0``, ``<base>.1``, ... with Nomad's rotation rules.

Synchronous by design: the shim is one single-threaded event loop, so :meth:`FileRotator.write`
does plain ``os.write`` calls (no buffer, no timer thread) and returns how many bytes it *accepted*.
Bytes it did not accept are the caller's to keep: it stops reading that pipe (so the task blocks on a
full pipe rather than losing output) and offers the rest again after :attr:`FileRotator.retry_delay`.
Accepted bytes are on disk (in the page cache) exactly once; nothing is buffered in this process,
so a crash of the process that owns the rotator cannot lose accepted bytes either.

Rules (Nomad's logmon rotator, written from its documented behaviour):

* Rotate when the current file reaches the size. A file never exceeds the size.
* Near the end of a file (less than 32 KiB spare after the data) it ends the file on a newline: it
  writes up to the last newline that fits; a new line whose newline does not fit starts the next
  file. Hence a line of up to 32 KiB is never split, also when it reaches us in several chunks.
  Longer lines (and data with no newline at all) fill the file to the size and continue in the next.
* Start: resume the highest existing index (append); next index skips directories, symlinks and
  files already full. Keep the newest ``max_files`` files, delete older ones (purge).
* Errors (log dir deleted, read-only, disk full): never raised from ``write``; reported once per
  distinct failure to ``on_error``; the next ``write``/``recover`` recreates the dir, reopens the
  file and carries on at the same index. After every write it checks that the file still has a
  name (one ``fstat``): bytes that went into a file deleted under us are written again into the
  recreated file, so no accepted byte ends up only in an invisible file.

Zero copy: :meth:`FileRotator.write_from` takes the bytes from the task's pipe itself. Far from
the size boundary -- exactly where :meth:`FileRotator.write` would write a chunk whole without
looking at it -- it moves them with ``splice(2)`` through a relay pipe into the file, never
through this process's memory (one kernel copy instead of two, no Python buffer). Near the
boundary (and while failing) it reads no more than fits and calls ``write``, so the rules above
hold unchanged. Bytes pass the relay within one call only: between calls nothing is held here.

Preallocation: while splicing, the blocks just ahead of the end of the current file are reserved
with ``fallocate(FALLOC_FL_KEEP_SIZE)`` (:data:`PREALLOC_AHEAD` at a time, never past the size):
writes into allocated blocks skip the file system's per-block delayed-allocation bookkeeping
(about a quarter of the cost of a page-cache write on ext4). The visible size is unchanged
(readers tail these files), the logs never take more disk than ``max_files`` full files, and the
spare blocks are given back (``ftruncate`` to the size) at the end of the input and when the file
is left or closed. Skipped when the file system has less than :data:`PREALLOC_MIN_FREE`
free (the reservation must never be what fills a disk) or does not support it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Callable
from typing import Any

from rawexec.errors import ValidationError
from rawexec.lazylog import get_logger
from rawexec.logs.config import LINE_SCAN_LIMIT, MB, check_base_name

__all__ = ["FileRotator", "open_current", "scan_indices"]

_log = get_logger(__name__)

_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
_NL = 10
_RETRY_MIN = 0.05
_RETRY_MAX = 2.0
_fstat = os.fstat
_write = os.write
_lseek = os.lseek
_splice = os.splice
_SEEK_END = os.SEEK_END
_SPLICE_F_NONBLOCK = os.SPLICE_F_NONBLOCK
# splice(2) into this file system / file is not possible: use read + write for good.
_SPLICE_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})
# A read this big (a default pipe's worth) shows a stream that writes faster than it is read:
# from then on splice(2) (a quiet task never costs a relay pipe).
_BUSY_READ = 64 * 1024
#: Bytes reserved ahead of the end of a file being spliced into (see the module docs).
PREALLOC_AHEAD = 8 * 1024 * 1024
#: No reservation on a file system with less free space than this.
PREALLOC_MIN_FREE = 256 * 1024 * 1024
_FALLOC_FL_KEEP_SIZE = 1
# fallocate(2) refused for this file system / file: no more reservations.
_PREALLOC_UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ENODEV, errno.EPERM,
                                   errno.ESPIPE})
_libc_fallocate: tuple[Any, Callable[[], int]] | None = None  # (fallocate, get_errno), built on first use


def _fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """fallocate(2) (``os.posix_fallocate`` has no mode: it would change the size); raises OSError."""
    global _libc_fallocate
    if _libc_fallocate is None:  # only a busy stream pays for the ctypes objects
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).fallocate
        fn.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
        fn.restype = ctypes.c_int
        _libc_fallocate = fn, ctypes.get_errno
    fn, get_errno = _libc_fallocate
    if fn(fd, mode, offset, length) != 0:
        err = get_errno()
        raise OSError(err, os.strerror(err))


def _linked(fd: int) -> bool:
    """Whether the open file still has a name (writes to a deleted file would be invisible)."""
    try:
        return _fstat(fd).st_nlink > 0
    except OSError:
        return True  # cannot tell; the next write reports a real failure


def scan_indices(log_dir: str, base_name: str) -> list[int]:
    """Indices N of the entries ``<base_name>.N`` in ``log_dir`` (any file type), sorted."""
    prefix = base_name + "."
    found: list[int] = []
    with os.scandir(log_dir) as it:
        for entry in it:
            name = entry.name
            if name.startswith(prefix):
                suffix = name[len(prefix):]
                if suffix.isdigit() and suffix.isascii():
                    found.append(int(suffix))
    found.sort()
    return found


def _log_path(log_dir: str, base_name: str, index: int) -> str:
    return os.path.join(log_dir, f"{base_name}.{index}")


def _usable_index(log_dir: str, base_name: str, index: int, max_size: int, *, allow_full: bool = False) -> int:
    """First index >= ``index`` whose entry is absent or a regular file with room."""
    while True:
        try:
            st = os.lstat(_log_path(log_dir, base_name, index))
        except FileNotFoundError:
            return index
        if stat.S_ISREG(st.st_mode) and (allow_full or st.st_size < max_size):
            return index
        index += 1
        allow_full = False


def open_current(log_dir: str, base_name: str, max_file_size_bytes: int) -> tuple[int, int, int]:
    """Where a new :class:`FileRotator` of ``<log_dir>/<base_name>.N`` starts, already open:
    ``(fd, index, oldest index)`` -- the highest existing index resumed (appending), else the next
    usable one. Raises OSError.

    The driver calls it before a task's shim exists and passes the fd on (``opened=``): a log file
    that cannot be opened fails the start, cleanly, instead of a shim whose task already runs; and
    the fresh shim, where every Python step costs page copies, skips the directory scan."""
    indices = scan_indices(log_dir, base_name)
    index = _usable_index(log_dir, base_name, indices[-1] if indices else 0, max_file_size_bytes,
                          allow_full=True)
    fd = os.open(_log_path(log_dir, base_name, index), _OPEN_FLAGS, 0o666)
    return fd, index, min(indices[0], index) if indices else index


class FileRotator:
    """Write one stream of a task into size-rotated files ``<log_dir>/<base_name>.<N>``.

    Args:
        log_dir: existing directory (Nomad's ``<alloc>/alloc/logs``); a missing one raises
            ``FileNotFoundError`` here, as Nomad's rotator does.
        base_name: e.g. ``"web.stdout"``.
        max_files: how many files to keep (>= 1).
        max_file_size_mb: rotation size in MB (>= 1).
        on_error: called with the ``OSError`` once per distinct failure (and again after a
            recovery if it fails anew). Exceptions it raises are logged and swallowed.
        max_file_size_bytes: overrides the size in bytes (tests and tools; Nomad's own rotator
            tests use sizes of a few bytes).
        create_parents: when recreating a deleted log dir, also recreate missing parents
            (off by default so a lingering writer does not resurrect a destroyed alloc dir).
        opened: what :func:`open_current` returned for the same directory, name and size
            (another process may have called it); the rotator owns the fd from then on.
    """

    def __init__(self, log_dir: str, base_name: str, max_files: int, max_file_size_mb: int,
                 on_error: Callable[[OSError], None] | None = None, *,
                 max_file_size_bytes: int | None = None, create_parents: bool = False,
                 opened: tuple[int, int, int] | None = None) -> None:
        check_base_name(base_name, "log base")
        if isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1:
            raise ValidationError(f"minimum number of files is 1; got {max_files}")
        if max_file_size_bytes is None:
            if isinstance(max_file_size_mb, bool) or not isinstance(max_file_size_mb, int) \
                    or max_file_size_mb < 1:
                raise ValidationError(f"minimum file size is 1MB; got {max_file_size_mb}")
            max_file_size_bytes = max_file_size_mb * MB
        elif max_file_size_bytes < 1:
            raise ValidationError(f"max_file_size_bytes must be >= 1; got {max_file_size_bytes}")
        self.log_dir = log_dir
        self.base_name = base_name
        self.max_files = max_files
        self.max_size = max_file_size_bytes
        self._on_error = on_error
        self._create_parents = create_parents
        self._fd = -1
        self._sfd = -1  # the current file again, without O_APPEND (splice(2) refuses O_APPEND files)
        self._splice_ok = True  # False: splice(2) not possible here, always read + write
        self._busy = False  # the stream once filled a pipe: worth the relay pipe and splice(2)
        self._relay: tuple[int, int] | None = None  # (read end, write end), see splice_from
        self._prealloc = PREALLOC_AHEAD  # 0: fallocate(2) not possible here
        self._alloc_end = 0  # current file: no reservation is needed below this offset
        self._trim = False  # current file: may have blocks past its end (give them back on leaving)
        self._index = 0
        self._oldest = 0
        self._size = 0
        # Last byte of the current file is a newline (or the file is empty); None: not known
        # (spliced bytes are never seen here), read back from the file when a decision needs it.
        self._ends_nl: bool | None = True
        self._closed = False
        self._failure: int | None = None
        self._last_error: OSError | None = None
        self._retry = 0.0
        # Constructor errors are raised (a missing dir is a setup bug); later ones are reported.
        fd, index, self._oldest = opened if opened is not None else open_current(log_dir, base_name, self.max_size)
        self._take(fd, index)

    # ---------------------------------------------------------------- public API

    @property
    def current_index(self) -> int:
        return self._index

    @property
    def current_path(self) -> str:
        return self._path(self._index)

    @property
    def current_size(self) -> int:
        return self._size

    @property
    def healthy(self) -> bool:
        """True when the last operation succeeded (a file is open and writable)."""
        return self._failure is None and self._fd >= 0

    @property
    def last_error(self) -> OSError | None:
        """The error of the current failure, None when healthy."""
        return self._last_error if self._failure is not None else None

    @property
    def retry_delay(self) -> float:
        """Seconds the caller should wait before offering refused bytes again (0 when healthy).

        Grows from 50 ms to 2 s while failures persist; resets on success.
        """
        return self._retry if self._failure is not None else 0.0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write ``data``; return how many leading bytes were accepted (all, unless failing).

        Never raises ``OSError``. When it returns less than ``len(data)``, the rest was not
        written at all: offer ``data[n:]`` again later (after :attr:`retry_delay`).
        """
        # Fast path (nearly every call of a busy task): healthy, far from the size boundary.
        fd = self._fd
        total = len(data)
        if fd >= 0 and self._failure is None and type(data) is bytes \
                and 0 < total <= self.max_size - self._size - LINE_SCAN_LIMIT:
            try:
                written = _write(fd, data)
            except OSError:
                return self._write_slow(data, 0)  # nothing was written; reported there
            if not _linked(fd):
                # The file was deleted (its dir removed?) and may have swallowed these bytes:
                # write them again into a recreated file (the old copy is invisible).
                return self._write_slow(data, 0)
            self._size += written
            if written > 0:
                self._ends_nl = data[written - 1] == _NL
            if written == total:
                return total
            return self._write_slow(data, written)
        return self._write_slow(data, 0)

    def _write_slow(self, data: bytes | bytearray | memoryview, pos: int) -> int:
        """The general case: boundary rules, rotation, failures and recovery."""
        if self._closed:
            raise ValueError("write to a closed FileRotator")
        if isinstance(data, memoryview):
            data = data.tobytes()
        total = len(data)
        if total == pos:
            return pos
        if not self._ready():
            return pos
        fd = self._fd
        rewrites = 0
        while pos < total:
            size = self._size
            if size >= self.max_size:
                if not self._rotate():
                    break
                fd = self._fd
                continue
            remaining = self.max_size - size
            left = total - pos
            if remaining - LINE_SCAN_LIMIT >= left:
                n = left  # far from the boundary, write everything
            else:
                n = self._near_end_count(data, pos, left, remaining)
                if n == 0:
                    if not self._rotate():
                        break
                    fd = self._fd
                    continue
            try:
                written = os.write(fd, data if pos == 0 and n == total else memoryview(data)[pos:pos + n])
            except OSError as exc:
                self._fail("write", exc, close=exc.errno not in (errno.ENOSPC, errno.EDQUOT))
                break
            if written <= 0:  # pragma: no cover - regular files do not return 0 for n > 0
                break
            if not _linked(fd):  # deleted under us: these bytes are not visible; write them again
                rewrites += 1
                if rewrites > 3 or not self._ready():
                    break
                fd = self._fd
                continue
            pos += written
            self._size = size + written
            self._ends_nl = data[pos - 1] == _NL
        if pos == total:
            self._succeeded()
        return pos

    def write_from(self, src: int, limit: int) -> tuple[int, bytes]:
        """Take up to ``limit`` bytes from the pipe ``src`` and write them, as :meth:`write` would.

        Returns ``(n, refused)``: ``n`` bytes were taken from ``src`` (0: end of input, no
        writer left); ``refused`` is the tail of them that was not accepted (empty unless
        failing): the caller keeps it exactly like the rest of a :meth:`write`. Raises
        ``BlockingIOError`` when ``src`` is empty (non-blocking), and other ``OSError`` only
        for errors of ``src`` itself.

        Far from the size boundary -- where :meth:`write` writes a chunk whole without looking
        at it -- and once the stream proved busy (one read of 64 KiB), the bytes never enter this
        process: ``splice(2)`` moves them from ``src`` into a relay pipe of ours (page
        references, no copy; ``src`` is locked only for that), then from the relay into the file
        (the one copy, into the page cache) while the task goes on filling ``src``. Near the
        boundary it reads no more than fits the current file and calls :meth:`write`, so the
        rotation points are those of :meth:`write`.
        """
        if self._closed:
            raise ValueError("write to a closed FileRotator")
        size = self._size
        max_size = self.max_size
        limit = max(1, limit)
        if self._fd >= 0 and self._failure is None and self._splice_ok:
            # A full file is rotated once bytes are in hand (never an empty file at the end).
            room = max_size - (size if size < max_size else 0) - LINE_SCAN_LIMIT
            if room > 0:
                if self._busy:
                    return self._splice_in(src, limit if limit < room else room)
                limit = min(limit, room)
            elif size < max_size and max_size > LINE_SCAN_LIMIT:
                # No more than may still go into this file: the next file is spliced again.
                limit = min(limit, max_size - size)
        # A stream not yet busy is read 64 KiB at a time: a read buffer past glibc's mmap threshold
        # (128 KiB) costs an mmap and an munmap per read, for what is mostly a line or two.
        data = os.read(src, limit if self._busy or limit <= _BUSY_READ else _BUSY_READ)
        if not data:
            return self._end_of_input()
        if len(data) >= _BUSY_READ:
            self._busy = True
        return len(data), data[self.write(data):]

    def _end_of_input(self) -> tuple[int, bytes]:
        """``write_from``'s answer at the end of the input; the reservation is not needed any more."""
        if self._trim and self._fd >= 0:
            self._trim_file()
        return 0, b""

    def _splice_in(self, src: int, limit: int) -> tuple[int, bytes]:
        """:meth:`write_from`'s zero-copy path: ``limit`` fits the current file (or the next one
        when the current one is full) far from its boundary."""
        relay = self._relay
        if relay is None:
            relay = self._open_relay(src)
            if relay is None:
                return self.write_from(src, limit)
        relay_r, relay_w = relay
        try:
            n = _splice(src, relay_w, limit, flags=_SPLICE_F_NONBLOCK)
        except BlockingIOError:
            raise
        except OSError as exc:
            if exc.errno not in _SPLICE_UNSUPPORTED:
                raise
            self._no_splice(exc)
            return self.write_from(src, limit)
        if n <= 0:
            return self._end_of_input()
        if self._size >= self.max_size and not self._rotate():
            return n, self._take_relay(relay_r, n)  # refused (the failure is reported)
        if n > self.max_size - self._size - LINE_SCAN_LIMIT:
            # The next file was not empty (resumed after a restart): the boundary rules decide.
            data = self._take_relay(relay_r, n)
            return n, data[self.write(data):]
        fd = self._fd
        sfd = self._sfd
        done = 0
        off = self._size
        err: OSError | None = None
        try:
            if sfd < 0:
                # The current file again without O_APPEND (splice(2) refuses O_APPEND files).
                sfd = self._sfd = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_CLOEXEC)
            off = _lseek(sfd, 0, _SEEK_END)  # O_APPEND's "at the end", also if it changed under us
            if off + n > self._alloc_end and self._prealloc:
                self._preallocate(sfd, off, off + n)
            while done < n:
                m = _splice(relay_r, sfd, n - done, offset_dst=off + done)
                if m <= 0:  # pragma: no cover - regular files do not return 0 for n > 0
                    break
                done += m
        except OSError as exc:
            err = exc
        rest = self._take_relay(relay_r, n - done) if done < n else b""
        if not _linked(fd):
            # Deleted under us: these bytes are only in an invisible file. Read them back (the
            # inode lives while we hold it open) and write them again into a recreated file.
            data = self._read_back(off, done) + rest
            return n, data[self._write_slow(data, 0):]
        self._size += done
        if done:
            self._ends_nl = None
        if done == n:
            return n, b""
        # The file took only some of them: as after a short write().
        if err is not None and (err.errno in _SPLICE_UNSUPPORTED or sfd < 0):
            self._no_splice(err)
            err = None
        if err is not None:
            self._fail("write", err, close=err.errno not in (errno.ENOSPC, errno.EDQUOT))
            return n, rest
        return n, rest[self._write_slow(rest, 0):]

    def recover(self) -> bool:
        """Try to get a writable file now (for the caller's retry timer); True when healthy."""
        if self._closed:
            return False
        return self._ready()

    def close(self) -> None:
        """Close the current file. Idempotent."""
        self._closed = True
        self._close_fds()
        if self._relay is not None:
            for fd in self._relay:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._relay = None

    def __enter__(self) -> FileRotator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- decisions

    def _near_end_count(self, data: bytes | bytearray, pos: int, left: int, remaining: int) -> int:
        """Bytes to write into the current file near its end; 0 means: rotate first."""
        fit = min(left, remaining)
        nl = data.rfind(b"\n", pos, pos + fit)
        if nl >= 0:
            return nl + 1 - pos  # end the file (or this write) on a newline
        if self._size == 0:
            return fit  # an empty file: nothing better is possible, fill it
        if not self._last_byte_is_newline():
            # Continuing a line that began in this file with >= 32 KiB spare: it may still end
            # here; if it does not fit, it is longer than 32 KiB and may be split at the size.
            return fit
        # A new line starts here and its newline does not fit: start it in the next file, unless
        # there is no newline at all and the data could never fit a file or files are tiny.
        if data.find(b"\n", pos + fit) < 0 and (left > self.max_size or self.max_size < LINE_SCAN_LIMIT):
            return fit
        return 0

    def _last_byte_is_newline(self) -> bool:
        ends_nl = self._ends_nl
        if ends_nl is None:  # after a splice: look at the file
            try:
                ends_nl = self._size <= 0 or os.pread(self._fd, 1, self._size - 1) == b"\n"
            except OSError:
                ends_nl = True  # cannot tell: treat the data as a new line (the safe choice)
            self._ends_nl = ends_nl
        return ends_nl

    # ---------------------------------------------------------------- files

    def _preallocate(self, fd: int, off: int, need: int) -> None:
        """Reserve the blocks of ``[off, need + PREALLOC_AHEAD)`` (within the size) without
        changing the visible size. Never fails: without a reservation writes only cost more."""
        end = min(self.max_size, need + self._prealloc)
        self._alloc_end = end  # also on failure: no new attempt before then
        try:
            st = os.fstatvfs(fd)
            if st.f_bavail * st.f_frsize < PREALLOC_MIN_FREE:
                return
            self._trim = True  # also after a failure: it may have reserved some
            _fallocate(fd, _FALLOC_FL_KEEP_SIZE, off, end - off)
        except OSError as exc:
            if exc.errno in _PREALLOC_UNSUPPORTED:
                self._prealloc = 0
                _log.info("log %s: no preallocation here: %s", self._path(self._index), exc)

    def _trim_file(self) -> None:
        """Give back the reserved blocks past the end of the current file (``ftruncate`` to its
        own size: this rotator is the file's only writer, so the size cannot move meanwhile)."""
        self._trim = False
        self._alloc_end = 0
        try:
            st = os.fstat(self._fd)
            if st.st_nlink > 0:
                os.ftruncate(self._fd, st.st_size)
        except OSError:
            pass  # a deleted or unreachable file: nothing to give back that anyone sees

    def _close_fds(self) -> None:
        if self._trim and self._fd >= 0:
            self._trim_file()
        self._alloc_end = 0
        for fd in (self._sfd, self._fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = self._sfd = -1

    def _open_relay(self, src: int) -> tuple[int, int] | None:
        """The relay pipe of :meth:`_splice_in`, as big as ``src``; None (no more splicing) if impossible."""
        try:
            relay_r, relay_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            self._no_splice(exc)
            return None
        self._relay = relay_r, relay_w
        try:
            size = fcntl.fcntl(src, fcntl.F_GETPIPE_SZ)
            if size > fcntl.fcntl(relay_w, fcntl.F_GETPIPE_SZ):
                fcntl.fcntl(relay_w, fcntl.F_SETPIPE_SZ, size)
        except OSError:
            pass  # a smaller relay only means smaller moves
        return self._relay

    def _no_splice(self, exc: OSError) -> None:
        _log.info("log %s: zero-copy writes not possible here, copying: %s", self._path(self._index), exc)
        self._splice_ok = False

    def _take_relay(self, relay_r: int, n: int) -> bytes:
        """The ``n`` bytes left in the relay pipe (not written to the file): read them out."""
        parts: list[bytes] = []
        while n > 0:
            try:
                chunk = os.read(relay_r, n)
            except OSError as exc:  # pragma: no cover - the relay holds exactly n bytes
                _log.error("log %s: %d bytes lost in the relay pipe: %s", self._path(self._index), n, exc)
                break
            if not chunk:  # pragma: no cover
                break
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def _read_back(self, off: int, n: int) -> bytes:
        """Bytes ``[off, off + n)`` of the current (deleted) file, as spliced into it."""
        parts: list[bytes] = []
        while n > 0:
            try:
                chunk = os.pread(self._fd, n, off)
            except OSError as exc:
                _log.error("log %s: reading back %d spliced bytes failed: %s", self._path(self._index), n, exc)
                break
            if not chunk:
                _log.error("log %s: %d spliced bytes are missing", self._path(self._index), n)
                break
            parts.append(chunk)
            off += len(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def _path(self, index: int) -> str:
        return _log_path(self.log_dir, self.base_name, index)

    def _usable_index(self, index: int, *, allow_full: bool = False) -> int:
        return _usable_index(self.log_dir, self.base_name, index, self.max_size, allow_full=allow_full)

    def _open_index(self, index: int) -> None:
        """Open ``<base>.<index>`` for appending; raises OSError."""
        self._take(os.open(self._path(index), _OPEN_FLAGS, 0o666), index)

    def _take(self, fd: int, index: int) -> None:
        """Make ``fd`` (``<base>.<index>``, opened with the rotator's flags) the current file; on
        an error (raised) it is closed."""
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "log file is not a regular file", self._path(index))
            ends_nl = True
            if st.st_size > 0:
                ends_nl = os.pread(fd, 1, st.st_size - 1) == b"\n"
        except BaseException:
            os.close(fd)
            raise
        self._close_fds()
        self._fd = fd
        self._index = index
        self._size = st.st_size
        # Blocks past the end: a reservation of a writer that ended without giving it back.
        self._trim = st.st_blocks * 512 > st.st_size + PREALLOC_AHEAD // 8
        self._ends_nl = ends_nl
        self._oldest = min(self._oldest, index)

    def _rotate(self) -> bool:
        """Move to the next usable index and purge; False (reported) on failure."""
        try:
            self._open_index(self._usable_index(self._index + 1))
        except OSError as exc:
            self._fail("open", exc, close=False)
            return False
        if self._index - self._oldest >= self.max_files:
            self._purge()
        return True

    def _purge(self) -> None:
        """Delete all but the newest ``max_files`` regular files of this base name."""
        try:
            indices = [i for i in scan_indices(self.log_dir, self.base_name)
                       if i <= self._index and stat.S_ISREG(os.lstat(self._path(i)).st_mode)]
        except OSError as exc:
            self._report("purge", exc)
            return
        keep = indices[-self.max_files:]
        for i in indices[:-self.max_files]:
            try:
                os.unlink(self._path(i))
            except FileNotFoundError:
                pass
            except OSError as exc:
                self._report("purge", exc)
        self._oldest = keep[0] if keep else self._index

    def _ready(self) -> bool:
        """Ensure an open, still-linked current file; recover (mkdir, reopen) if needed."""
        fd = self._fd
        if fd >= 0:
            try:
                if os.fstat(fd).st_nlink > 0:
                    return True
                # Our file was deleted (log dir removed?): writing on would lose the bytes.
                raise FileNotFoundError(errno.ENOENT, "log file was deleted under the writer",
                                        self._path(self._index))
            except OSError as exc:
                self._fail("check", exc, close=True)
        return self._reopen()

    def _reopen(self) -> bool:
        try:
            if not os.path.isdir(self.log_dir):
                if self._create_parents:
                    os.makedirs(self.log_dir, mode=0o777, exist_ok=True)
                else:
                    os.mkdir(self.log_dir, 0o777)
                os.chmod(self.log_dir, 0o777)  # Nomad's mode for alloc/logs, whatever the umask
            indices = scan_indices(self.log_dir, self.base_name)
            start = max(self._index, indices[-1]) if indices else self._index
            if indices:
                self._oldest = indices[0]
            self._open_index(self._usable_index(start, allow_full=True))
        except OSError as exc:
            self._fail("reopen", exc, close=True)
            return False
        return True

    # ---------------------------------------------------------------- errors

    def _fail(self, op: str, exc: OSError, *, close: bool) -> None:
        if close:
            self._close_fds()
        self._retry = _RETRY_MIN if self._failure is None else min(self._retry * 2, _RETRY_MAX)
        self._report(op, exc)

    def _report(self, op: str, exc: OSError) -> None:
        key = exc.errno or 0  # distinct failure = distinct errno (op is in the message)
        self._last_error = exc
        if key == self._failure:
            return
        self._failure = key
        _log.warning("log %s: %s failed: %s", self._path(self._index), op, exc)
        if self._on_error is not None:
            try:
                self._on_error(exc)
            except Exception:
                _log.exception("log on_error callback failed")

    def _succeeded(self) -> None:
        if self._failure is not None:
            _log.info("log %s: writing again", self._path(self._index))
            self._failure = None
            self._retry = 0.0

