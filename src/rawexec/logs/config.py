"""Log settings: validation with Nomad's messages, and the alloc log dir layout.

Layout (Nomad's)::

    <alloc_dir>/alloc/logs/<task>.stdout.<N>     rotated files, N from 0
    <alloc_dir>/alloc/logs/<task>.stderr.<N>
    <alloc_dir>/alloc/logs/.<task>.stdout.fifo   FIFOs Nomad's client hands a plugin
"""

from __future__ import annotations

import os
from typing import Final, Literal

from rawexec.errors import ValidationError
from rawexec.types import LogConfig

__all__ = [
    "LINE_SCAN_LIMIT",
    "MB",
    "STREAMS",
    "Stream",
    "alloc_log_dir",
    "check_base_name",
    "fifo_path",
    "log_base_name",
    "validate_log_config",
]

MB: Final = 1024 * 1024
#: Lines up to this length are never split across two files (Nomad's 32 KiB scan limit).
LINE_SCAN_LIMIT: Final = 32 * 1024

Stream = Literal["stdout", "stderr"]
STREAMS: Final[tuple[Stream, Stream]] = ("stdout", "stderr")


def validate_log_config(cfg: LogConfig, disk_mb: int | None = None) -> None:
    """Check a task's ``logs {}`` block; raise :class:`ValidationError` listing every problem.

    ``disk_mb`` is the group's ``ephemeral_disk.size``; when given, the logs' worst-case
    storage (``max_files * max_file_size``) must be smaller, as Nomad requires.
    """
    errors: list[str] = []
    for name in ("max_files", "max_file_size"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"logs.{name} must be an integer; got {value!r}")
    if errors:
        raise ValidationError(errors)
    if cfg.max_files < 1:
        errors.append(f"minimum number of files is 1; got {cfg.max_files}")
    if cfg.max_file_size < 1:
        errors.append(f"minimum file size is 1MB; got {cfg.max_file_size}")
    if not errors and disk_mb is not None:
        usage = cfg.max_files * cfg.max_file_size
        if usage >= disk_mb:
            errors.append(f"log storage ({usage} MB) must be less than requested disk capacity "
                          f"({disk_mb} MB)")
    if errors:
        raise ValidationError(errors)


def alloc_log_dir(alloc_dir: str) -> str:
    """``<alloc_dir>/alloc/logs``: where every task of the allocation logs."""
    return os.path.join(alloc_dir, "alloc", "logs")


def check_base_name(name: str, what: str = "task") -> str:
    """Refuse names that would escape the log dir or collide with the rotation suffix."""
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise ValidationError(f"{what} name {name!r} is not usable in a log file name: "
                              "use a non-empty name without '/' or NUL")
    return name


def log_base_name(task: str, stream: Stream) -> str:
    """``<task>.<stream>`` — the rotator appends ``.<N>``."""
    if stream not in STREAMS:
        raise ValidationError(f"log type must be 'stdout' or 'stderr'; got {stream!r}")
    return f"{check_base_name(task)}.{stream}"


def fifo_path(alloc_dir: str, task: str, stream: Stream) -> str:
    """Nomad's hidden FIFO path for a task's stream: ``alloc/logs/.<task>.<stream>.fifo``."""
    return os.path.join(alloc_log_dir(alloc_dir), f".{log_base_name(task, stream)}.fifo")
