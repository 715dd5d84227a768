"""Process-tree helpers over ``/proc`` (no cgroups needed).

Used when cgroups are off (stats of a task's tree, killing it) and pre-exec in the task's
child (``oom_score_adj``).
"""

from __future__ import annotations

import functools
import os
import signal
import time
from dataclasses import dataclass

from rawexec.errors import ContainmentError, InvalidConfigError

__all__ = [
    "ProcSample",
    "apply_oom_score_adj",
    "descendants",
    "kill_process_tree",
    "read_proc_sample",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")
_send_signal = os.kill  # module attribute: tests replace it to check the bound
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 65536)
    except OSError:
        return None
    finally:
        os.close(fd)


def _stat_fields(pid: int) -> list[bytes] | None:
    """``/proc/PID/stat`` split after the ``(comm)``: index 0 is field 3 (state)."""
    raw = _read(f"/proc/{pid}/stat")
    if raw is None:
        return None
    end = raw.rfind(b")")
    if end < 0:
        return None
    return raw[end + 2:].split()


@functools.cache
def _has_children_files() -> bool:
    """Does this kernel offer ``/proc/PID/task/TID/children`` (CONFIG_PROC_CHILDREN)?"""
    return os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def _children_of(pid: int) -> list[int]:
    """Children of every thread of ``pid`` via ``/proc/PID/task/TID/children``."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for tid in tids:
        raw = _read(f"/proc/{pid}/task/{tid}/children")
        if raw:
            out.extend(int(x) for x in raw.split())
    return out


def _ppid_table() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        f = _stat_fields(int(name))
        if f is None or len(f) < 2:
            continue
        children.setdefault(int(f[1]), []).append(int(name))
    return children


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (not ``pid`` itself), parents before children.

    Walks ``/proc/PID/task/*/children`` (cheap); falls back to one scan of ``/proc/*/stat``
    when the kernel lacks that file. A snapshot: a tree that is forking can change under it,
    so a killer must loop until the walk comes back empty.
    """
    out: list[int] = []
    seen = {pid}
    queue = [pid]
    table = None if _has_children_files() else _ppid_table()
    while queue:
        cur = queue.pop(0)
        kids = _children_of(cur) if table is None else table.get(cur, [])
        for k in kids:
            if k not in seen:
                seen.add(k)
                out.append(k)
                queue.append(k)
    return out


def is_zombie(pid: int) -> bool | None:
    """True for a zombie, False for a live process, None when it is gone."""
    f = _stat_fields(pid)
    if f is None:
        return None
    return f[0] in (b"Z", b"X")


def kill_process_tree(root_pid: int, *, include_root: bool = True, timeout: float = 5.0) -> None:
    """SIGKILL ``root_pid``'s whole tree until no live descendant is left.

    For the no-cgroups case: run it on a subreaper (the shim), so orphans of a double fork
    are still in its tree. Each round stops every process found (a stopped process forks no
    more), then kills them all; rounds repeat until a walk finds no live process. Zombies are
    left to their parent to reap. Raises :class:`ContainmentError` if processes survive
    ``timeout``.
    """
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        tree = descendants(root_pid)
        if include_root:
            tree.insert(0, root_pid)
        live = [p for p in tree if is_zombie(p) is False]
        if not live:
            return
        if time.monotonic() > deadline:
            raise ContainmentError(
                f"{len(live)} processes of the tree of pid {root_pid} survived SIGKILL for {timeout:g}s: "
                f"{live[:10]}")
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for p in live:
                try:
                    _send_signal(p, sig)
                except ProcessLookupError:
                    pass
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def apply_oom_score_adj(value: int) -> None:
    """Write ``value`` (-1000..1000) to ``/proc/self/oom_score_adj`` — in the task's child, before exec.

    The task then gets the configured value rather than inheriting the agent's own.
    """
    if not isinstance(value, int) or isinstance(value, bool) or not -1000 <= value <= 1000:
        raise InvalidConfigError(f"oom_score_adj must be an integer from -1000 to 1000, got {value!r}")
    try:
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise ContainmentError(f"unable to set oom_score_adj to {value}: {e.strerror}"
                               + (" (lowering it needs CAP_SYS_RESOURCE)" if value < 0 else "")) from e


@dataclass(frozen=True)
class ProcSample:
    """One reading of a process: cumulative cpu (ns) and memory (bytes)."""

    pid: int
    user_ns: int
    system_ns: int
    rss: int
    swap: int


def read_proc_sample(pid: int, *, with_swap: bool = True) -> ProcSample | None:
    """Cpu times and RSS from ``/proc/PID/stat`` (+ swap from ``status``); None if it is gone."""
    f = _stat_fields(pid)
    if f is None or len(f) < 22:
        return None
    tick_ns = 1_000_000_000 // CLK_TCK
    user = int(f[11]) * tick_ns
    system = int(f[12]) * tick_ns
    rss = int(f[21]) * PAGE_SIZE
    swap = 0
    if with_swap:
        raw = _read(f"/proc/{pid}/status")
        if raw is not None:
            i = raw.find(b"VmSwap:")
            if i >= 0:
                swap = int(raw[i + 7:raw.index(b"kB", i)].strip()) * 1024
    return ProcSample(pid=pid, user_ns=user, system_ns=system, rss=rss, swap=swap)
