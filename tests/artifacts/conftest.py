from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.artifacts.server import TestServer


@pytest.fixture
def server() -> Iterator[TestServer]:
    s = TestServer()
    yield s
    s.close()


@dataclass
class Alloc:
    root: Path  # <alloc>
    task: Path  # <alloc>/web

    @property
    def shared(self) -> Path:
        return self.root / "alloc"

    def staging_leftovers(self) -> list[str]:
        work = self.root / ".rawexec-artifacts"
        return [n for n in os.listdir(work) if n.startswith("fetch-")] if work.exists() else []

    def task_files(self) -> list[str]:
        out = []
        for d, dirs, files in os.walk(self.task):
            for n in dirs + files:
                out.append(os.path.relpath(os.path.join(d, n), self.task))
        return sorted(out)


@pytest.fixture
def alloc(tmp_path: Path) -> Alloc:
    root = tmp_path / "alloc-1"
    task = root / "web"
    for d in (task / "local", task / "secrets", task / "tmp", root / "alloc" / "data"):
        d.mkdir(parents=True)
    return Alloc(root, task)
