"""Reading logs back: all, tail -n / -c, follow across rotation and purge, Nomad's stream frames."""

from __future__ import annotations

import base64
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rawexec.errors import InvalidConfigError
from rawexec.logs import (
    FileRotator,
    LogPosition,
    follow_logs,
    list_log_files,
    read_logs,
    stream_frames,
    tail_bytes,
    tail_lines,
)
from rawexec.logs.reader import position_at, position_for_tail_lines
from tests.logs.conftest import wait_until

TASK = "web"


def populate(d: Path, data: bytes, size: int = 10, max_files: int = 100, stream: str = "stdout") -> None:
    with FileRotator(str(d), f"{TASK}.{stream}", max_files, 1, max_file_size_bytes=size) as r:
        assert r.write(data) == len(data)


def test_list_and_read_all_in_index_order(tmp_path: Path) -> None:
    data = b"".join(b"%d\n" % i for i in range(30))
    populate(tmp_path, data)
    populate(tmp_path, b"err\n", stream="stderr")
    files = list_log_files(str(tmp_path), TASK, "stdout")
    assert [f.index for f in files] == list(range(len(files)))
    assert len(files) > 5
    assert b"".join(read_logs(str(tmp_path), TASK, "stdout")) == data
    assert b"".join(read_logs(str(tmp_path), TASK, "stderr")) == b"err\n"


def test_gaps_and_non_files_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "web.stdout.0").write_bytes(b"a\n")
    (tmp_path / "web.stdout.3").write_bytes(b"b\n")
    (tmp_path / "web.stdout.5").mkdir()
    (tmp_path / "web.stdout.x").write_bytes(b"not a log\n")
    (tmp_path / "web.stdout.12").write_bytes(b"c\n")
    assert [f.index for f in list_log_files(str(tmp_path), TASK, "stdout")] == [0, 3, 12]
    assert b"".join(read_logs(str(tmp_path), TASK, "stdout")) == b"a\nb\nc\n"


def test_missing_dir_reads_empty(tmp_path: Path) -> None:
    assert b"".join(read_logs(str(tmp_path / "none"), TASK, "stdout")) == b""
    assert tail_lines(str(tmp_path / "none"), TASK, "stdout", 5) == b""


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="log type must be 'stdout' or 'stderr'"):
        list_log_files(str(tmp_path), TASK, "stdin")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match="origin must be 'start' or 'end'"):
        position_at(str(tmp_path), TASK, "stdout", "middle", 0)  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match="offset must be a non-negative integer"):
        position_at(str(tmp_path), TASK, "stdout", "start", -1)
    with pytest.raises(InvalidConfigError, match="lines must be a non-negative integer"):
        tail_lines(str(tmp_path), TASK, "stdout", -2)


def test_offsets_span_files(tmp_path: Path) -> None:
    data = bytes(range(256)).replace(b"\n", b"") * 3  # binary, no newline: 765 bytes, 77 files of 10
    populate(tmp_path, data)
    d = str(tmp_path)
    for off in (0, 1, 9, 10, 11, 333, 764, 765, 5000):
        assert b"".join(read_logs(d, TASK, "stdout", origin="start", offset=off)) == data[off:]
        assert b"".join(read_logs(d, TASK, "stdout", origin="end", offset=off)) == data[max(0, 765 - off):]
    assert position_at(d, TASK, "stdout", "start", 25) == LogPosition(2, 5)
    assert position_at(d, TASK, "stdout", "end", 0) == LogPosition(76, 5)
    assert position_at(d, TASK, "stdout", "end", 7) == LogPosition(75, 8)


@pytest.mark.parametrize("n", [0, 1, 2, 5, 29, 30, 31, 100])
def test_tail_lines_matches_tail_n(tmp_path: Path, n: int) -> None:
    lines = [b"line %d" % i for i in range(30)]
    data = b"\n".join(lines) + b"\n"
    populate(tmp_path, data, size=64)
    expected = b"".join(line + b"\n" for line in lines[max(0, len(lines) - n):]) if n else b""
    assert tail_lines(str(tmp_path), TASK, "stdout", n) == expected


def test_tail_lines_with_unterminated_last_line_and_long_lines(tmp_path: Path) -> None:
    long = b"L" * 200_000
    data = b"first\n" + long + b"\nsecond\nthird-partial"
    populate(tmp_path, data, size=70_000)
    d = str(tmp_path)
    assert tail_lines(d, TASK, "stdout", 1) == b"third-partial"
    assert tail_lines(d, TASK, "stdout", 2) == b"second\nthird-partial"
    assert tail_lines(d, TASK, "stdout", 3) == long + b"\nsecond\nthird-partial"
    assert tail_lines(d, TASK, "stdout", 4) == data
    assert tail_lines(d, TASK, "stdout", 40) == data


def test_tail_bytes(tmp_path: Path) -> None:
    data = b"".join(b"%03d\n" % i for i in range(100))
    populate(tmp_path, data, size=37)
    assert tail_bytes(str(tmp_path), TASK, "stdout", 0) == b""
    assert tail_bytes(str(tmp_path), TASK, "stdout", 13) == data[-13:]
    assert tail_bytes(str(tmp_path), TASK, "stdout", 10_000) == data


def _collect(it: Iterator[bytes], out: list[bytes]) -> threading.Thread:
    t = threading.Thread(target=lambda: out.extend(it), daemon=True)
    t.start()
    return t


