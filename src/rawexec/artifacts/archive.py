"""Archive detection and safe unpacking (zip, tar[.gz|.bz2|.xz|.zst], gz, bz2, xz, zst).

Safety is not optional: member paths are normalised and refused when absolute or containing
``..``; nothing is written through a symlink; symlink targets must stay inside the destination
(checked lexically per link and again with ``realpath`` over the finished tree, which catches
chains such as ``a -> .`` + ``b -> a/..``); hardlinks may only point at regular files already
unpacked; device files and FIFOs are refused; setuid/setgid/sticky bits are dropped; the total
unpacked size and the number of entries are limited while streaming, so a bomb stops as soon as
it crosses the limit rather than after it has filled the disk.
"""

from __future__ import annotations

import bz2
import errno
import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from typing import IO, Any

__all__ = [
    "ARCHIVE_KINDS",
    "SINGLE_FILE_KINDS",
    "Extractor",
    "UnpackError",
    "archive_kind_from_name",
    "archive_kind_from_option",
    "check_tree",
    "sniff_kind",
    "unpack",
]

_CHUNK = 1 << 20

#: canonical kind -> accepted spellings (first is canonical; the file suffixes too)
_ALIASES: dict[str, tuple[str, ...]] = {
    "tar.gz": ("tar.gz", "tgz"),
    "tar.bz2": ("tar.bz2", "tbz2"),
    "tar.xz": ("tar.xz", "txz"),
    "tar.zst": ("tar.zst", "tzst"),
    "zip": ("zip",),
    "tar": ("tar",),
    "gz": ("gz",),
    "bz2": ("bz2",),
    "xz": ("xz",),
    "zst": ("zst",),
}
ARCHIVE_KINDS = tuple(_ALIASES)
SINGLE_FILE_KINDS = ("gz", "bz2", "xz", "zst")
_BY_SPELLING = {s: kind for kind, spellings in _ALIASES.items() for s in spellings}
# longest suffix first so "x.tar.gz" is tar.gz, not gz
_SUFFIXES = sorted(_BY_SPELLING, key=len, reverse=True)


class UnpackError(Exception):
    """An archive is unsafe, over a limit, corrupt, or not what its name says."""


def archive_kind_from_option(value: str) -> str | None:
    """The ``archive`` option: ``false`` disables unpacking (None); else a known kind."""
    v = value.strip().lower()
    if v in ("false", "0", "no"):
        return None
    kind = _BY_SPELLING.get(v.lstrip("."))
    if kind is None:
        raise ValueError(f'unsupported archive type "{value}": use one of '
                         f'{", ".join(sorted(_BY_SPELLING))}, or "false" to keep the file as it is')
    return kind


def archive_kind_from_name(name: str) -> str | None:
    """The archive kind implied by a file name's extension, or None."""
    low = name.lower()
    for suffix in _SUFFIXES:
        if low.endswith("." + suffix):
            return _BY_SPELLING[suffix]
    return None


def strip_suffix(name: str, kind: str) -> str:
    low = name.lower()
    for spelling in _ALIASES[kind]:
        if low.endswith("." + spelling) and len(name) > len(spelling) + 1:
            return name[: -len(spelling) - 1]
    return name


