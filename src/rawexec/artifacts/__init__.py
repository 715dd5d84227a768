"""rawexec.artifacts: download, verify, unpack and sandbox task artifacts like Nomad's getter.

The agent calls :func:`fetch_artifact` once per ``artifact {}`` block. The work happens in a fresh
child process (``python -m rawexec.artifacts.sandbox``) confined with Landlock to its staging dir
inside the alloc dir; the result is inspected and moved into place atomically.

Names are imported lazily so that the sandbox child, which imports only the modules it needs,
does not pay for the parent-side ones.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rawexec.artifacts.config import GetterConfig
    from rawexec.artifacts.getter import FetchResult, Progress, fetch_artifact
    from rawexec.artifacts.spec import ArtifactSpec, parse_checksum, validate_artifact
    from rawexec.artifacts.task import (
        EVENT_DOWNLOADING,
        EVENT_DOWNLOADING_MESSAGE,
        EVENT_FAILED,
        fetch_task_artifacts,
    )

__all__ = [
    "EVENT_DOWNLOADING",
    "EVENT_DOWNLOADING_MESSAGE",
    "EVENT_FAILED",
    "ArtifactSpec",
    "FetchResult",
    "GetterConfig",
    "Progress",
    "fetch_artifact",
    "fetch_task_artifacts",
    "parse_checksum",
    "validate_artifact",
]

_WHERE = {
    "ArtifactSpec": "spec", "parse_checksum": "spec", "validate_artifact": "spec",
    "GetterConfig": "config",
    "FetchResult": "getter", "Progress": "getter", "fetch_artifact": "getter",
    "fetch_task_artifacts": "task", "EVENT_DOWNLOADING": "task", "EVENT_DOWNLOADING_MESSAGE": "task",
    "EVENT_FAILED": "task",
}


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'rawexec.artifacts' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"rawexec.artifacts.{mod}"), name)
    globals()[name] = value
    return value
