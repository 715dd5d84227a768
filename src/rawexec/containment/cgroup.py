"""One task's cgroup(s): create + limit, place (via ``procs_files``), list, kill, remove.

Layout, as Nomad lays it out:

* v2: ``<cgroup2 mount>/<parent or nomad.slice>/<alloc_id>.<task>.scope``
* v1: ``/sys/fs/cgroup/<controller>/<parent or nomad>/<alloc_id>.<task>`` for memory and cpu
  (limits), freezer (membership, freeze/kill), cpuacct (cpu stats) and cpuset (only with
  reserved cores)
* hybrid: both — the v1 dirs (memory, cpu, cpuset) carry the limits, the cgroup2 scope carries
  membership, ``cgroup.kill`` and cpu stats (so no freezer/cpuacct dirs: each join is a cgroup
  migration, and fewer dirs make create and destroy cheaper).

An override (``cgroup_v2_override`` or, per controller, ``cgroup_v1_override``) replaces the
matching directory. It belongs to the operator: we place the task in it and kill what is in it,
but never create, limit or remove it.

Placement is done by the task's own child between fork and exec: it writes ``b"0"`` to every
file in :attr:`TaskCgroup.procs_files`, so no early fork of the task can escape.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rawexec.containment.detect import CgroupSystem
from rawexec.containment.fs import CgroupFS
from rawexec.containment.setup import (
    apply_limits,
    check_name,
    init_cpuset,
    make_task_dir,
    override_dir,
    rel_parts,
    resources_from_mapping,
    v1_wanted,
)
from rawexec.errors import ContainmentError, InvalidConfigError
from rawexec.lazylog import get_logger
from rawexec.types import Resources

__all__ = ["DEFAULT_V1_PARENT", "DEFAULT_V2_PARENT", "STATE_VERSION", "V1_TASK_CONTROLLERS", "TaskCgroup",
           "destroy_all", "remove_parent"]

log = get_logger("rawexec.containment")

DEFAULT_V2_PARENT = "nomad.slice"
DEFAULT_V1_PARENT = "nomad"
#: v1 controllers a task may get its own directory in (which it does: ``setup.v1_wanted``).
V1_TASK_CONTROLLERS = ("freezer", "memory", "cpu", "cpuacct", "cpuset")
STATE_VERSION = 1


def _parse_kv(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            continue
    return out


class TaskCgroup:
    """The cgroup directories of one task. Build with :meth:`create` or :meth:`from_state`."""

    def __init__(self, fs: CgroupFS, *, mode: str, alloc_id: str, task_name: str, unified: str | None,
                 v1: Mapping[str, str], owned: tuple[str, ...], oom_baseline: int = 0) -> None:
        self.fs = fs
        self.mode = mode
        self.alloc_id = alloc_id
        self.task_name = task_name
        self.unified = unified
        self.v1 = dict(v1)
        self.owned = owned
        self.oom_baseline = oom_baseline
        self._has_kill: bool | None = None  # cgroup.kill on the cgroup2 dir (Linux 5.14+), looked up once

    def __repr__(self) -> str:
        return f"TaskCgroup(mode={self.mode!r}, dirs={self.dirs!r})"

    # -- layout --------------------------------------------------------------------------------
    @property
    def dirs(self) -> tuple[str, ...]:
        """Every distinct directory the task is a member of (cgroup2 first)."""
        out: list[str] = [self.unified] if self.unified else []
        for d in self.v1.values():
            if d not in out:
                out.append(d)
        return tuple(out)

    @property
    def procs_files(self) -> tuple[str, ...]:
        """Absolute ``cgroup.procs`` paths; the task's child writes ``b"0"`` to each before exec."""
        return tuple(self.fs.host_path(d + "/cgroup.procs") for d in self.dirs)

    @property
    def primary(self) -> str:
        """The directory that lists the task's processes (cgroup2, else freezer, else pids)."""
        if self.unified:
            return self.unified
        for ctrl in ("freezer", "pids", "memory", "cpu", "cpuacct", "cpuset"):
            if ctrl in self.v1:
                return self.v1[ctrl]
        return next(iter(self.v1.values()))

    @property
    def memory_dir(self) -> str | None:
        if "memory" in self.v1:
            return self.v1["memory"]
        if self.unified and self.mode == "v2" and self.fs.exists(self.unified + "/memory.current"):
            return self.unified
        return None

    # -- create ----------------------------------------------------------------------------------
    @classmethod
    def create(cls, system: CgroupSystem, *, alloc_id: str, task_name: str, parent: str | None = None,
               v1_override: Mapping[str, str] | None = None, v2_override: str | None = None,
               resources: Resources | Mapping[str, Any] | None = None) -> TaskCgroup:
        """Create (or reuse a leftover of) the task's cgroup dirs and apply ``resources``' limits.

        ``resources`` may also be a mapping of :class:`Resources` fields (e.g. decoded JSON).
        """
        fs = system.fs
        if resources is not None and not isinstance(resources, Resources):
            resources = resources_from_mapping(resources)
        if not system.enabled:
            raise ContainmentError(f"cannot create a task cgroup: cgroups are off ({system.reason})")
        check_name("alloc_id", alloc_id)
        check_name("task_name", task_name)
        if v1_override and v2_override:
            raise InvalidConfigError("cgroup_v1_override and cgroup_v2_override are both set; set only one of them")
        if v2_override and system.unified_mount is None:
            raise ContainmentError(f"cgroup_v2_override is set but this host has no cgroup2 mount (mode "
                                   f"{system.mode}); use cgroup_v1_override")
        if v1_override and not system.v1_mounts:
            raise ContainmentError(f"cgroup_v1_override is set but this host has no cgroup v1 controllers (mode "
                                   f"{system.mode}); use cgroup_v2_override")
        for ctrl in v1_override or {}:
            if ctrl not in system.v1_mounts:
                raise ContainmentError(f"cgroup_v1_override names controller {ctrl!r}, which is not mounted on this "
                                       f"host (mounted: {', '.join(sorted(system.v1_mounts))})")
        parent_parts = rel_parts("parent cgroup", parent) if parent is not None else None
        created: list[str] = []
        owned: list[str] = []
        try:
            unified: str | None = None
            if system.unified_mount is not None:
                if v2_override:
                    unified = override_dir(fs, system.unified_mount, v2_override, "cgroup_v2_override")
                else:
                    unified, made = make_task_dir(system, system.unified_mount, parent_parts or [DEFAULT_V2_PARENT],
                                                  f"{alloc_id}.{task_name}.scope", created, None)
                    if made:
                        created.append(unified)
                    owned.append(unified)
            v1: dict[str, str] = {}
            by_mount: dict[str, str] = {}
            wanted = v1_wanted(fs, unified, resources)
            for ctrl, mount in sorted(system.v1_mounts.items()):
                if v1_override and ctrl in v1_override:
                    v1[ctrl] = override_dir(fs, mount, v1_override[ctrl], f"cgroup_v1_override[{ctrl!r}]")
                elif ctrl in wanted or mount in by_mount:
                    if mount not in by_mount:
                        cpuset = ctrl == "cpuset" or system.v1_mounts.get("cpuset") == mount
                        d, made = make_task_dir(system, mount, parent_parts or [DEFAULT_V1_PARENT],
                                                f"{alloc_id}.{task_name}", created, "cpuset" if cpuset else None)
                        if made:
                            created.append(d)
                            if cpuset:
                                init_cpuset(fs, d)
                        owned.append(d)
                        by_mount[mount] = d
                    v1[ctrl] = by_mount[mount]
            cg = cls(fs, mode=system.mode, alloc_id=alloc_id, task_name=task_name, unified=unified, v1=v1,
                     owned=tuple(owned))
            leftovers = [d for d in owned if d not in created]
            if leftovers:
                cg._reuse_leftovers(leftovers)
            if resources is not None:
                apply_limits(fs, system.mode, unified, v1, owned, resources, fresh=created)
            # a memory cgroup made just now has had no OOM kill: no need to read its count
            counted = v1.get("memory") or unified
            cg.oom_baseline = 0 if counted is not None and counted in created else cg._raw_oom_count()
            return cg
        except BaseException as exc:
            for d in reversed(created):
                try:
                    fs.rmdir(d)
                except OSError:
                    pass
            if isinstance(exc, OSError):
                raise ContainmentError(f"unable to configure cgroups: {exc}") from exc
            raise

    def _reuse_leftovers(self, dirs: list[str]) -> None:
        """Dirs left by a crashed run: thaw them and kill whatever still runs there."""
        for d in dirs:
            for f, thawed in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
                if self.fs.exists(f"{d}/{f}"):
                    try:
                        self.fs.write(f"{d}/{f}", thawed)
                    except OSError:
                        pass
        stale = self._pids_in(dirs)
        if stale:
            log.warning("cgroups: reusing leftover cgroup %s; killing %d stale processes: %s",
                        dirs[0], len(stale), sorted(stale)[:10])
            self._kill(tuple(dirs), 5.0)

    # -- membership ------------------------------------------------------------------------------
    def _tree(self, d: str) -> list[str]:
        """``d`` and every cgroup nested below it (a root task may create its own sub-cgroups)."""
        out = [d]
        i = 0
        while i < len(out):
            if self.fs.may_have_subdirs(out[i]):  # one stat; a listing only when there are children
                out.extend(f"{out[i]}/{name}" for name in self.fs.subdirs(out[i]))
            i += 1
        return out

    def _populated(self, d: str) -> bool | None:
        """cgroup2 ``cgroup.events``: is a live process in ``d`` or below it? None if unknown (no file)."""
        try:
            return "populated 1" in self.fs.read(d + "/cgroup.events")
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENODEV):
                return None if e.errno == errno.ENOENT and self.fs.isdir(d) else False
            raise

    def _busy(self, dirs: tuple[str, ...]) -> tuple[str, ...]:
        """The directories among ``dirs`` that still hold a process (nested cgroups included)."""
        out: list[str] = []
        for d in dirs:
            pop = self._populated(d) if d == self.unified else None
            if pop and self._can_kill(d):
                return (d,)  # one cgroup.kill takes every member, in every hierarchy: no need to look further
            if pop if pop is not None else bool(self._pids_in([d])):
                out.append(d)
        return tuple(out)

    def _pids_in(self, dirs: tuple[str, ...] | list[str]) -> set[int]:
        out: set[int] = set()
        for top in dirs:
            for d in self._tree(top):
                try:
                    out.update(int(x) for x in self.fs.read(d + "/cgroup.procs").split())
                except OSError as e:
                    if e.errno not in (errno.ENOENT, errno.ENODEV):
                        raise
        return out

    def pids(self) -> list[int]:
        """The task's processes (the primary directory's ``cgroup.procs``, nested cgroups included)."""
        return sorted(self._pids_in([self.primary]))

    # -- kill / destroy --------------------------------------------------------------------------
    def kill_all(self, timeout: float = 5.0) -> None:
        """SIGKILL every process in the task's cgroups; returns once they are all gone.

        v2/hybrid: ``cgroup.kill``; v1: freeze → SIGKILL each → thaw. Loops (bounded by
        ``timeout``) until the cgroups are empty: works on SIGSTOPped tasks and fork storms.
        """
        self._kill(self.dirs, timeout)

    def _kill(self, dirs: tuple[str, ...], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while busy := self._busy(dirs):
            if time.monotonic() > deadline:
                pids = self._pids_in(busy)
                raise ContainmentError(f"{len(pids)} processes survived SIGKILL in cgroup {busy[0]} for "
                                       f"{timeout:g}s: {sorted(pids)[:10]}")
            self._kill_round(busy, deadline)
            self._settle(busy, deadline)

    def _settle(self, busy: tuple[str, ...], deadline: float) -> None:
        """Wait for the processes of a kill round to be gone from ``busy``: at most one round
        (1 s after a cgroup.kill, else 0.25 s), and never past ``deadline``."""
        u = self.unified if self.unified in busy else None
        if u is not None and self._can_kill(u):
            # cgroup.kill: every member goes at once, in every hierarchy, and any fork racing it.
            # Sleep until the kernel says the cgroup2 side is empty (cgroup.events is pollable),
            # then look at the rest once: a leftover there was never in the cgroup2 dir, and the
            # next round signals it. A long round: one kill needs no repeating, and when hundreds of
            # tasks stop at once their processes need longer than 0.25 s to go.
            self._wait_unpopulated(u, min(deadline, time.monotonic() + 1.0))
            return
        until = min(deadline, time.monotonic() + 0.25)
        delay = 0.0002
        while self._busy(busy) and time.monotonic() < until:
            time.sleep(delay)
            delay = min(delay * 2, 0.01)

    def _wait_unpopulated(self, u: str, until: float) -> None:
        try:
            fd = self.fs.open_fd(u + "/cgroup.events")
        except OSError:
            return
        try:
            p = select.poll()
            p.register(fd, select.POLLPRI)  # kernfs signals a change of the file with POLLPRI
            while b"populated 1" in os.pread(fd, 256, 0):
                left = until - time.monotonic()
                if left <= 0:
                    return
                # Woken by the kernel's notification (at most 20 ms late: cgroup rate-limits them);
                # capped so a file system without notifications is still re-read. Not shorter:
                # with hundreds of tasks stopping at once, polling shims would take the CPU their
                # killed processes need to exit.
                p.poll(min(left, 0.1) * 1000)
        finally:
            os.close(fd)

    def _can_kill(self, u: str) -> bool:
        if self._has_kill is None:
            self._has_kill = self.fs.exists(u + "/cgroup.kill")
        return self._has_kill

    def _signal_all(self, pids: set[int]) -> None:
        for p in pids:
            try:
                self.fs.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _kill_round(self, busy: tuple[str, ...], deadline: float) -> None:
        """One SIGKILL of everything in ``busy`` (the dirs that hold processes)."""
        fs = self.fs
        u = self.unified if self.unified in busy else None
        fz = self.v1.get("freezer")
        fz = fz if fz in busy else None
        if u is not None and self._can_kill(u):
            fs.write(u + "/cgroup.kill", "1")
        elif fz is not None:
            self._frozen(busy, fz, "freezer.state", "FROZEN",
                         lambda: fs.read(fz + "/freezer.state").strip() == "FROZEN", "THAWED", deadline)
        elif u is not None and fs.exists(u + "/cgroup.freeze"):
            self._frozen(busy, u, "cgroup.freeze", "1",
                         lambda: "frozen 1" in fs.read(u + "/cgroup.events").splitlines(), "0", deadline)
        else:  # no kill or freeze file, or a process in a v1 dir only (never in the cgroup2 one)
            self._signal_all(self._pids_in(busy))

    def _frozen(self, dirs: tuple[str, ...], d: str, f: str, freeze: str, is_frozen: Callable[[], bool], thaw: str,
                deadline: float) -> None:
        """Freeze ``d`` (wait, bounded), SIGKILL everything in our dirs, thaw."""
        fs = self.fs
        fs.write(f"{d}/{f}", freeze)
        try:
            limit = min(deadline, time.monotonic() + 1.0)
            delay = 0.0002
            while not is_frozen() and time.monotonic() < limit:
                time.sleep(delay)
                delay = min(delay * 2, 0.01)
            self._signal_all(self._pids_in(dirs))
        finally:
            fs.write(f"{d}/{f}", thaw)

    def kill_now(self) -> bool:
        """One ``cgroup.kill`` of the task's cgroup2 dir, not waiting: True when written (every
        member, in every hierarchy, and any fork racing it, is on its way out; the caller waits
        for them: :meth:`wait_empty`), False when the cgroup has no ``cgroup.kill`` (use
        :meth:`kill_all`). No look at the cgroup's files first: a shim, the subreaper of every
        process the task made, calls it only when it still has a child."""
        u = self.unified
        if u is None or not self._can_kill(u):
            return False
        self.fs.write(u + "/cgroup.kill", "1")
        return True

    def wait_empty(self, timeout: float) -> None:
        """After :meth:`kill_now`: sleep until the cgroup2 dir holds no live process (the kernel
        says so in ``cgroup.events``, without counting zombies), at most ``timeout`` seconds. One
        wake-up, where waiting for each process's SIGCHLD would be one per process."""
        if self.unified is not None:
            self._wait_unpopulated(self.unified, time.monotonic() + timeout)

    def signal_kill(self) -> None:
        """Start killing everything in the cgroup without waiting (one kill round; see :func:`destroy_all`)."""
        busy = self._busy(self.dirs)
        if busy:
            self._kill_round(busy, time.monotonic() + 1.0)

    def destroy(self, timeout: float = 5.0) -> None:
        """Kill everything, then remove our dirs (retrying while busy). Idempotent; overrides stay."""
        deadline = time.monotonic() + timeout
        if self.owned and set(self.owned) == set(self.dirs) and self._rmdir_empty():
            return
        self.kill_all(timeout)
        for top in self.owned:
            for d in reversed(self._tree(top)):  # nested cgroups first
                self._rmdir(d, deadline)

    def _rmdir_empty(self) -> bool:
        """The common case, a task already gone: the kernel refuses (EBUSY) to remove a cgroup
        that holds a process or a child cgroup, so plain ``rmdir`` of each dir is the check."""
        for d in self.owned:
            try:
                self.fs.rmdir(d)
            except FileNotFoundError:
                continue
            except OSError as e:
                if e.errno == errno.EBUSY:
                    return False
                raise ContainmentError(f"unable to remove cgroup {d}: {e.strerror}") from e
        return True

    def _rmdir(self, d: str, deadline: float) -> None:
        delay = 0.001
        while True:
            try:
                self.fs.rmdir(d)
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise ContainmentError(f"unable to remove cgroup {d}: {e.strerror}") from e
                if self._pids_in([d]):
                    self._kill(self.dirs, max(0.1, deadline - time.monotonic()))
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    # -- OOM -------------------------------------------------------------------------------------
    def _raw_oom_count(self) -> int:
        fs = self.fs
        try:
            mem = self.v1.get("memory")
            if mem is not None:
                kv = _parse_kv(fs.read(mem + "/memory.oom_control"))
                if "oom_kill" in kv:
                    return kv["oom_kill"]
                return int(fs.read(mem + "/memory.failcnt").strip() or 0)
            if self.unified and fs.exists(self.unified + "/memory.events"):
                return _parse_kv(fs.read(self.unified + "/memory.events")).get("oom_kill", 0)
        except OSError:
            return 0
        return 0

    def oom_kill_count(self) -> int:
        """OOM kills in the task's cgroup since :meth:`create` (v2 ``memory.events``; v1 ``oom_control``)."""
        return max(0, self._raw_oom_count() - self.oom_baseline)

    # -- persistence -----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-able description for recovery in another process (:meth:`from_state`)."""
        return {"version": STATE_VERSION, "mode": self.mode, "alloc_id": self.alloc_id,
                "task_name": self.task_name, "unified": self.unified, "v1": dict(self.v1),
                "owned": list(self.owned), "oom_baseline": self.oom_baseline}

    @classmethod
    def from_state(cls, d: Mapping[str, Any], fs: CgroupFS | None = None) -> TaskCgroup:
        """Rebuild from :meth:`to_state` output (no kernel access)."""
        try:
            if d["version"] != STATE_VERSION:
                raise ContainmentError(f"cgroup state version {d['version']!r} is not supported "
                                       f"(expected {STATE_VERSION})")
            unified = d["unified"]
            v1 = {str(k): str(v) for k, v in dict(d["v1"]).items()}
            cg = cls(fs if fs is not None else CgroupFS(), mode=str(d["mode"]), alloc_id=str(d["alloc_id"]),
                     task_name=str(d["task_name"]), unified=None if unified is None else str(unified), v1=v1,
                     owned=tuple(str(x) for x in d["owned"]), oom_baseline=int(d.get("oom_baseline", 0)))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ContainmentError(f"invalid cgroup state {dict(d)!r}: {e!r}") from e
        if not cg.dirs:
            raise ContainmentError("invalid cgroup state: it names no cgroup directory")
        for p in cg.dirs:
            if not p.startswith("/"):
                raise ContainmentError(f"invalid cgroup state: {p!r} is not an absolute path")
        return cg


def destroy_all(cgroups: Iterable[TaskCgroup], timeout: float = 5.0) -> list[ContainmentError]:
    """Destroy many task cgroups fast: kill them all first (exits overlap), then wait and remove each.

    Returns the errors (one per cgroup that could not be destroyed) instead of stopping at the first.
    """
    cgs = list(cgroups)
    errors: list[ContainmentError] = []
    for cg in cgs:
        try:
            cg.signal_kill()
        except (OSError, ContainmentError) as e:
            log.debug("cgroups: first kill round for %r failed: %s", cg, e)
    deadline = time.monotonic() + timeout
    for cg in cgs:
        try:
            cg.destroy(max(0.5, deadline - time.monotonic()))
        except ContainmentError as e:
            errors.append(e)
        except OSError as e:
            errors.append(ContainmentError(f"unable to destroy {cg!r}: {e}"))
    return errors


def remove_parent(system: CgroupSystem, parent: str) -> list[str]:
    """Remove the (now empty) parent cgroup ``parent`` in every hierarchy — e.g. a test's own parent.

    Never touches a parent that still has task cgroups or processes: those are returned (with the
    reason) rather than killed. Missing dirs are fine.
    """
    parts = rel_parts("parent cgroup", parent)
    mounts = set(system.v1_mounts.values()) | ({system.unified_mount} if system.unified_mount else set())
    left: list[str] = []
    for m in sorted(mounts):
        for depth in range(len(parts), 0, -1):  # a/b/c: remove c, then b, then a
            d = m + "/" + "/".join(parts[:depth])
            try:
                system.fs.rmdir(d)
            except FileNotFoundError:
                continue
            except OSError as e:
                left.append(f"{d}: {e.strerror}")
                break
    return left
