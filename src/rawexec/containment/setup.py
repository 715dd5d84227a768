"""Creating a task's cgroup: names and paths, parents, overrides, and writing the limits.

Pure helpers for :meth:`rawexec.containment.cgroup.TaskCgroup.create`; everything goes through
the :class:`~rawexec.containment.fs.CgroupFS` seam.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rawexec.containment.detect import CgroupSystem
from rawexec.containment.fs import CgroupFS
from rawexec.containment.limits import cpu_shares, cpu_weight, parse_cpu_list, task_cpuset
from rawexec.errors import ContainmentError, InvalidConfigError
from rawexec.lazylog import get_logger
from rawexec.types import Resources

__all__ = [
    "V2_CONTROLLERS",
    "apply_limits",
    "check_name",
    "ensure_parent",
    "init_cpuset",
    "make_task_dir",
    "override_dir",
    "rel_parts",
    "resources_from_mapping",
    "v1_wanted",
]

log = get_logger("rawexec.containment")

#: v2 controllers enabled down the parent chain (pure v2 only), as Nomad does.
V2_CONTROLLERS = ("cpuset", "cpu", "io", "memory", "pids")


def check_name(field: str, value: str) -> None:
    if not isinstance(value, str) or not value or value in (".", "..") or any(c in value for c in "/\n\0"):
        raise InvalidConfigError(f"{field} {value!r} cannot name a cgroup: it must be non-empty and contain "
                                 "no '/', newline or NUL")


def rel_parts(field: str, value: str) -> list[str]:
    """Path components of a cgroup path relative to a mount (a leading '/' is allowed)."""
    if not isinstance(value, str):
        raise InvalidConfigError(f"{field} must be a string path, got {value!r}")
    parts = [p for p in value.strip().split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidConfigError(f"{field} {value!r} must not contain '..': give a path below the cgroup mount")
    if not parts:
        raise InvalidConfigError(f"{field} {value!r} is empty: give a cgroup path such as \"custom.slice/x.scope\"")
    return parts


def override_dir(fs: CgroupFS, mount: str, value: str, field: str) -> str:
    """Resolve an override (relative to ``mount``, or absolute inside it) to an existing cgroup dir."""
    v = value.strip() if isinstance(value, str) else value
    if isinstance(v, str) and v.startswith(mount + "/"):
        v = v[len(mount):]
    if isinstance(v, str) and v.rstrip("/") in ("", mount):
        # Everything on the host is in the root cgroup: killing "the task" there would kill the machine.
        raise InvalidConfigError(f"{field} = {value!r} names the root of the cgroup mount; give the task's own "
                                 "cgroup below it, e.g. \"custom.slice/x.scope\"")
    path = mount + "/" + "/".join(rel_parts(field, v))
    if not fs.isdir(path):
        raise ContainmentError(f"unable to configure cgroups: no such file or directory: {path} "
                               f"({field} = {value!r}); create that cgroup first or remove the override")
    return path


def v1_wanted(fs: CgroupFS, unified: str | None, resources: Resources | None) -> set[str]:
    """The v1 controllers a task joins. Every join is a cgroup migration (not free), so only:

    * memory and cpu — the limits;
    * cpuset — only when cores are reserved (else the task keeps the parent's cpus anyway);
    * freezer — membership and the freeze/kill sequence, unless a cgroup2 dir with
      ``cgroup.kill`` already does that (hybrid);
    * cpuacct — cpu stats, unless the cgroup2 dir's ``cpu.stat`` has them (hybrid).
    """
    wanted = {"memory", "cpu"}
    if resources is not None and (resources.cores > 0 or resources.cpuset):
        wanted.add("cpuset")
    if unified is None or not knob_exists(fs, unified, "cgroup.kill"):
        wanted.add("freezer")
    if unified is None or not knob_exists(fs, unified, "cpu.stat"):
        wanted.add("cpuacct")
    return wanted


_KNOBS: dict[tuple[str, str, str], bool] = {}
_PARENTS: set[tuple[str, str, tuple[str, ...], str | None]] = set()


def knob_exists(fs: CgroupFS, d: str, name: str) -> bool:
    """Whether cgroup ``d`` has control file ``name``. Which files a (non-root) cgroup has depends
    on the kernel and the hierarchy, not on the cgroup: the answer for one child of a parent is
    the answer for all its children, so it is looked up once per parent (one ``stat`` less per
    file and task start)."""
    key = (fs.root, d.rsplit("/", 1)[0], name)
    have = _KNOBS.get(key)
    if have is None:
        have = _KNOBS[key] = fs.exists(f"{d}/{name}")
    return have


def make_task_dir(system: CgroupSystem, mount: str, parts: list[str], name: str, created: list[str],
                  kind: str | None) -> tuple[str, bool]:
    """``mount/parts.../name`` and whether it was made now (False: a leftover, reused). Its parents
    are made (see :func:`ensure_parent`) by the first start of this process that needs them; later
    starts only make their own dir, unless the parent has gone meanwhile."""
    key = (system.fs.root, mount, tuple(parts), kind)
    for _ in range(2):
        if key in _PARENTS:
            base = mount + "".join("/" + p for p in parts)
        else:
            base = ensure_parent(system, mount, parts, created, kind)
        d = f"{base}/{name}"
        try:
            made = system.fs.mkdir(d)
        except FileNotFoundError:
            if key not in _PARENTS:
                raise
            _PARENTS.discard(key)  # removed behind our back (an operator, a test): make it again
            continue
        _PARENTS.add(key)
        return d, made
    raise AssertionError("unreachable")


def resources_from_mapping(m: Mapping[str, Any]) -> Resources:
    known = {"cpu", "memory", "memory_max", "cores", "cpuset"}
    unknown = sorted(set(m) - known)
    if unknown:
        raise InvalidConfigError(f"resources: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        kw: dict[str, Any] = {k: int(m[k]) for k in ("cpu", "memory", "memory_max", "cores") if m.get(k) is not None}
        if m.get("cpuset"):
            kw["cpuset"] = tuple(int(c) for c in m["cpuset"])
    except (TypeError, ValueError) as e:
        raise InvalidConfigError(f"resources: fields must be integers ({e})") from e
    return Resources(**kw)


def ensure_parent(system: CgroupSystem, mount: str, parts: list[str], created: list[str],
                  kind: str | None) -> str:
    """Make ``mount/parts...`` exist (recording what was created); on pure v2 enable controllers down it."""
    fs = system.fs
    cur = mount
    if system.mode == "v2" and mount == system.unified_mount:
        enable_v2_controllers(fs, cur)
    for part in parts:
        nxt = f"{cur}/{part}"
        if fs.mkdir(nxt):
            created.append(nxt)
            if kind == "cpuset":
                init_cpuset(fs, nxt)
        cur = nxt
        if system.mode == "v2" and mount == system.unified_mount:
            enable_v2_controllers(fs, cur)
    return cur


def enable_v2_controllers(fs: CgroupFS, d: str) -> None:
    """Enable the wanted controllers for ``d``'s children (best effort, logged)."""
    try:
        have = set(fs.read(d + "/cgroup.controllers").split())
        on = set(fs.read(d + "/cgroup.subtree_control").split())
    except OSError:
        return
    for c in V2_CONTROLLERS:
        if c in have and c not in on:
            try:
                fs.write(d + "/cgroup.subtree_control", f"+{c}")
            except OSError as e:
                log.warning("cgroups: cannot enable the %s controller in %s: %s", c, d, e.strerror)


def init_cpuset(fs: CgroupFS, d: str) -> None:
    """A new v1 cpuset dir starts empty (no task may join): copy the parent's cpus and mems."""
    parent = d.rsplit("/", 1)[0]
    for f in ("cpuset.cpus", "cpuset.mems"):
        try:
            if fs.read(f"{d}/{f}").strip():
                continue
            value = fs.read(f"{parent}/{f}").strip()
        except OSError:
            continue
        if value:
            fs.write(f"{d}/{f}", value)


def write_knob(fs: CgroupFS, path: str, value: str, field: str) -> None:
    try:
        fs.write(path, value)
    except OSError as e:
        raise ContainmentError(f"unable to configure cgroups: writing {value!r} to {path} failed: "
                               f"{e.strerror or e} (from {field})") from e


def apply_limits(fs: CgroupFS, mode: str, unified: str | None, v1: Mapping[str, str], owned_dirs: Iterable[str],
                 r: Resources, fresh: Iterable[str] = ()) -> None:
    """Write ``r``'s limits into the dirs we own (an override cgroup is the operator's: untouched).
    In the ``fresh`` ones (made just now) a v1 memory limit the kernel's default already says
    ("-1", none) is not written again."""
    hard, reservation = r.memory_limits()
    shares = cpu_shares(r.cpu)
    owned = set(owned_dirs)
    mem = v1.get("memory")
    if mem in owned and mem is not None:
        new = mem in fresh
        if hard or not new:
            write_knob(fs, f"{mem}/memory.limit_in_bytes", str(hard) if hard else "-1", "resources.memory")
        if (reservation or not new) and knob_exists(fs, mem, "memory.soft_limit_in_bytes"):
            write_knob(fs, f"{mem}/memory.soft_limit_in_bytes", str(reservation) if reservation else "-1",
                        "resources.memory")
        if knob_exists(fs, mem, "memory.swappiness"):
            try:
                fs.write(f"{mem}/memory.swappiness", "0")
            except OSError as e:
                log.debug("cgroups: memory.swappiness not set in %s: %s", mem, e.strerror)
    cpu = v1.get("cpu")
    if cpu in owned and cpu is not None:
        write_knob(fs, f"{cpu}/cpu.shares", str(shares), "resources.cpu")
    cs = v1.get("cpuset")
    if cs in owned and cs is not None and (r.cores > 0 or r.cpuset):
        parent = cs.rsplit("/", 1)[0]
        avail = parse_cpu_list(fs.read(f"{parent}/cpuset.effective_cpus")
                               if fs.exists(f"{parent}/cpuset.effective_cpus")
                               else fs.read(f"{parent}/cpuset.cpus"))
        value = task_cpuset(r, avail)
        if value:
            write_knob(fs, f"{cs}/cpuset.cpus", value, "resources.cores")
    u = unified
    if mode == "v2" and u is not None and u in owned:
        try:
            ctrls = set(fs.read(f"{u}/cgroup.controllers").split())
        except OSError:
            ctrls = set()
        missing = [c for c in ("memory", "cpu") if c not in ctrls]
        if missing:
            log.warning("cgroups: %s controller(s) not enabled for %s; those limits are not applied",
                        ",".join(missing), u)
        if "memory" in ctrls:
            write_knob(fs, f"{u}/memory.max", str(hard) if hard else "max", "resources.memory")
            write_knob(fs, f"{u}/memory.low", str(reservation) if reservation else "0", "resources.memory")
            if hard and fs.exists(f"{u}/memory.swap.max"):
                write_knob(fs, f"{u}/memory.swap.max", "0", "resources.memory")
        if "cpu" in ctrls:
            write_knob(fs, f"{u}/cpu.weight", str(cpu_weight(shares)), "resources.cpu")
        if "cpuset" in ctrls and (r.cores > 0 or r.cpuset):
            parent = u.rsplit("/", 1)[0]
            avail = parse_cpu_list(fs.read(f"{parent}/cpuset.cpus.effective"))
            value = task_cpuset(r, avail)
            if value:
                write_knob(fs, f"{u}/cpuset.cpus", value, "resources.cores")