def test_follow_across_rotations(tmp_path: Path) -> None:
    d = str(tmp_path)
    stop = threading.Event()
    got: list[bytes] = []
    expected = b""
    with FileRotator(d, "web.stdout", 1000, 1, max_file_size_bytes=50) as r:
        r.write(b"already here\n")
        expected += b"already here\n"
        t = _collect(follow_logs(d, TASK, "stdout", stop=stop.is_set, poll_interval=0.005), got)
        wait_until(lambda: b"".join(got) == expected)
        for i in range(300):
            line = b"follow %d\n" % i
            r.write(line)
            expected += line
        assert r.current_index > 20
        wait_until(lambda: b"".join(got) == expected)
    stop.set()
    t.join(5)
    assert not t.is_alive()
    assert b"".join(got) == expected


def test_follow_from_tail_position(tmp_path: Path) -> None:
    d = str(tmp_path)
    populate(tmp_path, b"a\nb\nc\nd\n", size=4)
    start = position_for_tail_lines(d, TASK, "stdout", 2)
    stop = threading.Event()
    got: list[bytes] = []
    t = _collect(follow_logs(d, TASK, "stdout", start=start, stop=stop.is_set, poll_interval=0.005), got)
    wait_until(lambda: b"".join(got) == b"c\nd\n")
    populate(tmp_path, b"e\n", size=4)  # a restarted writer resumes the highest index
    wait_until(lambda: b"".join(got) == b"c\nd\ne\n")
    stop.set()
    t.join(5)


def test_follow_survives_purge_and_skips_to_kept_files(tmp_path: Path) -> None:
    d = str(tmp_path)
    with FileRotator(d, "web.stdout", 3, 1, max_file_size_bytes=10) as r:
        r.write(b"aaaaaaaaa\n")  # file 0
        gen = follow_logs(d, TASK, "stdout", stop=lambda: True, poll_interval=0.001)
        first = next(gen)  # the follower holds file 0 open
        assert first == b"aaaaaaaaa\n"
        for c in b"bcdefg":
            r.write(bytes([c]) * 9 + b"\n")  # files 1..6; 0..3 purged
        assert [f.index for f in list_log_files(d, TASK, "stdout")] == [4, 5, 6]
        rest = b"".join(gen)
    assert rest == b"eeeeeeeee\nfffffffff\nggggggggg\n"


def test_follow_after_log_dir_recreated(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    d = str(logs)
    stop = threading.Event()
    got: list[bytes] = []
    with FileRotator(d, "web.stdout", 10, 1, max_file_size_bytes=1000) as r:
        r.write(b"one\n")
        t = _collect(follow_logs(d, TASK, "stdout", stop=stop.is_set, poll_interval=0.005), got)
        wait_until(lambda: b"".join(got) == b"one\n")
        shutil.rmtree(logs)
        r.write(b"two\n")  # the rotator recreates the dir and the file at the same index
        wait_until(lambda: b"".join(got) == b"one\ntwo\n")
    stop.set()
    t.join(5)


def test_follow_skips_a_directory_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "web.stdout.0").mkdir()
    stop = threading.Event()
    got: list[bytes] = []
    t = _collect(follow_logs(str(tmp_path), TASK, "stdout", stop=stop.is_set, poll_interval=0.005), got)
    populate(tmp_path, b"after the dir\n", size=100)  # the rotator skips index 0, writes 1
    wait_until(lambda: b"".join(got) == b"after the dir\n")
    stop.set()
    t.join(5)
    assert not t.is_alive()


def test_follow_waits_for_first_file(tmp_path: Path) -> None:
    d = str(tmp_path)
    stop = threading.Event()
    got: list[bytes] = []
    t = _collect(follow_logs(d, TASK, "stdout", stop=stop.is_set, poll_interval=0.005), got)
    populate(tmp_path, b"hello\n", size=100)
    wait_until(lambda: b"".join(got) == b"hello\n")
    stop.set()
    t.join(5)
    assert not t.is_alive()


def test_stream_frames_offsets_and_json(tmp_path: Path) -> None:
    data = b"0123456789" * 5
    populate(tmp_path, data, size=20)  # files 0, 1 (20 bytes), 2 (10)
    frames = list(stream_frames(str(tmp_path), TASK, "stdout"))
    assert [(f.file, f.offset, f.data) for f in frames] == [
        ("alloc/logs/web.stdout.0", 20, data[:20]),
        ("alloc/logs/web.stdout.1", 20, data[20:40]),
        ("alloc/logs/web.stdout.2", 10, data[40:]),
    ]
    j = frames[0].to_dict()
    assert j == {"Offset": 20, "Data": base64.b64encode(data[:20]).decode(), "File": "alloc/logs/web.stdout.0"}
    tail = list(stream_frames(str(tmp_path), TASK, "stdout", origin="end", offset=15, frame_size=4))
    assert b"".join(f.data for f in tail) == data[-15:]
    assert (tail[0].file, tail[0].offset) == ("alloc/logs/web.stdout.1", 19)
    assert tail[-1].offset == 10


def test_stream_frames_follow_with_heartbeats(tmp_path: Path) -> None:
    populate(tmp_path, b"x\n", size=100)
    beats = 0
    out = b""
    gen = stream_frames(str(tmp_path), TASK, "stdout", follow=True, poll_interval=0.005,
                        heartbeat_interval=0.02)
    for frame in gen:
        if frame.is_heartbeat:
            assert frame.to_dict() == {}
            beats += 1
            if beats == 1:
                populate(tmp_path, b"y\n", size=100)
            if beats == 3:
                break
        else:
            out += frame.data
    gen.close()
    assert out == b"x\ny\n"
