"""Ports of Nomad's raw_exec driver tests (facts §8.1/§8.2), on real processes."""

from __future__ import annotations

import fcntl
import os
import pwd
import re
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import rawexec.driver.driver as driver_module
from rawexec import Driver, DriverConfig, HealthState, TaskState
from rawexec.driver.handle import connect_shim, read_exit_record
from rawexec.driver.spawnclient import _listen
from rawexec.errors import (
    DriverDisabledError,
    InvalidConfigError,
    TaskExistsError,
    TaskNotFoundError,
    TaskStateError,
    UnavailableError,
)
from rawexec.executor.protocol import STOP_GATE, ProtocolError, remove_socket, send_spec
from rawexec.executor.supervisor import GATE_BOUND_S
from tests.conftest import IS_ROOT, TaskFactory
from tests.helpers.util import alive, pids_with_tag, tt, wait_until


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_fingerprint_and_capabilities(state_dir: str) -> None:
    off = Driver(DriverConfig(state_dir=state_dir))
    fp = off.fingerprint()
    assert (fp.health, fp.description, dict(fp.attributes)) == (HealthState.UNDETECTED, "disabled", {})
    on = Driver(DriverConfig(enabled=True, state_dir=state_dir))
    fp = on.fingerprint()
    assert (fp.health, fp.description, dict(fp.attributes)) == (HealthState.HEALTHY, "Healthy",
                                                               {"driver.raw_exec": True})
    caps = on.capabilities()
    assert caps.send_signals and caps.exec and caps.fs_isolation == "none"
    assert caps.network_isolation_modes == ("host", "group") and caps.mount_configs == "none"


def test_disabled(state_dir: str, make_task: TaskFactory) -> None:
    d = Driver(DriverConfig(enabled=False, state_dir=state_dir))
    with pytest.raises(DriverDisabledError, match="raw_exec is disabled"):
        d.start_task(make_task(tt("sleep", "0.01")))
    assert os.listdir(state_dir) == []


