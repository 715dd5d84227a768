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
    p = launch(tmp_path, sock_dir)
    try:
        yield p
    finally:
        p.close()
