"""``fetch_artifact``: what the agent calls for each ``artifact {}`` block of a task.

The parent side: interpolate, validate, check the destination, skip what was already fetched,
run the sandboxed child (``python -m rawexec.artifacts.sandbox``), stream its progress, inspect the
result for escapes, then move it into place atomically and record a marker.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import rawexec
from rawexec.artifacts.archive import UnpackError, check_tree
from rawexec.artifacts.config import GetterConfig
from rawexec.artifacts.source import ResolvedSource, SourceError, resolve_source
from rawexec.artifacts.spec import VALID_MODES, ArtifactSpec
from rawexec.errors import ArtifactError

__all__ = ["FetchResult", "Progress", "fetch_artifact"]

_WORK_DIR = ".rawexec-artifacts"  # inside the alloc dir: staging dirs and "already fetched" markers
_DEFAULT_CONFIG = GetterConfig()
_PKG_DIR = os.path.dirname(os.path.abspath(rawexec.__file__))
# Runs rawexec.artifacts.sandbox as __main__ in a fresh interpreter, like `python -m`, but with
# `rawexec` registered as a bare package: the package's __init__ imports the whole driver, which
# the sandbox does not need (it costs ~0.6 s per fetch). The sandbox imports only rawexec.errors
# and rawexec.artifacts.*.
_BOOTSTRAP = (
    "import sys, types, runpy\n"
    "pkg = types.ModuleType('rawexec')\n"
    "pkg.__path__ = [sys.argv[1]]\n"
    "pkg.__file__ = sys.argv[1] + '/__init__.py'\n"
    "sys.modules['rawexec'] = pkg\n"
    "del sys.argv[1]\n"
    "runpy.run_module('rawexec.artifacts.sandbox', run_name='__main__', alter_sys=True)\n"
)


@dataclass(frozen=True)
class Progress:
    """One progress report: ``phase`` is ``download`` or ``unpack``; ``total``/``eta`` may be unknown."""

    source: str
    phase: str
    bytes: int
    total: int | None
    rate: float  # bytes per second in this phase
    eta: float | None  # seconds


@dataclass(frozen=True)
class FetchResult:
    source: str
    destination: str  # absolute path of the file or directory written
    kind: str  # "file" | "dir"
    bytes: int  # bytes downloaded (0 for git)
    files: int  # entries unpacked
    checksum: str | None
    isolation: str  # "landlock" | "checked-paths" | "disabled" | "skipped"
    skipped: bool  # already fetched before (marker present): nothing was downloaded
    duration: float


def _fail(source: str, msg: str, recoverable: bool) -> ArtifactError:
    return ArtifactError(f'failed to download artifact "{source}": {msg}', recoverable=recoverable)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _resolve_destination(spec: ArtifactSpec, destination: str, name: str, task_dir: str,
                         alloc_dir: str) -> tuple[str, bool]:
    """Absolute destination and whether it names a directory (trailing slash / mode).

    Nomad's client-path rule: a relative path is joined onto the task dir; an absolute one (e.g.
    built from ``${NOMAD_TASK_DIR}`` or ``${NOMAD_ALLOC_DIR}``) is kept when it lies inside the task
    dir or the shared alloc dir, any other absolute path is joined onto the task dir (``/local/x``
    means ``<task>/local/x``). The cleaned result must still stay inside one of the two dirs.
    """
    shared_dir = os.path.normpath(os.path.join(alloc_dir, "alloc"))
    if os.path.isabs(destination):
        cleaned = os.path.normpath(destination)
        if not (_inside(cleaned, os.path.normpath(task_dir)) or _inside(cleaned, shared_dir)):
            destination = destination.lstrip("/")
    full = os.path.normpath(os.path.join(task_dir, destination))
    real_task = os.path.realpath(task_dir)
    shared = os.path.realpath(shared_dir)
    real = os.path.realpath(full)  # follows any symlink already on the path (CVE-2020-27195)
    lexical_ok = _inside(full, os.path.normpath(task_dir)) or _inside(full, shared_dir)
    if not lexical_ok or not (_inside(real, real_task) or _inside(real, shared)):
        raise ArtifactError("artifact destination path escapes alloc directory", recoverable=False)
    as_dir = spec.mode != "file" or destination.endswith("/") or os.path.isdir(real)
    return real, as_dir


def _marker_key(spec: ArtifactSpec, src: str, dest: str, options: Mapping[str, str],
                headers: Mapping[str, str]) -> str:
    blob = json.dumps([src, dest, spec.mode, sorted(options.items()), sorted(headers.items()),
                       spec.insecure], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _child_env(cfg: GetterConfig, staging: str) -> dict[str, str]:
    pkg_root = os.path.dirname(_PKG_DIR)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "TMPDIR": staging, "PYTHONPATH": pkg_root,
           "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    home = os.environ.get("HOME") or (pwd.getpwuid(os.getuid()).pw_dir if hasattr(os, "getuid") else "")
    if home:
        env["HOME"] = home
    for var in cfg.passthrough_env:
        if var in os.environ:
            env[var] = os.environ[var]
    return env


_CANCEL_CHECK = 0.05
"""How often a cancellable fetch looks at its ``cancelled`` callback while the child works (s)."""


def _run_child(params: dict[str, Any], cfg: GetterConfig, source: str,
               progress: Callable[[Progress], None] | None,
               cancelled: Callable[[], bool] | None = None) -> tuple[dict[str, Any], str]:
    """Run the sandbox child; returns (done event, isolation mode) or raises ArtifactError.
    When ``cancelled()`` turns true the child's whole session is killed and the fetch fails."""
    staging = params["staging"]
    with tempfile.TemporaryFile(dir=staging) as errf:
        proc = subprocess.Popen([sys.executable, "-c", _BOOTSTRAP, _PKG_DIR], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=errf, env=_child_env(cfg, staging),
                                cwd=staging, close_fds=True, start_new_session=True)
        assert proc.stdin is not None and proc.stdout is not None
        result: dict[str, Any] | None = None
        error: dict[str, Any] | None = None
        isolation = "unknown"
        deadline = time.monotonic() + cfg.deadline
        check = _CANCEL_CHECK if cancelled is not None else 1.0
        sel = selectors.DefaultSelector()
        try:
            proc.stdin.write(json.dumps(params).encode())
            proc.stdin.close()
            sel.register(proc.stdout, selectors.EVENT_READ)
            buf = b""
            eof = False
            while not eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _fail(source, f"getter subprocess timed out after {cfg.deadline:g}s", True)
                if cancelled is not None and cancelled():
                    raise _fail(source, "download cancelled", True)  # the finally kills the child
                if not sel.select(timeout=min(left, check)):
                    continue
                data = os.read(proc.stdout.fileno(), 65536)
                if not data:
                    eof = True
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue
                    kind = ev.pop("event", None)
                    if kind == "progress" and progress is not None:
                        progress(Progress(source, ev["phase"], ev["bytes"], ev["total"], ev["rate"], ev["eta"]))
                    elif kind == "isolation":
                        isolation = ev["mode"]
                    elif kind == "done":
                        result = ev
                    elif kind == "error":
                        error = ev
            rc = proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
        finally:
            sel.close()  # also on a timeout or a cancel: its epoll fd
            if proc.poll() is None:
                try:  # the child leads its own session: take git/ssh grandchildren down too
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
            proc.stdout.close()
        if error is not None:
            raise _fail(source, error["message"], bool(error["recoverable"]))
        if result is None or rc != 0:
            errf.seek(0)
            output = errf.read(8192).decode("utf-8", "replace").strip()
            raise _fail(source, f"getter subprocess failed: exit status {rc}: {output}", True)
        return result, isolation


