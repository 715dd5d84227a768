"""The ``artifact {}`` block as a value: shared by the job model (jobspec/) and the getter.

Validation of the fields (Nomad's messages, facts §7) lives here too, so that the job file
validator and the getter agree on what is valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["ArtifactSpec"]

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class ArtifactSpec:
    """One ``artifact {}`` block of a task, as written in the job (``${...}`` not yet interpolated).

    ``destination`` is relative to the task dir (Nomad's default ``local/``); ``mode`` is
    ``any`` | ``file`` | ``dir``; ``options`` become URL query parameters except the getter's own
    (``checksum``, ``archive``, git's ``ref``/``depth``/``sshkey``); ``headers`` apply to http(s).
    """

    source: str
    destination: str = "local/"
    mode: str = "any"
    options: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    insecure: bool = False
    chown: bool = False
