"""Helpers for the log tests: deadline waits, and privileged mounts (root only) for failure cases."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def _can_mount() -> str | None:
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs / read-only bind mount"
    return None


class Mounts:
    """Mounts made by a test, unmounted (lazily, in reverse) at teardown."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    def tmpfs(self, where: Path, size: str) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        try:
            _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(where))
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            pytest.skip(f"cannot mount a tmpfs here: {exc}")
        self.points.append(where)
        return where

    def bind_self(self, where: Path) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        try:
            _run("mount", "--bind", str(where), str(where))
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            pytest.skip(f"cannot bind-mount here: {exc}")
        self.points.append(where)
        return where

    @staticmethod
    def remount(where: Path, readonly: bool) -> None:
        _run("mount", "-o", f"remount,bind,{'ro' if readonly else 'rw'}", str(where))

    def umount(self, where: Path) -> None:
        _run("umount", str(where))
        self.points.remove(where)

    def cleanup(self) -> None:
        for p in reversed(self.points):
            subprocess.run(["umount", "-l", str(p)], check=False, capture_output=True, timeout=30)


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    reason = _can_mount()
    if reason:
        pytest.skip(reason)
    m = Mounts()
    try:
        yield m
    finally:
        m.cleanup()


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))