def test_start_wait(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task(tt("sleep", "0.01"))
    driver.start_task(cfg)
    res = driver.wait_task(cfg.id, timeout=5)
    assert (res.exit_code, res.signal, res.oom_killed, res.err) == (0, 0, False, None)
    assert res.successful
    # many waiters, many times
    assert driver.wait_task(cfg.id, 1) == res
    st = driver.inspect_task(cfg.id)
    assert st.state == TaskState.EXITED and st.completed_at is not None and st.exit_result == res
    driver.destroy_task(cfg.id)
    with pytest.raises(TaskNotFoundError):
        driver.inspect_task(cfg.id)


def test_exit_code_and_output(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task({"command": "/bin/sh", "args": ["-c", "echo out; echo err >&2; exit 7"]}, name="web")
    driver.start_task(cfg)
    assert driver.wait_task(cfg.id, 5).exit_code == 7
    logs = os.path.join(cfg.alloc_dir, "alloc", "logs")
    assert read(os.path.join(logs, "web.stdout.0")) == "out\n"
    assert read(os.path.join(logs, "web.stderr.0")) == "err\n"


def test_alloc_dir_layout_and_write(driver: Driver, make_task: TaskFactory) -> None:
    out = os.path.join(make_task.alloc_dir, "alloc", "output.txt")
    cfg = make_task(tt("sleep", "0.2", "write", "win", out), name="web")
    driver.start_task(cfg)
    assert driver.wait_task(cfg.id, 5).successful
    assert read(out) == "win"
    for rel, mode in [("alloc", 0o777), ("alloc/logs", 0o777), ("alloc/tmp", 0o777), ("alloc/data", 0o777),
                      ("web", 0o777), ("web/local", 0o777), ("web/secrets", 0o777), ("web/tmp", 0o1777)]:
        st = os.stat(os.path.join(cfg.alloc_dir, rel))
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == mode, rel


def test_default_cwd_is_task_dir_and_work_dir(driver: Driver, make_task: TaskFactory, tmp_path: object) -> None:
    cfg = make_task({"command": "/bin/pwd"}, name="web")
    driver.start_task(cfg)
    driver.wait_task(cfg.id, 5)
    assert read(os.path.join(cfg.alloc_dir, "alloc/logs/web.stdout.0")).strip() == os.path.join(cfg.alloc_dir, "web")
    wd = str(tmp_path)
    with open(os.path.join(wd, "foo.txt"), "w") as f:
        f.write("x")
    cfg2 = make_task({"command": "/usr/bin/stat", "args": ["foo.txt"], "work_dir": wd})
    driver.start_task(cfg2)
    assert driver.wait_task(cfg2.id, 5).exit_code == 0


def test_env_is_exactly_the_task_env(state_dir: str, make_task: TaskFactory, tag: str) -> None:
    d = Driver(DriverConfig(enabled=True, no_cgroups=True, state_dir=state_dir, denied_envvars=("*_TOKEN",)))
    try:
        cfg = make_task({"command": "/usr/bin/env", "denied_envvars": ["AWS_*"]}, name="envtask",
                        env={"NOMAD_TOKEN": "x", "AWS_KEY": "y", "KEEP": "z"})
        d.start_task(cfg)
        d.wait_task(cfg.id, 5)
        lines = read(os.path.join(cfg.alloc_dir, "alloc/logs/envtask.stdout.0")).splitlines()
        want = {f"{k}={v}" for k, v in cfg.env.items() if k not in ("NOMAD_TOKEN", "AWS_KEY")}
        assert set(lines) == want
    finally:
        for t in d.task_ids():
            d.destroy_task(t, force=True)
        d.close()


def test_duplicate_id(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task(tt("sleep", "30"), id="dup")
    driver.start_task(cfg)
    with pytest.raises(TaskExistsError, match='task with ID "dup" already started'):
        driver.start_task(cfg)
    assert driver.inspect_task("dup").state == TaskState.RUNNING


def test_stop_sigint(driver: Driver, make_task: TaskFactory) -> None:
    # /bin/sleep dies of SIGINT; a Python task would turn it into KeyboardInterrupt (exit 1) once
    # its interpreter is up, which makes the outcome depend on timing.
    cfg = make_task({"command": "/bin/sleep", "args": ["100"]})
    driver.start_task(cfg)
    t0 = time.monotonic()
    driver.stop_task(cfg.id, timeout=2, signal="SIGINT")
    res = driver.wait_task(cfg.id, 10)
    assert (res.signal, res.exit_code) == (signal.SIGINT, 128 + signal.SIGINT)
    assert time.monotonic() - t0 < 1.5
    assert driver.inspect_task(cfg.id).state == TaskState.EXITED
    driver.destroy_task(cfg.id)


def test_stop_escalates_to_sigkill(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task(tt("ignore", "SIGINT", "ignore", "SIGTERM", "echo", "ready", "sleep", "100"),
                    name="stubborn")
    driver.start_task(cfg)
    log = os.path.join(cfg.alloc_dir, "alloc/logs/stubborn.stdout.0")
    wait_until(lambda: os.path.exists(log) and read(log) == "ready\n", 10)
    t0 = time.monotonic()
    driver.stop_task(cfg.id, timeout=0.3, signal="SIGTERM")
    res = driver.wait_task(cfg.id, 5)
    assert (res.exit_code, res.signal) == (137, 9)
    assert 0.25 < time.monotonic() - t0 < 3


def test_stop_kill_immediately(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task(tt("sleep", "100"))
    driver.start_task(cfg)
    driver.stop_task(cfg.id, 0, "SIGKILL")
    assert driver.wait_task(cfg.id, 5).signal == 9


def test_a_stop_on_the_wait_connection_is_answered_once_with_the_exit(driver: Driver,
                                                                      make_task: TaskFactory) -> None:
    """The driver stops on its wait connection: the shim answers with the exit (and when it
    happened) once the tree is gone, and sends no separate exit event on that connection."""
    cfg = make_task(tt("sleep", "100"))
    h = driver.start_task(cfg)
    ch = connect_shim(h.driver_state["socket_path"], 5)
    try:
        t0 = time.time()
        ch.send({"op": "wait"})
        ch.send({"op": "stop", "signal": int(signal.SIGTERM), "timeout": 2})
        msg, _ = ch.recv()
        assert msg["ok"] is True and msg["exit"]["signal"] == signal.SIGTERM, msg
        assert t0 - 1 < msg["completed_at"] <= time.time()
        with pytest.raises(ProtocolError, match="connection closed"):
            ch.recv()  # the shim is done: nothing more on this connection
    finally:
        ch.close()
    assert driver.wait_task(cfg.id, 5).signal == signal.SIGTERM


def _hold_gate(driver: Driver) -> int:
    """Hold the state dir's stop gate shared, as a driver with a stop in flight does."""
    fd = os.open(os.path.join(driver.config.state_dir, STOP_GATE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def test_a_finished_shim_exits_once_no_stop_is_in_flight(driver: Driver, make_task: TaskFactory) -> None:
    """The stop gate: a shim that answered everything leaves its teardown (the kernel unmapping
    its interpreter) until the stops in flight are done, then exits at once."""
    cfg = make_task(tt("sleep", "100"))
    shim = int(driver.start_task(cfg).driver_state["shim_pid"])
    gate = _hold_gate(driver)  # another stop in flight
    try:
        driver.stop_task(cfg.id, 1, "SIGTERM")
        assert driver.wait_task(cfg.id, 5).signal == signal.SIGTERM  # answered, not held up
        time.sleep(GATE_BOUND_S / 2)
        assert alive(shim), "the shim left while a stop was in flight"
        fcntl.flock(gate, fcntl.LOCK_UN)
        t0 = time.monotonic()
        wait_until(lambda: not alive(shim), 5)
        assert time.monotonic() - t0 < GATE_BOUND_S / 2
    finally:
        os.close(gate)
    # With nothing else in flight, this driver's own stop lets its shim go at once.
    cfg2 = make_task(tt("sleep", "100"))
    shim2 = int(driver.start_task(cfg2).driver_state["shim_pid"])
    t0 = time.monotonic()
    driver.stop_task(cfg2.id, 1, "SIGTERM")
    wait_until(lambda: not alive(shim2), 5)
    assert time.monotonic() - t0 < GATE_BOUND_S


def test_a_stopped_tasks_clean_up_waits_for_the_stops_in_flight(driver: Driver, make_task: TaskFactory) -> None:
    """What a stopped task's shim does after its answer (the exit record, the cgroup dirs, the
    socket, the logs) waits at the stop gate: when hundreds of tasks stop at once, that work would
    slow the stops still running. The task's processes are all gone before the answer."""
    cfg = make_task(tt("sleep", "100"))
    handle = driver.start_task(cfg)
    shim, state_path = int(handle.driver_state["shim_pid"]), handle.driver_state["state_path"]
    gate = _hold_gate(driver)  # other stops in flight
    try:
        driver.stop_task(cfg.id, 1, "SIGTERM")
        assert not alive(int(handle.driver_state["pid"]))
        time.sleep(GATE_BOUND_S / 2)
        assert alive(shim) and read_exit_record(state_path) is None
        fcntl.flock(gate, fcntl.LOCK_UN)
        wait_until(lambda: not alive(shim), 5)
    finally:
        os.close(gate)
    rec = read_exit_record(state_path)
    assert rec is not None and rec[0].signal == signal.SIGTERM


def test_destroy_releases_a_stopped_shim_from_the_stop_gate(driver: Driver, make_task: TaskFactory) -> None:
    """The agent destroys each task after its exit (then the task is dead in the alloc): it wants
    the clean-up now, so it sends the shim the release signal instead of waiting for the gate."""
    cfg = make_task(tt("sleep", "100"))
    shim = int(driver.start_task(cfg).driver_state["shim_pid"])
    gate = _hold_gate(driver)  # other stops in flight
    try:
        driver.stop_task(cfg.id, 1, "SIGTERM")
        time.sleep(0.1)  # at the gate by now
        t0 = time.monotonic()
        driver.destroy_task(cfg.id)  # returns once the shim's clean-up is done (not at the gate's bound)
        assert time.monotonic() - t0 < GATE_BOUND_S / 2
        wait_until(lambda: not alive(shim), 5)  # (it exits at the lowest priority)
    finally:
        os.close(gate)


def test_destroy_sends_no_release_to_a_shim_that_does_not_know_it(driver: Driver, make_task: TaskFactory,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A task started by an older release (its handle has no ``release_signal``): its shim has no
    handler for the signal, which would kill it, so destroy waits for its clean-up instead."""
    cfg = make_task(tt("sleep", "100"))
    handle = driver.start_task(cfg)
    shim = int(handle.driver_state["shim_pid"])
    driver._tasks[cfg.id].driver_state.pop("release_signal")
    sent: list[tuple[int, int]] = []
    real_kill = os.kill

    def kill(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        real_kill(pid, sig)

    monkeypatch.setattr(os, "kill", kill)
    driver.stop_task(cfg.id, 1, "SIGTERM")
    driver.destroy_task(cfg.id)
    assert not [s for s in sent if s[0] == shim]
    wait_until(lambda: not alive(shim), 5)


def test_the_wait_at_the_stop_gate_is_bounded(driver: Driver, make_task: TaskFactory) -> None:
    gate = _hold_gate(driver)  # held for good (a stop with a long kill_timeout, say)
    try:
        cfg = make_task(tt("sleep", "0"))
        t0 = time.monotonic()
        shim = int(driver.start_task(cfg).driver_state["shim_pid"])
        assert driver.wait_task(cfg.id, 5).exit_code == 0
        wait_until(lambda: not alive(shim), GATE_BOUND_S + 3)
        assert GATE_BOUND_S * 0.8 < time.monotonic() - t0 < GATE_BOUND_S + 3
    finally:
        os.close(gate)


def test_a_shim_stuck_holding_the_gate_holds_up_no_stop(driver: Driver, make_task: TaskFactory) -> None:
    """A shim holds the gate exclusively for microseconds; one stopped (SIGSTOP) right then must not
    hold up the driver's stops: they go on without the gate."""
    cfg = make_task(tt("sleep", "100"))
    driver.start_task(cfg)
    fd = os.open(os.path.join(driver.config.state_dir, STOP_GATE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # the stuck shim
    try:
        t0 = time.monotonic()
        driver.stop_task(cfg.id, 1, "SIGTERM")
        assert time.monotonic() - t0 < 0.5
        assert driver.wait_task(cfg.id, 5).signal == signal.SIGTERM
    finally:
        os.close(fd)


def test_the_driver_holds_the_stop_gate_while_a_stop_is_in_flight(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task(tt("ignore", "SIGTERM", "echo", "ready", "sleep", "100"), name="slow")
    driver.start_task(cfg)
    log = os.path.join(cfg.alloc_dir, "alloc/logs/slow.stdout.0")
    wait_until(lambda: os.path.exists(log) and read(log) == "ready\n", 10)
    stopper = threading.Thread(target=driver.stop_task, args=(cfg.id, 1.0, "SIGTERM"))
    stopper.start()
    path = os.path.join(driver.config.state_dir, STOP_GATE)
    wait_until(lambda: os.path.exists(path), 5)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        wait_until(lambda: _gate_held(fd), 5)  # shared, by the stop in flight (taken just after the file is made)
        time.sleep(0.3)
        assert stopper.is_alive() and _gate_held(fd)  # still: the task ignores SIGTERM for its 1 s
        stopper.join(10)

        def free() -> bool:  # once it returned (the shim passes the gate meanwhile, for microseconds)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        wait_until(free, 5)
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
    finally:
        os.close(fd)


def _gate_held(fd: int) -> bool:
    """Someone holds the stop gate (an exclusive lock of ours, taken for a moment, says no one)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def test_the_stop_gate_lingers_after_the_last_stop(driver: Driver, make_task: TaskFactory,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent starts each task's stop on a new thread; on a busy machine the stops in flight can
    all be done before the next one starts. The gate stays held a moment after the last one, so
    the shims waiting at it do not go (and take the CPU) between two stops of one burst."""
    linger = 0.4
    monkeypatch.setattr(driver_module, "_GATE_LINGER_S", linger)
    cfg = make_task(tt("sleep", "100"))
    driver.start_task(cfg)
    fd = os.open(os.path.join(driver.config.state_dir, STOP_GATE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        t0 = time.monotonic()
        driver.stop_task(cfg.id, 1, "SIGTERM")
        wait_until(lambda: not _gate_held(fd), 5, interval=0.005)
        assert linger <= time.monotonic() - t0 < linger + 2
    finally:
        os.close(fd)


def test_signal_trap(driver: Driver, make_task: TaskFactory) -> None:
    script = os.path.join(make_task.alloc_dir, "test.sh")
    os.makedirs(make_task.alloc_dir, exist_ok=True)
    with open(script, "w") as f:
        f.write("trap 'echo Terminated.; exit 3' USR1\necho ready\nwhile true; do sleep 1; done\n")
    cfg = make_task({"command": "/bin/bash", "args": [script]}, name="signal")
    driver.start_task(cfg)
    log = os.path.join(cfg.alloc_dir, "alloc/logs/signal.stdout.0")
    wait_until(lambda: os.path.exists(log) and "ready" in read(log), 10)
    driver.signal_task(cfg.id, "SIGUSR1")
    res = driver.wait_task(cfg.id, 6)
    assert res.exit_code == 3 and not res.successful
    assert read(log).split("\n")[1].strip() == "Terminated."


def test_signal_group(driver: Driver, make_task: TaskFactory) -> None:
    pidfile = os.path.join(make_task.alloc_dir, "child.pid")
    cfg = make_task(tt("fork/exec", pidfile, "sleep", "100"))
    driver.start_task(cfg)
    wait_until(lambda: os.path.exists(pidfile) and read(pidfile).strip(), 10)
    child = int(read(pidfile))
    driver.signal_task(cfg.id, "SIGTERM", group=True)
    wait_until(lambda: not alive(child), 5)


def test_unknown_signal_rejected(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task(tt("sleep", "30"))
    driver.start_task(cfg)
    with pytest.raises(InvalidConfigError, match="unknown signal 'SIGBOGUS'"):
        driver.signal_task(cfg.id, "SIGBOGUS")
    assert driver.inspect_task(cfg.id).state == TaskState.RUNNING


def test_start_kill_wait_escaped_group(driver: Driver, make_task: TaskFactory, tag: str) -> None:
    """A grandchild in its own process group must die on stop (Nomad needs cgroups for this)."""
    pidfile = os.path.join(make_task.alloc_dir, "pid")
    os.makedirs(make_task.alloc_dir, exist_ok=True)
    cfg = make_task(tt("fork/exec", pidfile, "pgrp", "0", "sleep", "20"))
    driver.start_task(cfg)
    wait_until(lambda: os.path.exists(pidfile) and read(pidfile).strip(), 5)
    grandchild = int(read(pidfile))
    assert alive(grandchild)
    driver.stop_task(cfg.id, 0, "")
    assert not driver.wait_task(cfg.id, 5).successful
    wait_until(lambda: not alive(grandchild), 5)
    assert pids_with_tag(tag) == []


@pytest.mark.parametrize("shape", ["setsid", "daemon", "forkstorm", "sigterm-ignoring", "stopped"])
def test_no_survivors_without_cgroups(driver: Driver, make_task: TaskFactory, tag: str, shape: str) -> None:
    os.makedirs(make_task.alloc_dir, exist_ok=True)
    pidfile = os.path.join(make_task.alloc_dir, f"{shape}.pid")
    ops = {
        "setsid": ("spawn", pidfile, "setsid", "sleep", "100"),
        "daemon": ("daemon", pidfile, "fork/exec", pidfile + ".2", "setsid", "sleep", "100"),
        "forkstorm": ("forkstorm", "20", pidfile, "sleep", "100"),
        "sigterm-ignoring": ("ignore", "SIGTERM", "ignore", "SIGINT", "spawn", pidfile, "ignore", "SIGTERM",
                             "setsid", "sleep", "100"),
        "stopped": ("spawn", pidfile, "setsid", "sleep", "100"),
    }[shape]
    cfg = make_task(tt(*ops, "sleep", "100"))
    driver.start_task(cfg)
    wait_until(lambda: os.path.exists(pidfile) and read(pidfile).strip(), 10)
    wait_until(lambda: len(pids_with_tag(tag)) >= 2, 10)
    if shape == "stopped":
        for pid in pids_with_tag(tag):
            os.kill(pid, signal.SIGSTOP)
    driver.stop_task(cfg.id, 0.2, "SIGTERM")
    driver.wait_task(cfg.id, 5)
    wait_until(lambda: not pids_with_tag(tag), 5, msg="survivors")


def test_destroy_kills_all(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task({"command": "/bin/sh", "args": ["-c", 'sleep 3600 & echo "SLEEP_PID=$!"']}, name="test")
    driver.start_task(cfg)
    assert driver.wait_task(cfg.id, 10).successful
    out = read(os.path.join(cfg.alloc_dir, "alloc/logs/test.stdout.0"))
    m = re.search(r"SLEEP_PID=(\d+)", out)
    assert m
    pid = int(m.group(1))
    assert alive(pid)
    driver.destroy_task(cfg.id, force=True)
    wait_until(lambda: not alive(pid), 5)


def test_wait_not_blocked_by_orphaned_children(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task({"command": "/bin/sh", "args": ["-c", "(sleep 30 > /dev/null &) ; exec sleep 0.2"]})
    driver.start_task(cfg)
    assert driver.wait_task(cfg.id, 7).successful


def test_destroy_running_requires_force(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task(tt("sleep", "30"))
    driver.start_task(cfg)
    with pytest.raises(TaskStateError, match="cannot destroy running task"):
        driver.destroy_task(cfg.id)
    driver.destroy_task(cfg.id, force=True)
    assert cfg.id not in driver.task_ids()


def test_unknown_task_for_every_verb(driver: Driver) -> None:
    calls: list[Callable[[], object]] = [
        lambda: driver.wait_task("nope", 0.1), lambda: driver.stop_task("nope", 1),
        lambda: driver.destroy_task("nope"), lambda: driver.inspect_task("nope"),
        lambda: driver.signal_task("nope", "SIGHUP"), lambda: driver.exec_task("nope", ["true"], 1),
        lambda: driver.exec_task_streaming("nope", ["true"]),
    ]
    for call in calls:
        with pytest.raises(TaskNotFoundError, match="task not found for given id"):
            call()


def _assert_nothing_left(driver: Driver, state_dir: str, tag: str) -> None:
    assert driver.task_ids() == []
    assert [f for f in os.listdir(state_dir) if not f.startswith(".")] == []
    assert pids_with_tag(tag) == []


@pytest.mark.parametrize(("config", "msg"), [
    ({}, 'The argument "command" is required'),
    ({"command": ""}, 'The argument "command" is required'),
    ({"command": "no-such-binary-xyz"}, 'binary "no-such-binary-xyz" could not be found'),
    ({"command": "/"}, "is a directory"),
    ({"command": "/usr/share/rawexec-test-not-executable"}, "is not executable"),
    ({"command": "/bin/true", "oom_score_adj": -5}, "oom_score_adj must not be negative"),
    ({"command": "/bin/true", "work_dir": "relative/dir"}, "work_dir must be an absolute path"),
    ({"command": "/bin/true", "work_dir": "/no/such/dir"}, 'chdir "/no/such/dir"'),
])
def test_bad_task_config(driver: Driver, make_task: TaskFactory, state_dir: str, tag: str,
                         config: dict[str, object], msg: str, not_executable: str) -> None:
    if config.get("command") == "/usr/share/rawexec-test-not-executable":
        config = {"command": not_executable}
    with pytest.raises(Exception) as ei:
        driver.start_task(make_task(config))
    assert msg in str(ei.value)
    _assert_nothing_left(driver, state_dir, tag)


@pytest.fixture
def not_executable(tmp_path: Path) -> str:
    """A host file outside any alloc dir, without execute bits."""
    p = os.path.join(str(tmp_path), "data.txt")
    with open(p, "w") as f:
        f.write("not a program\n")
    os.chmod(p, 0o644)
    return p


def test_unknown_user(driver: Driver, make_task: TaskFactory, state_dir: str, tag: str) -> None:
    with pytest.raises(InvalidConfigError, match="unknown user alice"):
        driver.start_task(make_task(tt("sleep", "45"), user="alice"))
    _assert_nothing_left(driver, state_dir, tag)


def test_denied_uid_of_agent_user(state_dir: str, make_task: TaskFactory) -> None:
    uid = os.geteuid()
    d = Driver(DriverConfig(enabled=True, no_cgroups=True, state_dir=state_dir, denied_host_uids=f"{uid}"))
    with pytest.raises(InvalidConfigError, match=f"running as uid {uid} is disallowed"):
        d.start_task(make_task(tt("sleep", "1")))
    import pwd

    with pytest.raises(InvalidConfigError, match=f"running as uid {uid} is disallowed"):
        d.start_task(make_task(tt("sleep", "1"), user=pwd.getpwuid(uid).pw_name))
    gid = os.getegid()
    d2 = Driver(DriverConfig(enabled=True, no_cgroups=True, state_dir=state_dir, denied_host_gids=f"{gid}"))
    with pytest.raises(InvalidConfigError, match=f"running as gid {gid} is disallowed"):
        d2.start_task(make_task(tt("sleep", "1")))


@pytest.mark.skipif(not IS_ROOT, reason="switching users needs root")
def test_user_nobody(driver: Driver, make_task: TaskFactory) -> None:
    os.makedirs(make_task.alloc_dir, exist_ok=True)
    os.chmod(os.path.dirname(make_task.alloc_dir), 0o755)
    cfg = make_task({"command": "/bin/sleep", "args": ["30"]}, user="nobody")
    driver.start_task(cfg)
    r = driver.exec_task(cfg.id, ["id", "-un"], 5)
    assert r.exit_result.successful and r.output.strip() == b"nobody"
    with open(f"/proc/{driver.inspect_task(cfg.id).driver_attributes['pid']}/status") as f:
        uid_line = next(line for line in f if line.startswith("Uid:"))
    import pwd

    assert int(uid_line.split()[1]) == pwd.getpwnam("nobody").pw_uid


def test_binary_lookup_order(driver: Driver, make_task: TaskFactory) -> None:
    task_dir = os.path.join(make_task.alloc_dir, "lookup")
    os.makedirs(os.path.join(task_dir, "local"), exist_ok=True)
    for where, word in ((task_dir, "taskdir"), (os.path.join(task_dir, "local"), "local")):
        p = os.path.join(where, "hello.sh")
        with open(p, "w") as f:
            f.write(f"#!/bin/sh\necho {word}\n")
        os.chmod(p, 0o600)  # not executable: inside the alloc dir it is made executable, as Nomad
    cfg = make_task({"command": "hello.sh"}, name="lookup")
    driver.start_task(cfg)
    assert driver.wait_task(cfg.id, 5).successful
    assert read(os.path.join(cfg.alloc_dir, "alloc/logs/lookup.stdout.0")) == "local\n"
    assert stat.S_IMODE(os.stat(os.path.join(task_dir, "local", "hello.sh")).st_mode) == 0o755
    # bare names fall back to PATH
    cfg2 = make_task({"command": "true"})
    driver.start_task(cfg2)
    assert driver.wait_task(cfg2.id, 5).successful


def test_exec(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task(tt("sleep", "100"), name="ex", env={"MY_VAR": "hello"})
    driver.start_task(cfg)
    r = driver.exec_task(cfg.id, ["/usr/bin/stat", "/tmp"], 5)
    assert r.exit_result.successful and len(r.output) > 100
    r = driver.exec_task(cfg.id, ["/usr/bin/stat", "notarealfile123abc"], 5)
    assert not r.exit_result.successful and b"No such file or directory" in r.output
    r = driver.exec_task(cfg.id, ["/bin/sh", "-c", "echo $MY_VAR; pwd"], 5)
    assert r.output.decode().split() == ["hello", os.path.join(cfg.alloc_dir, "ex")]
    with pytest.raises(InvalidConfigError, match="at least one value"):
        driver.exec_task(cfg.id, [], 5)
    with pytest.raises(InvalidConfigError, match="executable file not found"):
        driver.exec_task(cfg.id, ["no-such-command-xyz"], 5)


def test_exec_keeps_last_64k_and_deadline(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task(tt("sleep", "100"))
    driver.start_task(cfg)
    r = driver.exec_task(cfg.id, [sys.executable, "-c", "import sys; sys.stdout.write('a'*100000 + 'END')"], 10)
    assert len(r.output) >= 64 * 1024 and r.output.endswith(b"END") and r.exit_result.successful
    t0 = time.monotonic()
    r = driver.exec_task(cfg.id, ["/bin/sleep", "30"], 0.3)
    assert time.monotonic() - t0 < 3
    assert r.exit_result.signal == signal.SIGKILL


def test_exec_into_exited_task(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task(tt("exit", "0"))
    driver.start_task(cfg)
    driver.wait_task(cfg.id, 5)
    with pytest.raises(TaskStateError, match="not running"):
        driver.exec_task(cfg.id, ["true"], 1)
    with pytest.raises(TaskStateError):
        driver.signal_task(cfg.id, "SIGHUP")


def test_exec_streaming_no_tty(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task(tt("sleep", "100"))
    driver.start_task(cfg)
    with driver.exec_task_streaming(cfg.id, ["/bin/sh", "-c", "cat; echo bye >&2; exit 5"]) as s:
        s.write_stdin(b"hello\n")
        s.close_stdin()
        frames = list(s.frames())
    out = b"".join(f.data for f in frames if f.stream == "stdout")
    err = b"".join(f.data for f in frames if f.stream == "stderr")
    assert (out, err) == (b"hello\n", b"bye\n")
    assert sum(1 for f in frames if f.close) == 2
    assert s.result is not None and s.result.exit_code == 5


def test_exec_streaming_tty(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task(tt("sleep", "100"))
    driver.start_task(cfg)
    with driver.exec_task_streaming(cfg.id, ["/bin/sh", "-c", "tty; stty size; exit 7"], tty=True,
                                    rows=33, cols=111) as s:
        out = b"".join(f.data for f in s.frames())
    text = out.decode()
    assert re.search(r"/dev/pts/\d+", text) and "33 111" in text
    assert s.result is not None and s.result.exit_code == 7


def test_exec_client_vanishes(driver: Driver, make_task: TaskFactory, tag: str) -> None:
    cfg = make_task(tt("sleep", "100"))
    driver.start_task(cfg)
    s = driver.exec_task_streaming(cfg.id, ["/bin/sleep", "77"])
    pid = s.pid
    assert alive(pid)
    s.close()
    wait_until(lambda: not alive(pid), 5)


def test_handle_round_trip_and_corruption(driver: Driver, make_task: TaskFactory) -> None:
    from rawexec import TaskHandle

    cfg = make_task(tt("sleep", "30"))
    h = driver.start_task(cfg)
    blob = h.dumps()
    assert TaskHandle.loads(blob) == h
    for bad in (blob[:-10], blob.replace(b"rawexec", b"rawexex", 1), b"", b"garbage", blob[:30] + b"!" + blob[31:],
                blob.replace(b" 1 ", b" 9 ", 1)):
        with pytest.raises(InvalidConfigError, match="failed to decode task state from handle"):
            TaskHandle.loads(bad)
    with pytest.raises(InvalidConfigError, match="handle cannot be nil"):
        driver.recover_task(None)


def test_state_dir_permissions(driver: Driver, make_task: TaskFactory) -> None:
    """The control socket is abstract (no file to create or leave behind); the state dir 0700."""
    cfg = make_task(tt("sleep", "30"))
    h = driver.start_task(cfg)
    sock = h.driver_state["socket_path"]
    assert sock.startswith("@rawexec/")
    assert [p for p in os.listdir(driver.config.state_dir) if p.endswith(".sock")] == []
    assert stat.S_IMODE(os.stat(driver.config.state_dir).st_mode) == 0o700
    assert driver.inspect_task(cfg.id).state == TaskState.RUNNING  # reached through the socket
    driver.stop_task(cfg.id, 5)
    driver.destroy_task(cfg.id)
    with pytest.raises(UnavailableError, match="task shim unreachable"):
        connect_shim(sock, 1)  # the name went with the shim


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_control_socket_refuses_other_users(driver: Driver, make_task: TaskFactory) -> None:
    """An abstract name is reachable by any local user: the shim hangs up on every peer that is
    neither the agent's user nor root, and the driver trusts no socket another user bound."""
    cfg = make_task(tt("sleep", "30"))
    sock = driver.start_task(cfg).driver_state["socket_path"]
    nobody = pwd.getpwnam("nobody").pw_uid
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # as nobody: connect and try a request; report what came back
        os.close(r)
        try:
            os.setgid(nobody)
            os.setuid(nobody)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect("\0" + sock[1:])
        except OSError as e:
            os.write(w, f"connect failed: {e}".encode())
            os._exit(0)
        try:
            send_spec(s, {"op": "inspect"})
            got = s.recv(100)
            os.write(w, b"hung up" if got == b"" else b"answered: " + got)
        except (BrokenPipeError, ConnectionResetError):
            os.write(w, b"hung up")
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as f:
        assert f.read() == b"hung up"
    assert driver.inspect_task(cfg.id).state == TaskState.RUNNING

    # a name bound by another user is not taken for a shim
    name = f"@rawexec/test-squat-{os.getpid()}"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setgid(nobody)
        os.setuid(nobody)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind("\0" + name[1:])
        s.listen(1)
        os.write(w, b"x")
        time.sleep(10)
        os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"x"
        with pytest.raises(UnavailableError, match="belongs to uid"):
            connect_shim(name, 2)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)


def test_control_socket_file_of_an_older_release(tmp_path: Path) -> None:
    """Tasks started before the abstract sockets kept a socket file: those paths still work."""
    path = str(tmp_path / "ctl.sock")
    listener = _listen(path)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        ch = connect_shim(path, 2)
        ch.close()
    finally:
        listener.close()
    remove_socket(path)
    assert not os.path.exists(path)
    remove_socket("@rawexec/none")  # nothing to remove, and no file named "@..." touched


def test_exec_not_held_by_background_child(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task(tt("sleep", "100"))
    driver.start_task(cfg)
    t0 = time.monotonic()
    r = driver.exec_task(cfg.id, ["/bin/sh", "-c", "sleep 30 & echo hi"], 20)
    assert r.output == b"hi\n" and r.exit_result.successful
    assert time.monotonic() - t0 < 5
    for _ in range(20):  # commands that end at once, many times (exit may share a read with the reply)
        assert driver.exec_task(cfg.id, ["true"], 5).exit_result.successful
