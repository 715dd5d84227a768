"""Turn an (interpolated) ``source`` + ``options`` into what the getter runs: getter, URL, options."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from rawexec.artifacts.archive import archive_kind_from_name, archive_kind_from_option
from rawexec.artifacts.spec import GETTER_OPTIONS, parse_checksum

__all__ = ["ResolvedSource", "SourceError", "resolve_source"]

_SCP_LIKE = re.compile(r"^[A-Za-z0-9_.\-]+@[A-Za-z0-9_.\-]+:(?!//)")
_SUPPORTED = 'supported are http, https, git (and file with client artifact { allow_file = true })'


class SourceError(ValueError):
    """The source or its options are unusable (never recoverable)."""


@dataclass(frozen=True)
class ResolvedSource:
    getter: str  # "http" | "git" | "file"
    url: str  # the URL handed to the getter (query merged for http; file path for file)
    name: str  # file name of a downloaded file
    archive_disabled: bool = False
    archive_kind: str | None = None  # forced kind, or the kind implied by the name
    checksum: tuple[str, str] | None = None  # ("sha256", hex) or ("file", url)
    git: Mapping[str, str] = field(default_factory=dict)


def _basename(path: str) -> str:
    name = posixpath.basename(unquote(path).rstrip("/"))
    return name if name not in ("", ".", "..") else "download"


def resolve_source(source: str, options: Mapping[str, str], *, allow_file: bool) -> ResolvedSource:
    src = source.strip()
    if not src:
        raise SourceError("source must be specified")
    forced = None
    m = re.match(r"^([a-z0-9]+)::(.+)$", src)
    if m:
        forced, src = m.group(1), m.group(2)
        if forced not in ("git", "http", "https", "file"):
            raise SourceError(f'unsupported getter "{forced}::" in source "{source}"; {_SUPPORTED}')
    if _SCP_LIKE.match(src):  # git@github.com:owner/repo
        return _finish("git", src, "", {}, options, allow_file, source)
    if src.startswith("/") and forced in (None, "file"):
        src = "file://" + src
    elif "://" not in src and re.match(r"^(github\.com|gitlab\.com|bitbucket\.org)/", src):
        src, forced = "https://" + src, "git"
    parts = urlsplit(src)
    scheme = parts.scheme.lower()
    if not scheme:
        raise SourceError(f'source "{source}" has no scheme; use a full URL such as '
                          f'"https://host/path" ({_SUPPORTED})')
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if forced == "git" or scheme in ("git", "git+ssh") or (scheme == "ssh" and forced == "git"):
        if scheme == "file" and not allow_file:
            raise SourceError("file sources are disabled; set client artifact { allow_file = true } "
                              "to allow them")
        getter_opts = {k: v for k, v in query.items() if k in GETTER_OPTIONS}
        rest = {k: v for k, v in query.items() if k not in GETTER_OPTIONS}
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), parts.fragment))
        return _finish("git", url, "", getter_opts, options, allow_file, source)
    if scheme in ("http", "https"):
        merged = {**query, **options}
        getter_opts = {k: v for k, v in merged.items() if k in GETTER_OPTIONS}
        rest = {k: v for k, v in merged.items() if k not in GETTER_OPTIONS}
        keep = not options and not any(k in GETTER_OPTIONS for k in query)
        qs = parts.query if keep else urlencode(rest)  # untouched when nothing merges (signed URLs)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", qs, ""))
        return _finish("http", url, _basename(parts.path), getter_opts, {}, allow_file, source)
    if scheme == "file":
        if not allow_file:
            raise SourceError("file sources are disabled; set client artifact { allow_file = true } "
                              "to allow them")
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise SourceError(f'file source "{source}" must be an absolute path (file:///path)')
        getter_opts = {k: v for k, v in {**query, **options}.items() if k in GETTER_OPTIONS}
        return _finish("file", path, _basename(path), getter_opts, {}, allow_file, source)
    raise SourceError(f'unsupported source scheme "{scheme}" in "{source}"; {_SUPPORTED}')


def _finish(getter: str, url: str, name: str, url_opts: Mapping[str, str], options: Mapping[str, str],
            allow_file: bool, source: str) -> ResolvedSource:
    opts = {**url_opts, **options}
    if getter == "git":
        if url.startswith("-"):
            raise SourceError(f'git source "{source}" must not start with "-"')
        for key in ("checksum", "archive"):
            if key in opts:
                raise SourceError(f'option "{key}" is not supported for git sources')
        git: dict[str, str] = {k: opts[k] for k in ("ref", "depth", "sshkey") if k in opts}
        if git.get("ref", "").startswith("-"):
            raise SourceError(f'invalid git option "ref": must not start with "-"; got "{git["ref"]}"')
        depth = git.get("depth")
        if depth is not None and not (depth.isdigit() and int(depth) > 0):
            raise SourceError(f'invalid git option "depth": must be a positive integer; got "{depth}"')
        return ResolvedSource("git", url, name, git=git)
    for key in ("ref", "depth", "sshkey"):
        if key in opts:
            raise SourceError(f'option "{key}" is only valid for git sources')
    checksum: tuple[str, str] | None = None
    if "checksum" in opts:
        try:
            kind, value = parse_checksum(opts["checksum"])
        except ValueError as exc:
            raise SourceError(str(exc)) from None
        if kind == "file":
            assert isinstance(value, str)
            ck = resolve_source(value, {}, allow_file=allow_file)
            if ck.getter == "git":
                raise SourceError("checksum file must be an http, https or file URL")
            checksum = ("file", ck.url if ck.getter == "http" else "file://" + ck.url)
        else:
            assert isinstance(value, bytes)
            checksum = (kind, value.hex())
    disabled = False
    kind_name: str | None
    if "archive" in opts:
        try:
            kind_name = archive_kind_from_option(opts["archive"])
        except ValueError as exc:
            raise SourceError(str(exc)) from None
        disabled = kind_name is None
    else:
        kind_name = archive_kind_from_name(name)
    return ResolvedSource(getter, url, name, archive_disabled=disabled, archive_kind=kind_name,
                          checksum=checksum)
