"""The raw_exec driver: config, verbs, and the values they take and return."""

from rawexec.driver.config import DriverConfig, TaskDriverConfig
from rawexec.driver.driver import Driver
from rawexec.driver.execstream import ExecFrame, ExecSession
from rawexec.driver.types import (
    Capabilities,
    ExecResult,
    Fingerprint,
    HealthState,
    TaskConfig,
    TaskEvent,
    TaskHandle,
    TaskState,
    TaskStatus,
)

__all__ = [
    "Capabilities",
    "Driver",
    "DriverConfig",
    "ExecFrame",
    "ExecResult",
    "ExecSession",
    "Fingerprint",
    "HealthState",
    "TaskConfig",
    "TaskDriverConfig",
    "TaskEvent",
    "TaskHandle",
    "TaskState",
    "TaskStatus",
]
