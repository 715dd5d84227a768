"""FileRotator under a broken log dir: deleted, read-only, full. Report, recover, lose nothing.

The read-only and full cases need mounts (root): as root, chmod does not stop writes.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rawexec.logs import FileRotator
from tests.logs.conftest import Mounts

BASE = "web.stdout"


def joined(d: Path, base: str = BASE) -> bytes:
    idx = sorted(int(p.name.rsplit(".", 1)[1]) for p in d.iterdir() if p.name.startswith(base + "."))
    return b"".join((d / f"{base}.{i}").read_bytes() for i in idx)


def write_all(r: FileRotator, data: bytes, errors: list[OSError], fix: object = None,
              attempts: int = 50) -> None:
    """Offer ``data`` the way the shim does: keep what was refused, retry; ``fix()`` after a refusal."""
    pending = data
    for _ in range(attempts):
        n = r.write(pending)
        pending = pending[n:]
        if not pending:
            return
        assert r.retry_delay > 0
        if callable(fix):
            fix()
    raise AssertionError(f"{len(pending)} bytes never accepted; errors: {errors}")


def test_log_dir_deleted_under_writer_is_recreated(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    errors: list[OSError] = []
    with FileRotator(str(logs), BASE, 5, 1, errors.append, max_file_size_bytes=100) as r:
        assert r.write(b"before\n") == 7
        shutil.rmtree(logs)
        assert r.write(b"after\n") == 6  # recovered within the same call
        assert r.healthy
        assert r.write(b"more\n") == 5
    assert logs.is_dir()
    assert oct(logs.stat().st_mode & 0o777) == oct(0o777)
    assert joined(logs) == b"after\nmore\n"  # 'before' was deleted by whoever removed the dir
    assert len(errors) == 1 and errors[0].errno == errno.ENOENT


def test_current_file_deleted_is_reopened_at_same_index(tmp_path: Path) -> None:
    errors: list[OSError] = []
    with FileRotator(str(tmp_path), BASE, 5, 1, errors.append, max_file_size_bytes=10) as r:
        r.write(b"0123456789abc")
        assert r.current_index == 1
        os.unlink(tmp_path / f"{BASE}.1")
        assert r.write(b"def") == 3
        assert r.current_index == 1
    assert (tmp_path / f"{BASE}.1").read_bytes() == b"def"
    assert [e.errno for e in errors] == [errno.ENOENT]


def test_parent_gone_is_reported_not_resurrected(tmp_path: Path) -> None:
    alloc = tmp_path / "alloc"
    logs = alloc / "alloc" / "logs"
    logs.mkdir(parents=True)
    errors: list[OSError] = []
    with FileRotator(str(logs), BASE, 5, 1, errors.append) as r:
        shutil.rmtree(alloc)
        assert r.write(b"lost?\n") == 0  # refused, not dropped: the caller keeps it
        assert r.write(b"lost?\n") == 0
        assert not alloc.exists()
        assert [e.errno for e in errors] == [errno.ENOENT]  # once per distinct failure
        assert r.retry_delay > 0 and not r.healthy and r.last_error is not None
        logs.mkdir(parents=True)  # the operator puts it back
        assert r.recover()
        assert r.write(b"lost?\n") == 6
        assert r.retry_delay == 0 and r.healthy and r.last_error is None
    assert joined(logs) == b"lost?\n"


def test_create_parents_option(tmp_path: Path) -> None:
    logs = tmp_path / "a" / "b"
    logs.mkdir(parents=True)
    with FileRotator(str(logs), BASE, 5, 1, create_parents=True) as r:
        shutil.rmtree(tmp_path / "a")
        assert r.write(b"x\n") == 2
    assert joined(logs) == b"x\n"


def test_on_error_exceptions_do_not_escape(tmp_path: Path) -> None:
    logs = tmp_path / "p" / "logs"
    logs.mkdir(parents=True)

    def boom(exc: OSError) -> None:
        raise RuntimeError("callback bug")

    with FileRotator(str(logs), BASE, 5, 1, boom) as r:
        shutil.rmtree(tmp_path / "p")
        assert r.write(b"x") == 0


@pytest.mark.root
def test_read_only_bind_mount_blocks_rotation_then_recovers(tmp_path: Path, mounts: Mounts) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    errors: list[OSError] = []
    line = b"%05d\n"
    data = b"".join(line % i for i in range(100))  # 600 bytes, 6-byte lines
    with FileRotator(str(logs), BASE, 100, 1, errors.append, max_file_size_bytes=60) as r:
        assert r.write(data[:120]) == 120
        # Make the dir read-only under the writer: a read-only bind mount over it (the open file
        # stays writable, as an existing fd does after a read-only remount).
        mounts.bind_self(logs)
        mounts.remount(logs, readonly=True)
        rest = data[120:]
        n = r.write(rest)
        assert n < len(rest)  # the open file could still be filled, the next one can't be created
        assert [e.errno for e in errors] == [errno.EROFS]
        assert r.write(rest[n:]) == 0  # still refused, not reported again
        assert len(errors) == 1
        mounts.umount(logs)
        write_all(r, rest[n:], errors)
    assert joined(logs) == data


@pytest.mark.root
def test_full_disk_refuses_then_resumes_without_loss_or_duplication(tmp_path: Path, mounts: Mounts) -> None:
    mnt = mounts.tmpfs(tmp_path / "small", "1m")
    logs = mnt / "logs"
    logs.mkdir()
    filler = mnt / "filler"
    filler.write_bytes(b"\0" * (600 * 1024))
    errors: list[OSError] = []
    data = b"".join(b"line %07d\n" % i for i in range(60_000))  # 780 KB: does not fit beside filler
    accepted_before_full = 0
    with FileRotator(str(logs), BASE, 100, 1, errors.append, max_file_size_bytes=100_000) as r:
        pending = data
        for off in range(0, len(data), 65536):
            n = r.write(data[off:off + 65536])
            accepted_before_full += n
            if n < len(data[off:off + 65536]):
                pending = data[accepted_before_full:]
                break
        assert 0 < accepted_before_full < len(data)
        assert errors and errors[0].errno == errno.ENOSPC
        assert r.write(pending) == 0
        assert len(errors) == 1
        filler.unlink()
        write_all(r, pending, errors)
    assert joined(logs) == data


def test_lossless_through_a_pipe_with_a_real_process(tmp_path: Path) -> None:
    """A process prints numbered lines as fast as it can; a shim-like loop feeds the rotator with
    back-pressure. Every line is in the kept files exactly once, in order, none split."""
    count = 200_000
    prog = ("import sys\nw = sys.stdout.buffer.write\n"
            f"for i in range({count}): w(b'%d\\n' % i)\n")
    proc = subprocess.Popen([sys.executable, "-c", prog], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    with FileRotator(str(tmp_path), BASE, 1000, 1, max_file_size_bytes=40_000) as r:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            assert r.write(chunk) == len(chunk)
    assert proc.wait(timeout=30) == 0
    files = sorted(int(p.name.rsplit(".", 1)[1]) for p in tmp_path.iterdir())
    assert len(files) > 20
    for i in files[:-1]:
        assert (tmp_path / f"{BASE}.{i}").read_bytes().endswith(b"\n")
    assert joined(tmp_path).split(b"\n")[:-1] == [b"%d" % i for i in range(count)]
