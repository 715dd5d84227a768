"""Pure translations between the driver's Python values and the Driver service's messages.

No I/O, no driver calls: each function maps one shape to another, so each has a round-trip
or table test. Field facts: plugin-protocol-facts §2.2, §3.4-3.6.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.protobuf import duration_pb2, timestamp_pb2

from rawexec.errors import InvalidConfigError
from rawexec.plugin import cty, hclspec
from rawexec.plugin.gen import driver_pb2, structs_pb2
from rawexec.types import CpuStats, ExitResult, MemoryStats, Resources, ResourceUsage, TaskResourceUsage

if TYPE_CHECKING:
    from rawexec.driver import Capabilities, Fingerprint, TaskConfig, TaskEvent, TaskStatus

__all__ = [
    "ZERO_TIME_SECONDS",
    "attribute_to_proto",
    "capabilities_to_proto",
    "decode_task_driver_config",
    "duration_seconds",
    "exit_result_from_proto",
    "exit_result_to_proto",
    "fingerprint_to_proto",
    "parse_cpuset",
    "resources_from_proto",
    "task_config_from_proto",
    "task_event_to_proto",
    "task_stats_to_proto",
    "task_status_to_proto",
    "timestamp_from_datetime",
    "timestamp_from_nanos",
]

# Go's zero time.Time (0001-01-01T00:00:00Z): Nomad's converter rejects a nil Timestamp.
ZERO_TIME_SECONDS = -62135596800

_HEALTH = {"undetected": driver_pb2.FingerprintResponse.UNDETECTED,
           "unhealthy": driver_pb2.FingerprintResponse.UNHEALTHY,
           "healthy": driver_pb2.FingerprintResponse.HEALTHY}
_FS_ISOLATION = {"none": driver_pb2.DriverCapabilities.NONE, "chroot": driver_pb2.DriverCapabilities.CHROOT,
                 "image": driver_pb2.DriverCapabilities.IMAGE, "unveil": driver_pb2.DriverCapabilities.UNVEIL}
_NET_MODES = {"host": driver_pb2.NetworkIsolationSpec.HOST, "group": driver_pb2.NetworkIsolationSpec.GROUP,
              "task": driver_pb2.NetworkIsolationSpec.TASK, "none": driver_pb2.NetworkIsolationSpec.NONE}
_MOUNTS = {"any": driver_pb2.DriverCapabilities.ANY_MOUNTS, "none": driver_pb2.DriverCapabilities.NO_MOUNTS}
_TASK_STATE = {"unknown": driver_pb2.UNKNOWN, "running": driver_pb2.RUNNING, "exited": driver_pb2.EXITED}
_CPU_FIELDS = {"System Mode": driver_pb2.CPUUsage.SYSTEM_MODE, "User Mode": driver_pb2.CPUUsage.USER_MODE,
               "Total Ticks": driver_pb2.CPUUsage.TOTAL_TICKS,
               "Throttled Periods": driver_pb2.CPUUsage.THROTTLED_PERIODS,
               "Throttled Time": driver_pb2.CPUUsage.THROTTLED_TIME, "Percent": driver_pb2.CPUUsage.PERCENT}
_MEM_FIELDS = {"RSS": driver_pb2.MemoryUsage.RSS, "Cache": driver_pb2.MemoryUsage.CACHE,
               "Max Usage": driver_pb2.MemoryUsage.MAX_USAGE, "Kernel Usage": driver_pb2.MemoryUsage.KERNEL_USAGE,
               "Kernel Max Usage": driver_pb2.MemoryUsage.KERNEL_MAX_USAGE,
               "Usage": driver_pb2.MemoryUsage.USAGE, "Swap": driver_pb2.MemoryUsage.SWAP}


# --- time ----------------------------------------------------------------------------------------


def duration_seconds(d: Any, default: float) -> float:
    """A ``google.protobuf.Duration`` in seconds; ``default`` when unset (None)."""
    if d is None:
        return default
    return float(d.seconds) + float(d.nanos) / 1e9


def duration_from_seconds(seconds: float) -> Any:
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def timestamp_from_datetime(dt: datetime | None) -> Any:
    """A Timestamp; None becomes Go's zero time, never an unset field."""
    ts = timestamp_pb2.Timestamp()
    if dt is None:
        ts.seconds = ZERO_TIME_SECONDS
        return ts
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ts.FromDatetime(dt)
    return ts


def timestamp_from_nanos(nanos: int) -> Any:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(nanos))
    return ts


# --- TaskConfig -----------------------------------------------------------------------------------


