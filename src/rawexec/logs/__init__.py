"""rawexec.logs — a task's stdout/stderr with Nomad's logmon rules, and reading them back.

* :class:`FileRotator` — native mode: ``<alloc>/alloc/logs/<task>.<stream>.<N>`` rotated files.
* :class:`FifoWriter` — FIFO mode: the ``stdout_path``/``stderr_path`` Nomad's client passes.
* :class:`DiscardSink` — ``logs { disabled = true }``.
* :mod:`rawexec.logs.reader` — ``nomad alloc logs`` (all, ``-tail -n``/``-c``, ``-f``) and the
  offset-based frames of ``/v1/client/fs/logs``.

All sinks share one contract (:class:`LogSink`): ``write(data) -> accepted`` never raises
``OSError``; bytes not accepted stay with the caller, who stops reading the task's pipe and offers
them again after ``retry_delay`` — so nothing is dropped and nothing is written twice.
"""

from __future__ import annotations

from typing import Protocol

from rawexec.logs import reader
from rawexec.logs.config import (
    LINE_SCAN_LIMIT,
    STREAMS,
    Stream,
    alloc_log_dir,
    fifo_path,
    log_base_name,
    validate_log_config,
)
from rawexec.logs.fifo import FifoWriter
from rawexec.logs.reader import (
    LogFile,
    LogPosition,
    StreamFrame,
    follow_logs,
    list_log_files,
    read_logs,
    stream_frames,
    tail_bytes,
    tail_lines,
)
from rawexec.logs.rotator import FileRotator

__all__ = [
    "LINE_SCAN_LIMIT",
    "STREAMS",
    "DiscardSink",
    "FifoWriter",
    "FileRotator",
    "LogFile",
    "LogPosition",
    "LogSink",
    "Stream",
    "StreamFrame",
    "alloc_log_dir",
    "fifo_path",
    "follow_logs",
    "list_log_files",
    "log_base_name",
    "read_logs",
    "reader",
    "stream_frames",
    "tail_bytes",
    "tail_lines",
    "validate_log_config",
]


class LogSink(Protocol):
    """What the shim writes a task stream into."""

    @property
    def retry_delay(self) -> float: ...

    def write(self, data: bytes | bytearray | memoryview) -> int: ...

    def recover(self) -> bool: ...

    def close(self) -> None: ...


class DiscardSink:
    """``logs { disabled = true }``: accept and drop everything (Nomad sends it to /dev/null)."""

    retry_delay = 0.0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return len(data)

    def recover(self) -> bool:
        return True

    def close(self) -> None:
        pass
