"""Read a task's logs the way ``nomad alloc logs`` and ``/v1/client/fs/logs`` do.

A task stream is the concatenation of its kept files ``<task>.<stream>.N`` in index order. A
position in it is a :class:`LogPosition` (file index, offset in that file). ``origin``/``offset``
follow Nomad's log API: the offset counts bytes across all kept files, from the start
(``origin="start"``) or back from the end (``origin="end"``).

Following survives rotation (moves on to the next index once the current file is complete),
purge (a deleted file is drained through the open fd, then the next existing index is read) and
a writer that recreated the current file after its dir was deleted (reopened from 0).
"""

from __future__ import annotations

import base64
import errno
import os
import stat
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Literal

from rawexec.errors import ValidationError
from rawexec.logs.config import Stream, log_base_name
from rawexec.logs.rotator import scan_indices

__all__ = [
    "LogFile",
    "LogPosition",
    "StreamFrame",
    "follow_logs",
    "list_log_files",
    "position_at",
    "position_for_tail_lines",
    "read_logs",
    "stream_frames",
    "tail_bytes",
    "tail_lines",
]

Origin = Literal["start", "end"]

_CHUNK = 64 * 1024
_BACK_BLOCK = 64 * 1024


@dataclass(frozen=True)
class LogFile:
    """One kept file of a stream."""

    index: int
    path: str
    size: int


@dataclass(frozen=True)
class LogPosition:
    """A place in a stream: byte ``offset`` inside file ``index``."""

    index: int
    offset: int


@dataclass(frozen=True)
class StreamFrame:
    """Nomad's ``StreamFrame``: ``File`` (path relative to the alloc dir), ``Offset`` (position in
    that file after ``Data``), ``Data`` and ``FileEvent``. A frame with no fields is a heartbeat."""

    file: str = ""
    offset: int = 0
    data: bytes = b""
    file_event: str = ""

    @property
    def is_heartbeat(self) -> bool:
        return not (self.file or self.data or self.file_event)

    def to_dict(self) -> dict[str, object]:
        """The JSON object Nomad sends (empty fields omitted, ``Data`` base64)."""
        out: dict[str, object] = {}
        if self.offset:
            out["Offset"] = self.offset
        if self.data:
            out["Data"] = base64.b64encode(self.data).decode("ascii")
        if self.file:
            out["File"] = self.file
        if self.file_event:
            out["FileEvent"] = self.file_event
        return out


def list_log_files(log_dir: str, task: str, stream: Stream) -> list[LogFile]:
    """The kept regular files of the stream, in index order (empty if the dir is missing)."""
    base = log_base_name(task, stream)
    try:
        indices = scan_indices(log_dir, base)
    except FileNotFoundError:
        return []
    out: list[LogFile] = []
    for i in indices:
        path = os.path.join(log_dir, f"{base}.{i}")
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue  # purged between the scan and now
        if stat.S_ISREG(st.st_mode):
            out.append(LogFile(i, path, st.st_size))
    return out


