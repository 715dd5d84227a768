"""nomad-rawexec: Nomad's raw_exec task driver in Python."""

from __future__ import annotations

from rawexec import errors
from rawexec.driver import (
    Capabilities,
    Driver,
    DriverConfig,
    ExecFrame,
    ExecResult,
    ExecSession,
    Fingerprint,
    HealthState,
    TaskConfig,
    TaskEvent,
    TaskHandle,
    TaskState,
    TaskStatus,
)
from rawexec.types import ExitResult, LogConfig, Resources, TaskResourceUsage

__all__ = [
    "Capabilities",
    "Driver",
    "DriverConfig",
    "ExecFrame",
    "ExecResult",
    "ExecSession",
    "ExitResult",
    "Fingerprint",
    "HealthState",
    "LogConfig",
    "Resources",
    "TaskConfig",
    "TaskEvent",
    "TaskHandle",
    "TaskResourceUsage",
    "TaskState",
    "TaskStatus",
    "errors",
]
__version__ = "0.1.0"
