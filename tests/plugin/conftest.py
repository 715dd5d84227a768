from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugin.harness import Plugin, launch, short_tmp_dir


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    with short_tmp_dir() as d:
        yield d


@pytest.fixture
def plugin(tmp_path: Path, sock_dir: Path) -> Iterator[Plugin]:
    """A fresh plugin process for this test."""
    p = launch(tmp_path, sock_dir)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture(scope="module")
def shared_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plugin]:
    """One plugin process for a whole module: every test also checks it survived the previous ones."""
    with short_tmp_dir() as d:
        p = launch(tmp_path_factory.mktemp("shared-plugin"), d)
        try:
            yield p
            assert p.alive(), "a request killed the shared plugin process"
        finally:
            p.close()
