"""FileRotator.write_from: the shim's pipe -> log file path (splice(2) far from the size boundary,
read + write near it). Same files, same rules, same failure handling as ``write``."""

from __future__ import annotations

import errno
import fcntl
import os
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rawexec.logs.rotator as rotator_mod
from rawexec.logs import LINE_SCAN_LIMIT, FileRotator
from tests.logs.conftest import Mounts, open_fds

BASE = "web.stdout"


def sizes(d: Path, base: str = BASE) -> dict[int, int]:
    idx = sorted(int(p.name.rsplit(".", 1)[1]) for p in d.iterdir() if p.name.startswith(base + "."))
    return {i: (d / f"{base}.{i}").stat().st_size for i in idx}


def joined(d: Path, base: str = BASE) -> bytes:
    return b"".join((d / f"{base}.{i}").read_bytes() for i in sizes(d, base))


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(r, False)
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 256 * 1024)
    fds = {r, w}
    yield r, w
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class Counts:
    """Counts the splice(2) calls the rotator makes (wraps ``rotator._splice``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.into_files = 0  # bytes spliced into log files
        real = rotator_mod._splice

        def counting(*a: object, **kw: object) -> int:
            self.calls += 1
            n = real(*a, **kw)  # type: ignore[arg-type]
            if "offset_dst" in kw:
                self.into_files += n
            return n

        monkeypatch.setattr(rotator_mod, "_splice", counting)


def warm(r: FileRotator, rd: int, wr: int, chunk: bytes = b"z" * 65_536) -> bytes:
    """Show the rotator a busy stream: one full read of 64 KiB (read + write); later calls splice."""
    os.write(wr, chunk)
    assert r.write_from(rd, 1 << 20) == (len(chunk), b"")
    return chunk


def pump_available(r: FileRotator, fd: int, limit: int = 1 << 20) -> int:
    """Feed ``r`` from ``fd`` until the pipe is empty (or at EOF); returns the bytes taken."""
    taken = 0
    while True:
        try:
            n, refused = r.write_from(fd, limit)
        except BlockingIOError:
            return taken
        assert refused == b""
        if n == 0:
            return taken
        taken += n


def test_far_from_boundary_bytes_are_spliced(tmp_path: Path, pipe: tuple[int, int],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    counts = Counts(monkeypatch)
    rd, wr = pipe
    data = b"".join(b"line %05d\n" % i for i in range(5000))  # 55 KB
    with FileRotator(str(tmp_path), BASE, 3, 1) as r:
        first = warm(r, rd, wr)
        assert counts.calls == 0  # that one was read and written
        os.write(wr, data)
        assert pump_available(r, rd) == len(data)
        assert r.current_size == len(first) + len(data)
        with pytest.raises(BlockingIOError):
            r.write_from(rd, 1 << 20)
        os.close(wr)
        assert r.write_from(rd, 1 << 20) == (0, b"")  # end of input
    assert counts.calls >= 2  # pipe -> relay, relay -> file
    assert counts.into_files == len(data)
    assert (tmp_path / f"{BASE}.0").read_bytes() == first + data


def test_a_quiet_stream_is_read_and_written(tmp_path: Path, pipe: tuple[int, int],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Small writes never cost a relay pipe (nor splice calls)."""
    counts = Counts(monkeypatch)
    rd, wr = pipe
    before = open_fds()
    with FileRotator(str(tmp_path), BASE, 3, 1) as r:
        for i in range(200):
            os.write(wr, b"line %d\n" % i * (i % 50 + 1))
            pump_available(r, rd)
        assert len(open_fds() - before) == 1  # the log file, no relay pipe
    assert counts.calls == 0
    assert (tmp_path / f"{BASE}.0").read_bytes() == b"".join(b"line %d\n" % i * (i % 50 + 1) for i in range(200))


def test_limit_is_respected(tmp_path: Path, pipe: tuple[int, int]) -> None:
    rd, wr = pipe
    with FileRotator(str(tmp_path), BASE, 3, 1) as r:
        os.write(wr, b"x" * 80_000)
        assert r.write_from(rd, 70_000) == (65_536, b"")  # read + write: a quiet stream's first read is 64 KiB
        assert r.write_from(rd, 4096) == (4096, b"")  # busy now: spliced
        assert r.write_from(rd, 1000) == (1000, b"")
        assert r.current_size == 70_632
        assert os.read(rd, 20_000) == b"x" * (80_000 - 70_632)


