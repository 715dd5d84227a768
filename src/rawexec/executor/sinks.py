"""Where a task's stdout/stderr go: rotated files (native), a FIFO (Nomad client), or nowhere."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

# Imported here, not in open_sink: a function-level ``from package import name`` runs importlib's
# Python code on every call, and in a freshly forked shim every Python function run costs pages.
from rawexec.logs import DiscardSink, FifoWriter, FileRotator

__all__ = ["Sink", "open_sink"]


class Sink(Protocol):
    def write(self, data: bytes) -> int: ...

    def close(self) -> None: ...


def open_sink(desc: Mapping[str, Any], on_error: Callable[[OSError], None], fd: int = -1) -> Sink:
    """``desc``: {"mode": "file", "dir", "base", "max_files", "max_file_size", "index", "oldest"}
    | {"mode": "fifo", "path"} | {"mode": "null"}. For "file", ``fd`` is the current log file the
    driver already opened (:func:`rawexec.logs.rotator.open_current`); the rotator takes it over."""
    mode = desc.get("mode")
    if mode == "null":
        return DiscardSink()
    if mode == "fifo":
        return FifoWriter(str(desc["path"]), on_error=on_error)
    if mode == "file":
        if fd < 0:
            raise ValueError("a file log sink needs the log file the driver opened")
        return FileRotator(str(desc["dir"]), str(desc["base"]), int(desc["max_files"]),
                           int(desc["max_file_size"]), on_error=on_error,
                           opened=(fd, int(desc["index"]), int(desc["oldest"])))
    raise ValueError(f"unknown log sink mode {mode!r}")
