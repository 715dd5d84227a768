"""``GET /v1/client/stats``: the host's CPU, memory, disks and uptime in Nomad's ``HostStats`` shape.

As Nomad's ``HostStatsCollector`` (gopsutil there, psutil here): memory from the kernel's virtual
memory figures; one entry per CPU with the percentages of time spent user, system, idle and busy
in all since the previous collection (since boot for the first one) and the MHz that busy time
amounts to; every mounted partition's usage; the usage of the file system holding the allocation
directories; the uptime in seconds. There are no devices (``DeviceStats`` is empty).
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Any

import psutil

__all__ = ["HostStatsCollector"]

# (guest time is already counted in user time by the kernel)
_BUSY_FIELDS = ("user", "system", "nice", "iowait", "irq", "softirq", "steal")


def _finite(v: float, default: float) -> float:
    return default if math.isnan(v) or math.isinf(v) else v


def _disk_stats(path: str, device: str = "", mountpoint: str = "") -> dict[str, Any]:
    """gopsutil's ``disk.Usage`` as Nomad reports it (``Available`` is what non-root may still use)."""
    st = os.statvfs(path)
    size = st.f_blocks * st.f_frsize
    free_all = st.f_bfree * st.f_frsize
    avail = st.f_bavail * st.f_frsize
    used = size - free_all
    used_pct = used / (used + avail) * 100 if used + avail else 0.0
    inodes_used = st.f_files - st.f_ffree
    inodes_pct = inodes_used / st.f_files * 100 if st.f_files else 0.0
    return {"Device": device, "Mountpoint": mountpoint, "Size": size, "Used": used, "Available": avail,
            "UsedPercent": used_pct, "InodesUsedPercent": inodes_pct}


class HostStatsCollector:
    """Collects on demand; the CPU percentages are over the time since the previous call."""

    def __init__(self, alloc_root: str, total_compute_mhz: float) -> None:
        self.alloc_root = alloc_root
        self.total_compute_mhz = total_compute_mhz
        self._prev: dict[str, tuple[float, float, float, float, float]] = {}  # idle, user, system, busy, total
        self._lock = threading.Lock()

    def _cpu(self) -> tuple[list[dict[str, Any]], float]:
        times = psutil.cpu_times(percpu=True)
        per_cpu_mhz = self.total_compute_mhz / len(times) if times else 0.0
        out: list[dict[str, Any]] = []
        ticks_consumed = 0.0
        with self._lock:
            for i, t in enumerate(times):
                name = f"cpu{i}"
                busy = sum(float(getattr(t, f, 0.0)) for f in _BUSY_FIELDS)
                total = busy + float(t.idle)
                cur = (float(t.idle), float(t.user), float(t.system), busy, total)
                prev = self._prev.get(name, (0.0, 0.0, 0.0, 0.0, 0.0))
                self._prev[name] = cur
                delta = cur[4] - prev[4]

                def pct(j: int, delta: float = delta, cur: tuple[float, ...] = cur,
                        prev: tuple[float, ...] = prev) -> float:
                    return (cur[j] - prev[j]) / delta * 100 if delta > 0 else math.nan

                busy_pct = _finite(pct(3), 0.0)
                ticks = busy_pct / 100 * per_cpu_mhz
                ticks_consumed += ticks
                out.append({"CPU": name, "User": _finite(pct(1), 0.0), "System": _finite(pct(2), 0.0),
                            "Idle": _finite(pct(0), 100.0), "TotalPercent": busy_pct, "TotalTicks": ticks})
        return out, ticks_consumed

    def collect(self) -> dict[str, Any]:
        vm = psutil.virtual_memory()
        cpus, ticks = self._cpu()
        disks = []
        for part in psutil.disk_partitions(all=False):
            try:
                disks.append(_disk_stats(part.mountpoint, part.device, part.mountpoint))
            except OSError:
                continue  # as Nomad: a partition whose usage cannot be read is left out
        try:
            alloc_dir = _disk_stats(self.alloc_root)
        except OSError:
            alloc_dir = _disk_stats(os.path.dirname(self.alloc_root) or "/")  # not made yet: its parent
        return {
            "Memory": {"Total": vm.total, "Available": vm.available, "Used": vm.used, "Free": vm.free},
            "CPU": cpus,
            "DiskStats": disks,
            "AllocDirStats": alloc_dir,
            "DeviceStats": [],
            "Uptime": max(0, int(time.time() - psutil.boot_time())),
            "Timestamp": time.time_ns(),
            "CPUTicksConsumed": ticks,
        }
