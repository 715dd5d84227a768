"""Issue "Logs and interactive exec" through the driver: lossless rotated logs across a driver
crash, logs {} options, and interactive exec with a TTY."""

from __future__ import annotations

import glob
import os
import re
import sys
import time

import pytest

from rawexec import Driver, LogConfig
from rawexec.errors import InvalidConfigError, LaunchError
from tests.conftest import TaskFactory
from tests.driver.test_recover import kill9, start_in_other_process
from tests.helpers.util import pids_with_tag, wait_until

LINES = int(os.environ.get("RAWEXEC_LOSSLESS_LINES", "2000000"))
_PRINTER = "import sys\nw = sys.stdout.write\nfor i in range({n}):\n    w(f'{{i}}\\n')\n"


def _kept_lines(log_dir: str, base: str) -> list[bytes]:
    files = sorted(glob.glob(os.path.join(log_dir, f"{base}.*")), key=lambda p: int(p.rsplit(".", 1)[1]))
    data = b"".join(open(p, "rb").read() for p in files)  # noqa: SIM115
    return data.split(b"\n")[:-1]


@pytest.mark.slow
def test_lossless_across_driver_kill9(driver: Driver, make_task: TaskFactory, state_dir: str) -> None:
    cfg = make_task({"command": sys.executable, "args": ["-c", _PRINTER.format(n=LINES)]}, name="flood",
                    logs=LogConfig(max_files=100, max_file_size=1))
    p, handle = start_in_other_process(state_dir, cfg)
    log_dir = os.path.join(cfg.alloc_dir, "alloc", "logs")
    wait_until(lambda: len(glob.glob(os.path.join(log_dir, "flood.stdout.*"))) >= 2, 60)
    kill9(p)  # the driver dies in the middle of the flood; the shim keeps writing
    driver.recover_task(handle)
    assert driver.wait_task(cfg.id, 120).successful
    lines = _kept_lines(log_dir, "flood.stdout")
    assert len(lines) == LINES
    assert lines == [str(i).encode() for i in range(LINES)]
    sizes = [os.path.getsize(f) for f in glob.glob(os.path.join(log_dir, "flood.stdout.*"))]
    assert max(sizes) <= 1024 * 1024 and len(sizes) >= 2


def test_rotation_keeps_newest_files(driver: Driver, make_task: TaskFactory) -> None:
    n = 300_000  # ~2 MB of lines
    cfg = make_task({"command": sys.executable, "args": ["-c", _PRINTER.format(n=n)]}, name="rot",
                    logs=LogConfig(max_files=1, max_file_size=1))
    driver.start_task(cfg)
    assert driver.wait_task(cfg.id, 60).successful
    files = glob.glob(os.path.join(cfg.alloc_dir, "alloc/logs/rot.stdout.*"))
    assert len(files) == 1 and files[0].endswith(".stdout.1")
    last = open(files[0], "rb").read().split(b"\n")[-2]  # noqa: SIM115
    assert last == str(n - 1).encode()


def test_binary_output_and_long_line(driver: Driver, make_task: TaskFactory) -> None:
    code = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 4096 + b'x' * (1024 * 1024))"
    cfg = make_task({"command": sys.executable, "args": ["-c", code]}, name="bin")
    driver.start_task(cfg)
    assert driver.wait_task(cfg.id, 30).successful
    data = open(os.path.join(cfg.alloc_dir, "alloc/logs/bin.stdout.0"), "rb").read()  # noqa: SIM115
    assert data == bytes(range(256)) * 4096 + b"x" * (1024 * 1024)


