"""hclspec trees, the pure proto translations, and the error -> status mapping."""

from __future__ import annotations

import math
import os
import sys
from datetime import UTC, datetime
from typing import Any

import grpc
import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawexec.driver import Capabilities, Fingerprint, HealthState, TaskState, TaskStatus
from rawexec.errors import (
    DriverDisabledError,
    InvalidConfigError,
    TaskNotFoundError,
    UnavailableError,
)
from rawexec.plugin import convert, hclspec
from rawexec.plugin.gen import driver_pb2, hclspec_pb2, rpc_status_pb2, structs_pb2
from rawexec.plugin.hclspec import (
    Array,
    Attr,
    Block,
    BlockAttrs,
    BlockList,
    BlockMap,
    BlockSet,
    Default,
    Literal,
    Object,
    Spec,
)
from rawexec.plugin.status import RECOVERABLE_TYPE_URL, STATUS_DETAILS_KEY, to_status
from rawexec.types import CpuStats, ExitResult, MemoryStats, ResourceUsage, TaskResourceUsage
from tests.plugin.harness import short_tmp_dir

ALL_KINDS = Object({
    "a": Attr("string", required=True),
    "d": Default(Attr("number", name="d"), Literal("10")),
    "arr": Array((Attr("bool", name="x"), Literal('"y"'))),
    "b": Block(Object({"p": Attr("string")}), required=True, name="blk"),
    "ba": BlockAttrs("map(string)", name="ba"),
    "bl": BlockList(Object({"v": Attr("any")}), min_items=1, max_items=3),
    "bs": BlockSet(Object({"v": Attr("any")}), max_items=2),
    "bm": BlockMap(("l1", "l2"), Object({"v": Attr("set(string)")})),
})


def test_every_spec_kind_round_trips_through_proto() -> None:
    msg = hclspec.to_proto(ALL_KINDS)
    again = hclspec_pb2.Spec.FromString(msg.SerializeToString())
    assert hclspec.from_proto(again) == ALL_KINDS
    assert again.object.attributes["a"].WhichOneof("block") == "Attr"
    assert again.object.attributes["d"].default.default.literal.value == "10"


def test_unset_spec_is_rejected_like_nomad() -> None:
    with pytest.raises(InvalidConfigError, match="Invalid spec block"):
        hclspec.from_proto(hclspec_pb2.Spec())
    with pytest.raises(InvalidConfigError, match="nil spec given"):
        hclspec.from_proto(None)


def _nested_attrs_have_names(spec: Spec, direct: bool) -> bool:
    """Nomad: an Attr needs a name unless it sits directly under an Object."""
    if isinstance(spec, Attr):
        return direct or bool(spec.name)
    if isinstance(spec, Object):
        return all(_nested_attrs_have_names(c, True) for c in spec.attributes.values())
    if isinstance(spec, Default):
        return _nested_attrs_have_names(spec.primary, False) and _nested_attrs_have_names(spec.default, False)
    return True


@pytest.mark.parametrize("spec", [hclspec.plugin_config_spec(), hclspec.task_config_spec()])
def test_raw_exec_specs_are_valid_for_nomad(spec: Object) -> None:
    assert _nested_attrs_have_names(spec, True)
    for child in spec.attributes.values():
        attr = child.primary if isinstance(child, Default) else child
        assert isinstance(attr, Attr)
        hclspec.parse_type(attr.type)


def test_raw_exec_specs_are_built_once_and_read_only() -> None:
    """Every SetConfig and StartTask decodes against them: one shared tree each, which nobody can
    change under the others."""
    for make in (hclspec.plugin_config_spec, hclspec.task_config_spec):
        spec = make()
        assert make() is spec
        with pytest.raises(TypeError):
            spec.attributes["command"] = Attr("number")  # type: ignore[index]
    assert hclspec.parse_type("list(map(string))") == ("list", ("map", "string"))
    assert hclspec.parse_type("list(map(string))") is hclspec.parse_type("list(map(string))")
    with pytest.raises(InvalidConfigError):
        hclspec.parse_type("list(")


