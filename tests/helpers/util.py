"""Shared test helpers: deadlines instead of sleeps, process-tag scans."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

TESTTASK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testtask.py")


def wait_until(pred: Callable[[], object], timeout: float = 10.0, interval: float = 0.01, msg: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {msg or pred}")


def tt(*ops: str) -> dict[str, object]:
    """A raw_exec ``config {}`` running tests/helpers/testtask.py with ``ops``."""
    return {"command": sys.executable, "args": [TESTTASK, *ops]}


def pids_with_tag(tag: str) -> list[int]:
    """Every live process whose environment contains ``tag`` (a KEY=value string)."""
    needle = tag.encode()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        if needle in env and stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] != b"Z":
            out.append(int(name))
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] != b"Z"
