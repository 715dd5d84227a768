"""Which cgroup world this host offers: pure v2, v1, hybrid, or none ("off").

Decided from ``/proc/self/mountinfo`` (what is mounted at ``/sys/fs/cgroup``), once per
process, and logged with the reason:

* ``cgroup2`` at ``/sys/fs/cgroup`` ⇒ ``v2``.
* ``tmpfs`` at ``/sys/fs/cgroup`` with v1 controller mounts below it ⇒ ``v1``, or ``hybrid`` when
  a ``cgroup2`` mount also sits below it (systemd's ``/sys/fs/cgroup/unified``). In hybrid the
  v1 controllers carry the limits and the cgroup2 tree carries membership and ``cgroup.kill``.
* ``no_cgroups = true``, not root, nothing mounted, or mounted read-only ⇒ ``off``.
"""

from __future__ import annotations

import _thread
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from rawexec.containment.fs import CgroupFS
from rawexec.lazylog import get_logger

__all__ = ["CGROUP_ROOT", "CgroupSystem", "Mount", "clear_detect_cache", "detect", "parse_mountinfo"]

log = get_logger("rawexec.containment")

CGROUP_ROOT = "/sys/fs/cgroup"
Mode = Literal["v2", "v1", "hybrid", "off"]

#: v1 controllers we know by name (from a cgroup mount's super options).
V1_KNOWN = frozenset({"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "blkio",
                      "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc"})


@dataclass(frozen=True)
class Mount:
    """One line of mountinfo (the fields we use)."""

    mount_point: str
    fstype: str
    options: tuple[str, ...]
    super_options: tuple[str, ...]

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


@dataclass(frozen=True)
class CgroupSystem:
    """The detected cgroup world.

    ``unified_mount`` is the cgroup2 mount (``/sys/fs/cgroup`` on v2,
    ``/sys/fs/cgroup/unified`` on hybrid); ``v1_mounts`` maps a v1 controller to its mount;
    ``v2_controllers`` lists the controllers the cgroup2 root offers.
    """

    mode: Mode
    reason: str
    unified_mount: str | None = None
    v1_mounts: Mapping[str, str] = field(default_factory=dict)
    v2_controllers: tuple[str, ...] = ()
    fs: CgroupFS = field(default_factory=CgroupFS, compare=False, repr=False)

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """Parse ``/proc/self/mountinfo``; malformed lines are skipped."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        parts = line.split()
        try:
            sep = parts.index("-", 6)
        except ValueError:
            continue
        if len(parts) < sep + 3:
            continue
        mounts.append(Mount(mount_point=_unescape(parts[4]), fstype=parts[sep + 1],
                            options=tuple(parts[5].split(",")),
                            super_options=tuple(parts[sep + 3].split(","))))
    return mounts


def _off(reason: str, fs: CgroupFS) -> CgroupSystem:
    return CgroupSystem(mode="off", reason=reason, fs=fs)


def _detect(no_cgroups: bool, fs: CgroupFS) -> CgroupSystem:
    if no_cgroups:
        return _off("no_cgroups = true in the plugin config", fs)
    try:
        mounts = parse_mountinfo(fs.mountinfo())
    except OSError as e:
        return _off(f"cannot read /proc/self/mountinfo: {e.strerror}", fs)
    base = None
    for m in mounts:  # later lines over-mount earlier ones
        if m.mount_point == CGROUP_ROOT:
            base = m
    if base is None:
        return _off(f"no cgroup filesystem is mounted at {CGROUP_ROOT}", fs)
    if fs.euid != 0:
        return _off(f"not running as root (euid {fs.euid}); cgroups need root, so tasks run "
                    "without them (process-tree containment only)", fs)

    if base.fstype == "cgroup2":
        if base.read_only:
            return _off(f"{CGROUP_ROOT} (cgroup2) is mounted read-only", fs)
        try:
            ctrls = tuple(fs.read(f"{CGROUP_ROOT}/cgroup.controllers").split())
        except OSError as e:
            return _off(f"cannot read {CGROUP_ROOT}/cgroup.controllers: {e.strerror}", fs)
        return CgroupSystem(mode="v2", reason=f"cgroup2 is mounted at {CGROUP_ROOT} (controllers: "
                            f"{' '.join(ctrls) or 'none'})", unified_mount=CGROUP_ROOT,
                            v2_controllers=ctrls, fs=fs)

    if base.fstype != "tmpfs":
        return _off(f"unexpected filesystem {base.fstype!r} at {CGROUP_ROOT}", fs)

    prefix = CGROUP_ROOT + "/"
    v1: dict[str, str] = {}
    unified: Mount | None = None
    read_only: list[str] = []
    for m in mounts:
        if not m.mount_point.startswith(prefix):
            continue
        if m.fstype == "cgroup2":
            unified = m
        elif m.fstype == "cgroup":
            if m.read_only:
                read_only.append(m.mount_point)
                continue
            for opt in m.super_options:
                if opt in V1_KNOWN:
                    v1[opt] = m.mount_point
    if unified is not None and unified.read_only:
        read_only.append(unified.mount_point)
        unified = None
    ro_note = f"; read-only, not used: {', '.join(read_only)}" if read_only else ""
    if not v1 and unified is None:
        return _off(f"{CGROUP_ROOT} is a tmpfs without writable cgroup mounts below it{ro_note}", fs)
    ctrls = ()
    if unified is not None:
        try:
            ctrls = tuple(fs.read(f"{unified.mount_point}/cgroup.controllers").split())
        except OSError:
            ctrls = ()
    if not v1:
        assert unified is not None
        return CgroupSystem(mode="v2", reason=f"only cgroup2 is mounted (at {unified.mount_point}){ro_note}",
                            unified_mount=unified.mount_point, v2_controllers=ctrls, fs=fs)
    names = " ".join(sorted(v1))
    if unified is None:
        return CgroupSystem(mode="v1", reason=f"cgroup v1 controllers under {CGROUP_ROOT}: {names}{ro_note}",
                            v1_mounts=v1, fs=fs)
    return CgroupSystem(mode="hybrid", reason=f"cgroup v1 controllers ({names}) plus cgroup2 at "
                        f"{unified.mount_point}{ro_note}", unified_mount=unified.mount_point, v1_mounts=v1,
                        v2_controllers=ctrls, fs=fs)


class _Cache:
    """Detection result per (no_cgroups, root, euid): detect once, log once."""

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._items: dict[tuple[bool, str, int], CgroupSystem] = {}

    def get(self, no_cgroups: bool, fs: CgroupFS) -> CgroupSystem:
        key = (no_cgroups, fs.root, fs.euid)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                return hit
            system = _detect(no_cgroups, fs)
            self._items[key] = system
        if system.mode == "off" and not no_cgroups:
            log.warning("cgroups: off — %s", system.reason)
        else:
            log.info("cgroups: %s — %s", system.mode, system.reason)
        return system

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_cache = _Cache()


def detect(no_cgroups: bool = False, fs: CgroupFS | None = None) -> CgroupSystem:
    """The host's cgroup mode (cached per process; logs the mode and why on first call)."""
    return _cache.get(no_cgroups, fs if fs is not None else CgroupFS())


def clear_detect_cache() -> None:
    """Forget cached detections (tests; a host whose mounts changed)."""
    _cache.clear()