def test_raw_exec_spec_keys_and_defaults() -> None:
    assert set(hclspec.plugin_config_spec().attributes) == {
        "enabled", "no_cgroups", "denied_host_uids", "denied_host_gids", "denied_envvars"}
    enabled = hclspec.plugin_config_spec().attributes["enabled"]
    assert enabled == Default(Attr("bool", name="enabled"), Literal("false"))
    task = hclspec.task_config_spec().attributes
    assert task["command"] == Attr("string", required=True)
    assert set(task) == {"command", "args", "cgroup_v1_override", "cgroup_v2_override", "oom_score_adj",
                         "work_dir", "denied_envvars"}


@pytest.mark.parametrize(("text", "parsed"), [
    ("string", "string"), ("list(string)", ("list", "string")),
    ("list(map(string))", ("list", ("map", "string"))),
    ("object({a=number, b=list(bool)})", ("object", {"a": "number", "b": ("list", "bool")})),
    ("tuple([string, any])", ("tuple", ["string", "any"])),
])
def test_parse_type(text: str, parsed: Any) -> None:
    assert hclspec.parse_type(text) == parsed


@pytest.mark.parametrize("bad", ["", "lst(string)", "list(", "list()", "map(string", "string string", "list(%)"])
def test_parse_type_errors(bad: str) -> None:
    with pytest.raises(InvalidConfigError, match="HCL type expression"):
        hclspec.parse_type(bad)


# --- convert ---------------------------------------------------------------------------------------


def _task_pb(**kw: Any) -> Any:
    base: dict[str, Any] = {"id": "a1/web/x", "name": "web", "alloc_id": "a1", "alloc_dir": "/tmp/a1",
                            "msgpack_driver_config": msgpack.packb({"command": "/bin/true", "args": None})}
    base.update(kw)
    return driver_pb2.TaskConfig(**base)


def test_task_config_from_proto() -> None:
    res = driver_pb2.Resources(
        allocated_resources=driver_pb2.AllocatedTaskResources(
            cpu=driver_pb2.AllocatedCpuResources(cpu_shares=500),
            memory=driver_pb2.AllocatedMemoryResources(memory_mb=256, memory_max_mb=512)),
        linux_resources=driver_pb2.LinuxResources(cpuset_cpus="0,2-3"))
    cfg = convert.task_config_from_proto(_task_pb(env={"A": "1"}, user="nobody", stdout_path="/f/out",
                                                  resources=res, job_name="j", task_group_name="g"))
    assert cfg.id == "a1/web/x" and cfg.name == "web" and cfg.alloc_dir == "/tmp/a1"
    assert dict(cfg.driver_config) == {"command": "/bin/true"}
    assert dict(cfg.env) == {"A": "1"} and cfg.user == "nobody"
    assert cfg.stdout_path == "/f/out" and cfg.stderr_path is None
    assert cfg.resources is not None
    assert (cfg.resources.cpu, cfg.resources.memory, cfg.resources.memory_max) == (500, 256, 512)
    assert cfg.resources.cpuset == (0, 2, 3) and cfg.resources.cores == 3
    assert convert.task_config_from_proto(_task_pb()).resources is None


def test_task_config_from_proto_errors() -> None:
    with pytest.raises(InvalidConfigError, match=r"task\.id is empty"):
        convert.task_config_from_proto(_task_pb(id=""))
    with pytest.raises(InvalidConfigError, match="not valid msgpack"):
        convert.task_config_from_proto(_task_pb(msgpack_driver_config=b"\xc1"))
    with pytest.raises(InvalidConfigError, match="cpu list"):
        convert.task_config_from_proto(_task_pb(resources=driver_pb2.Resources(
            allocated_resources=driver_pb2.AllocatedTaskResources(),
            linux_resources=driver_pb2.LinuxResources(cpuset_cpus="a-b"))))


def test_exit_result_round_trip_and_never_nil() -> None:
    pb, err = convert.exit_result_to_proto(ExitResult(exit_code=137, signal=9, oom_killed=True, err="x"))
    assert (pb.exit_code, pb.signal, pb.oom_killed, err) == (137, 9, True, "x")
    assert convert.exit_result_from_proto(pb, err) == ExitResult(137, 9, True, "x")
    pb, err = convert.exit_result_to_proto(None)
    assert pb.exit_code == -1 and err


