"""The go-plugin handshake and lifecycle, against the real plugin process."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import sys
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2

from rawexec.plugin.gen import base_pb2, plugin_pb2
from rawexec.plugin.main import parse_args
from rawexec.plugin.server import MAGIC_COOKIE_VALUE
from tests.plugin.harness import Plugin, launch, plugin_env, run_without_handshake, wait_until

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")


@pytest.mark.parametrize("cookie", [None, MAGIC_COOKIE_VALUE[:-1]])
def test_refuses_to_run_without_the_cookie(tmp_path: Path, sock_dir: Path, cookie: str | None) -> None:
    res = run_without_handshake(tmp_path, plugin_env(sock_dir, cookie=cookie))
    assert res.returncode == 1
    assert res.stdout == b""
    err = res.stderr.decode()
    assert "This binary is a plugin" in err and "plugin_dir" in err and "rawexec run" in err
    assert list(sock_dir.iterdir()) == []


@pytest.mark.parametrize("versions", ["1", "3,x"])
def test_unsupported_protocol_versions_fail_clearly(tmp_path: Path, sock_dir: Path, versions: str) -> None:
    res = run_without_handshake(tmp_path, plugin_env(sock_dir, extra={"PLUGIN_PROTOCOL_VERSIONS": versions}))
    assert res.returncode == 1 and res.stdout == b""
    records = [json.loads(line) for line in res.stderr.decode().splitlines()]
    errors = [r["@message"] for r in records if r["@level"] == "error"]
    assert errors and "Incompatible plugin protocol" in errors[0] and repr(versions) in errors[0]
    assert list(sock_dir.iterdir()) == []


@pytest.mark.parametrize("versions", ["1,2", " 3 , 2 ,junk"])
def test_protocol_2_is_negotiated(tmp_path: Path, sock_dir: Path, versions: str) -> None:
    p = launch(tmp_path, sock_dir, env=plugin_env(sock_dir, extra={"PLUGIN_PROTOCOL_VERSIONS": versions}))
    try:
        assert p.line.startswith("1|2|unix|")
        assert p.healthy()
    finally:
        p.close()


def test_handshake_line_socket_dir_and_health(plugin: Plugin, sock_dir: Path) -> None:
    assert re.fullmatch(r"1\|2\|unix\|/[^|]+\|grpc\|", plugin.line)
    sock = Path(plugin.socket_path)
    assert sock.parent == sock_dir and stat.S_ISSOCK(sock.stat().st_mode)
    assert plugin.healthy()
    with pytest.raises(grpc.RpcError) as ei:
        plugin.health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    listed = plugin.health.List(health_pb2.HealthListRequest(), timeout=5)
    assert listed.statuses["plugin"].status == health_pb2.HealthCheckResponse.SERVING
    watch = plugin.health.Watch(health_pb2.HealthCheckRequest(service="plugin"))
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    info = plugin.base.PluginInfo(base_pb2.PluginInfoRequest(), timeout=5)
    assert info.type == base_pb2.DRIVER and list(info.plugin_api_versions) == ["0.1.0"]
    assert info.plugin_version == "0.1.0" and info.name == "raw_exec"


def test_default_socket_dir_is_the_temp_dir_and_socket_group(tmp_path: Path, sock_dir: Path) -> None:
    gid = os.getgid()
    env = plugin_env(None, extra={"TMPDIR": str(sock_dir), "PLUGIN_UNIX_SOCKET_GROUP": str(gid)})
    p = launch(tmp_path, None, env=env)
    try:
        assert Path(p.socket_path).parent == sock_dir
        st = os.stat(p.socket_path)
        assert st.st_gid == gid and stat.S_IMODE(st.st_mode) == 0o660
    finally:
        p.close()


def test_stdout_carries_only_the_handshake_and_stderr_is_hclog_json(tmp_path: Path, sock_dir: Path) -> None:
    p = launch(tmp_path, sock_dir)
    p.base.ConfigSchema(base_pb2.ConfigSchemaRequest(), timeout=5)
    assert p.shutdown() == 0
    assert p.rest_of_stdout() == b""
    lines = p.stderr_lines()
    assert lines
    for line in lines:
        rec = json.loads(line)
        assert isinstance(rec["@level"], str) and rec["@level"] in ("trace", "debug", "info", "warn", "error")
        assert isinstance(rec["@message"], str)
        assert TS_RE.match(rec["@timestamp"]), rec["@timestamp"]
    assert any(r["@message"] == "plugin exiting" for r in p.log_records())


def test_sigint_is_ignored(shared_plugin: Plugin) -> None:
    plugin = shared_plugin
    os.kill(plugin.pid, signal.SIGINT)
    os.killpg(plugin.pid, signal.SIGINT)  # Ctrl-C on the agent's terminal reaches the whole group
    assert plugin.healthy()
    assert plugin.alive()


def test_controller_shutdown_exits_fast_and_removes_socket(plugin: Plugin) -> None:
    t0 = time.monotonic()
    plugin.controller.Shutdown(plugin_pb2.Empty(), timeout=5)
    code = plugin.proc.wait(timeout=5)
    elapsed = time.monotonic() - t0
    assert code == 0
    assert elapsed < 1.0, f"exit took {elapsed:.3f}s (go-plugin waits 2 s, then SIGKILLs)"
    assert not Path(plugin.socket_path).exists()


def test_sigterm_stops_the_plugin(plugin: Plugin) -> None:
    os.kill(plugin.pid, signal.SIGTERM)
    assert plugin.proc.wait(timeout=5) == 0
    assert not Path(plugin.socket_path).exists()


def test_shutdown_while_streams_are_open(plugin: Plugin) -> None:
    stream = plugin.stdio.StreamStdio(empty_pb2.Empty())
    t0 = time.monotonic()
    plugin.controller.Shutdown(plugin_pb2.Empty(), timeout=5)
    assert plugin.proc.wait(timeout=5) == 0
    assert time.monotonic() - t0 < 1.0
    with pytest.raises(grpc.RpcError):
        list(stream)


def test_stdio_stream_stays_open_and_survives_cancel(shared_plugin: Plugin) -> None:
    plugin = shared_plugin
    stream = plugin.stdio.StreamStdio(empty_pb2.Empty())
    assert plugin.healthy()  # a full round trip later, the stdio stream is still open
    assert stream.is_active()
    stream.cancel()
    with pytest.raises(grpc.RpcError) as ei:
        next(stream)
    assert ei.value.code() == grpc.StatusCode.CANCELLED
    again = plugin.stdio.StreamStdio(empty_pb2.Empty())  # a reattaching host opens it again
    again.cancel()
    assert plugin.healthy()


def test_broker_is_unimplemented_which_hosts_ignore(shared_plugin: Plugin) -> None:
    plugin = shared_plugin
    call = plugin.channel.stream_stream("/plugin.GRPCBroker/StartStream",
                                        request_serializer=plugin_pb2.ConnInfo.SerializeToString,
                                        response_deserializer=plugin_pb2.ConnInfo.FromString)
    with pytest.raises(grpc.RpcError) as ei:
        list(call(iter([plugin_pb2.ConnInfo()]), timeout=5))
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert plugin.healthy()


def test_name_argument(tmp_path: Path, sock_dir: Path) -> None:
    p = launch(tmp_path, sock_dir, args=["-name", "raw_exec_py"])
    try:
        assert p.base.PluginInfo(base_pb2.PluginInfoRequest(), timeout=5).name == "raw_exec_py"
    finally:
        p.close()


@pytest.mark.parametrize(("argv", "name"), [([], "raw_exec"), (["-name", "a"], "a"), (["--name", "b.c"], "b.c"),
                                            (["-name=x_y"], "x_y"), (["--name=z-1"], "z-1")])
def test_parse_args(argv: list[str], name: str) -> None:
    assert parse_args(argv) == name


def test_bad_arguments_exit_2_with_usage(tmp_path: Path, sock_dir: Path) -> None:
    res = run_without_handshake(tmp_path, plugin_env(sock_dir), args=["-bogus"])
    assert res.returncode == 2 and res.stdout == b""
    assert "unknown argument '-bogus'" in res.stderr.decode() and "usage:" in res.stderr.decode()
    for argv, expect in ((["-name"], "needs a value"), (["-name", "a b"], "invalid -name")):
        with pytest.raises(ValueError, match=expect):
            parse_args(argv)


def test_console_script_entry(tmp_path: Path, sock_dir: Path) -> None:
    script = Path(sys.executable).parent / "nomad-driver-rawexec"
    if not script.exists():
        pytest.skip("console script not installed in this environment (run scripts/bootstrap)")
    p = launch(tmp_path, sock_dir, command=[str(script)])
    try:
        assert p.healthy()
    finally:
        assert p.shutdown() == 0


def test_socket_dir_must_exist(tmp_path: Path) -> None:
    res = run_without_handshake(tmp_path, plugin_env(tmp_path / "missing"))
    assert res.returncode == 1 and res.stdout == b""
    assert "PLUGIN_UNIX_SOCKET_DIR" in res.stderr.decode()


def test_launch_to_handshake_is_quick(shared_plugin: Plugin) -> None:
    plugin = shared_plugin
    wait_until(plugin.healthy, 5)
    assert plugin.launch_seconds < 3.0  # the benchmark measures the real figure; this catches regressions


def test_survives_the_agent_dying_with_its_pipes(tmp_path: Path, sock_dir: Path) -> None:
    """The agent dies: the plugin's stdout/stderr pipes break, but it must live on for reattach."""
    p = launch(tmp_path, sock_dir, stderr_pipe=True)
    try:
        assert p.proc.stderr is not None and p.proc.stdout is not None
        p.proc.stderr.close()
        p.proc.stdout.close()
        for _ in range(3):  # each of these logs to stderr
            p.base.PluginInfo(base_pb2.PluginInfoRequest(), timeout=5)
            with pytest.raises(grpc.RpcError):
                p.base.SetConfig(base_pb2.SetConfigRequest(msgpack_config=b"\xc1"), timeout=5)
        assert p.healthy() and p.alive()
    finally:
        p.controller.Shutdown(plugin_pb2.Empty(), timeout=5)
        assert p.proc.wait(timeout=5) == 0
        p.channel.close()


def test_handlers_send_bytes_responses_as_they_are() -> None:
    """A handler may answer with bytes it serialized itself (TaskStats does, on the pool thread):
    they go out unchanged; messages still go through the method's serializer."""
    from rawexec.plugin.gen import driver_pb2
    from rawexec.plugin.server import _with_request_check

    async def behavior(request: object, context: object) -> None:
        return None

    made = _with_request_check(grpc.unary_stream_rpc_method_handler(
        behavior, request_deserializer=driver_pb2.TaskStatsRequest.FromString,
        response_serializer=driver_pb2.TaskStatsResponse.SerializeToString))
    msg = driver_pb2.TaskStatsResponse()
    msg.stats.id = "a/t/1"
    assert made.response_serializer(msg) == msg.SerializeToString()
    assert made.response_serializer(b"\x0a\x00") == b"\x0a\x00"
    raw = _with_request_check(grpc.unary_unary_rpc_method_handler(behavior))
    assert raw.response_serializer is None  # bytes-only services (the controller) stay as they are