def position_at(log_dir: str, task: str, stream: Stream, origin: Origin = "start",
                offset: int = 0) -> LogPosition:
    """Resolve Nomad's ``origin``/``offset`` (bytes across all kept files) to a position.

    An offset past either end clamps to that end.
    """
    if origin not in ("start", "end"):
        raise ValidationError(f"origin must be 'start' or 'end'; got {origin!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValidationError(f"offset must be a non-negative integer; got {offset!r}")
    files = list_log_files(log_dir, task, stream)
    if not files:
        return LogPosition(0, 0)
    if origin == "start":
        left = offset
        for f in files:
            if left < f.size:
                return LogPosition(f.index, left)
            left -= f.size
        return LogPosition(files[-1].index, files[-1].size)
    left = offset
    for f in reversed(files):
        if left <= f.size:
            return LogPosition(f.index, f.size - left)
        left -= f.size
    return LogPosition(files[0].index, 0)


def position_for_tail_lines(log_dir: str, task: str, stream: Stream, lines: int) -> LogPosition:
    """Where the last ``lines`` lines start (as ``tail -n``: a final unterminated line counts)."""
    if isinstance(lines, bool) or not isinstance(lines, int) or lines < 0:
        raise ValidationError(f"lines must be a non-negative integer; got {lines!r}")
    files = list_log_files(log_dir, task, stream)
    if not files:
        return LogPosition(0, 0)
    last = files[-1]
    if lines == 0:
        return LogPosition(last.index, last.size)
    need = lines  # newlines still to pass, walking backwards
    first_byte = True
    for f in reversed(files):
        try:
            fh = open(f.path, "rb")  # noqa: SIM115 - closed below, read in blocks backwards
        except FileNotFoundError:
            break  # purged: the kept tail starts after it
        with fh:
            end = f.size
            while end > 0:
                start = max(0, end - _BACK_BLOCK)
                fh.seek(start)
                block = fh.read(end - start)
                hi = len(block)
                if first_byte and hi:
                    first_byte = False
                    if block[-1:] == b"\n":
                        hi -= 1  # the final newline ends the last line; it does not start one
                while True:
                    nl = block.rfind(b"\n", 0, hi)
                    if nl < 0:
                        break
                    need -= 1
                    if need == 0:
                        return LogPosition(f.index, start + nl + 1)
                    hi = nl
                end = start
    return LogPosition(files[0].index, 0)


def _read_from(log_dir: str, task: str, stream: Stream, pos: LogPosition, *, follow: bool,
               stop: Callable[[], bool] | None, poll_interval: float,
               chunk_size: int) -> Generator[tuple[int, int, bytes], None, None]:
    """Yield ``(index, end_offset, data)`` from ``pos`` on; with ``follow``, wait for more."""
    base = log_base_name(task, stream)
    index, offset = pos.index, pos.offset
    fd = -1
    ident = (0, 0)

    def path_of(i: int) -> str:
        return os.path.join(log_dir, f"{base}.{i}")

    def next_index(after: int) -> int | None:
        try:
            later = [i for i in scan_indices(log_dir, base) if i > after]
        except FileNotFoundError:
            return None
        for i in later:
            try:
                if stat.S_ISREG(os.lstat(path_of(i)).st_mode):
                    return i
            except FileNotFoundError:
                continue
        return None

    try:
        while True:
            if fd < 0:
                try:
                    fd = os.open(path_of(index), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
                    st = os.fstat(fd)
                    if not stat.S_ISREG(st.st_mode):
                        os.close(fd)
                        fd = -1
                        raise IsADirectoryError(errno.EISDIR, "not a log file", path_of(index))
                except OSError:
                    nxt = next_index(index)
                    if nxt is not None:
                        index, offset = nxt, 0
                        continue
                    if not follow or (stop is not None and stop()):
                        return
                    time.sleep(poll_interval)
                    continue
                ident = (st.st_dev, st.st_ino)
                offset = min(offset, st.st_size)
            data = os.pread(fd, chunk_size, offset)
            if data:
                offset += len(data)
                yield index, offset, data
                continue
            # End of this file. Is it complete (a later file exists) or replaced?
            nxt = next_index(index)
            if nxt is not None:
                tail = os.pread(fd, chunk_size, offset)  # written just before the rotation
                if tail:
                    continue
                os.close(fd)
                fd = -1
                index, offset = nxt, 0
                continue
            try:
                st = os.stat(path_of(index))
                if (st.st_dev, st.st_ino) != ident:
                    # The writer recreated this file (its dir was deleted): read the new one.
                    os.close(fd)
                    fd = -1
                    offset = 0
                    continue
            except FileNotFoundError:
                pass
            if not follow or (stop is not None and stop()):
                return
            time.sleep(poll_interval)
    finally:
        if fd >= 0:
            os.close(fd)


def read_logs(log_dir: str, task: str, stream: Stream, *, origin: Origin = "start", offset: int = 0,
              chunk_size: int = _CHUNK) -> Generator[bytes, None, None]:
    """Every byte of the stream from the position given by ``origin``/``offset`` to the end."""
    pos = position_at(log_dir, task, stream, origin, offset)
    for _i, _o, data in _read_from(log_dir, task, stream, pos, follow=False, stop=None,
                                   poll_interval=0.0, chunk_size=chunk_size):
        yield data


def tail_bytes(log_dir: str, task: str, stream: Stream, count: int) -> bytes:
    """The last ``count`` bytes of the stream (``nomad alloc logs -tail -c N``)."""
    return b"".join(read_logs(log_dir, task, stream, origin="end", offset=count))


def tail_lines(log_dir: str, task: str, stream: Stream, lines: int = 10) -> bytes:
    """The last ``lines`` lines of the stream (``nomad alloc logs -tail -n N``)."""
    pos = position_for_tail_lines(log_dir, task, stream, lines)
    return b"".join(d for _i, _o, d in _read_from(log_dir, task, stream, pos, follow=False, stop=None,
                                                   poll_interval=0.0, chunk_size=_CHUNK))


def follow_logs(log_dir: str, task: str, stream: Stream, *, start: LogPosition | None = None,
                origin: Origin = "start", offset: int = 0, stop: Callable[[], bool] | None = None,
                poll_interval: float = 0.1, chunk_size: int = _CHUNK) -> Generator[bytes, None, None]:
    """Yield the stream from ``start`` (or ``origin``/``offset``) and keep following it.

    Ends when ``stop()`` returns True at a moment with no new data (checked every
    ``poll_interval`` seconds); without ``stop`` it runs until the consumer closes it.
    """
    pos = start if start is not None else position_at(log_dir, task, stream, origin, offset)
    for _i, _o, data in _read_from(log_dir, task, stream, pos, follow=True, stop=stop,
                                   poll_interval=poll_interval, chunk_size=chunk_size):
        yield data


def stream_frames(log_dir: str, task: str, stream: Stream, *, origin: Origin = "start", offset: int = 0,
                  follow: bool = False, stop: Callable[[], bool] | None = None,
                  poll_interval: float = 0.1, frame_size: int = _CHUNK,
                  file_prefix: str = "alloc/logs",
                  heartbeat_interval: float | None = None) -> Generator[StreamFrame, None, None]:
    """Nomad's ``/v1/client/fs/logs`` frames: one frame per chunk read, ``File`` relative to the
    alloc dir (``alloc/logs/<task>.<stream>.<N>``), ``Offset`` the position in it after the data.

    With ``follow`` and ``heartbeat_interval``, an empty heartbeat frame is sent after that many
    seconds without data (lets an HTTP server notice a vanished client).
    """
    base = log_base_name(task, stream)
    pos = position_at(log_dir, task, stream, origin, offset)
    if not follow or heartbeat_interval is None:
        for i, end, data in _read_from(log_dir, task, stream, pos, follow=follow, stop=stop,
                                       poll_interval=poll_interval, chunk_size=frame_size):
            yield StreamFrame(f"{file_prefix}/{base}.{i}", end, data)
        return
    # Heartbeats: poll in short slices and interleave empty frames.
    last = time.monotonic()
    beat = False

    def stop_or_beat() -> bool:
        nonlocal beat
        if stop is not None and stop():
            return True
        if time.monotonic() - last >= heartbeat_interval:
            beat = True
            return True
        return False

    while True:
        ended_by_stop = True
        for i, end, data in _read_from(log_dir, task, stream, pos, follow=True, stop=stop_or_beat,
                                       poll_interval=poll_interval, chunk_size=frame_size):
            pos = LogPosition(i, end)
            last = time.monotonic()
            yield StreamFrame(f"{file_prefix}/{base}.{i}", end, data)
        if beat:
            ended_by_stop = False
            beat = False
            last = time.monotonic()
            yield StreamFrame()
        if ended_by_stop:
            return