def test_numbered_lines_from_a_process_rotate_like_write(tmp_path: Path) -> None:
    """A process prints numbered lines as fast as it can; every file but the last ends on a newline,
    none exceeds the size, each is filled to the boundary zone, and the lines are all there in order.
    (Spliced or read: that depends on whether the reader keeps up.)"""
    count = 300_000
    prog = ("import sys\nw = sys.stdout.buffer.write\n"
            f"for i in range({count}): w(b'%d\\n' % i)\n")
    proc = subprocess.Popen([sys.executable, "-c", prog], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 256 * 1024)  # bigger than a file: near the end, read what fits
    size = 3 * LINE_SCAN_LIMIT
    with FileRotator(str(tmp_path), BASE, 10_000, 1, max_file_size_bytes=size) as r:
        while True:
            select.select([fd], [], [])
            try:
                n, refused = r.write_from(fd, 1 << 20)
            except BlockingIOError:
                continue
            assert refused == b""
            if n == 0:
                break
    assert proc.wait(timeout=30) == 0
    got = sizes(tmp_path)
    assert len(got) > 20
    assert all(s <= size for s in got.values())
    for i in list(got)[:-1]:
        assert (tmp_path / f"{BASE}.{i}").read_bytes().endswith(b"\n")
        assert got[i] > size - LINE_SCAN_LIMIT - 8  # rotated at the boundary, not early
    assert joined(tmp_path).split(b"\n")[:-1] == [b"%d" % i for i in range(count)]


