"""Fixtures for real-kernel containment tests: the host's cgroup system and a unique parent per test."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator

import pytest

from rawexec.containment import CgroupFS, CgroupSystem, detect


def _cleanup_tree(fs: CgroupFS, top: str) -> None:
    """Kill and remove everything below (and including) ``top`` — bottom-up, best effort."""
    hp = fs.host_path(top)
    if not os.path.isdir(hp):
        return
    for root, _dirs, _files in sorted(os.walk(hp), key=lambda t: -t[0].count("/")):
        for _ in range(200):
            try:
                if os.path.exists(root + "/cgroup.kill"):
                    with open(root + "/cgroup.kill", "w") as f:
                        f.write("1")
                if os.path.exists(root + "/freezer.state"):
                    with open(root + "/freezer.state", "w") as f:
                        f.write("THAWED")
                with open(root + "/cgroup.procs") as f:
                    for pid in f.read().split():
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                os.rmdir(root)
                break
            except FileNotFoundError:
                break
            except OSError:
                import time

                time.sleep(0.01)


@pytest.fixture(scope="session")
def host() -> CgroupSystem:
    if os.geteuid() != 0:
        pytest.skip("needs root: cgroups are only used as root")
    s = detect()
    if not s.enabled:
        pytest.skip(f"cgroups are off on this host: {s.reason}")
    return s


@pytest.fixture
def parent(host: CgroupSystem) -> Iterator[str]:
    name = f"rawexec-test-{uuid.uuid4().hex[:12]}"
    yield name
    mounts = set(host.v1_mounts.values()) | ({host.unified_mount} if host.unified_mount else set())
    for m in mounts:
        _cleanup_tree(host.fs, f"{m}/{name}")


def variant(host: CgroupSystem, name: str) -> CgroupSystem:
    """The host as-is ("native"), or restricted to one kill/limit path this host can also do."""
    if name == "native":
        return host
    if name == "v1":
        if "freezer" not in host.v1_mounts:
            pytest.skip("no v1 freezer controller on this host")
        return CgroupSystem(mode="v1", reason="test: v1 controllers only", v1_mounts=host.v1_mounts, fs=host.fs)
    if name == "v2":
        if host.unified_mount is None:
            pytest.skip("no cgroup2 mount on this host")
        if host.mode == "v2":
            return host
        return CgroupSystem(mode="v2", reason="test: cgroup2 only", unified_mount=host.unified_mount,
                            v2_controllers=host.v2_controllers, fs=host.fs)
    raise AssertionError(name)
