"""A fake cgroupfs under ``tmp_path``: pure-v2, v1 and hybrid trees that behave enough like the kernel.

What it simulates (and nothing more):
* ``mkdir`` under a mount fills the dir with that hierarchy's control files (v2: the controllers
  enabled in the parent's ``cgroup.subtree_control``);
* ``rmdir`` of a populated cgroup (or one with children) fails with EBUSY, like the kernel;
  ``busy_rmdirs`` makes the next N rmdirs fail with EBUSY anyway (a cgroup still draining);
* ``+ctrl`` writes to ``cgroup.subtree_control`` add, ``cgroup.kill`` empties the cgroup,
  ``kill(pid, SIGKILL)`` removes the pid from every ``cgroup.procs`` (unless it is ``immortal``);
* every write and signal is logged in ``events`` so tests can check the order of operations.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
from pathlib import Path

from rawexec.containment import CgroupFS

V2_CORE = {
    "cgroup.procs": "", "cgroup.subtree_control": "", "cgroup.kill": "", "cgroup.freeze": "0",
    "cgroup.events": "populated 0\nfrozen 0\n", "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
}
V2_CTRL = {
    "memory": {"memory.max": "max", "memory.low": "0", "memory.swap.max": "max", "memory.current": "0",
               "memory.peak": "0", "memory.swap.current": "0",
               "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
               "memory.stat": "anon 0\nfile 0\nkernel 0\nfile_mapped 0\n"},
    "cpu": {"cpu.weight": "100", "cpu.max": "max 100000"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": "", "cpuset.cpus.effective": "0-3"},
    "io": {"io.weight": "default 100"},
    "pids": {"pids.max": "max"},
}
V1_FILES = {
    "freezer": {"freezer.state": "THAWED"},
    "memory": {"memory.limit_in_bytes": "9223372036854771712", "memory.soft_limit_in_bytes": "9223372036854771712",
               "memory.swappiness": "60", "memory.usage_in_bytes": "0", "memory.max_usage_in_bytes": "0",
               "memory.kmem.usage_in_bytes": "0", "memory.kmem.max_usage_in_bytes": "0", "memory.failcnt": "0",
               "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
               "memory.stat": "rss 0\ncache 0\nswap 0\nmapped_file 0\ntotal_rss 0\ntotal_cache 0\n"
                              "total_swap 0\ntotal_mapped_file 0\n"},
    "cpu": {"cpu.shares": "1024", "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n"},
    "cpuacct": {"cpuacct.usage_user": "0", "cpuacct.usage_sys": "0", "cpuacct.usage": "0"},
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": "", "cpuset.effective_cpus": ""},
    "pids": {"pids.max": "max"},
}
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "freezer", "pids")


class FakeCgroupFS(CgroupFS):
    def __init__(self, root: str, *, euid: int = 0) -> None:
        super().__init__(root, euid=euid)
        self.mounts: dict[str, tuple[str, ...]] = {}  # mount point -> ("v2",) or v1 controllers
        self.events: list[tuple[str, str]] = []
        self.immortal: set[int] = set()
        self.busy_rmdirs = 0

    # -- building --------------------------------------------------------------------------------
    def _put(self, path: str, content: str) -> None:
        hp = Path(self.host_path(path))
        hp.parent.mkdir(parents=True, exist_ok=True)
        tmp = hp.with_name(hp.name + ".put")  # atomic, as a kernel file: a reader never sees it half-written
        tmp.write_text(content)
        os.replace(tmp, hp)

    def add_mount(self, mount: str, kinds: tuple[str, ...], *, controllers: str = "") -> None:
        self.mounts[mount] = kinds
        os.makedirs(self.host_path(mount), exist_ok=True)
        self._put(mount + "/cgroup.procs", "1\n")
        if kinds == ("v2",):
            self._put(mount + "/cgroup.controllers", controllers)
            self._put(mount + "/cgroup.subtree_control", "")
            if "cpuset" in controllers.split():
                self._put(mount + "/cpuset.cpus.effective", "0-3")
        if "cpuset" in kinds:
            self._put(mount + "/cpuset.cpus", "0-3")
            self._put(mount + "/cpuset.mems", "0")
            self._put(mount + "/cpuset.effective_cpus", "0-3")

    def _mount_of(self, path: str) -> str | None:
        best = None
        for m in self.mounts:
            if (path == m or path.startswith(m + "/")) and (best is None or len(m) > len(best)):
                best = m
        return best

    def set_procs(self, cgroup_dir: str, pids: list[int]) -> None:
        self._put(cgroup_dir + "/cgroup.procs", "".join(f"{p}\n" for p in pids))
        self._update_populated(cgroup_dir)

    def _update_populated(self, cgroup_dir: str) -> None:
        """Keep v2 ``cgroup.events`` "populated" in step with the procs of the dir and below it, as the kernel does."""
        m = self._mount_of(cgroup_dir)
        if m is None or self.mounts[m] != ("v2",):
            return
        d = cgroup_dir
        while d.startswith(m + "/"):
            if self.exists(d + "/cgroup.events"):
                populated = any(Path(r, "cgroup.procs").read_text().split()
                                for r, _dirs, files in os.walk(self.host_path(d)) if "cgroup.procs" in files)
                frozen = "1" if "frozen 1" in self.read(d + "/cgroup.events") else "0"
                self._put(d + "/cgroup.events", f"populated {int(populated)}\nfrozen {frozen}\n")
            d = d.rsplit("/", 1)[0]

    def procs(self, cgroup_dir: str) -> list[int]:
        return [int(x) for x in self.read(cgroup_dir + "/cgroup.procs").split()]

    # -- kernel behaviour ------------------------------------------------------------------------
    def mkdir(self, path: str) -> bool:
        created = super().mkdir(path)
        m = self._mount_of(path)
        if created and m is not None and path != m:
            kinds = self.mounts[m]
            if kinds == ("v2",):
                parent = path.rsplit("/", 1)[0]
                enabled = self.read(parent + "/cgroup.subtree_control").split()
                for name, content in V2_CORE.items():
                    self._put(f"{path}/{name}", content)
                self._put(f"{path}/cgroup.controllers", " ".join(enabled))
                for c in enabled:
                    for name, content in V2_CTRL.get(c, {}).items():
                        self._put(f"{path}/{name}", content)
            else:
                self._put(f"{path}/cgroup.procs", "")
                for c in kinds:
                    for name, content in V1_FILES.get(c, {}).items():
                        self._put(f"{path}/{name}", content)
        return created

    def rmdir(self, path: str) -> None:
        hp = self.host_path(path)
        if not os.path.isdir(hp):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if self.busy_rmdirs > 0:
            self.busy_rmdirs -= 1
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        if self.procs(path) or any(os.path.isdir(os.path.join(hp, e)) for e in os.listdir(hp)):
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        shutil.rmtree(hp)
        self.events.append(("rmdir", path))

    def write(self, path: str, data: str | bytes) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        if not os.path.exists(self.host_path(path)):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        self.events.append((path, text))
        d, name = path.rsplit("/", 1)
        if name == "cgroup.subtree_control":
            have = self.read(d + "/cgroup.controllers").split()
            on = self.read(path).split()
            for tok in text.split():
                c = tok[1:]
                if c not in have:
                    raise OSError(errno.ENOENT, "No such file or directory", path)
                if tok[0] == "+" and c not in on:
                    on.append(c)
            self._put(path, " ".join(on))
            return
        if name == "cgroup.kill" and text.strip() == "1":
            for root, _dirs, _files in os.walk(self.host_path(d)):
                rel = "/" + os.path.relpath(root, self.root)
                self.set_procs(rel, [p for p in self.procs(rel) if p in self.immortal])
            return
        if name == "cpuset.cpus":
            self._put(d + "/cpuset.effective_cpus", text)
        super().write(path, data)

    def kill(self, pid: int, sig: int) -> None:
        self.events.append(("kill", f"{pid}:{sig}"))
        if sig != signal.SIGKILL or pid in self.immortal:
            return
        for m in self.mounts:
            for root, _dirs, files in os.walk(self.host_path(m)):
                if "cgroup.procs" in files and root != self.host_path(m):
                    rel = "/" + os.path.relpath(root, self.root)
                    pids = self.procs(rel)
                    if pid in pids:
                        self.set_procs(rel, [p for p in pids if p != pid])


def mountinfo_line(n: int, point: str, fstype: str, super_opts: str, opts: str = "rw,nosuid,nodev,noexec") -> str:
    return f"{n} 1 0:{n} / {point} {opts} shared:{n} - {fstype} {fstype} {super_opts}"


def build_tree(tmp: Path, mode: str, *, euid: int = 0, v2_controllers: str = "cpuset cpu io memory pids",
               cpu_cpuacct_together: bool = False) -> FakeCgroupFS:
    """A fake host with the given cgroup mode ("v2", "v1", "hybrid") rooted at ``tmp``."""
    fs = FakeCgroupFS(str(tmp), euid=euid)
    lines = [mountinfo_line(20, "/", "ext4", "rw", "rw,relatime")]
    if mode == "v2":
        lines.append(mountinfo_line(31, "/sys/fs/cgroup", "cgroup2", "rw,nsdelegate"))
        fs.add_mount("/sys/fs/cgroup", ("v2",), controllers=v2_controllers)
    else:
        lines.append(mountinfo_line(30, "/sys/fs/cgroup", "tmpfs", "rw,mode=755", "ro,nosuid,nodev,noexec"))
        n = 32
        ctrls: list[tuple[str, ...]] = [(c,) for c in V1_CONTROLLERS]
        if cpu_cpuacct_together:
            ctrls = [c for c in ctrls if c not in (("cpu",), ("cpuacct",))] + [("cpu", "cpuacct")]
        for group in ctrls:
            point = "/sys/fs/cgroup/" + ",".join(group)
            lines.append(mountinfo_line(n, point, "cgroup", "rw," + ",".join(group)))
            fs.add_mount(point, group)
            n += 1
        lines.append(mountinfo_line(n, "/sys/fs/cgroup/systemd", "cgroup", "rw,xattr,name=systemd"))
        if mode == "hybrid":
            lines.append(mountinfo_line(n + 1, "/sys/fs/cgroup/unified", "cgroup2", "rw,nsdelegate"))
            fs.add_mount("/sys/fs/cgroup/unified", ("v2",), controllers="hugetlb")
    fs._put("/proc/self/mountinfo", "\n".join(lines) + "\n")
    return fs
