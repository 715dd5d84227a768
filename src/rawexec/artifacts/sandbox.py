"""The getter's child process: ``python -m rawexec.artifacts.sandbox`` with JSON params on stdin.

It confines itself with Landlock (writes only inside its staging dir in the alloc dir, reads only
system, Python and explicitly allowed paths), downloads, verifies the checksum, unpacks, and
reports newline-delimited JSON events on stdout: ``isolation``, ``progress``, then ``done`` or
``error``. It never touches the destination: the agent moves the result into place.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from rawexec.artifacts import archive, landlock
from rawexec.artifacts.config import GetterConfig
from rawexec.artifacts.failure import FetchFailure

__all__ = ["main", "sandbox_read_paths"]

_SYSTEM_READ = (
    "/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc/ssl", "/etc/pki", "/etc/ca-certificates",
    "/etc/crypto-policies", "/etc/resolv.conf", "/run/systemd/resolve", "/etc/hosts", "/etc/nsswitch.conf",
    "/etc/host.conf", "/etc/gai.conf", "/etc/services", "/etc/protocols", "/etc/passwd", "/etc/group",
    "/etc/localtime", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/gitconfig",
    "/etc/ssh", "/etc/alternatives", "/dev/urandom", "/dev/random", "/dev/zero", "/proc/self",
    "/proc/sys/kernel/random",
)


class Emitter:
    def __init__(self) -> None:
        self._out = sys.stdout
        self._last = 0.0
        self._start = time.monotonic()
        self._phase = ""

    def send(self, event: str, **kw: Any) -> None:
        self._out.write(json.dumps({"event": event, **kw}) + "\n")
        self._out.flush()

    def progress(self, phase: str, done: int, total: int | None, force: bool = False) -> None:
        now = time.monotonic()
        if phase != self._phase:
            self._phase, self._start = phase, now
        if not force and now - self._last < 0.1 and (total is None or done < total):
            return
        self._last = now
        elapsed = max(now - self._start, 1e-6)
        rate = done / elapsed
        eta = (total - done) / rate if total is not None and rate > 0 else None
        self.send("progress", phase=phase, bytes=done, total=total, rate=rate, eta=eta)


def sandbox_read_paths(params: dict[str, Any]) -> list[str]:
    paths = list(_SYSTEM_READ)
    for p in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
              os.path.dirname(os.path.realpath(sys.executable)), *sys.path):
        if p and os.path.isabs(p):
            paths.append(p)
    home = os.environ.get("HOME", "")
    if home:
        paths += [os.path.join(home, n) for n in (".netrc", ".ssh", ".gitconfig", ".config/git")]
    for var in ("NETRC", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        if os.environ.get(var):
            paths.append(os.environ[var])
    paths += params.get("config", {}).get("filesystem_isolation_extra_paths", [])
    paths += params.get("extra_read", [])
    return paths


def _tune_httpcore() -> None:
    """Read up to 1 MiB per recv instead of httpcore's 64 KiB: half the CPU per downloaded byte.

    A class attribute of httpcore's HTTP/1.1 connection; changed only in this child process,
    which exists for one download.
    """
    try:
        from httpcore._sync.http11 import HTTP11Connection
    except ImportError:
        return
    if isinstance(getattr(HTTP11Connection, "READ_NUM_BYTES", None), int):
        HTTP11Connection.READ_NUM_BYTES = 1 << 20


def _preload(params: dict[str, Any]) -> None:
    """Import what this fetch needs before Landlock narrows what the interpreter may read."""
    ck = params.get("checksum") or ("", "")
    if params.get("getter") == "http" or str(ck[1]).startswith(("http://", "https://")):
        import rawexec.artifacts.http  # noqa: F401  (httpx and its TLS stack)

        _tune_httpcore()
    kind = "" if params.get("archive_disabled") else (params.get("archive_kind") or "")
    if kind.endswith("zst"):
        import zstandard  # noqa: F401
    elif kind.endswith("gz"):
        try:
            import isal.igzip  # noqa: F401
        except ImportError:
            import gzip  # noqa: F401


def _isolate(params: dict[str, Any], em: Emitter) -> None:
    iso = params["isolation"]
    if not iso["enabled"]:
        em.send("isolation", mode="disabled", reason="disable_filesystem_isolation = true")
        return
    try:
        abi = landlock.restrict(sandbox_read_paths(params), [params["staging"]], ["/dev/null", "/dev/tty"])
    except landlock.LandlockUnavailable as exc:
        em.send("isolation", mode="checked-paths", reason=str(exc))
        return
    em.send("isolation", mode="landlock", abi=abi)


def _hex_from_checksum_file(body: bytes, name: str, url: str) -> tuple[str, str]:
    by_len = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
    candidates: list[str] = []
    for raw in body.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("MD5 (", "SHA1 (", "SHA256 (", "SHA512 (")) and ") = " in line:
            fname, _, hexv = line.partition("(")[2].partition(") = ")
            if fname == name:
                candidates.insert(0, hexv.strip())
            continue
        fields = line.split()
        if len(fields) == 1:
            candidates.append(fields[0])
        elif fields[1].lstrip("*") == name or fields[1].lstrip("*").endswith("/" + name):
            candidates.insert(0, fields[0])
    for hexv in candidates:
        kind = by_len.get(len(hexv))
        try:
            bytes.fromhex(hexv)
        except ValueError:
            continue
        if kind:
            return kind, hexv.lower()
    raise FetchFailure(f'no checksum for "{name}" found in checksum file {url}', True, retry=False)


def _checksum(params: dict[str, Any], cfg: GetterConfig) -> tuple[str, str] | None:
    ck = params.get("checksum")
    if not ck:
        return None
    kind, value = ck
    if kind != "file":
        return kind, value
    if value.startswith("file://"):
        with open(value[len("file://"):], "rb") as f:
            body = f.read(1 << 20)
    else:
        from rawexec.artifacts.http import http_get_small

        body = http_get_small(value, headers=params["headers"], insecure=params["insecure"], cfg=cfg)
    return _hex_from_checksum_file(body, params["name"], value)


def _copy_file(src: str, dst: str, new_hasher: Callable[[], Any] | None,
               progress: Callable[[int, int | None], None], max_size: int) -> Any:
    hasher = new_hasher() if new_hasher else None
    total = os.path.getsize(src)
    done = 0
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while chunk := fi.read(1 << 20):
            fo.write(chunk)
            if hasher is not None:
                hasher.update(chunk)
            done += len(chunk)
            if max_size and done > max_size:
                raise FetchFailure(f"file exceeds http_max_size ({max_size} bytes)", False)
            progress(done, total)
    return hasher


def _git(params: dict[str, Any], out: str, cfg: GetterConfig) -> None:
    opts = params["git"]
    env = {k: v for k, v in os.environ.items()}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="/bin/false", GIT_CONFIG_NOSYSTEM="1")
    if opts.get("sshkey"):
        key = os.path.join(params["staging"], "sshkey")
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            try:
                f.write(base64.b64decode(opts["sshkey"], validate=True))
            except ValueError:
                raise FetchFailure('git option "sshkey" must be a base64-encoded private key', False) \
                    from None
        env["GIT_SSH_COMMAND"] = f"ssh -i {key} -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new"
    base = ["git", "-c", "core.hooksPath=/dev/null", "-c", "protocol.ext.allow=never"]
    cmd = [*base, "clone", "--quiet"]
    ref, depth = opts.get("ref"), opts.get("depth")
    if depth:
        cmd += ["--depth", str(depth)]
        if ref:
            cmd += ["--branch", ref]
    cmd += ["--", params["url"], out]
    deadline = time.monotonic() + cfg.git_timeout if cfg.git_timeout else None  # 0 = no timeout

    def run(argv: list[str]) -> None:
        try:
            r = subprocess.run(argv, check=False, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=max(deadline - time.monotonic(), 1.0) if deadline else None)
        except subprocess.TimeoutExpired:
            raise FetchFailure(f"git timed out after {cfg.git_timeout:g}s", True) from None
        if r.returncode != 0:
            msg = r.stderr.decode("utf-8", "replace").strip()
            lowered = msg.lower()
            permanent = any(s in lowered for s in ("not found", "did not match", "does not appear to be",
                                                   "not a git repository", "unknown revision",
                                                   "invalid reference", "pathspec"))
            sub = "clone" if "clone" in argv else "checkout"
            raise FetchFailure(f"git {sub} failed: {msg or 'exit status ' + str(r.returncode)}",
                               not permanent)

    run(cmd)
    if ref and not depth:
        run(["git", "-C", out, "-c", "advice.detachedHead=false", "checkout", "--quiet", ref, "--"])


def run(params: dict[str, Any], em: Emitter) -> dict[str, Any]:
    cfg = GetterConfig(**{**params["config"],
                          "filesystem_isolation_extra_paths":
                              tuple(params["config"].get("filesystem_isolation_extra_paths", ()))})
    staging = params["staging"]
    out = os.path.join(staging, "out")
    mode = params["mode"]
    getter = params["getter"]
    if getter == "git":
        if mode == "file":
            raise FetchFailure('mode "file" cannot be used with a git source', False)
        em.progress("download", 0, None, force=True)
        _git(params, out, cfg)
        archive.check_tree(out)
        return {"kind": "dir", "name": "", "bytes": 0, "files": 0}
    if getter == "file" and os.path.isdir(params["url"]):
        if mode == "file":
            raise FetchFailure(f'mode "file" but "{params["url"]}" is a directory', False)
        if params.get("checksum"):
            raise FetchFailure("checksum option cannot be used with a directory source", False)
        shutil.copytree(params["url"], out, symlinks=True)
        archive.check_tree(out)
        return {"kind": "dir", "name": "", "bytes": 0, "files": 0}

    checksum = _checksum(params, cfg)
    new_hasher = (lambda: hashlib.new(checksum[0])) if checksum else None
    dl_dir = os.path.join(staging, "dl")
    os.mkdir(dl_dir)
    name = params["name"]
    dl = os.path.join(dl_dir, name)

    def prog(done: int, total: int | None) -> None:
        em.progress("download", done, total)

    if getter == "http":
        from rawexec.artifacts.http import http_download

        size, hasher = http_download(params["url"], dl, headers=params["headers"], insecure=params["insecure"],
                                     cfg=cfg, new_hasher=new_hasher, progress=prog)
    else:
        hasher = _copy_file(params["url"], dl, new_hasher, prog, cfg.http_max_size)
        size = os.path.getsize(dl)
    em.progress("download", size, size, force=True)
    if checksum is not None:
        assert hasher is not None
        got = hasher.hexdigest()
        if got != checksum[1]:
            # recoverable, as in Nomad: the source may be mid-update (the restart policy applies)
            raise FetchFailure(f"checksums did not match: expected {checksum[1]}, got {got} "
                               f"({checksum[0]})", True, retry=False)
    kind = None if params["archive_disabled"] else params["archive_kind"]
    ck_text = f"{checksum[0]}:{checksum[1]}" if checksum else None
    if kind is None:
        if mode == "dir":
            raise FetchFailure(f'mode "dir" needs an archive or a git repository, but "{name}" is a plain '
                               'file; use mode "any" or "file"', False)
        os.mkdir(out)
        os.replace(dl, os.path.join(out, name))
        # a plain download is made executable so a fetched binary can be the task's command
        os.chmod(os.path.join(out, name), 0o755)
        return {"kind": "file", "name": name, "bytes": size, "files": 1, "checksum": ck_text}
    unpacked = [0]

    def on_bytes(n: int) -> None:
        unpacked[0] += n
        em.progress("unpack", unpacked[0], None)

    ex = archive.unpack(dl, kind, out, out_name=archive.strip_suffix(name, kind),
                        size_limit=cfg.decompression_size_limit,
                        count_limit=cfg.decompression_file_count_limit, display=name, on_bytes=on_bytes)
    os.unlink(dl)
    em.progress("unpack", ex.bytes, ex.bytes, force=True)
    if mode == "file":
        regular = [os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs
                   if os.path.isfile(os.path.join(d, f)) and not os.path.islink(os.path.join(d, f))]
        if len(regular) != 1:
            raise FetchFailure(f'mode "file" needs an archive holding exactly one file; "{name}" holds '
                               f"{len(regular)}", False)
        return {"kind": "file", "name": regular[0], "bytes": size, "files": 1, "checksum": ck_text}
    return {"kind": "dir", "name": "", "bytes": size, "files": ex.files, "checksum": ck_text}


def main() -> int:
    em = Emitter()
    try:
        params = json.loads(sys.stdin.read())
        os.umask(0o022)
        _preload(params)
        _isolate(params, em)
        result = run(params, em)
    except FetchFailure as exc:
        em.send("error", message=str(exc), recoverable=exc.recoverable)
        return 1
    except archive.UnpackError as exc:
        em.send("error", message=str(exc), recoverable=False)
        return 1
    except OSError as exc:
        em.send("error", message=f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
                recoverable=True)
        return 1
    except (ValueError, KeyError, TypeError) as exc:
        em.send("error", message=f"getter subprocess got bad parameters: {type(exc).__name__}: {exc}",
                recoverable=False)
        return 2
    em.send("done", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