def _extra_read(resolved: ResolvedSource) -> list[str]:
    """Host paths the sandbox must be able to read: a file source, a file:// checksum or git repo."""
    paths = []
    if resolved.getter == "file":
        paths.append(resolved.url)
    elif resolved.getter == "git" and resolved.url.startswith("file://"):
        paths.append(resolved.url[len("file://"):])
    if resolved.checksum and resolved.checksum[0] == "file" and resolved.checksum[1].startswith("file://"):
        paths.append(resolved.checksum[1][len("file://"):])
    return paths


def _merge_into(src: str, dst: str) -> None:
    """Move every entry of ``src`` into the existing directory ``dst`` (each move atomic)."""
    for entry in os.scandir(src):
        target = os.path.join(dst, entry.name)
        try:
            tst = os.lstat(target)
        except FileNotFoundError:
            os.rename(entry.path, target)
            continue
        if entry.is_dir(follow_symlinks=False) and stat.S_ISDIR(tst.st_mode):
            _merge_into(entry.path, target)
        elif stat.S_ISDIR(tst.st_mode):
            shutil.rmtree(target)
            os.rename(entry.path, target)
        elif entry.is_dir(follow_symlinks=False):
            os.unlink(target)
            os.rename(entry.path, target)
        else:
            os.replace(entry.path, target)


