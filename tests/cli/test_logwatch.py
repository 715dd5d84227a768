"""rawexec run's wake-ups: inotify on log dirs and the self-pipe."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from rawexec.cli.logwatch import LogDirWatch, Waker


def test_watch_reports_written_and_created_files(tmp_path: Path) -> None:
    w = LogDirWatch()
    try:
        assert not w.watch(str(tmp_path / "missing"))
        assert w.watch(str(tmp_path)) and w.watch(str(tmp_path))
        assert w.changes() == set()
        with open(tmp_path / "web.stdout.0", "ab") as f:
            f.write(b"hello\n")
        (tmp_path / "web.stderr.1").write_bytes(b"")
        waker = Waker()
        try:
            assert waker.wait(5.0, w.fd) is False  # readable watch fd, not woken
        finally:
            waker.close()
        assert w.changes() == {(str(tmp_path), "web.stdout.0"), (str(tmp_path), "web.stderr.1")}
        assert w.changes() == set()
    finally:
        w.close()


def test_waker_from_thread_and_signal() -> None:
    waker = Waker()
    try:
        t0 = time.monotonic()
        assert waker.wait(0.05) is False and time.monotonic() - t0 >= 0.04
        threading.Timer(0.05, waker.wake).start()
        assert waker.wait(10.0) is True
        assert waker.wait(0.0) is False  # drained
        old = signal.signal(signal.SIGUSR1, lambda *_: waker.wake())
        try:
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1)).start()
            t0 = time.monotonic()
            assert waker.wait(10.0) is True and time.monotonic() - t0 < 5
        finally:
            signal.signal(signal.SIGUSR1, old)
    finally:
        waker.close()
