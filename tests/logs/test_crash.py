"""Crash safety: FileRotator keeps nothing in memory, so after a kill -9 of the writing process
every accepted byte is on disk exactly once, and a new rotator resumes where it stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.logs.conftest import wait_until

BASE = "job.stdout"

WRITER = """
import os, sys
from rawexec.logs import FileRotator
src, logs, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(src, "rb") as f, FileRotator(logs, "job.stdout", 10_000, 1, max_file_size_bytes=50_000) as r:
    f.seek(start)
    while chunk := f.read(65536):
        assert r.write(chunk) == len(chunk)
"""


def on_disk(logs: Path) -> bytes:
    idx = sorted(int(p.name.rsplit(".", 1)[1]) for p in logs.iterdir())
    return b"".join((logs / f"{BASE}.{i}").read_bytes() for i in idx)


def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    src = tmp_path / "input"
    data = b"".join(b"%d\n" % i for i in range(1_000_000))  # ~6.9 MB of numbered lines
    src.write_bytes(data)
    logs = tmp_path / "logs"
    logs.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(src), str(logs), "0"], env=env)
    wait_until(lambda: len(os.listdir(logs)) >= 20 or proc.poll() is not None, timeout=60, interval=0.001)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    done = len(on_disk(logs))
    assert 0 < done < len(data)
    resumed = subprocess.run([sys.executable, "-c", WRITER, str(src), str(logs), str(done)], env=env,
                             timeout=120, check=False)
    assert resumed.returncode == 0
    got = on_disk(logs)
    assert len(got) == len(data)
    assert got == data  # every number exactly once, in order
