"""Logging to stderr in hclog's JSON line format, which go-plugin parses (facts §1.7).

Every line is one JSON object whose ``@level``, ``@message`` and ``@timestamp`` are strings
(a non-string there panics the agent's log goroutine). Extra key/values come from
``logger.info("msg", extra={"kv": {...}})``. When the agent dies the stderr pipe breaks: the
handler then points fd 2 at /dev/null and goes quiet, so the plugin (and its tasks) live on.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from typing import IO, Any

__all__ = ["TRACE", "HclogFormatter", "HclogHandler", "setup_logging"]

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_LEVELS = {TRACE: "trace", logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
           logging.ERROR: "error", logging.CRITICAL: "error"}


def _level_name(levelno: int) -> str:
    for threshold in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG):
        if levelno >= threshold:
            return _LEVELS[threshold]
    return "trace"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


class HclogFormatter(logging.Formatter):
    """Format a record as one hclog JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
        line: dict[str, Any] = {
            "@level": _level_name(record.levelno),
            "@message": str(record.getMessage()),
            "@timestamp": ts,
            "@module": str(record.name),
        }
        kv = getattr(record, "kv", None)
        if isinstance(kv, dict):
            for key, value in kv.items():
                if not str(key).startswith("@"):
                    line[str(key)] = _jsonable(value)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class HclogHandler(logging.Handler):
    """Write hclog lines to a stream; go quiet (and silence fd 2) once the pipe breaks."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__()
        self.stream = stream if stream is not None else sys.stderr
        self.broken = False
        self._write_lock = threading.Lock()
        self.setFormatter(HclogFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        if self.broken:
            return
        try:
            msg = self.format(record) + "\n"
        except Exception:  # a bad log call must never take the plugin down
            return
        with self._write_lock:
            try:
                self.stream.write(msg)
                self.stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.broken = True
                _silence_fd(2)


def _silence_fd(fd: int) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


def setup_logging(name: str, level: str | None = None) -> logging.Logger:
    """Route the ``rawexec`` loggers to stderr as hclog JSON; returns the plugin's logger.

    ``level`` (or env ``RAWEXEC_PLUGIN_LOG_LEVEL``) is trace|debug|info|warn|error; default debug,
    because the agent filters by its own log level anyway.
    """
    wanted = (level or os.environ.get("RAWEXEC_PLUGIN_LOG_LEVEL") or "debug").lower()
    levelno = {"trace": TRACE, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
               "warning": logging.WARNING, "error": logging.ERROR}.get(wanted, logging.DEBUG)
    root = logging.getLogger("rawexec")
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(HclogHandler())
    root.setLevel(levelno)
    root.propagate = False
    return logging.getLogger(f"rawexec.plugin.{name}")
