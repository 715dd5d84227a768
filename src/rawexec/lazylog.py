"""Loggers that import :mod:`logging` on first use.

The spawner imports everything a shim needs before it forks shims. Importing :mod:`logging`
imports :mod:`threading`, whose at-fork handler then runs Python code in every forked shim:
about 120 copy-on-write page faults (0.5 MB of private memory and ~0.6 ms) per task. Modules
that a shim imports log through :func:`get_logger` instead, so :mod:`logging` is imported only
by a process that really logs.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import logging

__all__ = ["get_logger"]


class _LazyLogger:
    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: logging.Logger | None = None

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        if self._logger is not None or "logging" in sys.modules:
            self.__getattr__("debug")(msg, *args, **kwargs)
        # else: nothing configured logging in this process, so the root logger's default level
        # (WARNING) would drop this record anyway.

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        if self._logger is not None or "logging" in sys.modules:
            self.__getattr__("info")(msg, *args, **kwargs)

    def __getattr__(self, attr: str) -> Any:
        logger = self._logger
        if logger is None:
            import logging

            logger = self._logger = logging.getLogger(self._name)
        return getattr(logger, attr)


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)``, resolved on the first call of any of its methods."""
    return cast("logging.Logger", _LazyLogger(name))
