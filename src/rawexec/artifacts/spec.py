"""The ``artifact {}`` block as a value: shared by the job model (jobspec/) and the getter.

Validation of the fields (Nomad's messages, facts §7) lives here too, so that the job file
validator and the getter agree on what is valid.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from rawexec.errors import ValidationError

__all__ = [
    "CHECKSUM_SIZES",
    "GETTER_OPTIONS",
    "VALID_MODES",
    "ArtifactSpec",
    "parse_checksum",
    "validate_artifact",
]

_EMPTY: Mapping[str, str] = MappingProxyType({})

VALID_MODES = ("any", "file", "dir")

#: Digest sizes in bytes per checksum type (go-getter's table).
CHECKSUM_SIZES: Mapping[str, int] = MappingProxyType({"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64})

#: Options the getter consumes itself; every other option is merged into the URL query.
GETTER_OPTIONS = frozenset({"checksum", "archive", "ref", "depth", "sshkey"})


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

    def errors(self) -> list[str]:
        """Every validation error of this block (empty when valid); see :func:`validate_artifact`."""
        return validate_artifact(self)

    def validate(self) -> None:
        """Raise :class:`~rawexec.errors.ValidationError` listing every problem of this block."""
        errs = self.errors()
        if errs:
            raise ValidationError(errs)


def parse_checksum(value: str) -> tuple[str, bytes | str]:
    """Parse a ``checksum`` option.

    ``type:hex`` → ``(type, digest bytes)``; ``file:URL`` → ``("file", URL)`` (the digest is read
    from that file at download time; go-getter accepts it, Nomad's validator wrongly rejects it,
    hashicorp/nomad#9764). Raises ``ValueError`` with Nomad's message on a bad value.
    """
    if value == "":
        raise ValueError("checksum value cannot be empty")
    kind, sep, rest = value.partition(":")
    if not sep or not kind or not rest:
        raise ValueError(f'checksum must be given as "type:value"; got "{value}"')
    kind = kind.lower()
    if kind == "file":
        return "file", rest
    try:
        digest = bytes.fromhex(rest)
    except ValueError as exc:
        raise ValueError(f"invalid checksum: {exc}") from None
    size = CHECKSUM_SIZES.get(kind)
    if size is None:
        raise ValueError(f"unsupported checksum type: {kind}")
    if len(digest) != size:
        raise ValueError(f"invalid {kind} checksum: {rest}")
    return kind, digest


def destination_escapes(destination: str) -> bool:
    """True if ``destination`` leaves the allocation dir when resolved relative to ``<alloc>/task/``.

    Nomad's job-submit rule: ``../alloc/data`` is fine, ``../../x`` is not; an absolute path is
    taken below the task dir (``/local/x`` is ``<task>/local/x``), as the client does.
    (The client checks the interpolated path again against the real directories.)
    """
    if "${" in destination:
        return False  # checked after interpolation, on the client
    joined = posixpath.normpath("/alloc/task/" + destination.lstrip("/"))
    return not (joined == "/alloc" or joined.startswith("/alloc/"))


def validate_artifact(spec: ArtifactSpec) -> list[str]:
    """Validate one ``artifact {}`` block with Nomad's messages (facts §7).

    Values containing ``${`` are interpolated later and only checked by the getter.
    """
    errs: list[str] = []
    if not spec.source:
        errs.append("source must be specified")
    if spec.mode not in VALID_MODES:
        errs.append(f'invalid artifact mode "{spec.mode}"; must be one of: any, file, dir')
    if destination_escapes(spec.destination):
        errs.append("destination escapes allocation directory")
    checksum = spec.options.get("checksum")
    if checksum is not None and "${" not in checksum:
        try:
            parse_checksum(checksum)
        except ValueError as exc:
            errs.append(str(exc))
    archive = spec.options.get("archive")
    if archive is not None and "${" not in archive:
        from rawexec.artifacts.archive import archive_kind_from_option

        try:
            archive_kind_from_option(archive)
        except ValueError as exc:
            errs.append(str(exc))
    depth = spec.options.get("depth")
    if depth is not None and "${" not in depth and not (depth.isdigit() and int(depth) > 0):
        errs.append(f'invalid git option "depth": must be a positive integer; got "{depth}"')
    return errs
