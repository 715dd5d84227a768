"""FifoWriter: FIFO mode as Nomad's client uses it (stdout_path/stderr_path)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from rawexec.logs import FifoWriter, fifo_path
from tests.logs.conftest import open_fds


def make_fifo(p: Path) -> Path:
    os.mkfifo(p, 0o600)
    return p


def read_nb(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def test_nomad_fifo_path(tmp_path: Path) -> None:
    assert fifo_path(str(tmp_path), "web", "stdout") == str(tmp_path / "alloc" / "logs" / ".web.stdout.fifo")


def test_writes_reach_the_reader(tmp_path: Path) -> None:
    p = make_fifo(tmp_path / "out.fifo")
    rfd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with FifoWriter(str(p)) as w:
            assert w.healthy
            assert w.write(b"hello\n") == 6
            assert w.write(memoryview(b"\xff\x00bin")) == 5
            assert read_nb(rfd) == b"hello\n\xff\x00bin"
    finally:
        os.close(rfd)


def test_missing_fifo_is_retried_until_it_exists(tmp_path: Path) -> None:
    p = tmp_path / "late.fifo"
    errors: list[OSError] = []
    with FifoWriter(str(p), errors.append) as w:
        assert w.write(b"x") == 0
        assert w.write(b"x") == 0
        assert [e.errno for e in errors] == [errno.ENOENT]
        assert w.retry_delay > 0 and not w.healthy
        make_fifo(p)
        rfd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        try:
            assert w.write(b"x") == 1
            assert w.healthy and w.retry_delay == 0
            assert read_nb(rfd) == b"x"
        finally:
            os.close(rfd)


def test_wronly_mode_waits_for_a_reader_and_reopens_after_epipe(tmp_path: Path) -> None:
    p = make_fifo(tmp_path / "out.fifo")
    errors: list[OSError] = []
    with FifoWriter(str(p), errors.append, hold_open=False) as w:
        assert w.write(b"early") == 0  # no reader yet: ENXIO, refused (the caller keeps it)
        assert [e.errno for e in errors] == [errno.ENXIO]
        rfd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        assert w.write(b"early") == 5
        assert read_nb(rfd) == b"early"
        os.close(rfd)  # the reader (Nomad's logmon) goes away
        assert w.write(b"lost?") == 0  # EPIPE: refused, not dropped
        assert errors[-1].errno == errno.EPIPE
        rfd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)  # logmon restarted
        try:
            assert w.write(b"lost?") == 5
            assert read_nb(rfd) == b"lost?"
        finally:
            os.close(rfd)


def test_hold_open_keeps_bytes_while_the_reader_restarts(tmp_path: Path) -> None:
    p = make_fifo(tmp_path / "out.fifo")
    errors: list[OSError] = []
    with FifoWriter(str(p), errors.append) as w:
        assert w.write(b"no reader yet\n") == 14  # buffered in the pipe
        rfd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        assert read_nb(rfd) == b"no reader yet\n"
        os.close(rfd)
        assert w.write(b"while restarting\n") == 17
        assert w.pending() == 17
        rfd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        try:
            assert read_nb(rfd) == b"while restarting\n"
        finally:
            os.close(rfd)
    assert errors == []


def test_full_pipe_refuses_and_exposes_fd_for_writability(tmp_path: Path) -> None:
    import select

    p = make_fifo(tmp_path / "out.fifo")
    rfd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with FifoWriter(str(p)) as w:
            data = os.urandom(1 << 20)
            n = w.write(data)
            assert 0 < n < len(data)
            assert w.blocked and w.retry_delay == 0
            fd = w.fileno()
            assert fd is not None
            got = read_nb(rfd)
            assert got == data[:n]
            _, ready, _ = select.select([], [fd], [], 5)
            assert ready == [fd]
            rest = data[n:]
            received = got
            while rest:
                k = w.write(rest)
                rest = rest[k:]
                received += read_nb(rfd)
            received += read_nb(rfd)
            assert received == data
    finally:
        os.close(rfd)


def test_replaced_fifo_is_reopened(tmp_path: Path) -> None:
    p = make_fifo(tmp_path / "out.fifo")
    with FifoWriter(str(p), recheck_interval=0.0) as w:
        assert w.write(b"a") == 1
        os.unlink(p)
        make_fifo(p)  # a restarted reader recreated the FIFO
        rfd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        try:
            assert w.write(b"b") == 1
            assert read_nb(rfd) == b"b"
        finally:
            os.close(rfd)


def test_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_bytes(b"keep")
    link = tmp_path / ".web.stdout.fifo"
    link.symlink_to(target)
    errors: list[OSError] = []
    with FifoWriter(str(link), errors.append) as w:
        assert w.write(b"overwrite") == 0
    assert target.read_bytes() == b"keep"
    assert [e.errno for e in errors] == [errno.ELOOP]
    assert "symlink" in str(errors[0])


def test_directory_is_refused(tmp_path: Path) -> None:
    errors: list[OSError] = []
    with FifoWriter(str(tmp_path), errors.append) as w:
        assert w.write(b"x") == 0
    assert errors and errors[0].errno in (errno.EISDIR, errno.EINVAL)


def test_dev_null_for_disabled_logs() -> None:
    with FifoWriter(os.devnull) as w:
        assert w.write(b"discarded") == 9


def test_close_drains_then_releases_fd(tmp_path: Path) -> None:
    p = make_fifo(tmp_path / "out.fifo")
    before = open_fds()
    w = FifoWriter(str(p))
    w.write(b"abc")
    w.close(drain_timeout=0.05)  # nobody reads: gives up after the timeout
    w.close()
    assert open_fds() == before
    with pytest.raises(ValueError, match="closed"):
        w.write(b"x")
    assert stat.S_ISFIFO(os.stat(p).st_mode)


def test_lossless_through_fifo_with_a_restarting_reader(tmp_path: Path) -> None:
    """A task floods stdout; a shim-like loop copies it into the FIFO with back-pressure while the
    reader (Nomad's logmon) goes away twice. The reader gets every line exactly once, in order."""
    import selectors
    import subprocess
    import sys
    import threading

    count = 100_000
    p = make_fifo(tmp_path / ".task.stdout.fifo")
    received = bytearray()
    done = threading.Event()

    def reader() -> None:
        # Reopens the FIFO after reading a slice, like a restarting logmon.
        import select

        while not done.is_set():
            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
            try:
                budget = 300_000
                while budget > 0:
                    select.select([fd], [], [], 1.0)
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:  # every writer closed: the task's output is complete
                        done.set()
                        return
                    received.extend(chunk)
                    budget -= len(chunk)
            finally:
                os.close(fd)

    w = FifoWriter(str(p))  # opened before the reader: the pipe always has a writer until close
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    prog = f"import sys\nw = sys.stdout.buffer.write\nfor i in range({count}): w(b'%d\\n' % i)\n"
    proc = subprocess.Popen([sys.executable, "-c", prog], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    src = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    pending = b""
    try:
        while True:
            if pending:
                fd = w.fileno()
                if fd is not None and w.blocked:
                    sel.register(fd, selectors.EVENT_WRITE)
                    sel.select(timeout=1.0)
                    sel.unregister(fd)
                n = w.write(pending)
                pending = pending[n:]
                continue
            chunk = os.read(src, 65536)
            if not chunk:
                break
            n = w.write(chunk)
            pending = chunk[n:]
        assert proc.wait(timeout=30) == 0
    finally:
        w.close(drain_timeout=10)
    t.join(10)
    assert not t.is_alive()
    assert bytes(received).split(b"\n")[:-1] == [b"%d" % i for i in range(count)]
