"""Small /proc readers: process identity (pid + start time) and the process tree."""

from __future__ import annotations

import os

__all__ = ["children", "descendants", "process_start_time", "same_process"]


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks after boot); None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(b")") + 2:].split()
    try:
        return int(rest[19])
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
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        state = data[data.rfind(b")") + 2:data.rfind(b")") + 3]
    except OSError:
        return False
    return state != b"Z"


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all its threads), from /proc/PID/task/*/children."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return out


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid``, parents before children."""
    out: list[int] = []
    frontier = children(pid)
    seen: set[int] = set()
    while frontier:
        nxt: list[int] = []
        for p in frontier:
            if p in seen:
                continue
            seen.add(p)
            out.append(p)
            nxt.extend(children(p))
        frontier = nxt
    return out
