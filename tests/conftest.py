"""Project-wide fixtures."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from rawexec import Driver, DriverConfig, TaskConfig
from tests.helpers.util import pids_with_tag, wait_until

IS_ROOT = os.geteuid() == 0


@pytest.fixture
def state_dir() -> Iterator[str]:
    """A short state dir (unix socket paths are limited to 107 bytes)."""
    d = tempfile.mkdtemp(prefix="rx-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tag() -> str:
    """An env entry put into every task of a test, to find leaked processes by."""
    return f"RAWEXEC_TEST_TAG={uuid.uuid4().hex}"


def _cgroups_available() -> str | None:
    """None when tasks can be placed in cgroups here; else the reason why not."""
    from rawexec.containment import detect

    if not IS_ROOT:
        return "cgroups need root"
    system = detect()
    return None if system.enabled else f"cgroups are off: {system.reason}"


CGROUPS_SKIP = _cgroups_available()


@pytest.fixture(params=["nocgroups", "cgroups"])
def driver(request: pytest.FixtureRequest, state_dir: str, tag: str) -> Iterator[Driver]:
    """An enabled driver, once without cgroups and once with them (when the host allows)."""
    if request.param == "cgroups" and CGROUPS_SKIP:
        pytest.skip(CGROUPS_SKIP)
    d = Driver(DriverConfig(enabled=True, no_cgroups=request.param == "nocgroups", state_dir=state_dir,
                            cgroup_parent=f"rawexec-test-{uuid.uuid4().hex[:8]}"))
    yield d
    for tid in d.task_ids():
        try:
            d.destroy_task(tid, force=True)
        except Exception:
            pass
    d.close()
    wait_until(lambda: not pids_with_tag(tag), 10, msg=f"leaked processes tagged {tag}")
    if request.param == "cgroups" and d.config.cgroup_parent:
        from rawexec.containment import detect
        from rawexec.containment.cgroup import remove_parent

        remove_parent(detect(), d.config.cgroup_parent)


class TaskFactory:
    def __init__(self, alloc_dir: str, tag: str) -> None:
        self.alloc_dir = alloc_dir
        self.tag = tag
        self.n = 0

    def __call__(self, driver_config: dict[str, object], name: str | None = None, *, id: str | None = None,
                 env: dict[str, str] | None = None, alloc_id: str = "alloc1", **kw: Any) -> TaskConfig:
        self.n += 1
        k, v = self.tag.split("=", 1)
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), k: v, **(env or {})}
        return TaskConfig(id=id or f"task-{uuid.uuid4().hex[:8]}", name=name or f"t{self.n}", alloc_id=alloc_id,
                          alloc_dir=self.alloc_dir, driver_config=driver_config, env=full_env, **kw)


@pytest.fixture
def make_task(tmp_path: object, tag: str) -> TaskFactory:
    alloc = os.path.join(str(tmp_path), "alloc")
    return TaskFactory(alloc, tag)
