"""nomad-rawexec: Nomad's raw_exec task driver in Python."""

from __future__ import annotations

from rawexec import errors
from rawexec.types import ExitResult, LogConfig, Resources, TaskResourceUsage

__all__ = ["ExitResult", "LogConfig", "Resources", "TaskResourceUsage", "errors"]
__version__ = "0.1.0"