def test_logs_disabled(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task({"command": "/bin/echo", "args": ["hi"]}, name="quiet", logs=LogConfig(disabled=True))
    driver.start_task(cfg)
    assert driver.wait_task(cfg.id, 10).successful
    assert glob.glob(os.path.join(cfg.alloc_dir, "alloc/logs/quiet.*")) == []


@pytest.mark.parametrize(("logs", "msg"), [
    (LogConfig(max_files=0), "minimum number of files is 1; got 0"),
    (LogConfig(max_file_size=0), "minimum file size is 1MB; got 0"),
])
def test_bad_log_config(driver: Driver, make_task: TaskFactory, logs: LogConfig, msg: str) -> None:
    with pytest.raises(InvalidConfigError, match=msg):
        driver.start_task(make_task({"command": "/bin/true"}, logs=logs))


def test_log_file_that_cannot_be_opened_fails_the_start_and_runs_nothing(driver: Driver, make_task: TaskFactory,
                                                                         tag: str) -> None:
    """The driver opens the log files before there is a shim: a file that cannot be opened fails
    the start (the task never runs), where a shim opening it after the start would have died and
    left the task running unsupervised."""
    name = "n" * 248  # the task dir fits (<= 255), "<name>.stdout.0" does not
    cfg = make_task({"command": "/bin/sleep", "args": ["30"]}, name=name)
    with pytest.raises(LaunchError, match=r"failed to open the stdout log file in .*/alloc/logs: File name too long"):
        driver.start_task(cfg)
    assert pids_with_tag(tag) == []
    assert cfg.id not in driver.task_ids()
    assert [p for p in os.listdir(driver.config.state_dir) if p.endswith(".sock")] == []


def test_resumes_the_highest_log_index(driver: Driver, make_task: TaskFactory) -> None:
    """Nomad's rule across restarts: append to the highest existing index (the driver picks it now)."""
    cfg = make_task({"command": "/bin/echo", "args": ["second"]}, name="web")
    logs = os.path.join(cfg.alloc_dir, "alloc", "logs")
    os.makedirs(logs, exist_ok=True)
    for i, text in ((0, "old\n"), (3, "first\n")):
        with open(os.path.join(logs, f"web.stdout.{i}"), "w") as f:
            f.write(text)
    driver.start_task(cfg)
    assert driver.wait_task(cfg.id, 10).successful
    assert open(os.path.join(logs, "web.stdout.3")).read() == "first\nsecond\n"  # noqa: SIM115
    assert not os.path.exists(os.path.join(logs, "web.stdout.4"))


def test_fifo_mode(driver: Driver, make_task: TaskFactory, tmp_path: object) -> None:
    fifo = os.path.join(str(tmp_path), ".web.stdout.fifo")
    os.mkfifo(fifo, 0o600)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        cfg = make_task({"command": "/bin/sh", "args": ["-c", "echo via-fifo"]}, name="web", stdout_path=fifo,
                        stderr_path=os.devnull)
        driver.start_task(cfg)
        assert driver.wait_task(cfg.id, 10).successful
        got = b""
        deadline = time.monotonic() + 5
        while b"\n" not in got and time.monotonic() < deadline:
            try:
                got += os.read(rfd, 4096)
            except BlockingIOError:
                time.sleep(0.01)
        assert got == b"via-fifo\n"
    finally:
        os.close(rfd)


def _tty_read_until(s: object, pattern: bytes, timeout: float = 10) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while pattern not in buf and time.monotonic() < deadline:
        for f in s.frames(poll_timeout=0.1):  # type: ignore[attr-defined]
            buf += f.data
            if pattern in buf:
                break
    return buf


def test_tty_ctrl_c_resize_and_exit_code(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task({"command": "/bin/sleep", "args": ["100"]})
    driver.start_task(cfg)
    with driver.exec_task_streaming(cfg.id, ["/bin/sh"], tty=True, rows=24, cols=80) as s:
        s.write_stdin(b"stty size; echo MARK$((0+1))\n")  # the echoed command line never matches
        out = _tty_read_until(s, b"MARK1\r\n")
        assert b"24 80" in out
        s.resize(40, 132)
        s.write_stdin(b"stty size; echo MARK$((1+1))\n")
        assert b"40 132" in _tty_read_until(s, b"MARK2\r\n")
        # Ctrl-C reaches the foreground process (sleep), the shell survives
        s.write_stdin(b"sleep 30\n")
        time.sleep(0.3)
        s.write_stdin(b"\x03")  # interrupts the foreground sleep (SIGINT via the tty), the shell survives
        s.write_stdin(b"echo after-$((0+$?))\n")
        assert re.search(rb"after-130", _tty_read_until(s, b"after-1"))
        s.write_stdin(b"exit 7\n")
        for _ in s.frames():
            pass
    assert s.result is not None and s.result.exit_code == 7


def test_tty_exit_not_delayed_by_background_child(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task({"command": "/bin/sleep", "args": ["100"]})
    driver.start_task(cfg)
    t0 = time.monotonic()
    with driver.exec_task_streaming(cfg.id, ["/bin/sh", "-c", "sleep 60 & echo started; exit 3"], tty=True) as s:
        out = b"".join(f.data for f in s.frames())
    assert b"started" in out and s.result is not None and s.result.exit_code == 3
    assert time.monotonic() - t0 < 10


def test_exec_nonexistent_command_streaming(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task({"command": "/bin/sleep", "args": ["100"]})
    driver.start_task(cfg)
    with pytest.raises(InvalidConfigError, match="executable file not found"):
        driver.exec_task_streaming(cfg.id, ["definitely-not-a-command"], tty=True)