def sniff_kind(path: str) -> str | None:
    """What the file's first bytes say it is (compression or container format), or None."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"\x1f\x8b"):
        return "gz"
    if head.startswith(b"BZh"):
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zst"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


def _compression_of(kind: str) -> str:
    return kind.rsplit(".", maxsplit=1)[-1] if kind.startswith("tar.") else kind


def _check_claim(path: str, kind: str, display: str) -> None:
    """Refuse a file whose content contradicts the archive type its name/option claims."""
    actual = sniff_kind(path)
    want = _compression_of(kind)
    if want == "tar":
        if actual is not None and actual != "tar":
            raise UnpackError(f'"{display}" claims to be a tar archive but its content is {actual}')
        return
    if actual != want:
        what = actual or "not a recognised archive"
        raise UnpackError(f'"{display}" claims to be {kind} but its content is {what}')


class _ZstdReader:
    """A minimal read()-only file object over a zstd stream (tarfile's stream mode needs read())."""

    def __init__(self, raw: IO[bytes]) -> None:
        import zstandard

        self._r = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True,
                                                             read_size=_CHUNK)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self._r.read(_CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        data: bytes = self._r.read(n)
        return data

    def close(self) -> None:
        self._r.close()  # type: ignore[no-untyped-call]


class _ThreadedReader:
    """Decompress in a worker thread, hand chunks over a bounded queue (:meth:`next_chunk`).

    zlib, bz2, lzma and zstandard release the GIL while they work, so decompression runs in
    parallel with tarfile's parsing and the file writes of the consuming thread (the same
    overlap ``tar xz`` gets from running gzip as a separate process).
    """

    def __init__(self, make: Callable[[], Any], depth: int = 8) -> None:
        import queue
        import threading

        self._q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=depth)
        self._eof = False
        self._stop = threading.Event()
        self._make = make
        self._t = threading.Thread(target=self._run, name="decompress", daemon=True)
        self._t.start()

    def _put(self, item: bytes | BaseException | None) -> bool:
        import queue

        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            stream = self._make()
            try:
                while not self._stop.is_set():
                    chunk = stream.read(_CHUNK)
                    if not chunk:
                        break
                    if not self._put(chunk):
                        return
            finally:
                stream.close()
            self._put(None)
        except BaseException as exc:
            self._put(exc)

    def next_chunk(self) -> bytes:
        """The next decompressed chunk (b"" at the end); errors of the worker are raised here."""
        if self._eof:
            return b""
        item = self._q.get()
        if item is None:
            self._eof = True
            return b""
        if isinstance(item, BaseException):
            self._eof = True
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._t.join()


class _ForwardReader:
    """A forward-only, seekable view of a chunk stream, for tarfile's random-access ("r:") mode.

    tarfile parses the headers through ``read``/``seek``/``tell``; member data is taken with
    :meth:`view` as memoryviews of the decompressed chunks, written without further copies
    (tarfile's stream mode joins and slices every buffer several times). Seeking backwards is
    refused: tarfile never does it when the members are visited in order.
    """

    def __init__(self, next_chunk: Callable[[], bytes]) -> None:
        self._next_chunk = next_chunk
        self._cur = memoryview(b"")
        self._pos = 0

    def tell(self) -> int:
        return self._pos

    def _fill(self) -> bool:
        data = self._next_chunk()
        if not data:
            return False
        self._cur = memoryview(data)
        return True

    def view(self, n: int) -> memoryview:
        """Up to ``n`` bytes from the current chunk without copying (empty at the end)."""
        if not self._cur and not self._fill():
            return memoryview(b"")
        v = self._cur[:n]
        self._cur = self._cur[len(v):]
        self._pos += len(v)
        return v

    def read(self, n: int = -1) -> bytes:
        parts: list[memoryview] = []
        want = n if n is not None and n >= 0 else 1 << 62
        while want > 0:
            v = self.view(min(want, _CHUNK) if n is None or n < 0 else want)
            if not v:
                break
            parts.append(v)
            want -= len(v)
        return b"".join(parts)

    def seek(self, target: int, whence: int = 0) -> int:
        if whence == 1:
            target += self._pos
        elif whence != 0:
            raise OSError(errno.ESPIPE, "cannot seek from the end of a compressed stream")
        if target < self._pos:
            raise tarfile.ReadError("archive needs a backwards seek (members out of order)")
        while self._pos < target:
            if not self.view(target - self._pos):
                break
        return self._pos


