"""rawexec.artifacts: download, verify, unpack and sandbox task artifacts like Nomad's getter.

The agent calls :func:`fetch_artifact` once per ``artifact {}`` block. The work happens in a fresh
child process (``python -m rawexec.artifacts.sandbox``) confined with Landlock to its staging dir
inside the alloc dir; the result is inspected and moved into place atomically.
"""

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
