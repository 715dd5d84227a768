"""Containment: one cgroup per task (v2, v1, hybrid) or a process-tree fallback, and its stats.

The shim's use, in order::

    system = detect(no_cgroups=cfg.no_cgroups)          # once per process, logged
    cg = TaskCgroup.create(system, alloc_id=..., task_name=..., resources=...)   # if system.enabled
    # child, between fork and exec:
    for p in cg.procs_files: write b"0" to p
    apply_oom_score_adj(cfg.oom_score_adj)
    ...
    cg.oom_kill_count() > 0  ⇒ ExitResult.oom_killed
    cg.destroy()                                       # kill everything, remove the dirs

Without cgroups: :func:`kill_process_tree` on the (subreaper) shim and :func:`descendants`.
Stats: :class:`StatsCollector`.
"""

from rawexec.containment.cgroup import DEFAULT_V1_PARENT, DEFAULT_V2_PARENT, TaskCgroup, destroy_all, remove_parent
from rawexec.containment.detect import CgroupSystem, clear_detect_cache, detect, parse_mountinfo
from rawexec.containment.fs import CgroupFS
from rawexec.containment.limits import cpu_shares, cpu_weight
from rawexec.containment.procs import apply_oom_score_adj, children, descendants, kill_process_tree, read_proc_sample
from rawexec.containment.stats import StatsCollector, host_total_mhz

__all__ = [
    "DEFAULT_V1_PARENT",
    "DEFAULT_V2_PARENT",
    "CgroupFS",
    "CgroupSystem",
    "StatsCollector",
    "TaskCgroup",
    "apply_oom_score_adj",
    "children",
    "clear_detect_cache",
    "cpu_shares",
    "cpu_weight",
    "descendants",
    "destroy_all",
    "detect",
    "host_total_mhz",
    "kill_process_tree",
    "parse_mountinfo",
    "read_proc_sample",
    "remove_parent",
]
