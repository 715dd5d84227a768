"""The allocations' root is marked as ext4's top directory (Orlov placement hint), best effort."""

from __future__ import annotations

import array
import fcntl
import os
from pathlib import Path

from rawexec.agent import fshint


def _flags(path: Path) -> int | None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        a = array.array("i", [0])
        fcntl.ioctl(fd, fshint._FS_IOC_GETFLAGS, a, True)
        return a[0]
    except OSError:
        return None
    finally:
        os.close(fd)


def test_mark_top_dir_sets_the_flag_where_supported(tmp_path: Path) -> None:
    d = tmp_path / "alloc"
    d.mkdir()
    before = _flags(d)
    ok = fshint.mark_top_dir(str(d))
    if before is None:  # a file system without inode flags (tmpfs, overlay...): refused quietly
        assert not ok
        return
    assert ok
    after = _flags(d)
    assert after is not None and after & fshint.FS_TOPDIR_FL
    assert after & ~fshint.FS_TOPDIR_FL == before & ~fshint.FS_TOPDIR_FL  # nothing else changed
    assert fshint.mark_top_dir(str(d))  # idempotent


def test_mark_top_dir_never_raises(tmp_path: Path) -> None:
    assert not fshint.mark_top_dir(str(tmp_path / "missing"))
    f = tmp_path / "file"
    f.write_text("")
    assert not fshint.mark_top_dir(str(f))
    assert not fshint.mark_top_dir("/proc")