def test_task_status_timestamps_always_set() -> None:
    st = TaskStatus(id="t", name="web", state=TaskState.RUNNING,
                    started_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), completed_at=None,
                    exit_result=None, driver_attributes={"pid": "42"})
    resp = convert.task_status_to_proto(st)
    assert resp.task.state == driver_pb2.RUNNING
    assert resp.task.started_at.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert resp.task.HasField("completed_at") and resp.task.completed_at.seconds == convert.ZERO_TIME_SECONDS
    assert resp.task.HasField("result") and dict(resp.driver.attributes) == {"pid": "42"}


def test_fingerprint_and_rename() -> None:
    fp = Fingerprint(HealthState.HEALTHY, "Healthy", {"driver.raw_exec": True, "driver.raw_exec.v": 2})
    resp = convert.fingerprint_to_proto(fp, "raw_exec_py")
    assert resp.health == driver_pb2.FingerprintResponse.HEALTHY and resp.health_description == "Healthy"
    assert resp.attributes["driver.raw_exec_py"].bool_val is True
    assert resp.attributes["driver.raw_exec_py.v"].int_val == 2
    off = convert.fingerprint_to_proto(Fingerprint(HealthState.UNDETECTED, "disabled", {}))
    assert off.health == driver_pb2.FingerprintResponse.UNDETECTED and not off.attributes
    assert convert.attribute_to_proto(1.5) == structs_pb2.Attribute(float_val=1.5)
    assert convert.attribute_to_proto("s") == structs_pb2.Attribute(string_val="s")


def test_capabilities_are_nomads_raw_exec() -> None:
    caps = convert.capabilities_to_proto(Capabilities())
    assert caps.send_signals and caps.exec
    assert caps.fs_isolation == driver_pb2.DriverCapabilities.NONE
    assert list(caps.network_isolation_modes) == [driver_pb2.NetworkIsolationSpec.HOST,
                                                  driver_pb2.NetworkIsolationSpec.GROUP]
    assert caps.mount_configs == driver_pb2.DriverCapabilities.NO_MOUNTS
    assert not caps.must_create_network and not caps.remote_tasks


def test_task_stats_always_has_timestamp_and_agg() -> None:
    empty = convert.task_stats_to_proto("t", None, 1_700_000_000_000_000_000).stats
    assert empty.HasField("timestamp") and empty.HasField("agg_resource_usage")
    assert empty.timestamp.ToNanoseconds() == 1_700_000_000_000_000_000
    usage = TaskResourceUsage(
        resource_usage=ResourceUsage(MemoryStats(rss=100, swap=5, measured=("RSS", "Swap")),
                                     CpuStats(user_mode=1.5, percent=12.0, measured=("User Mode", "Percent"))),
        timestamp=123, pids={"7": ResourceUsage(MemoryStats(rss=50, measured=("RSS",)))})
    stats = convert.task_stats_to_proto("t", usage, 999).stats
    assert stats.timestamp.ToNanoseconds() == 123
    agg = stats.agg_resource_usage
    assert agg.memory.rss == 100 and agg.memory.swap == 5
    assert list(agg.memory.measured_fields) == [driver_pb2.MemoryUsage.RSS, driver_pb2.MemoryUsage.SWAP]
    assert list(agg.cpu.measured_fields) == [driver_pb2.CPUUsage.USER_MODE, driver_pb2.CPUUsage.PERCENT]
    assert stats.resource_usage_by_pid["7"].memory.rss == 50