def parse_cpuset(text: str) -> tuple[int, ...]:
    """``"0,2-3"`` -> ``(0, 2, 3)`` (Linux cpuset list syntax), with the plugin's field in the error."""
    from rawexec.containment.limits import parse_cpu_list

    try:
        return parse_cpu_list(text)
    except InvalidConfigError:
        raise InvalidConfigError(
            f'task resources: cpuset_cpus {text!r} is not a cpu list like "0,2-3"') from None


def resources_from_proto(res: Any) -> Resources | None:
    """Nomad's task Resources -> ours (cpu MHz, memory MB, memory_max MB, reserved cores)."""
    if res is None or not res.HasField("allocated_resources"):
        return None
    alloc = res.allocated_resources
    cpuset = parse_cpuset(res.linux_resources.cpuset_cpus) if res.HasField("linux_resources") else ()
    return Resources(cpu=int(alloc.cpu.cpu_shares), memory=int(alloc.memory.memory_mb),
                     memory_max=int(alloc.memory.memory_max_mb), cores=len(cpuset), cpuset=cpuset)


def decode_task_driver_config(data: bytes) -> dict[str, Any]:
    """The task's ``config {}`` from ``msgpack_driver_config``; unset (nil) keys are left out."""
    decoded = cty.decode(hclspec.task_config_spec(), data, "task config")
    return {k: v for k, v in decoded.items() if v is not None}


def task_config_from_proto(pb: Any) -> TaskConfig:
    """A StartTask ``TaskConfig`` message -> the driver's :class:`TaskConfig`."""
    from rawexec.driver import TaskConfig

    if not pb.id:
        raise InvalidConfigError("task.id is empty; Nomad always sets it (<alloc_id>/<task>/<random>)")
    if not pb.alloc_dir:
        raise InvalidConfigError("task.alloc_dir is empty; it must be the allocation directory's host path")
    return TaskConfig(
        id=pb.id, name=pb.name, alloc_id=pb.alloc_id, alloc_dir=pb.alloc_dir,
        driver_config=decode_task_driver_config(pb.msgpack_driver_config),
        env=dict(pb.env), user=pb.user,
        stdout_path=pb.stdout_path or None, stderr_path=pb.stderr_path or None,
        resources=resources_from_proto(pb.resources if pb.HasField("resources") else None),
        job_name=pb.job_name, task_group_name=pb.task_group_name,
    )


# --- results and status ---------------------------------------------------------------------------


def exit_result_to_proto(result: ExitResult | None) -> tuple[Any, str]:
    """(ExitResult message, err text). Always a message: old clients dereference it blindly."""
    if result is None:
        return driver_pb2.ExitResult(exit_code=-1), "exit result unavailable"
    return (driver_pb2.ExitResult(exit_code=result.exit_code, signal=result.signal,
                                  oom_killed=result.oom_killed), result.err or "")


def exit_result_from_proto(pb: Any, err: str = "") -> ExitResult:
    return ExitResult(exit_code=pb.exit_code, signal=pb.signal, oom_killed=pb.oom_killed, err=err or None)


def task_status_to_proto(status: TaskStatus) -> Any:
    """InspectTaskResponse: both timestamps always set, result always set."""
    state = _TASK_STATE.get(str(status.state), driver_pb2.UNKNOWN)
    result, _err = exit_result_to_proto(status.exit_result) if status.exit_result else (
        driver_pb2.ExitResult(), "")
    task = driver_pb2.TaskStatus(id=status.id, name=status.name, state=state,
                                 started_at=timestamp_from_datetime(status.started_at),
                                 completed_at=timestamp_from_datetime(status.completed_at), result=result)
    attrs = {str(k): str(v) for k, v in dict(status.driver_attributes).items()}
    return driver_pb2.InspectTaskResponse(task=task, driver=driver_pb2.TaskDriverStatus(attributes=attrs))


# --- fingerprint and capabilities -------------------------------------------------------------------


def attribute_to_proto(value: Any) -> Any:
    """A Python value -> ``structs.Attribute`` (bool, int, float, else string)."""
    if isinstance(value, bool):
        return structs_pb2.Attribute(bool_val=value)
    if isinstance(value, int):
        return structs_pb2.Attribute(int_val=value)
    if isinstance(value, float):
        return structs_pb2.Attribute(float_val=value)
    return structs_pb2.Attribute(string_val=str(value))


