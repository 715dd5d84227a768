"""Process-tree helpers over ``/proc`` (no cgroups needed).

Used when cgroups are off (stats of a task's tree, killing it) and pre-exec in the task's
child (``oom_score_adj``).
"""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass

from rawexec.errors import ContainmentError, InvalidConfigError

__all__ = [
    "ProcSample",
    "apply_oom_score_adj",
    "children",
    "descendants",
    "host_has_swap",
    "kill_process_tree",
    "proc_sample",
    "proc_samples",
    "read_proc_sample",
    "tree_samples",
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


def _stat_fields(pid: int, maxsplit: int = -1) -> list[bytes] | None:
    """``/proc/PID/stat`` split after the ``(comm)``: index 0 is field 3 (state).

    ``maxsplit`` stops splitting early (the rest stays in the last item) for callers that need only
    the first fields: fewer objects per read.
    """
    raw = _read(f"/proc/{pid}/stat")
    if raw is None:
        return None
    end = raw.rfind(b")")
    if end < 0:
        return None
    return raw[end + 2:].split(None, maxsplit)


@functools.cache
def _has_children_files() -> bool:
    """Does this kernel offer ``/proc/PID/task/TID/children`` (CONFIG_PROC_CHILDREN)?"""
    return os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def children(pid: int) -> list[int]:
    """Children of every thread of ``pid`` via ``/proc/PID/task/TID/children``.

    Lists ``/proc/PID/task`` to find the threads; see :func:`tree_samples` for the cheaper
    single-thread case.
    """
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
        f = _stat_fields(int(name), 2)
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
        kids = children(cur) if table is None else table.get(cur, [])
        for k in kids:
            if k not in seen:
                seen.add(k)
                out.append(k)
                queue.append(k)
    return out


def is_zombie(pid: int) -> bool | None:
    """True for a zombie, False for a live process, None when it is gone."""
    f = _stat_fields(pid, 1)
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


_TICK_NS = 1_000_000_000 // CLK_TCK
_SWAP_TTL_NS = 1_000_000_000
_swap_seen: list[int] = [-_SWAP_TTL_NS - 1, 1]  # [monotonic ns of the last look, 1 if a swap area was active]


def host_has_swap() -> bool:
    """Is a swap area active on the host (``/proc/swaps`` lists one)? Re-read at most once a second.

    Without one, no process has swapped pages (``VmSwap`` is 0 everywhere), so readers can skip
    ``/proc/PID/status``. Unreadable ``/proc/swaps`` counts as "yes" (read the status files).
    """
    now = time.monotonic_ns()
    if now - _swap_seen[0] >= _SWAP_TTL_NS:
        raw = _read("/proc/swaps")
        _swap_seen[1] = 1 if raw is None or raw.count(b"\n") > 1 else 0
        _swap_seen[0] = now
    return _swap_seen[1] == 1


def _swap_of(pid: int) -> int:
    raw = _read(f"/proc/{pid}/status")
    if raw is None:
        return 0
    i = raw.find(b"VmSwap:")
    if i < 0:
        return 0
    return int(raw[i + 7:raw.index(b"kB", i)].strip()) * 1024


def _sample_of(f: list[bytes], pid: int, with_swap: bool) -> tuple[int, int, int, int, int]:
    return (pid, int(f[11]) * _TICK_NS, int(f[12]) * _TICK_NS, int(f[21]) * PAGE_SIZE,
            _swap_of(pid) if with_swap else 0)


def proc_sample(pid: int, *, with_swap: bool = True) -> tuple[int, int, int, int, int] | None:
    """``(pid, user_ns, system_ns, rss, swap)`` from ``/proc/PID/stat`` (+ ``status`` for swap); None if gone.

    The tuple form of :func:`read_proc_sample` for hot paths. ``with_swap`` reads ``VmSwap`` only
    when a swap area is active on the host (otherwise it is 0 by definition).
    """
    f = _stat_fields(pid, 22)
    if f is None or len(f) < 22:
        return None
    return _sample_of(f, pid, with_swap and host_has_swap())


def proc_samples(pids: Iterable[int], *, exclude: frozenset[int] = frozenset(),
                 with_swap: bool = True) -> list[tuple[int, int, int, int, int]]:
    """:func:`proc_sample` of each of ``pids`` not in ``exclude``, in order; gone ones left out."""
    with_swap = with_swap and host_has_swap()
    out: list[tuple[int, int, int, int, int]] = []
    for pid in pids:
        if pid not in exclude:
            f = _stat_fields(pid, 22)
            if f is not None and len(f) >= 22:
                out.append(_sample_of(f, pid, with_swap))
    return out


def read_proc_sample(pid: int, *, with_swap: bool = True) -> ProcSample | None:
    """Cpu times and RSS from ``/proc/PID/stat`` (+ swap from ``status``); None if it is gone."""
    s = proc_sample(pid, with_swap=with_swap)
    if s is None:
        return None
    return ProcSample(pid=pid, user_ns=s[1], system_ns=s[2], rss=s[3], swap=s[4])


def tree_samples(root_pid: int, *, exclude: frozenset[int] = frozenset(),
                 with_swap: bool = True) -> list[tuple[int, int, int, int, int]]:
    """:func:`proc_sample` of ``root_pid`` and every live descendant, parents before children.

    Pids in ``exclude`` are walked through but not sampled. One read of ``/proc/PID/stat`` serves
    both the sample and the walk: its thread count tells when the process has one thread, whose
    ``/proc/PID/task/PID/children`` then lists every child (no ``/proc/PID/task`` listing). Same
    snapshot caveats as :func:`descendants`; without ``children`` files, one ``/proc`` scan.
    """
    with_swap = with_swap and host_has_swap()
    out: list[tuple[int, int, int, int, int]] = []
    if not _has_children_files():
        for pid in [root_pid, *descendants(root_pid)]:
            f = None if pid in exclude else _stat_fields(pid, 22)
            if f is not None and len(f) >= 22:
                out.append(_sample_of(f, pid, with_swap))
        return out
    seen = {root_pid}
    queue = [root_pid]
    for pid in queue:  # grows while walking: breadth first
        f = None if pid in exclude else _stat_fields(pid, 22)
        if f is not None and len(f) >= 22:
            out.append(_sample_of(f, pid, with_swap))
            if f[17] == b"1":  # num_threads: the only thread is the leader (tid == pid)
                raw = _read(f"/proc/{pid}/task/{pid}/children")
                kids = [int(x) for x in raw.split()] if raw else []
            else:
                kids = children(pid)
        else:
            kids = children(pid)
        for k in kids:
            if k not in seen:
                seen.add(k)
                queue.append(k)
    return out