class _MemberData:
    """``read()`` over one tar member's data in a :class:`_ForwardReader` (memoryviews)."""

    def __init__(self, fr: _ForwardReader, size: int) -> None:
        self._fr = fr
        self._left = size

    def read(self, n: int = _CHUNK) -> memoryview:
        if self._left <= 0:
            return memoryview(b"")
        v = self._fr.view(min(n, self._left))
        if not v:
            raise tarfile.ReadError("unexpected end of data")
        self._left -= len(v)
        return v


def _decompressing_reader(raw: IO[bytes], compression: str) -> Any:
    if compression == "gz":
        try:  # ISA-L inflate: same format, ~2x less CPU than zlib
            from isal import igzip

            return igzip.IGzipFile(fileobj=raw, mode="rb")  # type: ignore[no-untyped-call]
        except ImportError:
            import gzip

            return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == "bz2":
        return bz2.BZ2File(raw, "rb")
    if compression == "xz":
        return lzma.LZMAFile(raw, "rb")
    if compression == "zst":
        return _ZstdReader(raw)
    return raw


class Extractor:
    """Writes archive entries under ``root`` with every safety rule and limit applied."""

    def __init__(self, root: str, *, size_limit: int, count_limit: int,
                 on_bytes: Callable[[int], None] | None = None) -> None:
        self.root = os.path.abspath(root)
        self.size_limit = size_limit
        self.count_limit = count_limit
        self.on_bytes = on_bytes
        self.files = 0
        self.bytes = 0
        self._dir_modes: list[tuple[str, int]] = []
        os.makedirs(self.root, exist_ok=True)

    # ---- path handling ------------------------------------------------------------------
    def safe_rel(self, name: str) -> str | None:
        """Normalise a member name; refuse absolute paths and ``..``. None for the root itself."""
        if "\x00" in name:
            raise UnpackError(f"archive member {name!r}: NUL byte in name")
        if name.startswith("/"):
            raise UnpackError(f'archive member "{name}": absolute paths are not allowed')
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise UnpackError(f'archive member "{name}": path escapes the destination ("..")')
        return "/".join(parts) if parts else None

    def _prepare_parent(self, rel: str) -> str:
        """Create the parent dirs of ``rel``, refusing to pass through a symlink or a file."""
        path = self.root
        parts = rel.split("/")
        for part in parts[:-1]:
            path = os.path.join(path, part)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                os.mkdir(path, 0o755)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise UnpackError(f'archive member "{rel}": refusing to write through symlink "{part}"')
            if not stat.S_ISDIR(st.st_mode):
                raise UnpackError(f'archive member "{rel}": parent "{part}" is not a directory')
        return os.path.join(path, parts[-1])

    def _clear(self, full: str, rel: str) -> None:
        """Remove an earlier entry of the same name (the later member wins, as in tar)."""
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise UnpackError(f'archive member "{rel}": conflicts with a directory of the same name')
        os.unlink(full)

    def _count(self) -> None:
        self.files += 1
        if self.count_limit and self.files > self.count_limit:
            raise UnpackError(f"archive has more than {self.count_limit} entries "
                              "(client artifact decompression_file_count_limit)")

    def _add_bytes(self, n: int) -> None:
        self.bytes += n
        if self.size_limit and self.bytes > self.size_limit:
            raise UnpackError(f"archive unpacks to more than {self.size_limit} bytes "
                              "(client artifact decompression_size_limit)")
        if self.on_bytes is not None:
            self.on_bytes(n)

    # ---- entry writers ------------------------------------------------------------------
    def file(self, name: str, src: IO[bytes], mode: int = 0o644, mtime: float | None = None,
             declared_size: int | None = None) -> str | None:
        rel = self.safe_rel(name)
        if rel is None:
            raise UnpackError(f'archive member "{name}": a file cannot be the destination root')
        self._count()
        if declared_size is not None and self.size_limit and self.bytes + declared_size > self.size_limit:
            raise UnpackError(f"archive unpacks to more than {self.size_limit} bytes "
                              "(client artifact decompression_size_limit)")
        full = self._prepare_parent(rel)
        self._clear(full, rel)
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb", closefd=False) as out:
                read = src.read
                while chunk := read(_CHUNK):
                    self._add_bytes(len(chunk))
                    out.write(chunk)
            os.fchmod(fd, mode & 0o777)  # setuid/setgid/sticky stripped
        finally:
            os.close(fd)
        if mtime is not None:
            os.utime(full, (mtime, mtime), follow_symlinks=False)
        return rel

    def directory(self, name: str, mode: int = 0o755) -> None:
        rel = self.safe_rel(name)
        if rel is None:
            return
        self._count()
        full = self._prepare_parent(rel)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            os.mkdir(full, 0o700)
        else:
            if not stat.S_ISDIR(st.st_mode):
                raise UnpackError(f'archive member "{rel}": directory conflicts with an existing entry')
        self._dir_modes.append((full, (mode & 0o777) | 0o700))

    def symlink(self, name: str, target: str) -> None:
        rel = self.safe_rel(name)
        if rel is None:
            raise UnpackError(f'archive member "{name}": a symlink cannot be the destination root')
        self._count()
        if not target or "\x00" in target:
            raise UnpackError(f'archive member "{rel}": empty or invalid symlink target')
        if target.startswith("/"):
            raise UnpackError(f'archive member "{rel}": symlink to absolute path "{target}" '
                              "points outside the destination")
        resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
        if resolved == ".." or resolved.startswith("../"):
            raise UnpackError(f'archive member "{rel}": symlink target "{target}" points outside '
                              "the destination")
        full = self._prepare_parent(rel)
        self._clear(full, rel)
        os.symlink(target, full)

    def hardlink(self, name: str, target: str) -> None:
        rel = self.safe_rel(name)
        trel = self.safe_rel(target)
        if rel is None or trel is None:
            raise UnpackError(f'archive member "{name}": invalid hardlink')
        self._count()
        tfull = os.path.join(self.root, trel)
        # the target's own path must not pass through a symlink either
        self._prepare_parent(trel)
        try:
            st = os.lstat(tfull)
        except FileNotFoundError:
            raise UnpackError(f'archive member "{rel}": hardlink target "{target}" is not an earlier '
                              "member of the archive") from None
        if not stat.S_ISREG(st.st_mode):
            raise UnpackError(f'archive member "{rel}": hardlink target "{target}" is not a regular file')
        full = self._prepare_parent(rel)
        self._clear(full, rel)
        os.link(tfull, full, follow_symlinks=False)

    def refuse(self, name: str, what: str) -> None:
        raise UnpackError(f'archive member "{name}": {what} are not allowed')

    def finish(self) -> None:
        for path, mode in reversed(self._dir_modes):
            os.chmod(path, mode, follow_symlinks=False)
        check_tree(self.root)


