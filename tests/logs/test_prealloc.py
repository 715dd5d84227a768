"""FileRotator's reservation of the blocks ahead of a file it splices into (fallocate KEEP_SIZE):
the visible size never changes, the spare blocks are given back when the file is left or closed,
and a file system that cannot (or is nearly full) is simply written without one."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import rawexec.logs.rotator as rotator_mod
from rawexec.logs import LINE_SCAN_LIMIT, FileRotator

BASE = "web.stdout"
MiB = 1024 * 1024


def allocated(p: Path) -> int:
    return p.stat().st_blocks * 512


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(r, False)
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 256 * 1024)
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def can_reserve(tmp_path: Path) -> None:
    """Skip where this file system has no fallocate(KEEP_SIZE) or too little room for a reservation."""
    probe = tmp_path / "probe"
    fd = os.open(probe, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        rotator_mod._fallocate(fd, 1, 0, MiB)
        st = os.fstatvfs(fd)
    except OSError as exc:
        pytest.skip(f"no fallocate(KEEP_SIZE) here: {exc}")
    finally:
        os.close(fd)
        probe.unlink()
    if st.f_bavail * st.f_frsize < rotator_mod.PREALLOC_MIN_FREE:
        pytest.skip("too little free space for a reservation")


def pump(r: FileRotator, rd: int, wr: int, data: bytes) -> None:
    """Write ``data`` into the pipe piecewise and let ``r`` take all of it."""
    for off in range(0, len(data), 65_536):
        os.write(wr, data[off:off + 65_536])
        while True:
            try:
                n, refused = r.write_from(rd, MiB)
            except BlockingIOError:
                break
            assert refused == b""
            assert n > 0


def test_spliced_file_is_reserved_ahead_and_trimmed_on_close(tmp_path: Path, pipe: tuple[int, int],
                                                             can_reserve: None) -> None:
    rd, wr = pipe
    data = b"".join(b"line %07d\n" % i for i in range(100_000))  # 1.3 MB
    path = tmp_path / f"{BASE}.0"
    with FileRotator(str(tmp_path), BASE, 3, 50) as r:
        pump(r, rd, wr, data)
        assert r.current_size == len(data)
        assert path.stat().st_size == len(data)  # what readers see: exactly the bytes written
        assert allocated(path) >= max(len(data), rotator_mod.PREALLOC_AHEAD)  # reserved ahead
        assert path.read_bytes() == data
    assert path.stat().st_size == len(data)
    assert allocated(path) < len(data) + 64 * 1024
    assert path.read_bytes() == data


def test_reservation_stops_at_the_size_and_is_given_back_on_rotation(tmp_path: Path, pipe: tuple[int, int],
                                                                     can_reserve: None) -> None:
    rd, wr = pipe
    size = 2 * MiB
    line = b"q" * 99 + b"\n"
    data = line * (5 * size // len(line))  # 5 files' worth
    with FileRotator(str(tmp_path), BASE, 10, 1, max_file_size_bytes=size) as r:
        pump(r, rd, wr, data[:size // 2])
        current = tmp_path / f"{BASE}.0"
        assert size <= allocated(current) < size + 64 * 1024  # reserved up to the size, not past it
        pump(r, rd, wr, data[size // 2:])
        assert r.current_index >= 4
        for i in range(r.current_index):
            p = tmp_path / f"{BASE}.{i}"
            assert size - LINE_SCAN_LIMIT < p.stat().st_size <= size
            assert allocated(p) < p.stat().st_size + 64 * 1024  # left: spare blocks given back
            assert p.read_bytes().endswith(b"\n")
    assert b"".join((tmp_path / f"{BASE}.{i}").read_bytes() for i in range(r.current_index + 1)) == data


def test_no_reservation_on_a_nearly_full_file_system(tmp_path: Path, pipe: tuple[int, int],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(rotator_mod, "PREALLOC_MIN_FREE", 1 << 62)
    monkeypatch.setattr(rotator_mod, "_fallocate", lambda *a: calls.append(1))
    rd, wr = pipe
    data = b"x" * 99 + b"\n"
    with FileRotator(str(tmp_path), BASE, 3, 50) as r:
        pump(r, rd, wr, data * 20_000)
    assert calls == []
    assert (tmp_path / f"{BASE}.0").read_bytes() == data * 20_000


@pytest.mark.parametrize("err", [errno.EOPNOTSUPP, errno.ENOSPC])
def test_failed_reservation_only_costs_the_reservation(tmp_path: Path, pipe: tuple[int, int],
                                                       monkeypatch: pytest.MonkeyPatch, err: int) -> None:
    """Unsupported: never tried again. Disk full: tried again only PREALLOC_AHEAD later. The bytes
    are written either way and nothing is reported."""
    calls: list[tuple[int, int]] = []

    def failing(fd: int, mode: int, off: int, length: int) -> None:
        calls.append((off, length))
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(rotator_mod, "_fallocate", failing)
    monkeypatch.setattr(rotator_mod, "PREALLOC_MIN_FREE", 0)
    monkeypatch.setattr(rotator_mod, "PREALLOC_AHEAD", MiB)
    rd, wr = pipe
    errors: list[OSError] = []
    data = (b"y" * 999 + b"\n") * 4000  # 4 MB
    with FileRotator(str(tmp_path), BASE, 3, 50, errors.append) as r:
        pump(r, rd, wr, data)
        assert r.healthy
    assert errors == []
    assert (tmp_path / f"{BASE}.0").read_bytes() == data
    if err == errno.EOPNOTSUPP:
        assert len(calls) == 1
    else:
        assert 3 <= len(calls) <= 5  # about one per MiB
        assert all(length <= 2 * MiB for _off, length in calls)


def test_spare_blocks_of_an_ended_writer_are_given_back_when_the_file_is_left(
        tmp_path: Path, pipe: tuple[int, int], can_reserve: None) -> None:
    """A writer killed while holding a reservation: its successor resumes the file and trims it
    when it rotates out of it."""
    size = 2 * MiB
    path = tmp_path / f"{BASE}.0"
    path.write_bytes(b"old\n" * 1000)
    fd = os.open(path, os.O_RDWR)
    try:
        rotator_mod._fallocate(fd, 1, 4000, size - 4000)
    finally:
        os.close(fd)
    assert allocated(path) >= size - 4096
    rd, wr = pipe
    data = (b"n" * 99 + b"\n") * (size // 100)
    with FileRotator(str(tmp_path), BASE, 10, 1, max_file_size_bytes=size) as r:
        assert r.current_index == 0 and r.current_size == 4000  # resumed
        pump(r, rd, wr, data)
        assert r.current_index == 1
    assert allocated(path) < path.stat().st_size + 64 * 1024
    assert path.read_bytes().startswith(b"old\n" * 1000)


def test_a_quiet_stream_reserves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(rotator_mod, "_fallocate", lambda *a: calls.append(1))
    with FileRotator(str(tmp_path), BASE, 3, 50) as r:
        for i in range(1000):
            assert r.write(b"line %d\n" % i) > 0
    assert calls == []


def test_spare_blocks_are_given_back_at_the_end_of_the_input(tmp_path: Path, pipe: tuple[int, int],
                                                             can_reserve: None) -> None:
    """The task closed its output: nothing more will come, the reservation goes at once (not only
    when the shim closes the rotator)."""
    rd, wr = pipe
    data = b"z" * 99 + b"\n"
    path = tmp_path / f"{BASE}.0"
    with FileRotator(str(tmp_path), BASE, 3, 50) as r:
        pump(r, rd, wr, data * 10_000)
        assert allocated(path) >= rotator_mod.PREALLOC_AHEAD
        os.close(wr)
        assert r.write_from(rd, MiB) == (0, b"")
        assert allocated(path) < len(data) * 10_000 + 64 * 1024
        assert r.write(b"more\n") == 5  # still writable
    assert path.read_bytes() == data * 10_000 + b"more\n"
