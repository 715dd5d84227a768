"""Process identity from /proc: a pid plus its start time, so a reused pid is never ours.

(The process-tree walk lives in :func:`rawexec.containment.descendants`.)
"""

from __future__ import annotations

import os

__all__ = ["child_start_time", "process_start_time", "same_process"]


def _read_stat(pid: int) -> bytes:
    # os.open/os.read, not open(): no file objects (cheap in a freshly forked shim too).
    fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks after boot); None if the process is gone."""
    try:
        data = _read_stat(pid)
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(b")") + 2:].split(b" ", 20)
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


def child_start_time(pid: int, ppid: int) -> int | None:
    """The start time of ``pid`` only if its parent is ``ppid`` (a reused pid has another parent);
    None otherwise or if it is gone. A zombie child still has its start time."""
    try:
        data = _read_stat(pid)
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2:].split(b" ", 20)  # state, ppid, ... (field 3 onwards)
    try:
        return int(rest[19]) if int(rest[1]) == ppid else None
    except (IndexError, ValueError):
        return None


def same_process(pid: int, start_time: int | None) -> bool:
    """True when ``pid`` is alive and is the same process we recorded (pid reuse is detected)."""
    if pid <= 0 or start_time is None:
        return False
    st = process_start_time(pid)
    if st is None or st != start_time:
        return False
    try:
        data = _read_stat(pid)
        state = data[data.rfind(b")") + 2:data.rfind(b")") + 3]
    except OSError:
        return False
    return state != b"Z"