def _chown_tree(path: str, user: str) -> None:
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise ArtifactError(f'artifact chown: unknown user "{user}"', recoverable=False) from None
    os.chown(path, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
    for d, dirs, files in os.walk(path):
        for n in dirs + files:
            os.chown(os.path.join(d, n), pw.pw_uid, pw.pw_gid, follow_symlinks=False)


def fetch_artifact(spec: ArtifactSpec, *, task_dir: str, alloc_dir: str,
                   config: GetterConfig = _DEFAULT_CONFIG,
                   progress: Callable[[Progress], None] | None = None,
                   interpolate: Callable[[str], str] | None = None,
                   task_user: str | None = None,
                   cancelled: Callable[[], bool] | None = None) -> FetchResult:
    """Download, verify and unpack one artifact into the task's directory.

    ``task_dir`` is ``<alloc>/<task>``; ``alloc_dir`` the allocation's root (``<alloc>``; its
    ``alloc/`` subdir is the shared dir). The destination may be under either the task dir or the
    shared dir. ``interpolate`` expands ``${...}`` in source, destination, option and header values.
    ``task_user`` is the owner for ``chown = true`` (applied only when running as root).
    ``cancelled`` is polled while the download runs: once it returns true (the task is being
    killed) the getter child is killed and the fetch fails at once with ``download cancelled``.

    Raises :class:`~rawexec.errors.ArtifactError` whose message is Nomad's ``failed to download
    artifact "<source>": <reason>``; ``recoverable`` unless the job itself is at fault (a bad
    source, mode or destination, an escaping archive). A task's artifact hook makes every one
    recoverable anyway, as Nomad's does (:func:`rawexec.artifacts.task.hook_error`).
    """
    started = time.monotonic()
    ip = interpolate or (lambda s: s)
    if spec.mode not in VALID_MODES:
        raise _fail(spec.source, f'invalid artifact mode "{spec.mode}"; must be one of: any, file, dir', False)
    source = ip(spec.source)
    options = {k: ip(v) for k, v in spec.options.items()}
    headers = {k: ip(v) for k, v in spec.headers.items()}
    destination = ip(spec.destination)
    try:
        resolved: ResolvedSource = resolve_source(source, options, allow_file=config.allow_file)
    except SourceError as exc:
        raise _fail(spec.source, str(exc), False) from None
    try:
        dest, dest_is_dir = _resolve_destination(spec, destination, resolved.name, task_dir, alloc_dir)
    except ArtifactError as exc:
        raise _fail(spec.source, exc.message, False) from None

    work = os.path.join(alloc_dir, _WORK_DIR)
    os.makedirs(work, mode=0o700, exist_ok=True)
    marker = os.path.join(work, "done-" + _marker_key(spec, source, dest, options, headers) + ".json")
    if os.path.exists(marker):
        try:
            with open(marker) as f:
                prev = json.load(f)
            if os.path.lexists(prev["destination"]):
                return FetchResult(spec.source, prev["destination"], prev["kind"], 0, prev["files"],
                                   prev["checksum"], "skipped", True, time.monotonic() - started)
        except (OSError, ValueError, KeyError):
            pass  # a broken marker means: fetch again

    staging = tempfile.mkdtemp(prefix="fetch-", dir=work)
    try:
        params = {
            "source": spec.source, "getter": resolved.getter, "url": resolved.url, "name": resolved.name,
            "mode": spec.mode, "archive_disabled": resolved.archive_disabled,
            "archive_kind": resolved.archive_kind, "checksum": resolved.checksum, "headers": headers,
            "insecure": spec.insecure, "git": dict(resolved.git), "staging": staging,
            "config": config.to_dict(),
            "isolation": {"enabled": not config.disable_filesystem_isolation},
            "extra_read": _extra_read(resolved),
        }
        result, isolation = _run_child(params, config, spec.source, progress, cancelled)
        out = os.path.join(staging, "out")
        try:
            check_tree(out)  # escape inspection, whatever the child says
        except UnpackError as exc:
            raise _fail(spec.source, str(exc), False) from None
        if result["kind"] == "file":
            src_path = os.path.join(out, result["name"])
            target = os.path.join(dest, os.path.basename(result["name"])) if dest_is_dir else dest
            if os.path.isdir(target) and not os.path.islink(target):
                raise _fail(spec.source, f'destination "{target}" is a directory', False)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(src_path, target)
        else:
            target = dest
            if not os.path.lexists(dest):
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.rename(out, dest)
            elif os.path.isdir(dest) and not os.path.islink(dest):
                _merge_into(out, dest)
            else:
                raise _fail(spec.source, f'destination "{dest}" exists and is not a directory', False)
        if spec.chown and task_user and os.geteuid() == 0:
            _chown_tree(target, task_user)
        fr = FetchResult(spec.source, target, result["kind"], int(result.get("bytes", 0)),
                         int(result.get("files", 0)), result.get("checksum"), isolation, False,
                         time.monotonic() - started)
        tmp_marker = os.path.join(staging, "marker.json")  # unique per fetch, same filesystem
        with open(tmp_marker, "w") as f:
            json.dump({"destination": fr.destination, "kind": fr.kind, "files": fr.files,
                       "checksum": fr.checksum}, f)
        os.replace(tmp_marker, marker)
        return fr
    except OSError as exc:
        raise _fail(spec.source, f"{exc.strerror or exc}: {exc.filename or ''}", True) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
