"""nomad-rawexec: Nomad's raw_exec task driver in Python.

The public names below are loaded on first use (PEP 562), so ``import rawexec.<module>`` in a
short-lived helper process (the plugin, the artifact sandbox) does not pay for the whole driver.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_TYPES = {"ExitResult", "LogConfig", "Resources", "TaskResourceUsage"}


def __getattr__(name: str) -> Any:
    if name == "errors":
        return importlib.import_module("rawexec.errors")
    if name in _TYPES:
        return getattr(importlib.import_module("rawexec.types"), name)
    if name in __all__:
        return getattr(importlib.import_module("rawexec.driver"), name)
    raise AttributeError(f"module 'rawexec' has no attribute {name!r}")
