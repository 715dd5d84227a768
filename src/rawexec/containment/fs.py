"""The one seam between containment code and the kernel's cgroup files.

Every cgroupfs access (and the mount table, and signalling a pid found in a cgroup) goes
through :class:`CgroupFS`. Paths handed to it are the *host* absolute paths
(``/sys/fs/cgroup/memory/nomad/...``); a ``CgroupFS(root=tmp_path)`` maps them under
``tmp_path`` so unit tests can run the v2, v1 and hybrid logic on a fake tree.

Writes are one ``write(2)`` each, without ``O_CREAT``: cgroupfs wants exactly that, and a
control file that does not exist is an error, not something to create.
"""

from __future__ import annotations

import errno
import os

from rawexec.errors import ContainmentError

__all__ = ["CgroupFS"]


class CgroupFS:
    """Read/write/mkdir/rmdir/list cgroupfs files below ``root`` (``"/"`` = the real host)."""

    def __init__(self, root: str = "/", *, euid: int | None = None) -> None:
        root = os.fspath(root)
        if not os.path.isabs(root):
            raise ContainmentError(f"CgroupFS root must be an absolute path, got {root!r}")
        self.root = os.path.normpath(root)
        self.euid = os.geteuid() if euid is None else euid

    def __repr__(self) -> str:
        return f"CgroupFS(root={self.root!r}, euid={self.euid})"

    @property
    def is_host(self) -> bool:
        """True when paths are the real ones (root ``/``)."""
        return self.root == "/"

    def host_path(self, path: str) -> str:
        """The real filesystem path for a cgroup path (identity on the host)."""
        if not path.startswith("/"):
            raise ContainmentError(f"cgroup paths must be absolute, got {path!r}")
        if self.is_host:
            return path
        return self.root + path

    # -- files ---------------------------------------------------------------------------------
    def read(self, path: str) -> str:
        """Whole content of a (small) control file."""
        fd = os.open(self.host_path(path), os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks: list[bytes] = []
            while True:
                b = os.read(fd, 65536)
                if not b:
                    break
                chunks.append(b)
            return b"".join(chunks).decode("utf-8", "replace")
        finally:
            os.close(fd)

    def write(self, path: str, data: str | bytes) -> None:
        """One ``write(2)`` of ``data`` to an existing control file (raises ``OSError``)."""
        raw = data.encode() if isinstance(data, str) else data
        fd = os.open(self.host_path(path), os.O_WRONLY | os.O_CLOEXEC | (0 if self.is_host else os.O_TRUNC))
        try:
            n = os.write(fd, raw)
            if n != len(raw):
                raise OSError(errno.EIO, f"short write to {path}: {n} of {len(raw)} bytes")
        finally:
            os.close(fd)

    def open_fd(self, path: str) -> int:
        """An O_RDONLY descriptor; re-read with ``os.pread(fd, n, 0)`` (cheap repeated stats)."""
        return os.open(self.host_path(path), os.O_RDONLY | os.O_CLOEXEC)

    def exists(self, path: str) -> bool:
        return os.path.exists(self.host_path(path))

    def isdir(self, path: str) -> bool:
        return os.path.isdir(self.host_path(path))

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(self.host_path(path)))

    def subdirs(self, path: str) -> list[str]:
        """Names of the child directories (child cgroups) of ``path``; [] if it does not exist."""
        try:
            with os.scandir(self.host_path(path)) as it:
                return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def may_have_subdirs(self, path: str) -> bool:
        """False when ``path`` surely has no child directory: a directory's link count is 2 + its
        subdirectories on cgroupfs (kernfs), tmpfs and ext4, so one ``stat`` replaces a listing.
        True when it has some, when the count says nothing (not 2), or when ``path`` is not there
        (a listing then tells the truth)."""
        try:
            return os.stat(self.host_path(path)).st_nlink != 2
        except OSError:
            return True

    def stat_uid(self, path: str) -> int:
        return os.stat(self.host_path(path)).st_uid

    # -- directories -----------------------------------------------------------------------------
    def mkdir(self, path: str) -> bool:
        """Create one directory; True if created, False if it already existed."""
        try:
            os.mkdir(self.host_path(path), 0o755)
        except FileExistsError:
            return False
        return True

    def rmdir(self, path: str) -> None:
        os.rmdir(self.host_path(path))

    # -- the rest of the kernel ------------------------------------------------------------------
    def mountinfo(self) -> str:
        """This process's mount table (``/proc/self/mountinfo``; ``<root>/proc/self/mountinfo`` in tests)."""
        return self.read("/proc/self/mountinfo")

    def kill(self, pid: int, sig: int) -> None:
        """Signal a pid read from a cgroup. A fake tree refuses: its pids are not real processes."""
        if not self.is_host:
            raise ContainmentError(
                f"refusing to send signal {sig} to pid {pid} listed in a fake cgroup tree at {self.root}")
        os.kill(pid, sig)