def fingerprint_to_proto(fp: Fingerprint, name: str = "raw_exec") -> Any:
    """FingerprintResponse; ``driver.raw_exec*`` attributes are renamed to ``driver.<name>*``."""
    health = _HEALTH.get(str(fp.health), driver_pb2.FingerprintResponse.UNDETECTED)
    resp = driver_pb2.FingerprintResponse(health=health, health_description=fp.description)
    for raw_key, value in dict(fp.attributes).items():
        key = raw_key
        if name != "raw_exec" and (key == "driver.raw_exec" or key.startswith("driver.raw_exec.")):
            key = f"driver.{name}" + key[len("driver.raw_exec"):]
        resp.attributes[key].CopyFrom(attribute_to_proto(value))
    return resp


def capabilities_to_proto(caps: Capabilities) -> Any:
    return driver_pb2.DriverCapabilities(
        send_signals=caps.send_signals, exec=caps.exec,
        fs_isolation=_FS_ISOLATION.get(caps.fs_isolation, driver_pb2.DriverCapabilities.NONE),
        network_isolation_modes=[_NET_MODES[m] for m in caps.network_isolation_modes if m in _NET_MODES],
        must_create_network=caps.must_initiate_network,
        mount_configs=_MOUNTS.get(caps.mount_configs, driver_pb2.DriverCapabilities.NO_MOUNTS),
        remote_tasks=False, disable_log_collection=caps.disable_log_collection)


# --- stats ----------------------------------------------------------------------------------------


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


_MEASURED: dict[tuple[int, tuple[str, ...]], list[int]] = {}


def _measured(table: Mapping[str, int], names: tuple[str, ...]) -> list[int]:
    """The enum values of the measured field names in ``table`` (one of the module's two tables),
    memoised: the collectors reuse a few tuples."""
    key = (id(table), names)
    got = _MEASURED.get(key)
    if got is None:
        got = [table[m] for m in names if m in table]
        if len(_MEASURED) < 256:
            _MEASURED[key] = got
    return got


def _fill_usage(pb: Any, usage: ResourceUsage) -> None:
    """Set a TaskResourceUsage message in place (cheaper than building it from keyword
    arguments: this runs once per streamed task per second). ``cpu`` and ``memory`` are always
    present, even when all zeros."""
    cpu: CpuStats = usage.cpu_stats
    mem: MemoryStats = usage.memory_stats
    isfinite = math.isfinite
    c = pb.cpu
    c.SetInParent()
    x = cpu.system_mode
    c.system_mode = x if isfinite(x) else 0.0
    x = cpu.user_mode
    c.user_mode = x if isfinite(x) else 0.0
    x = cpu.total_ticks
    c.total_ticks = x if isfinite(x) else 0.0
    c.throttled_periods = max(0, cpu.throttled_periods)
    c.throttled_time = max(0, cpu.throttled_time)
    x = cpu.percent
    c.percent = x if isfinite(x) else 0.0
    c.measured_fields.extend(_measured(_CPU_FIELDS, cpu.measured))
    m = pb.memory
    m.SetInParent()
    m.rss = max(0, mem.rss)
    m.cache = max(0, mem.cache)
    m.max_usage = max(0, mem.max_usage)
    m.kernel_usage = max(0, mem.kernel_usage)
    m.kernel_max_usage = max(0, mem.kernel_max_usage)
    m.usage = max(0, mem.usage)
    m.swap = max(0, mem.swap)
    m.measured_fields.extend(_measured(_MEM_FIELDS, mem.measured))


def task_stats_to_proto(task_id: str, usage: TaskResourceUsage | None, now_ns: int) -> Any:
    """TaskStatsResponse; ``timestamp`` and ``agg_resource_usage`` are always set (facts §3.6)."""
    if usage is None:
        usage = TaskResourceUsage(resource_usage=ResourceUsage(), timestamp=now_ns)
    resp = driver_pb2.TaskStatsResponse()
    stats = resp.stats
    stats.id = task_id
    ts = stats.timestamp
    ts.seconds, ts.nanos = divmod(int(usage.timestamp or now_ns), 1_000_000_000)
    ts.SetInParent()
    _fill_usage(stats.agg_resource_usage, usage.resource_usage)
    for pid, pid_usage in usage.pids.items():
        _fill_usage(stats.resource_usage_by_pid[str(pid)], pid_usage)
    return resp


def task_event_to_proto(ev: TaskEvent) -> Any:
    """DriverTaskEvent; alloc_id and task_name are how the client finds the task runner."""
    return driver_pb2.DriverTaskEvent(task_id=ev.task_id, alloc_id=ev.alloc_id, task_name=ev.task_name,
                                      timestamp=timestamp_from_datetime(ev.timestamp), message=ev.message,
                                      annotations=labels(ev.annotations))


def labels(mapping: Mapping[str, Any]) -> dict[str, str]:
    """A string-to-string map (annotations, attributes)."""
    return {str(k): str(v) for k, v in mapping.items()}
