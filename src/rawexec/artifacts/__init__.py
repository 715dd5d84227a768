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

__all__ = [
    "ArtifactSpec",
    "FetchResult",
    "GetterConfig",
    "Progress",
    "fetch_artifact",
    "parse_checksum",
    "validate_artifact",
]

_WHERE = {
    "ArtifactSpec": "spec", "parse_checksum": "spec", "validate_artifact": "spec",
    "GetterConfig": "config",
    "FetchResult": "getter", "Progress": "getter", "fetch_artifact": "getter",
}


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'rawexec.artifacts' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"rawexec.artifacts.{mod}"), name)
    globals()[name] = value
    return value
