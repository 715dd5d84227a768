"""FileRotator: Nomad's rotator catalogue (facts §8.6) plus the rules of issue 4."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawexec.errors import InvalidConfigError
from rawexec.logs import LINE_SCAN_LIMIT, FileRotator
from rawexec.logs.config import MB
from rawexec.logs.rotator import open_current
from tests.logs.conftest import open_fds

BASE = "redis.stdout"


def rot(d: Path, max_files: int = 10, size: int = 10, **kw: object) -> FileRotator:
    return FileRotator(str(d), BASE, max_files, 1, max_file_size_bytes=size, **kw)  # type: ignore[arg-type]


def content(d: Path, i: int, base: str = BASE) -> bytes:
    return (d / f"{base}.{i}").read_bytes()


def sizes(d: Path, base: str = BASE) -> dict[int, int]:
    out = {}
    for p in d.iterdir():
        if p.name.startswith(base + ".") and p.is_file():
            out[int(p.name.rsplit(".", 1)[1])] = p.stat().st_size
    return dict(sorted(out.items()))


def joined(d: Path, base: str = BASE) -> bytes:
    return b"".join(content(d, i, base) for i in sizes(d, base))


# ------------------------------------------------------------------ Nomad's catalogue

def test_incorrect_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No such file or directory"):
        rot(tmp_path / "foo")


def test_create_new_file(tmp_path: Path) -> None:
    with rot(tmp_path):
        assert (tmp_path / f"{BASE}.0").is_file()


def test_open_last_file(tmp_path: Path) -> None:
    (tmp_path / f"{BASE}.0").touch()
    (tmp_path / f"{BASE}.2").touch()
    with rot(tmp_path) as r:
        assert r.current_index == 2
        r.write(b"x")
    assert content(tmp_path, 2) == b"x"
    assert not (tmp_path / f"{BASE}.1").exists()


def test_write_to_current_file(tmp_path: Path) -> None:
    (tmp_path / f"{BASE}.0").touch()
    with rot(tmp_path, size=5) as r:
        assert r.write(b"abcde") == 5
    assert content(tmp_path, 0) == b"abcde"


def test_rotate_files(tmp_path: Path) -> None:
    with rot(tmp_path, size=5) as r:
        assert r.write(b"abcdefgh") == 8
    assert sizes(tmp_path) == {0: 5, 1: 3}
    assert content(tmp_path, 1) == b"fgh"


def test_rotate_files_boundary(tmp_path: Path) -> None:
    with rot(tmp_path, size=5) as r:
        for chunk in (b"ab\ncdef\n", b"1234567890", b"\n"):
            assert r.write(chunk) == len(chunk)
    assert [content(tmp_path, i) for i in range(5)] == [b"ab\n", b"cdef\n", b"12345", b"67890", b"\n"]
    assert sizes(tmp_path) == {0: 3, 1: 5, 2: 5, 3: 5, 4: 1}


def test_write_remaining(tmp_path: Path) -> None:
    (tmp_path / f"{BASE}.0").write_bytes(b"abcd")
    with rot(tmp_path, size=5) as r:
        assert r.write(b"efghijkl") == 8
    assert sizes(tmp_path) == {0: 5, 1: 5, 2: 2}
    assert joined(tmp_path) == b"abcdefghijkl"


def test_purge_old_files(tmp_path: Path) -> None:
    with rot(tmp_path, max_files=2, size=2) as r:
        assert r.write(b"abcdefghijklm") == 13
    assert sizes(tmp_path) == {5: 2, 6: 1}
    assert joined(tmp_path) == b"klm"


# ------------------------------------------------------------------ issue 4 rules

@pytest.mark.parametrize(("files", "size", "msg"), [
    (0, 10, "minimum number of files is 1; got 0"),
    (-3, 10, "minimum number of files is 1; got -3"),
    (10, 0, "minimum file size is 1MB; got 0"),
])
def test_bad_limits_rejected(tmp_path: Path, files: int, size: int, msg: str) -> None:
    with pytest.raises(InvalidConfigError, match=msg):
        FileRotator(str(tmp_path), BASE, files, size)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["", ".", "..", "a/b"])
def test_bad_base_name_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidConfigError, match="log base name"):
        FileRotator(str(tmp_path), name, 1, 1)


def test_megabyte_sizes_and_exact_boundary(tmp_path: Path) -> None:
    data = os.urandom(MB).replace(b"\n", b"x")  # 1 MiB with no newline, then one more
    with FileRotator(str(tmp_path), BASE, 5, 1) as r:
        assert r.write(data) == MB
        assert r.write(data[:10]) == 10
    assert sizes(tmp_path) == {0: MB, 1: 10}
    assert joined(tmp_path) == data + data[:10]


def test_one_megabyte_line_without_newline_in_pipe_chunks(tmp_path: Path) -> None:
    """A 1 MB line arriving in 64 KiB reads fills files to the size and goes on; no loss."""
    head = b"".join(b"line %d\n" % i for i in range(20_000))
    big = b"y" * MB
    stream = head + big + b"\nafter\n"
    with FileRotator(str(tmp_path), BASE, 50, 1) as r:
        for off in range(0, len(stream), 65536):
            chunk = stream[off:off + 65536]
            assert r.write(chunk) == len(chunk)
    got = sizes(tmp_path)
    assert joined(tmp_path) == stream
    assert all(s <= MB for s in got.values())
    # The long line began with plenty of room: it fills file 0 to the size and continues in 1.
    assert got == {0: MB, 1: len(stream) - MB}
    assert content(tmp_path, 1).endswith(b"y\nafter\n")


def test_binary_data_is_kept_byte_for_byte(tmp_path: Path) -> None:
    rng = random.Random(4)
    data = bytes(rng.getrandbits(8) for _ in range(300_000))
    with rot(tmp_path, max_files=100, size=64 * 1024) as r:
        for off in range(0, len(data), 7000):
            assert r.write(data[off:off + 7000]) == len(data[off:off + 7000])
    assert joined(tmp_path) == data
    assert max(sizes(tmp_path).values()) <= 64 * 1024


def test_memoryview_and_bytearray_accepted(tmp_path: Path) -> None:
    with rot(tmp_path, size=100) as r:
        assert r.write(memoryview(b"abc\n")) == 4
        assert r.write(bytearray(b"def\n")) == 4
        assert r.write(b"") == 0
    assert content(tmp_path, 0) == b"abc\ndef\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.integers(min_value=0, max_value=LINE_SCAN_LIMIT - 1), min_size=1, max_size=40),
       cuts=st.lists(st.integers(min_value=1, max_value=70_000), min_size=1, max_size=20),
       size=st.integers(min_value=LINE_SCAN_LIMIT + 1, max_value=300_000))
def test_lines_up_to_32k_never_split(tmp_path_factory: pytest.TempPathFactory, lines: list[int],
                                     cuts: list[int], size: int) -> None:
    """Whatever the chunking, every file but the last ends on a newline; no file exceeds the size."""
    d = tmp_path_factory.mktemp("prop")
    stream = b"".join(b"z" * n + b"\n" for n in lines)
    with FileRotator(str(d), BASE, 10_000, 1, max_file_size_bytes=size) as r:
        off, k = 0, 0
        while off < len(stream):
            n = cuts[k % len(cuts)]
            k += 1
            assert r.write(stream[off:off + n]) == len(stream[off:off + n])
            off += n
    got = sizes(d)
    assert joined(d) == stream
    assert all(s <= size for s in got.values())
    idx = list(got)
    for i in idx[:-1]:
        assert content(d, i).endswith(b"\n"), f"file {i} of {idx} ends mid-line"


def test_purge_keeps_newest_max_files(tmp_path: Path) -> None:
    line = b"0123456789abcdef\n"
    with rot(tmp_path, max_files=3, size=4 * len(line)) as r:
        for _ in range(40):
            r.write(line)
    got = sizes(tmp_path)
    assert list(got) == [7, 8, 9]
    assert joined(tmp_path) == line * 12


def test_resume_after_restart(tmp_path: Path) -> None:
    with rot(tmp_path, size=10) as r:
        r.write(b"aaaa\nbbbb\ncc\n")
        first_index = r.current_index
    assert first_index == 1
    with rot(tmp_path, size=10) as r2:
        assert r2.current_index == 1
        assert r2.current_size == 3
        r2.write(b"dd\n")
    assert content(tmp_path, 1) == b"cc\ndd\n"
    assert joined(tmp_path) == b"aaaa\nbbbb\ncc\ndd\n"


def test_open_current_then_opened_rotator_resumes_like_a_plain_one(tmp_path: Path) -> None:
    """The driver's half (open_current) and the shim's (opened=) make the same rotator as the
    constructor alone: highest index resumed, oldest index known, the fd owned by the rotator."""
    for i, data in ((2, b"old\n"), (5, b"0123"), (7, b"abc")):
        (tmp_path / f"{BASE}.{i}").write_bytes(data)
    fd, index, oldest = open_current(str(tmp_path), BASE, 10)
    assert (index, oldest) == (7, 2)
    with rot(tmp_path, size=10, opened=(fd, index, oldest)) as r:
        assert (r.current_index, r.current_size) == (7, 3)
        r.write(b"de\n")
    assert content(tmp_path, 7) == b"abcde\n"
    with pytest.raises(OSError):
        os.fstat(fd)  # the rotator owned and closed it
    (tmp_path / f"{BASE}.9").mkdir()  # the highest entry is not a regular file: the next index
    fd, index, oldest = open_current(str(tmp_path), BASE, 10)
    os.close(fd)
    assert (index, oldest) == (10, 2)


def test_open_current_on_an_empty_dir_starts_at_zero(tmp_path: Path) -> None:
    fd, index, oldest = open_current(str(tmp_path), BASE, 10)
    os.close(fd)
    assert (index, oldest) == (0, 0)
    assert content(tmp_path, 0) == b""


def test_resume_full_file_rotates_on_first_write(tmp_path: Path) -> None:
    (tmp_path / f"{BASE}.4").write_bytes(b"0123456789")
    with rot(tmp_path, size=10) as r:
        assert r.current_index == 4
        r.write(b"next\n")
    assert content(tmp_path, 5) == b"next\n"


def test_resume_mid_line_file_continues_the_line(tmp_path: Path) -> None:
    (tmp_path / f"{BASE}.0").write_bytes(b"partial")
    with rot(tmp_path, size=LINE_SCAN_LIMIT * 2) as r:
        r.write(b" line\n")
    assert content(tmp_path, 0) == b"partial line\n"


def test_next_index_skips_directories_symlinks_and_full_files(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"")
    with rot(tmp_path, size=10) as r:
        assert r.current_index == 0
        (tmp_path / f"{BASE}.1").mkdir()
        (tmp_path / f"{BASE}.2").write_bytes(b"0123456789")
        (tmp_path / f"{BASE}.3").symlink_to(victim)
        (tmp_path / f"{BASE}.4").write_bytes(b"01234")
        assert r.write(b"0123456789" + b"abc") == 13
        assert r.current_index == 4
    assert content(tmp_path, 0) == b"0123456789"
    assert content(tmp_path, 4) == b"01234abc"  # a file with room is appended to
    assert victim.read_bytes() == b""  # never written through a symlink


def test_highest_index_directory_is_skipped_at_start(tmp_path: Path) -> None:
    (tmp_path / f"{BASE}.0").write_bytes(b"x\n")
    (tmp_path / f"{BASE}.3").mkdir()
    with rot(tmp_path, size=10) as r:
        assert r.current_index == 4


def test_two_streams_rotate_independently(tmp_path: Path) -> None:
    with FileRotator(str(tmp_path), "web.stdout", 5, 1, max_file_size_bytes=4) as out, \
            FileRotator(str(tmp_path), "web.stderr", 5, 1, max_file_size_bytes=4) as err:
        out.write(b"abcdefgh")
        err.write(b"x")
    assert sizes(tmp_path, "web.stdout") == {0: 4, 1: 4}
    assert sizes(tmp_path, "web.stderr") == {0: 1}


def test_no_fd_leak_over_many_rotations(tmp_path: Path) -> None:
    before = open_fds()
    with rot(tmp_path, max_files=3, size=10) as r:
        for _ in range(200):
            r.write(b"0123456789")
    assert open_fds() == before


def test_write_after_close_is_an_error(tmp_path: Path) -> None:
    r = rot(tmp_path)
    r.close()
    r.close()
    with pytest.raises(ValueError, match="closed"):
        r.write(b"x")
    assert r.recover() is False


def test_logmon_rotate_one_mib_of_random_bytes(tmp_path: Path) -> None:
    """Nomad's TestLogmon_Start_rotate: 1 MiB of random bytes, 2 files of 1 MB -> .0 and .1, no .2."""
    data = os.urandom(MB)
    with FileRotator(str(tmp_path), "stdout", 2, 1) as r:
        for off in range(0, MB, 65536):
            assert r.write(data[off:off + 65536]) == 65536
    names = sorted(p.name for p in tmp_path.iterdir())
    # .1 exists unless the last random byte happened to be a newline (then all of it fits in .0)
    assert names == ["stdout.0", "stdout.1"] or (names == ["stdout.0"] and data.endswith(b"\n"))
    assert b"".join((tmp_path / n).read_bytes() for n in names) == data
