"""The node: fingerprinted attributes, meta, drivers, and an id that persists in data_dir."""

from __future__ import annotations

import os
import platform
import socket
import uuid
from typing import Any

from rawexec.agent.agentconfig import AgentConfig
from rawexec.agent.state import StateStore
from rawexec.taskenv import NodeInfo

__all__ = ["NODE_ID_META", "Node", "fingerprint_attributes"]

NODE_ID_META = "node_id"
NODE_SECRET_META = "node_secret_id"


def fingerprint_attributes(*, raw_exec_enabled: bool) -> dict[str, str]:
    """The attributes Nomad's fingerprinters set that a single node can know (strings, as Nomad's)."""
    uname = platform.uname()
    attrs: dict[str, str] = {
        "kernel.name": uname.system.lower(),
        "kernel.version": uname.release.split("-")[0],
        "kernel.arch": uname.machine,
        "os.name": _os_release().get("ID", uname.system.lower()),
        "os.version": _os_release().get("VERSION_ID", ""),
        "cpu.arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(uname.machine, uname.machine),
        "cpu.numcores": str(os.cpu_count() or 1),
        "memory.totalbytes": str(_total_memory()),
        "unique.hostname": socket.gethostname(),
        "nomad.version": "1.9.0",
        "driver.raw_exec": "1" if raw_exec_enabled else "",
    }
    max_mhz = _cpu_max_mhz()
    if max_mhz:
        attrs["cpu.frequency"] = str(int(max_mhz))
        attrs["cpu.totalcompute"] = str(int(max_mhz) * int(attrs["cpu.numcores"]))
    return {k: v for k, v in attrs.items() if v != ""}


def _total_memory() -> int:
    """Physical memory in bytes: the kernel's total RAM (``sysinfo``), as psutil's ``virtual_memory().total``."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


_CPUFREQ_PATHS = ("/sys/devices/system/cpu/cpufreq/policy0", "/sys/devices/system/cpu/cpu0/cpufreq")


def _cpu_max_mhz() -> float:
    """The CPUs' mean maximum frequency in MHz (psutil's ``cpu_freq().max``), 0 when the kernel has no
    cpufreq (VMs: then psutil, a 10 ms import, is not loaded at all)."""
    if not any(os.path.exists(p) for p in _CPUFREQ_PATHS):
        return 0.0
    import psutil

    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError):
        return 0.0
    return float(freq.max or 0.0) if freq is not None else 0.0


def _os_release() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open("/etc/os-release") as f:
            for line in f:
                k, sep, v = line.strip().partition("=")
                if sep:
                    out[k] = v.strip('"')
    except OSError:
        pass
    return out


class Node:
    """The single node of this agent."""

    def __init__(self, config: AgentConfig, store: StateStore, *, health: str, health_description: str) -> None:
        node_id = store.get_meta(NODE_ID_META)
        if not node_id:
            node_id = str(uuid.uuid4())
            store.put_meta(NODE_ID_META, node_id)
        self.id = node_id
        self.index = max(store.index(), 1)  # registered (again) now: its Create/ModifyIndex
        self.config = config
        self.enabled = config.raw_exec_enabled
        self.attributes = fingerprint_attributes(raw_exec_enabled=self.enabled)
        self.meta = dict(config.client.meta)
        self.health = health
        self.health_description = health_description
        self.info = NodeInfo(id=self.id, name=config.name, datacenter=config.datacenter, region=config.region,
                             node_class=config.client.node_class, node_pool=config.client.node_pool,
                             attributes=self.attributes, meta=self.meta, cgroup_parent=config.cgroup_parent)

    def to_api(self) -> dict[str, Any]:
        """Nomad's ``/v1/node/:id`` JSON (the parts a single node has)."""
        detected = self.enabled
        return {
            "ID": self.id, "Name": self.config.name, "Datacenter": self.config.datacenter,
            "Region": self.config.region, "NodePool": self.config.client.node_pool,
            "NodeClass": self.config.client.node_class, "HTTPAddr": "", "TLSEnabled": False,
            "Attributes": dict(self.attributes), "Meta": dict(self.meta),
            "Drivers": {"raw_exec": {"Detected": detected, "Healthy": detected and self.health == "healthy",
                                     "HealthDescription": self.health_description if detected else "disabled",
                                     "Attributes": {"driver.raw_exec": "true"} if detected else {}}},
            "Status": "ready", "StatusDescription": "", "SchedulingEligibility": "eligible", "Drain": False,
            "CreateIndex": self.index, "ModifyIndex": self.index,
        }

    def stub(self) -> dict[str, Any]:
        """Nomad's ``/v1/nodes`` list entry."""
        full = self.to_api()
        return {k: full[k] for k in ("ID", "Name", "Datacenter", "NodePool", "NodeClass", "Drivers", "Status",
                                     "StatusDescription", "SchedulingEligibility", "Drain", "CreateIndex",
                                     "ModifyIndex")} | {
            "Address": "127.0.0.1", "Version": full["Attributes"].get("nomad.version", "")}