def test_each_file_is_spliced_up_to_its_boundary_zone(tmp_path: Path, pipe: tuple[int, int],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Near the end only what fits the file is read: the next file is spliced again."""
    counts = Counts(monkeypatch)
    rd, wr = pipe
    data = b"".join(b"%d\n" % i for i in range(400_000))
    size = 3 * LINE_SCAN_LIMIT
    with FileRotator(str(tmp_path), BASE, 10_000, 1, max_file_size_bytes=size) as r:
        for off in range(0, len(data), 65536):
            os.write(wr, data[off:off + 65536])
            pump_available(r, rd)
    got = sizes(tmp_path)
    assert len(got) > 20
    assert joined(tmp_path) == data
    for i in list(got)[:-1]:
        assert (tmp_path / f"{BASE}.{i}").read_bytes().endswith(b"\n")
        assert size - LINE_SCAN_LIMIT < got[i] <= size
    # All but the boundary zone of each file (1/3 of it here) was spliced.
    assert counts.into_files > 0.6 * len(data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.integers(min_value=0, max_value=LINE_SCAN_LIMIT - 1), min_size=1, max_size=40),
       cuts=st.lists(st.integers(min_value=1, max_value=65_536), min_size=1, max_size=20),
       limits=st.lists(st.integers(min_value=1, max_value=200_000), min_size=1, max_size=5),
       size=st.integers(min_value=LINE_SCAN_LIMIT + 1, max_value=300_000))
def test_lines_up_to_32k_never_split(tmp_path_factory: pytest.TempPathFactory, lines: list[int],
                                     cuts: list[int], limits: list[int], size: int) -> None:
    """Whatever the chunking and the limits, the rules of ``write`` hold for ``write_from``."""
    d = tmp_path_factory.mktemp("prop")
    stream = b"".join(b"z" * n + b"\n" for n in lines)
    rd, wr = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        with FileRotator(str(d), BASE, 10_000, 1, max_file_size_bytes=size) as r:
            off, k = 0, 0
            while off < len(stream):
                n = cuts[k % len(cuts)]
                chunk = stream[off:off + n]
                while chunk:
                    try:
                        chunk = chunk[os.write(wr, chunk):]
                    except BlockingIOError:
                        pass
                    while True:
                        try:
                            got, refused = r.write_from(rd, limits[k % len(limits)])
                        except BlockingIOError:
                            break
                        assert got > 0
                        assert refused == b""
                k += 1
                off += n
    finally:
        os.close(rd)
        os.close(wr)
    got_sizes = sizes(d)
    assert joined(d) == stream
    assert all(s <= size for s in got_sizes.values())
    idx = list(got_sizes)
    for i in idx[:-1]:
        assert (d / f"{BASE}.{i}").read_bytes().endswith(b"\n"), f"file {i} of {idx} ends mid-line"


def test_last_byte_of_spliced_data_decides_near_the_end(tmp_path: Path, pipe: tuple[int, int]) -> None:
    """Spliced bytes are never seen by the rotator; near the end it looks at the file's last byte:
    continuing a line fills the file, a new line that does not fit starts the next file."""
    rd, wr = pipe
    long_line = b"y" * (LINE_SCAN_LIMIT + 10) + b"\n"
    first = b"a" * 65_535 + b"\n"  # one full first read: the stream counts as busy
    size = len(first) + 1000 + LINE_SCAN_LIMIT
    for ending, expect in ((b"x", size), (b"\n", len(first) + 1000)):
        d = tmp_path / repr(ending)
        d.mkdir()
        with FileRotator(str(d), BASE, 10, 1, max_file_size_bytes=size) as r:
            warm(r, rd, wr, first)
            os.write(wr, b"b" * 999 + ending)
            assert r.write_from(rd, 1 << 20) == (1000, b"")  # spliced: unseen
            assert r.write(long_line) == len(long_line)
        assert sizes(d)[0] == expect
        assert joined(d) == first + b"b" * 999 + ending + long_line


def test_full_file_rotates_only_when_bytes_come(tmp_path: Path, pipe: tuple[int, int],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    counts = Counts(monkeypatch)
    rd, wr = pipe
    size = LINE_SCAN_LIMIT * 4
    with FileRotator(str(tmp_path), BASE, 10, 1, max_file_size_bytes=size) as r:
        first = warm(r, rd, wr)
        assert r.write(b"z" * (size - len(first))) == size - len(first)  # no newline: filled exactly
        assert r.current_index == 0
        with pytest.raises(BlockingIOError):
            r.write_from(rd, 1 << 20)
        assert r.current_index == 0  # nothing came: no new file
        os.write(wr, b"next\n")
        assert r.write_from(rd, 1 << 20) == (5, b"")
        assert r.current_index == 1
        os.close(wr)
        assert r.write_from(rd, 1 << 20) == (0, b"")
    assert counts.into_files == 5
    assert sizes(tmp_path) == {0: size, 1: 5}


def test_tiny_files_are_read_and_written(tmp_path: Path, pipe: tuple[int, int],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    counts = Counts(monkeypatch)
    rd, wr = pipe
    data = b"ab\ncd\nef\n" * 10
    os.write(wr, data)
    with FileRotator(str(tmp_path), BASE, 100, 1, max_file_size_bytes=7) as r:
        assert pump_available(r, rd) == len(data)
    assert counts.calls == 0
    assert joined(tmp_path) == data
    assert all(s == 6 for s in sizes(tmp_path).values())


def test_log_dir_deleted_under_write_from_is_recreated(tmp_path: Path, pipe: tuple[int, int]) -> None:
    """Bytes spliced into a deleted file are read back and written into the recreated one."""
    rd, wr = pipe
    logs = tmp_path / "logs"
    logs.mkdir()
    errors: list[OSError] = []
    with FileRotator(str(logs), BASE, 5, 1, errors.append) as r:
        warm(r, rd, wr)
        shutil.rmtree(logs)
        os.write(wr, b"after\n" * 1000)
        assert r.write_from(rd, 1 << 20) == (6000, b"")
        assert r.healthy
        os.write(wr, b"later\n" * 1000)
        assert r.write_from(rd, 1 << 20) == (6000, b"")
    assert [e.errno for e in errors] == [errno.ENOENT]
    assert joined(logs) == b"after\n" * 1000 + b"later\n" * 1000


def test_deleted_dir_that_cannot_be_recreated_refuses_the_bytes(tmp_path: Path, pipe: tuple[int, int]) -> None:
    rd, wr = pipe
    logs = tmp_path / "p" / "logs"
    logs.mkdir(parents=True)
    errors: list[OSError] = []
    with FileRotator(str(logs), BASE, 5, 1, errors.append) as r:
        warm(r, rd, wr)
        shutil.rmtree(tmp_path / "p")
        os.write(wr, b"kept by the caller\n")
        assert r.write_from(rd, 1 << 20) == (19, b"kept by the caller\n")
        assert not r.healthy and r.retry_delay > 0
        assert r.write(b"kept by the caller\n") == 0
    assert [e.errno for e in errors] == [errno.ENOENT]
    assert not (tmp_path / "p").exists()


@pytest.mark.root
def test_full_disk_refuses_then_resumes_without_loss_or_duplication(tmp_path: Path, mounts: Mounts) -> None:
    mnt = mounts.tmpfs(tmp_path / "small", "1m")
    logs = mnt / "logs"
    logs.mkdir()
    filler = mnt / "filler"
    filler.write_bytes(b"\0" * (600 * 1024))
    errors: list[OSError] = []
    data = b"".join(b"line %07d\n" % i for i in range(60_000))  # 780 KB: does not fit beside filler
    rd, wr = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(rd, False)
    try:
        with FileRotator(str(logs), BASE, 100, 1, errors.append, max_file_size_bytes=200_000) as r:
            off = 0
            pending = b""
            while not pending:
                assert off < len(data)
                off += os.write(wr, data[off:off + 65536])
                while not pending:
                    try:
                        _n, pending = r.write_from(rd, 1 << 20)
                    except BlockingIOError:
                        break
            assert errors and errors[0].errno == errno.ENOSPC
            assert r.write(pending) == 0
            assert len(errors) == 1
            filler.unlink()
            assert r.write(pending) == len(pending)
            os.set_blocking(wr, True)
            while off < len(data):
                off += os.write(wr, data[off:off + 65536])
                assert pump_available(r, rd) > 0
    finally:
        os.close(rd)
        os.close(wr)
    assert joined(logs) == data


def test_splice_refused_by_the_file_falls_back_to_copying(tmp_path: Path, pipe: tuple[int, int],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system without splice(2) support: the bytes already in the relay are written the
    ordinary way, and later calls read + write."""
    real = rotator_mod._splice
    calls: list[int] = []

    def no_splice_into_files(src: int, dst: int, count: int, *a: object, **kw: object) -> int:
        calls.append(dst)
        if "offset_dst" in kw:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(src, dst, count, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(rotator_mod, "_splice", no_splice_into_files)
    rd, wr = pipe
    errors: list[OSError] = []
    with FileRotator(str(tmp_path), BASE, 5, 1, errors.append) as r:
        first = warm(r, rd, wr)
        os.write(wr, b"one\n")
        assert r.write_from(rd, 1 << 20) == (4, b"")
        n_calls = len(calls)
        assert n_calls == 2  # into the relay; the file refused
        os.write(wr, b"two\n")
        assert r.write_from(rd, 1 << 20) == (4, b"")
        assert len(calls) == n_calls  # no more attempts
        assert r.healthy
    assert errors == []
    assert joined(tmp_path) == first + b"one\ntwo\n"


def test_no_fd_leak_over_many_rotations(tmp_path: Path, pipe: tuple[int, int]) -> None:
    rd, wr = pipe
    before = open_fds()
    size = LINE_SCAN_LIMIT + 140_000
    with FileRotator(str(tmp_path), BASE, 3, 1, max_file_size_bytes=size) as r:
        for _ in range(50):
            os.write(wr, b"z" * (size // 2) + b"\n")
            pump_available(r, rd)
        assert len(open_fds() - before) == 4  # the file twice (splice needs it without O_APPEND), the relay
    assert open_fds() == before
    assert len(sizes(tmp_path)) == 3


def test_write_from_after_close_is_an_error(tmp_path: Path, pipe: tuple[int, int]) -> None:
    r = FileRotator(str(tmp_path), BASE, 3, 1)
    r.close()
    with pytest.raises(ValueError, match="closed"):
        r.write_from(pipe[0], 100)


def test_full_file_then_a_partly_filled_next_file(tmp_path: Path, pipe: tuple[int, int],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Rotating out of a full file into an existing one with little room left: what was already
    taken from the pipe goes through the boundary rules, never past the size."""
    counts = Counts(monkeypatch)
    rd, wr = pipe
    size = LINE_SCAN_LIMIT * 4
    with FileRotator(str(tmp_path), BASE, 10, 1, max_file_size_bytes=size) as r:
        first = warm(r, rd, wr)
        assert r.write(b"z" * (size - len(first))) == size - len(first)  # .0 is full
        (tmp_path / f"{BASE}.1").write_bytes(b"q" * (size - 100) + b"\n")
        data = b"".join(b"%05d\n" % i for i in range(2000))
        os.write(wr, data)
        assert pump_available(r, rd) == len(data)
        assert counts.calls > 0 and counts.into_files == 0  # taken into the relay, written by the rules
    got = sizes(tmp_path)
    assert len(got) > 2
    assert all(s <= size for s in got.values())
    assert (tmp_path / f"{BASE}.1").read_bytes().endswith(b"\n")
    assert joined(tmp_path) == b"z" * size + b"q" * (size - 100) + b"\n" + data
