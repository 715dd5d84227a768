"""validate_log_config: Nomad's messages; layout helpers; the sink protocol."""

from __future__ import annotations

from pathlib import Path

import pytest

from rawexec.errors import InvalidConfigError, ValidationError
from rawexec.logs import (
    DiscardSink,
    FifoWriter,
    FileRotator,
    LogSink,
    alloc_log_dir,
    log_base_name,
    validate_log_config,
)
from rawexec.types import LogConfig


def test_defaults_are_valid() -> None:
    validate_log_config(LogConfig())
    validate_log_config(LogConfig(max_files=1, max_file_size=1))
    validate_log_config(LogConfig(), disk_mb=300)


@pytest.mark.parametrize(("cfg", "msg"), [
    (LogConfig(max_files=0), "minimum number of files is 1; got 0"),
    (LogConfig(max_files=-1), "minimum number of files is 1; got -1"),
    (LogConfig(max_file_size=0), "minimum file size is 1MB; got 0"),
    (LogConfig(max_files=10, max_file_size=30), None),
])
def test_nomad_messages(cfg: LogConfig, msg: str | None) -> None:
    if msg is None:
        validate_log_config(cfg)
        return
    with pytest.raises(InvalidConfigError) as info:
        validate_log_config(cfg)
    assert str(info.value) == msg


def test_all_errors_reported_at_once() -> None:
    with pytest.raises(ValidationError) as info:
        validate_log_config(LogConfig(max_files=0, max_file_size=0))
    assert info.value.errors == ["minimum number of files is 1; got 0", "minimum file size is 1MB; got 0"]


def test_disk_capacity() -> None:
    validate_log_config(LogConfig(max_files=10, max_file_size=29), disk_mb=300)
    with pytest.raises(InvalidConfigError,
                       match=r"log storage \(300 MB\) must be less than requested disk capacity \(300 MB\)"):
        validate_log_config(LogConfig(max_files=10, max_file_size=30), disk_mb=300)


def test_wrong_types() -> None:
    with pytest.raises(InvalidConfigError, match=r"logs\.max_files must be an integer; got '3'"):
        validate_log_config(LogConfig(max_files="3"))  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match=r"logs\.max_file_size must be an integer; got True"):
        validate_log_config(LogConfig(max_file_size=True))


def test_layout() -> None:
    assert alloc_log_dir("/var/nomad/alloc/abc") == "/var/nomad/alloc/abc/alloc/logs"
    assert log_base_name("web", "stderr") == "web.stderr"
    with pytest.raises(InvalidConfigError, match=r"task name '\.\./x' is not usable"):
        log_base_name("../x", "stdout")


def test_sinks_share_one_protocol(tmp_path: Path) -> None:
    rot = FileRotator(str(tmp_path), "t.stdout", 1, 1)
    fifo = FifoWriter(str(tmp_path / "missing.fifo"))
    sinks: list[LogSink] = [DiscardSink(), rot, fifo]
    assert sinks[0].write(b"abc") == 3 and sinks[0].retry_delay == 0 and sinks[0].recover()
    assert rot.write(b"abc") == 3
    assert fifo.write(b"abc") == 0 and fifo.retry_delay > 0
    for s in sinks:
        s.close()