def _reference_usage(u: ResourceUsage) -> driver_pb2.TaskResourceUsage:
    """The facts' field table, spelled out message by message (what the fast path must equal)."""
    def fin(x: float) -> float:
        return x if math.isfinite(x) else 0.0
    cpu, mem = u.cpu_stats, u.memory_stats
    cpu_fields: dict[str, Any] = {"System Mode": 0, "User Mode": 1, "Total Ticks": 2, "Throttled Periods": 3,
                  "Throttled Time": 4, "Percent": 5}
    mem_fields: dict[str, Any] = {"RSS": 0, "Cache": 1, "Max Usage": 2, "Kernel Usage": 3, "Kernel Max Usage": 4,
                  "Usage": 5, "Swap": 6}
    return driver_pb2.TaskResourceUsage(
        cpu=driver_pb2.CPUUsage(system_mode=fin(cpu.system_mode), user_mode=fin(cpu.user_mode),
                                total_ticks=fin(cpu.total_ticks), throttled_periods=max(0, cpu.throttled_periods),
                                throttled_time=max(0, cpu.throttled_time), percent=fin(cpu.percent),
                                measured_fields=[cpu_fields[m] for m in cpu.measured if m in cpu_fields]),
        memory=driver_pb2.MemoryUsage(rss=max(0, mem.rss), cache=max(0, mem.cache), max_usage=max(0, mem.max_usage),
                                      kernel_usage=max(0, mem.kernel_usage),
                                      kernel_max_usage=max(0, mem.kernel_max_usage), usage=max(0, mem.usage),
                                      swap=max(0, mem.swap),
                                      measured_fields=[mem_fields[m] for m in mem.measured if m in mem_fields]))


_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
_ints = st.integers(min_value=-(2**40), max_value=2**63 - 1)
_usages = st.builds(
    ResourceUsage,
    st.builds(MemoryStats, rss=_ints, cache=_ints, swap=_ints, usage=_ints, max_usage=_ints, kernel_usage=_ints,
              kernel_max_usage=_ints,
              measured=st.lists(st.sampled_from(["RSS", "Cache", "Swap", "Usage", "Max Usage", "Kernel Usage",
                                                 "Kernel Max Usage", "Mapped File"])).map(tuple)),
    st.builds(CpuStats, system_mode=_floats, user_mode=_floats, total_ticks=_floats, percent=_floats,
              throttled_periods=_ints, throttled_time=_ints,
              measured=st.lists(st.sampled_from(["System Mode", "User Mode", "Total Ticks", "Throttled Periods",
                                                 "Throttled Time", "Percent", "Bogus"])).map(tuple)))


@settings(max_examples=200, deadline=None)
@given(agg=_usages, pids=st.dictionaries(st.integers(1, 2**22).map(str), _usages, max_size=3),
       ts=st.integers(min_value=-(2**62), max_value=2**62), now=st.integers(min_value=1, max_value=2**62))
def test_task_stats_message_field_for_field(agg: ResourceUsage, pids: dict[str, ResourceUsage], ts: int,
                                            now: int) -> None:
    """The in-place message build equals the message built from the facts' table, bytes for bytes,
    with cpu and memory present even when all zero."""
    usage = TaskResourceUsage(resource_usage=agg, timestamp=ts, pids=pids)
    got = convert.task_stats_to_proto("a/t/1", usage, now)
    want = driver_pb2.TaskStatsResponse(stats=driver_pb2.TaskStats(
        id="a/t/1", timestamp=convert.timestamp_from_nanos(ts or now), agg_resource_usage=_reference_usage(agg),
        resource_usage_by_pid={k: _reference_usage(v) for k, v in pids.items()}))
    assert got == want
    assert got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)
    for pb in (got.stats.agg_resource_usage, *got.stats.resource_usage_by_pid.values()):
        assert pb.HasField("cpu") and pb.HasField("memory")


def test_durations() -> None:
    assert convert.duration_seconds(None, 5.0) == 5.0
    assert convert.duration_seconds(convert.duration_from_seconds(2.25), 0) == 2.25


# --- status -----------------------------------------------------------------------------------------


def test_error_codes_follow_grpc_code_attribute() -> None:
    assert to_status(TaskNotFoundError("x")).code == grpc.StatusCode.NOT_FOUND
    assert to_status(DriverDisabledError()).code == grpc.StatusCode.FAILED_PRECONDITION
    assert to_status(DriverDisabledError()).details == "raw_exec is disabled"
    assert to_status(InvalidConfigError("bad")).code == grpc.StatusCode.INVALID_ARGUMENT
    st = to_status(ValueError("boom"))
    assert st.code == grpc.StatusCode.INTERNAL and "boom" in st.details and not st.trailing_metadata


