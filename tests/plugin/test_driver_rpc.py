"""Nomad's client, played over the real gRPC socket against the real plugin process.

SetConfig -> Fingerprint -> StartTask -> WaitTask/TaskStats/TaskEvents -> SignalTask -> ExecTask(Streaming)
-> StopTask -> DestroyTask; kill -9 the plugin, launch a new one, RecoverTask, and the task is still
there with its logs.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from rawexec.plugin.gen import base_pb2, driver_pb2
from rawexec.plugin.hclspec import from_proto, plugin_config_spec, task_config_spec
from tests.plugin.harness import Plugin, launch, wait_until
from tests.plugin.nomad_client import (
    collect_exec,
    exec_stream_requests,
    set_config,
    task_config,
    task_fifos,
)

LOOP = "trap 'echo got-usr1; exit 3' USR1; echo started; echo to-stderr >&2; while :; do sleep 0.05; done"


@pytest.fixture
def configured(shared_plugin: Plugin) -> Iterator[Plugin]:
    """The module's shared plugin, configured (enabled); asserts it is still healthy afterwards."""
    set_config(shared_plugin)
    yield shared_plugin
    assert shared_plugin.healthy()


def _seconds(s: float) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(s), nanos=int((s % 1) * 1e9))


def _code(exc: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    code: grpc.StatusCode = exc.value.code()
    return code


def _details(exc: pytest.ExceptionInfo[grpc.RpcError]) -> str:
    details = exc.value.details()
    return str(details)


def _start(p: Plugin, cfg: driver_pb2.TaskConfig) -> Any:
    return p.driver.StartTask(driver_pb2.StartTaskRequest(task=cfg), timeout=60)


def _wait(p: Plugin, task_id: str, timeout: float = 60) -> Any:
    return p.driver.WaitTask(driver_pb2.WaitTaskRequest(task_id=task_id), timeout=timeout)


def _stop_destroy(p: Plugin, task_id: str) -> None:
    p.driver.StopTask(driver_pb2.StopTaskRequest(task_id=task_id, timeout=_seconds(1), signal="SIGKILL"),
                      timeout=30)
    p.driver.DestroyTask(driver_pb2.DestroyTaskRequest(task_id=task_id, force=True), timeout=30)


def test_schemas_and_capabilities(shared_plugin: Plugin) -> None:
    plugin = shared_plugin
    spec = plugin.base.ConfigSchema(base_pb2.ConfigSchemaRequest(), timeout=5).spec
    assert from_proto(spec) == plugin_config_spec()
    tspec = plugin.driver.TaskConfigSchema(driver_pb2.TaskConfigSchemaRequest(), timeout=5).spec
    assert from_proto(tspec) == task_config_spec()
    caps = plugin.driver.Capabilities(driver_pb2.CapabilitiesRequest(), timeout=5).capabilities
    assert caps.send_signals and caps.exec and caps.mount_configs == driver_pb2.DriverCapabilities.NO_MOUNTS
    assert list(caps.network_isolation_modes) == [driver_pb2.NetworkIsolationSpec.HOST,
                                                  driver_pb2.NetworkIsolationSpec.GROUP]
    plugin.driver.Init(driver_pb2.InitRequest(), timeout=5)


def test_fingerprint_renamed_and_resent_when_the_config_changes(tmp_path: Path, sock_dir: Path) -> None:
    p = launch(tmp_path, sock_dir, args=["-name", "raw_exec_py"])
    try:
        set_config(p, {"enabled": False})
        stream = p.driver.Fingerprint(driver_pb2.FingerprintRequest(), timeout=20)
        first = next(stream)
        assert first.health == driver_pb2.FingerprintResponse.UNDETECTED
        assert first.health_description == "disabled" and not first.attributes
        set_config(p, {"enabled": True})
        nxt = next(stream)  # at once, well before the 30 s period
        assert nxt.health == driver_pb2.FingerprintResponse.HEALTHY and nxt.health_description == "Healthy"
        assert dict(nxt.attributes)["driver.raw_exec_py"].bool_val is True
        assert stream.is_active()  # kept open, as Nomad expects
        stream.cancel()
        assert p.healthy()
    finally:
        p.close()


def test_lifecycle_signal_wait_stats_events_and_fifo_logs(configured: Plugin, tmp_path: Path) -> None:
    p = configured
    alloc = tmp_path / "alloc1"
    with task_fifos(alloc) as (out, err):
        cfg = task_config(alloc, {"command": "/bin/sh", "args": ["-c", LOOP]},
                          stdout_path=str(out.path), stderr_path=str(err.path))
        resp = _start(p, cfg)
        h = resp.handle
        assert h.config.id == cfg.id and h.config.msgpack_driver_config == cfg.msgpack_driver_config
        assert h.state == driver_pb2.RUNNING and h.version >= 1 and h.driver_state
        # Logged right after the reply went out (off the client's wait), with the task's ids.
        wait_until(lambda: any(r.get("@message") == "task started" and r.get("task_id") == cfg.id
                               and r.get("task_name") == "web" and r.get("@level") == "info"
                               for r in p.log_records()), 10, message="the 'task started' log line")
        events = p.driver.TaskEvents(driver_pb2.TaskEventsRequest())
        wait_until(lambda: b"started" in out.data, 10, message="task stdout in the FIFO")
        wait_until(lambda: b"to-stderr" in err.data, 10, message="task stderr in the FIFO")

        insp = p.driver.InspectTask(driver_pb2.InspectTaskRequest(task_id=cfg.id), timeout=5)
        assert insp.task.id == cfg.id and insp.task.name == "web" and insp.task.state == driver_pb2.RUNNING
        assert int(insp.driver.attributes["pid"]) > 0
        assert insp.task.completed_at.seconds == -62135596800

        interval = duration_pb2.Duration(nanos=50_000_000)
        stats = p.driver.TaskStats(driver_pb2.TaskStatsRequest(task_id=cfg.id, collection_interval=interval))
        first, second = next(stats), next(stats)
        for s in (first, second):
            assert s.stats.id == cfg.id and s.stats.HasField("timestamp") and s.stats.HasField("agg_resource_usage")
        assert second.stats.timestamp.ToNanoseconds() > first.stats.timestamp.ToNanoseconds()
        agg = second.stats.agg_resource_usage  # the driver's real numbers, not zeros
        assert agg.memory.rss > 0 and driver_pb2.MemoryUsage.RSS in agg.memory.measured_fields
        stats.cancel()

        waiter = p.driver.WaitTask.future(driver_pb2.WaitTaskRequest(task_id=cfg.id), timeout=30)
        p.driver.SignalTask(driver_pb2.SignalTaskRequest(task_id=cfg.id, signal="SIGUSR1"), timeout=5)
        res = waiter.result()
        assert (res.result.exit_code, res.result.signal, res.err) == (3, 0, "")
        again = _wait(p, cfg.id)  # WaitTask after exit answers at once, many times
        assert again.result.exit_code == 3
        wait_until(lambda: b"got-usr1" in out.data, 10, message="trap output")
        assert events.is_active()
        events.cancel()

        insp = p.driver.InspectTask(driver_pb2.InspectTaskRequest(task_id=cfg.id), timeout=5)
        assert insp.task.state == driver_pb2.EXITED and insp.task.result.exit_code == 3
        # A stats stream for an exited task ends cleanly.
        assert list(p.driver.TaskStats(driver_pb2.TaskStatsRequest(task_id=cfg.id), timeout=10)) == []
        p.driver.StopTask(driver_pb2.StopTaskRequest(task_id=cfg.id, timeout=_seconds(1)), timeout=10)
        p.driver.DestroyTask(driver_pb2.DestroyTaskRequest(task_id=cfg.id, force=True), timeout=10)
        p.driver.DestroyTask(driver_pb2.DestroyTaskRequest(task_id=cfg.id, force=True), timeout=10)
        p.driver.StopTask(driver_pb2.StopTaskRequest(task_id=cfg.id), timeout=10)
        with pytest.raises(grpc.RpcError) as ei:
            p.driver.InspectTask(driver_pb2.InspectTaskRequest(task_id=cfg.id), timeout=5)
        assert _code(ei) == grpc.StatusCode.NOT_FOUND


def test_exec_and_exec_streaming_then_stop(configured: Plugin, tmp_path: Path) -> None:
    p = configured
    cfg = task_config(tmp_path / "a", {"command": "/bin/sh", "args": ["-c", "exec sleep 60"]},
                      env={"GREETING": "hi-from-env"})
    _start(p, cfg)
    res = p.driver.ExecTask(driver_pb2.ExecTaskRequest(task_id=cfg.id, command=["/bin/sh", "-c",
                                                                                "echo $GREETING; exit 7"]),
                            timeout=30)
    assert res.stdout == b"hi-from-env\n" and res.result.exit_code == 7

    basic = p.driver.ExecTaskStreaming(iter(exec_stream_requests(
        cfg.id, ["/bin/sh", "-c", "echo hello stdout; echo hello stderr >&2; exit 43"])), timeout=30)
    out, err, result, closes = collect_exec(basic)
    assert (out, err, result.exit_code) == (b"hello stdout\n", b"hello stderr\n", 43)
    assert sorted(closes) == ["stderr", "stdout"]

    stdin = p.driver.ExecTaskStreaming(iter(exec_stream_requests(
        cfg.id, ["/bin/sh", "-c", "echo hello from command; head -n1"], stdin=b"hello from stdin\n")),
        timeout=30)
    out, err, result, _ = collect_exec(stdin)
    assert out == b"hello from command\nhello from stdin\n" and result.exit_code == 0

    tty = p.driver.ExecTaskStreaming(iter(exec_stream_requests(
        cfg.id, ["/bin/sh", "-c", "sleep 0.2; stty size"], tty=True)), timeout=30)
    out, err, result, _ = collect_exec(tty)
    assert out.endswith(b"100 100\r\n") and err == b"" and result.exit_code == 0

    waiter = p.driver.WaitTask.future(driver_pb2.WaitTaskRequest(task_id=cfg.id), timeout=30)
    p.driver.StopTask(driver_pb2.StopTaskRequest(task_id=cfg.id, timeout=_seconds(2), signal="SIGTERM"),
                      timeout=30)
    done = waiter.result()
    assert (done.result.exit_code, done.result.signal) == (128 + signal.SIGTERM, signal.SIGTERM)
    p.driver.DestroyTask(driver_pb2.DestroyTaskRequest(task_id=cfg.id, force=True), timeout=30)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_kill9_plugin_then_recover_in_a_new_one(tmp_path: Path, sock_dir: Path) -> None:
    p1 = launch(tmp_path, sock_dir)
    alloc = tmp_path / "alloc"
    with task_fifos(alloc) as (out, _err):
        try:
            set_config(p1)
            script = "i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.05; done"
            cfg = task_config(alloc, {"command": "/bin/sh", "args": ["-c", script]}, stdout_path=str(out.path),
                              stderr_path=os.devnull)
            handle = _start(p1, cfg).handle
            pid = int(p1.driver.InspectTask(driver_pb2.InspectTaskRequest(task_id=cfg.id),
                                            timeout=5).driver.attributes["pid"])
            wait_until(lambda: b"tick-2\n" in out.data, 10, message="first ticks")
        finally:
            p1.kill9()
        assert _pid_alive(pid), "the task must outlive the plugin"
        seen = len(out.data)
        wait_until(lambda: len(out.data) > seen + 20, 10, message="logs still flowing with no plugin alive")

        p2 = launch(tmp_path, sock_dir)
        try:
            set_config(p2)
            # Nomad never sets RecoverTaskRequest.task_id; it sends the stored handle only.
            p2.driver.RecoverTask(driver_pb2.RecoverTaskRequest(handle=handle), timeout=60)
            p2.driver.RecoverTask(driver_pb2.RecoverTaskRequest(handle=handle), timeout=60)  # idempotent
            insp = p2.driver.InspectTask(driver_pb2.InspectTaskRequest(task_id=cfg.id), timeout=5)
            assert insp.task.state == driver_pb2.RUNNING and int(insp.driver.attributes["pid"]) == pid
            waiter = p2.driver.WaitTask.future(driver_pb2.WaitTaskRequest(task_id=cfg.id), timeout=30)
            p2.driver.StopTask(driver_pb2.StopTaskRequest(task_id=cfg.id, timeout=_seconds(1),
                                                          signal="SIGTERM"), timeout=30)
            assert waiter.result().result.signal == signal.SIGTERM
            p2.driver.DestroyTask(driver_pb2.DestroyTaskRequest(task_id=cfg.id, force=True), timeout=30)
            wait_until(lambda: not _pid_alive(pid), 10, message="task gone after stop")
        finally:
            p2.close()


def test_exit_while_no_plugin_alive_is_reported_on_recover(tmp_path: Path, sock_dir: Path) -> None:
    p1 = launch(tmp_path, sock_dir)
    alloc = tmp_path / "alloc"
    marker = tmp_path / "go"
    try:
        set_config(p1)
        cfg = task_config(alloc, {"command": "/bin/sh",
                                  "args": ["-c", f"while [ ! -e {marker} ]; do sleep 0.02; done; exit 42"]})
        handle = _start(p1, cfg).handle
    finally:
        p1.kill9()
    marker.touch()  # the task exits while no plugin is alive
    p2 = launch(tmp_path, sock_dir)
    try:
        set_config(p2)
        p2.driver.RecoverTask(driver_pb2.RecoverTaskRequest(handle=handle), timeout=60)
        assert _wait(p2, cfg.id).result.exit_code == 42
        p2.driver.DestroyTask(driver_pb2.DestroyTaskRequest(task_id=cfg.id, force=True), timeout=30)
    finally:
        p2.close()


# --- bad input: clear gRPC errors, and the plugin survives ------------------------------------------


def test_task_verbs_before_setconfig(plugin: Plugin, tmp_path: Path) -> None:
    cfg = task_config(tmp_path, {"command": "/bin/true"})
    with pytest.raises(grpc.RpcError) as ei:
        _start(plugin, cfg)
    assert _code(ei) == grpc.StatusCode.FAILED_PRECONDITION and "SetConfig" in _details(ei)
    assert plugin.healthy()


def test_disabled_driver_refuses_start(plugin: Plugin, tmp_path: Path) -> None:
    set_config(plugin, {})  # enabled defaults to false, as Nomad's
    with pytest.raises(grpc.RpcError) as ei:
        _start(plugin, task_config(tmp_path, {"command": "/bin/true"}))
    assert _code(ei) == grpc.StatusCode.FAILED_PRECONDITION and _details(ei) == "raw_exec is disabled"


@pytest.mark.parametrize(("msgpack_config", "code", "text"), [
    (b"\xc1", grpc.StatusCode.INVALID_ARGUMENT, "plugin config is not valid msgpack"),
    (b"\x81\xa7enabled\xa3yes", grpc.StatusCode.INVALID_ARGUMENT, 'plugin config field "enabled": expected a bool'),
    (b"\x81\xb0denied_host_uids\xa30-x", grpc.StatusCode.INVALID_ARGUMENT,
     'invalid range deniedHostUIDs "0-x": range bound not valid'),
    (b"\x91\x01", grpc.StatusCode.INVALID_ARGUMENT, "plugin config must be an object"),
])
def test_bad_plugin_config(shared_plugin: Plugin, msgpack_config: bytes, code: grpc.StatusCode,
                           text: str) -> None:
    plugin = shared_plugin
    with pytest.raises(grpc.RpcError) as ei:
        plugin.base.SetConfig(base_pb2.SetConfigRequest(msgpack_config=msgpack_config), timeout=5)
    assert _code(ei) == code and text in _details(ei)
    assert plugin.healthy()


def test_validation_launch_setconfig_without_nomad_config(plugin: Plugin) -> None:
    set_config(plugin, {"enabled": True, "denied_host_uids": "0-10", "no_cgroups": True}, validation_only=True)
    with pytest.raises(grpc.RpcError) as ei:
        plugin.base.SetConfig(base_pb2.SetConfigRequest(plugin_api_version="9.9.9"), timeout=5)
    assert _code(ei) == grpc.StatusCode.INVALID_ARGUMENT and "plugin_api_version" in _details(ei)


@pytest.mark.parametrize(("driver_config", "text"), [
    (b"\xc1", "task config is not valid msgpack"),
    (b"\x81\xa7command\x92\x01\x02", 'task config field "command": expected a string, got list'),
    (b"\x81\xa4args\xa3a b", 'task config field "command": is required'),
    (b"\x82\xa7command\xa2sh\xadoom_score_adj\xa2-1", "oom_score_adj must not be negative"),
])
def test_bad_task_config(configured: Plugin, tmp_path: Path, driver_config: bytes, text: str) -> None:
    cfg = task_config(tmp_path, {"command": "/bin/true"})
    cfg.msgpack_driver_config = driver_config
    with pytest.raises(grpc.RpcError) as ei:
        _start(configured, cfg)
    assert _code(ei) == grpc.StatusCode.INVALID_ARGUMENT and text in _details(ei)
    assert configured.healthy()


def test_duplicate_task_id(configured: Plugin, tmp_path: Path) -> None:
    cfg = task_config(tmp_path, {"command": "/bin/sleep", "args": ["30"]})
    _start(configured, cfg)
    try:
        with pytest.raises(grpc.RpcError) as ei:
            _start(configured, cfg)
        assert _code(ei) == grpc.StatusCode.ALREADY_EXISTS and cfg.id in _details(ei)
    finally:
        _stop_destroy(configured, cfg.id)


def test_unknown_task_ids(configured: Plugin) -> None:
    d = configured.driver
    calls: list[Callable[[], object]] = [
        lambda: d.WaitTask(driver_pb2.WaitTaskRequest(task_id="nope"), timeout=5),
        lambda: d.InspectTask(driver_pb2.InspectTaskRequest(task_id="nope"), timeout=5),
        lambda: d.SignalTask(driver_pb2.SignalTaskRequest(task_id="nope", signal="SIGHUP"), timeout=5),
        lambda: d.ExecTask(driver_pb2.ExecTaskRequest(task_id="nope", command=["true"]), timeout=5),
        lambda: next(d.TaskStats(driver_pb2.TaskStatsRequest(task_id="nope"), timeout=5)),
        lambda: list(d.ExecTaskStreaming(iter(exec_stream_requests("nope", ["true"])), timeout=5)),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as ei:
            call()
        assert _code(ei) == grpc.StatusCode.NOT_FOUND, _details(ei)
        assert "task not found" in _details(ei)
    d.StopTask(driver_pb2.StopTaskRequest(task_id="nope"), timeout=5)  # Nomad: success for unknown ids
    d.DestroyTask(driver_pb2.DestroyTaskRequest(task_id="nope", force=True), timeout=5)
    assert configured.healthy()


def test_bad_requests_on_a_running_task(configured: Plugin, tmp_path: Path) -> None:
    cfg = task_config(tmp_path, {"command": "/bin/sleep", "args": ["30"]})
    _start(configured, cfg)
    d = configured.driver
    try:
        with pytest.raises(grpc.RpcError) as ei:
            d.SignalTask(driver_pb2.SignalTaskRequest(task_id=cfg.id, signal="SIGBOGUS"), timeout=5)
        assert _code(ei) == grpc.StatusCode.INVALID_ARGUMENT and "SIGBOGUS" in _details(ei)
        with pytest.raises(grpc.RpcError) as ei:
            d.ExecTask(driver_pb2.ExecTaskRequest(task_id=cfg.id, command=[]), timeout=5)
        assert _code(ei) == grpc.StatusCode.INVALID_ARGUMENT
        assert "error cmd must have at least one value" in _details(ei)
        with pytest.raises(grpc.RpcError) as ei:
            list(d.ExecTaskStreaming(iter([driver_pb2.ExecTaskStreamingRequest(
                stdin=driver_pb2.ExecTaskStreamingIOOperation(data=b"x"))]), timeout=5))
        assert _code(ei) == grpc.StatusCode.INVALID_ARGUMENT and "setup" in _details(ei)
        with pytest.raises(grpc.RpcError) as ei:
            d.DestroyTask(driver_pb2.DestroyTaskRequest(task_id=cfg.id, force=False), timeout=5)
        assert _code(ei) == grpc.StatusCode.FAILED_PRECONDITION and "cannot destroy running task" in _details(ei)
        nets: tuple[Callable[[], object], ...] = (
            lambda: d.CreateNetwork(driver_pb2.CreateNetworkRequest(alloc_id="a"), timeout=5),
            lambda: d.DestroyNetwork(driver_pb2.DestroyNetworkRequest(alloc_id="a"), timeout=5))
        for net in nets:
            with pytest.raises(grpc.RpcError) as ei:
                net()
            assert _code(ei) == grpc.StatusCode.UNIMPLEMENTED and "does not create networks" in _details(ei)
        d.Shutdown(driver_pb2.ShutdownRequest(), timeout=5)
        insp = d.InspectTask(driver_pb2.InspectTaskRequest(task_id=cfg.id), timeout=5)
        assert insp.task.state == driver_pb2.RUNNING
    finally:
        _stop_destroy(configured, cfg.id)


@pytest.mark.parametrize(("state", "text"), [
    (b"", "driver_state is empty"),
    (b"rawexec-task-handle 99 0000 e30=", "handle version 99 is not supported"),
    (b"\x00garbage", "failed to decode task state from handle"),
])
def test_recover_with_foreign_or_corrupt_handles(configured: Plugin, tmp_path: Path, state: bytes,
                                                 text: str) -> None:
    cfg = task_config(tmp_path, {"command": "/bin/true"})
    handle = driver_pb2.TaskHandle(version=1, config=cfg, state=driver_pb2.RUNNING, driver_state=state)
    with pytest.raises(grpc.RpcError) as ei:
        configured.driver.RecoverTask(driver_pb2.RecoverTaskRequest(handle=handle), timeout=5)
    assert _code(ei) == grpc.StatusCode.INVALID_ARGUMENT and text in _details(ei)
    with pytest.raises(grpc.RpcError) as ei:
        configured.driver.RecoverTask(driver_pb2.RecoverTaskRequest(task_id="x"), timeout=5)
    assert "handle cannot be nil" in _details(ei)
    assert configured.healthy()


def test_recover_with_a_handle_of_another_task(configured: Plugin, tmp_path: Path) -> None:
    cfg = task_config(tmp_path, {"command": "/bin/sleep", "args": ["30"]})
    handle = _start(configured, cfg).handle
    try:
        handle.config.id = "someone/else/1234"
        with pytest.raises(grpc.RpcError) as ei:
            configured.driver.RecoverTask(driver_pb2.RecoverTaskRequest(handle=handle), timeout=5)
        assert _code(ei) == grpc.StatusCode.INVALID_ARGUMENT and "handle mismatch" in _details(ei)
    finally:
        _stop_destroy(configured, cfg.id)


def test_clients_cancelling_streams_midway(configured: Plugin, tmp_path: Path) -> None:
    d = configured.driver
    cfg = task_config(tmp_path, {"command": "/bin/sh", "args": ["-c", "exec sleep 30"]})
    _start(configured, cfg)
    try:
        streams: list[Iterator[Any]] = []
        for _ in range(3):
            fp = d.Fingerprint(driver_pb2.FingerprintRequest())
            next(fp)
            st = d.TaskStats(driver_pb2.TaskStatsRequest(task_id=cfg.id))
            next(st)
            ev = d.TaskEvents(driver_pb2.TaskEventsRequest())
            wt = d.WaitTask.future(driver_pb2.WaitTaskRequest(task_id=cfg.id))
            ex = d.ExecTaskStreaming(iter(exec_stream_requests(cfg.id, ["/bin/sh", "-c", "echo x; sleep 30"],
                                                               close=False)))
            assert next(ex).stdout.data == b"x\n"
            for call in (fp, st, ev, wt, ex):
                call.cancel()
            streams.append(st)
        assert configured.healthy()
        wait_until(lambda: b"sleep 30" not in _ps_children(configured.pid, cfg.id), 10,
                   message="cancelled exec sessions killed")
        insp = d.InspectTask(driver_pb2.InspectTaskRequest(task_id=cfg.id), timeout=5)
        assert insp.task.state == driver_pb2.RUNNING
    finally:
        _stop_destroy(configured, cfg.id)


def test_a_cancelled_exec_stream_leaves_the_next_sessions_alone(configured: Plugin, tmp_path: Path) -> None:
    """A client cancels a chatty exec stream; the next sessions get every byte of their own output.
    (The cancelled session's output thread must be done with its descriptors before they are
    closed: their numbers are reused at once, by the next session's pipes.)"""
    d = configured.driver
    cfg = task_config(tmp_path, {"command": "/bin/sh", "args": ["-c", "exec sleep 60"]})
    _start(configured, cfg)
    try:
        for i in range(8):
            chatty = d.ExecTaskStreaming(iter(exec_stream_requests(
                cfg.id, ["/bin/sh", "-c", "while :; do echo chatter; done"], close=False)))
            assert next(chatty).stdout.data.startswith(b"chatter")
            chatty.cancel()
            basic = d.ExecTaskStreaming(iter(exec_stream_requests(
                cfg.id, ["/bin/sh", "-c", f"echo out-{i}; echo err-{i} >&2; exit {i}"])), timeout=30)
            out, err, result, _ = collect_exec(basic)
            assert (out, err, result.exit_code) == (f"out-{i}\n".encode(), f"err-{i}\n".encode(), i)
        assert configured.healthy()
    finally:
        _stop_destroy(configured, cfg.id)


def _ps_children(_plugin_pid: int, _task_id: str) -> bytes:
    """Command lines of every `sh -c echo x; sleep 30` exec session still alive."""
    found = b""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ")
        except OSError:
            continue
        if b"echo x; sleep 30" in cmd:
            found += cmd + b"\n"
    return b"sleep 30" if found else b""


def test_orderly_shutdown_with_busy_streams_is_fast_and_leaves_tasks_running(tmp_path: Path,
                                                                             sock_dir: Path) -> None:
    """Agent shutdown: Kill() while WaitTask/TaskStats/Fingerprint/TaskEvents are open. The plugin exits
    at once; the task keeps running and a new plugin recovers it (facts §4.2 step 7)."""
    p1 = launch(tmp_path, sock_dir)
    try:
        set_config(p1)
        cfg = task_config(tmp_path / "alloc", {"command": "/bin/sh", "args": ["-c", "exec sleep 60"]})
        handle = _start(p1, cfg).handle
        pid = int(p1.driver.InspectTask(driver_pb2.InspectTaskRequest(task_id=cfg.id),
                                        timeout=5).driver.attributes["pid"])
        calls: list[Any] = [p1.driver.WaitTask.future(driver_pb2.WaitTaskRequest(task_id=cfg.id)),
                            p1.driver.TaskStats(driver_pb2.TaskStatsRequest(task_id=cfg.id)),
                            p1.driver.Fingerprint(driver_pb2.FingerprintRequest()),
                            p1.driver.TaskEvents(driver_pb2.TaskEventsRequest())]
        next(calls[1])
        next(calls[2])
        t0 = time.monotonic()
        assert p1.shutdown() == 0
        assert time.monotonic() - t0 < 1.0
        assert _pid_alive(pid), "an orderly plugin shutdown must not stop tasks"
        for c in calls:
            c.cancel()
    finally:
        p1.close()
    p2 = launch(tmp_path, sock_dir)
    try:
        set_config(p2)
        p2.driver.RecoverTask(driver_pb2.RecoverTaskRequest(handle=handle), timeout=60)
        _stop_destroy(p2, cfg.id)
        wait_until(lambda: not _pid_alive(pid), 10, message="task gone after stop")
    finally:
        p2.close()


@pytest.mark.parametrize("method", ["/hashicorp.nomad.plugins.drivers.proto.Driver/StartTask",
                                    "/hashicorp.nomad.plugins.base.proto.BasePlugin/SetConfig",
                                    "/hashicorp.nomad.plugins.drivers.proto.Driver/RecoverTask"])
def test_garbage_protobuf_on_the_wire(shared_plugin: Plugin, method: str) -> None:
    call = shared_plugin.channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as ei:
        call(b"\xff\xff\xff\x0f", timeout=5)
    assert _code(ei) in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
    assert shared_plugin.healthy()


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rpartition(")")[2].split()[1])


def test_task_events_stream_carries_driver_events(configured: Plugin, tmp_path: Path) -> None:
    """A task's shim is killed: the driver's 'lost' event reaches Nomad via TaskEvents, with the ids the
    client uses to route it; WaitTask reports the error; StopTask still cleans up the orphan."""
    d = configured.driver
    events = d.TaskEvents(driver_pb2.TaskEventsRequest(), timeout=60)
    cfg = task_config(tmp_path / "alloc", {"command": "/bin/sh", "args": ["-c", "exec sleep 60"]})
    _start(configured, cfg)
    pid = int(d.InspectTask(driver_pb2.InspectTaskRequest(task_id=cfg.id), timeout=5).driver.attributes["pid"])
    shim = _ppid(pid)
    assert shim not in (1, configured.pid)
    try:
        os.kill(shim, signal.SIGKILL)
        ev = next(events)
        assert (ev.task_id, ev.alloc_id, ev.task_name) == (cfg.id, cfg.alloc_id, "web")
        assert "shim" in ev.message and ev.timestamp.seconds > 0
        res = _wait(configured, cfg.id)
        assert res.result.exit_code == -1 and "shim" in res.err
    finally:
        events.cancel()
        _stop_destroy(configured, cfg.id)
    wait_until(lambda: not _pid_alive(pid), 10, message="orphaned task killed by StopTask")


def test_stats_streams_share_a_ticker_and_end_with_their_task(configured: Plugin, tmp_path: Path) -> None:
    """Many TaskStats streams: no thread per stream, every stream keeps its interval, streams of
    an exited task end cleanly while the others go on, and streams of other intervals too."""
    import psutil

    p = configured
    cfgs = [task_config(tmp_path / f"a{i}", {"command": "/bin/sh", "args": ["-c", "exec sleep 60"]})
            for i in range(2)]
    for cfg in cfgs:
        _start(p, cfg)
    proc = psutil.Process(p.pid)
    try:
        threads_before = proc.num_threads()
        fast = _seconds(0.1)
        streams = {cfg.id: [p.driver.TaskStats(driver_pb2.TaskStatsRequest(task_id=cfg.id, collection_interval=fast))
                            for _ in range(10)] for cfg in cfgs}
        slow = p.driver.TaskStats(driver_pb2.TaskStatsRequest(task_id=cfgs[1].id,
                                                              collection_interval=_seconds(0.4)))
        for calls in streams.values():
            for call in calls:
                assert next(call).stats.HasField("agg_resource_usage")
        assert next(slow).stats.id == cfgs[1].id
        assert proc.num_threads() - threads_before < 10, "a thread per stream"
        t0 = time.monotonic()
        for tid, calls in streams.items():
            for call in calls:
                samples = [next(call).stats for _ in range(4)]
                assert {s.id for s in samples} == {tid}
                stamps = [s.timestamp.ToNanoseconds() for s in samples]
                assert stamps == sorted(stamps)
                assert stamps[-1] - stamps[1] >= 150_000_000  # two intervals of 0.1 s (minus slack)
        assert time.monotonic() - t0 < 10
        assert next(slow).stats.id == cfgs[1].id

        _stop_destroy(p, cfgs[0].id)
        for call in streams[cfgs[0].id]:  # the task is gone: its streams end (cleanly or NOT_FOUND)
            try:
                for _ in call:
                    pass
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND
        for call in streams[cfgs[1].id]:
            assert next(call).stats.id == cfgs[1].id and call.is_active()
            call.cancel()
        assert next(slow).stats.id == cfgs[1].id
        slow.cancel()
        assert p.healthy()
    finally:
        for cfg in cfgs:
            _stop_destroy(p, cfg.id)