def check_tree(root: str) -> None:
    """Refuse a tree holding a symlink that resolves outside ``root``, a device file, or set-id bits.

    Run by the child after unpacking and again by the agent before anything is moved into place
    (the escape inspection Nomad added for hosts without Landlock, GH-26608).
    """
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                try:
                    real = os.path.realpath(path, strict=True)
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        raise UnpackError(f'"{rel}" is a symlink loop') from None
                    real = os.path.realpath(path)  # dangling: judge where it would point
                if real != real_root and not real.startswith(real_root + os.sep):
                    raise UnpackError(f'"{rel}" is a symlink resolving outside the destination')
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode) \
                    or stat.S_ISSOCK(st.st_mode):
                raise UnpackError(f'"{rel}": device files, FIFOs and sockets are not allowed')
            elif st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(path, stat.S_IMODE(st.st_mode) & 0o1777, follow_symlinks=False)


# ---- format drivers -----------------------------------------------------------------------

def _unpack_tar(path: str, compression: str, ex: Extractor) -> None:
    with open(path, "rb", buffering=0) as raw:
        threaded: _ThreadedReader | None = None
        if compression == "tar":
            def next_chunk() -> bytes:
                return raw.read(_CHUNK)
        else:
            threaded = _ThreadedReader(lambda: _decompressing_reader(raw, compression))
            next_chunk = threaded.next_chunk
        fr = _ForwardReader(next_chunk)
        try:
            with tarfile.open(fileobj=fr, mode="r:") as tf:  # type: ignore[call-overload]
                for m in tf:
                    if m.isreg():
                        if m.sparse is not None:
                            src: Any = tf.extractfile(m)
                        else:
                            fr.seek(m.offset_data)
                            src = _MemberData(fr, m.size)
                        ex.file(m.name, src, m.mode, m.mtime, declared_size=m.size)
                    elif m.isdir():
                        ex.directory(m.name, m.mode)
                    elif m.issym():
                        ex.symlink(m.name, m.linkname)
                    elif m.islnk():
                        ex.hardlink(m.name, m.linkname)
                    elif m.ischr() or m.isblk():
                        ex.refuse(m.name, "device files")
                    elif m.isfifo():
                        ex.refuse(m.name, "FIFOs")
                    else:
                        ex.refuse(m.name, f"tar entries of type {m.type!r}")
        finally:
            if threaded is not None:
                threaded.close()