def test_recoverable_error_carries_nomads_detail() -> None:
    st = to_status(UnavailableError("spawner busy"))
    assert st.code == grpc.StatusCode.UNAVAILABLE
    ((key, value),) = st.trailing_metadata
    assert key == STATUS_DETAILS_KEY
    assert isinstance(value, bytes)
    rich = rpc_status_pb2.Status.FromString(value)
    assert rich.code == grpc.StatusCode.UNAVAILABLE.value[0] and rich.message == "spawner busy"
    assert rich.details[0].type_url == RECOVERABLE_TYPE_URL
    assert rich.details[0].value == bytes.fromhex("0801")  # facts §6: the bytes grpc-go reads
    assert not to_status(InvalidConfigError("x", recoverable=False)).trailing_metadata
    assert to_status(InvalidConfigError("x", recoverable=True)).trailing_metadata


def test_recoverable_detail_reaches_a_grpc_client() -> None:
    """Over a real socket: the client sees the code, the message and the RecoverableError detail."""
    import asyncio

    from rawexec.plugin.status import abort

    async def fail(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        await abort(context, UnavailableError("spawner restarting; retry"), "StartTask")

    async def run() -> None:
        handler = grpc.method_handlers_generic_handler(
            "hashicorp.nomad.plugins.drivers.proto.Driver",
            {"StartTask": grpc.unary_unary_rpc_method_handler(fail)})
        server = grpc.aio.server(handlers=[handler])
        with short_tmp_dir() as d:
            sock = f"unix:{d}/s.sock"
            server.add_insecure_port(sock)
            await server.start()
            try:
                await asyncio.get_running_loop().run_in_executor(None, _call_failing, sock)
            finally:
                await server.stop(None)

    asyncio.run(run())


def _call_failing(sock: str) -> None:
    with grpc.insecure_channel(sock) as ch:
        call = ch.unary_unary("/hashicorp.nomad.plugins.drivers.proto.Driver/StartTask",
                              request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as ei:
            call(b"", timeout=5)
    err: Any = ei.value
    assert err.code() == grpc.StatusCode.UNAVAILABLE and err.details() == "spawner restarting; retry"
    trailers = dict(err.trailing_metadata())
    rich = rpc_status_pb2.Status.FromString(trailers[STATUS_DETAILS_KEY])
    assert rich.details[0].type_url == RECOVERABLE_TYPE_URL
    detail = structs_pb2.RecoverableError()
    assert rich.details[0].Unpack(detail) and detail.recoverable


def test_generated_code_matches_the_protos(tmp_path: Any) -> None:
    """gen/ is committed; regenerating from proto/ must give the same files (no drift)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([str(root / "scripts" / "gen-proto"), str(tmp_path)], capture_output=True, text=True,
                         timeout=120, check=False, env={**os.environ,
                                                        "RAWEXEC_VENV": str(Path(sys.executable).parent.parent)})
    assert res.returncode == 0, res.stderr
    gen = root / "src" / "rawexec" / "plugin" / "gen"
    fresh = sorted(p.name for p in tmp_path.iterdir())
    assert fresh == sorted(p.name for p in gen.iterdir() if p.is_file())
    for name in fresh:
        assert (tmp_path / name).read_text() == (gen / name).read_text(), f"{name} is stale: run scripts/gen-proto"


def test_task_event_to_proto() -> None:
    from rawexec.driver import TaskEvent

    ev = TaskEvent(task_id="a/web/1", alloc_id="a", task_name="web",
                   timestamp=datetime(2026, 1, 1, tzinfo=UTC), message="OOM Killed", annotations={"oom_killed": "true"})
    pb = convert.task_event_to_proto(ev)
    assert (pb.task_id, pb.alloc_id, pb.task_name, pb.message) == ("a/web/1", "a", "web", "OOM Killed")
    assert pb.timestamp.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 1, tzinfo=UTC)
    assert dict(pb.annotations) == {"oom_killed": "true"}