def _unpack_zip(path: str, ex: Extractor) -> None:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename
            unix_mode = info.external_attr >> 16
            ftype = stat.S_IFMT(unix_mode)
            if info.is_dir():
                ex.directory(name, stat.S_IMODE(unix_mode) or 0o755)
            elif ftype == stat.S_IFLNK:
                if info.file_size > 4096:
                    raise UnpackError(f'archive member "{name}": symlink target too long')
                ex.symlink(name, zf.read(info).decode("utf-8", "surrogateescape"))
            elif ftype in (0, stat.S_IFREG):
                with zf.open(info) as src:
                    ex.file(name, src, stat.S_IMODE(unix_mode) or 0o644,
                            declared_size=info.file_size)
            else:
                ex.refuse(name, "device files, FIFOs and sockets")


def _unpack_single(path: str, compression: str, out_name: str, ex: Extractor) -> None:
    with open(path, "rb", buffering=0) as raw:
        stream = _decompressing_reader(raw, compression)
        try:
            ex.file(out_name, stream, 0o644)
        finally:
            stream.close()


_CORRUPT = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, OSError)


def unpack(path: str, kind: str, root: str, *, out_name: str, size_limit: int, count_limit: int,
           display: str, on_bytes: Callable[[int], None] | None = None) -> Extractor:
    """Unpack ``path`` (an archive of ``kind``) into the new directory ``root``.

    ``out_name`` names the output of the single-file kinds (gz, bz2, xz, zst).
    Raises :class:`UnpackError` for unsafe, oversized, corrupt or mislabelled archives.
    """
    _check_claim(path, kind, display)
    ex = Extractor(root, size_limit=size_limit, count_limit=count_limit, on_bytes=on_bytes)
    try:
        if kind == "zip":
            _unpack_zip(path, ex)
        elif kind == "tar" or kind.startswith("tar."):
            _unpack_tar(path, _compression_of(kind), ex)
        else:
            _unpack_single(path, kind, out_name, ex)
    except UnpackError:
        raise
    except _CORRUPT as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES,
                                                      errno.EPERM, errno.EROFS):
            raise
        raise UnpackError(f'"{display}" is not a valid {kind} archive (truncated or corrupt): '
                          f"{exc or type(exc).__name__}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("zstandard") or "Zstd" in type(exc).__name__:
            raise UnpackError(f'"{display}" is not a valid {kind} archive (truncated or corrupt): '
                              f"{exc}") from None
        raise
    ex.finish()
    return ex
