"""Recovery across a real process boundary: a driver process started a task and was kill -9'd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from rawexec import Driver, TaskHandle, TaskState
from tests.conftest import TaskFactory
from tests.driver.test_lifecycle import read
from tests.helpers.util import alive, pids_with_tag, tt, wait_until

_CHILD = textwrap.dedent("""
    import sys, time
    from rawexec import Driver, DriverConfig, TaskHandle
    from rawexec.driver.types import TaskConfig
    blob = sys.stdin.buffer.read()
    cfg = TaskHandle.loads(blob).config
    d = Driver(DriverConfig(enabled=True, no_cgroups=True, state_dir=sys.argv[1]))
    h = d.start_task(cfg)
    sys.stdout.buffer.write(h.dumps() + b"\\n")
    sys.stdout.flush()
    time.sleep(3600)
""")


def start_in_other_process(state_dir: str, cfg: object) -> tuple[subprocess.Popen[bytes], TaskHandle]:
    """Start ``cfg`` from a separate driver process; return that process and the handle it made."""
    carrier = TaskHandle(config=cfg, driver_state={}).dumps()  # type: ignore[arg-type]
    p = subprocess.Popen([sys.executable, "-c", _CHILD, state_dir], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write(carrier)
    p.stdin.close()
    line = p.stdout.readline()
    assert line, "driver process failed to start the task"
    return p, TaskHandle.loads(line.strip())


def kill9(p: subprocess.Popen[bytes]) -> None:
    p.send_signal(signal.SIGKILL)
    p.wait()


def test_start_wait_recover_wait_stop(driver: Driver, make_task: TaskFactory, state_dir: str) -> None:
    cfg = make_task(tt("echo", "before", "sleep", "100"), name="rec")
    p, handle = start_in_other_process(state_dir, cfg)
    kill9(p)
    log = os.path.join(cfg.alloc_dir, "alloc/logs/rec.stdout.0")
    driver.recover_task(handle)
    # the shim kept writing while no driver was alive
    wait_until(lambda: os.path.exists(log) and read(log) == "before\n", 10)
    st = driver.inspect_task(cfg.id)
    assert st.state == TaskState.RUNNING
    assert st.driver_attributes["pid"] == str(handle.driver_state["pid"])
    assert abs(st.started_at.timestamp() - handle.driver_state["started_at"]) < 0.001  # type: ignore[union-attr]
    driver.recover_task(handle)  # already known: no-op
    # exec and signal work on the recovered task
    assert driver.exec_task(cfg.id, ["true"], 5).exit_result.successful
    driver.stop_task(cfg.id, 0, "SIGKILL")
    res = driver.wait_task(cfg.id, 5)
    assert (res.signal, res.err) == (9, None) and res.exit_code != 0
    driver.destroy_task(cfg.id)


def test_exit_while_no_driver_is_reported(driver: Driver, make_task: TaskFactory, state_dir: str) -> None:
    cfg = make_task(tt("sleep", "0.5", "echo", "done", "exit", "42"), name="gone")
    p, handle = start_in_other_process(state_dir, cfg)
    kill9(p)
    pid = int(handle.driver_state["pid"])
    wait_until(lambda: not alive(pid), 10)
    time.sleep(0.2)  # let the shim record the exit and leave
    driver.recover_task(handle)
    res = driver.wait_task(cfg.id, 5)
    assert (res.exit_code, res.err) == (42, None)
    assert driver.inspect_task(cfg.id).state == TaskState.EXITED
    assert read(os.path.join(cfg.alloc_dir, "alloc/logs/gone.stdout.0")) == "done\n"


def test_shim_killed_reports_lost(driver: Driver, make_task: TaskFactory, tag: str) -> None:
    cfg = make_task(tt("sleep", "100"))
    h = driver.start_task(cfg)
    state_dir = driver.config.state_dir
    # the shim makes its exit record's temp file after the start (off the stop path)
    wait_until(lambda: any(".tmp." in f for f in os.listdir(state_dir)), 5)
    os.kill(int(h.driver_state["shim_pid"]), signal.SIGKILL)
    res = driver.wait_task(cfg.id, 10)
    assert res.exit_code == -1 and not res.successful and not res.oom_killed
    assert res.err and "shim" in res.err
    driver.destroy_task(cfg.id, force=True)  # the orphaned task is killed by verified identity
    wait_until(lambda: not pids_with_tag(tag), 5)
    assert [f for f in os.listdir(state_dir) if not f.startswith(".")] == []  # nothing the shim left


def test_recover_with_reused_shim_pid(driver: Driver, make_task: TaskFactory) -> None:
    cfg = make_task(tt("sleep", "100"))
    h = driver.start_task(cfg)
    forged = TaskHandle(config=cfg.__class__(**{**cfg.__dict__, "id": "forged"}),
                        driver_state={**h.driver_state, "shim_start": 1, "state_path": h.driver_state["state_path"]
                                      + ".none"})
    driver.recover_task(forged)
    res = driver.wait_task("forged", 1)
    assert res.exit_code == -1 and res.err
    # the real task was not touched
    assert driver.inspect_task(cfg.id).state == TaskState.RUNNING


@pytest.mark.parametrize("n", [20])
def test_many_tasks_survive_driver_death(driver: Driver, make_task: TaskFactory, state_dir: str, n: int) -> None:
    cfgs = [make_task(tt("sleep", "100"), name=f"m{i}") for i in range(n)]
    handles = []
    for cfg in cfgs:
        p, h = start_in_other_process(state_dir, cfg)
        kill9(p)
        handles.append(h)
    for h in handles:
        driver.recover_task(h)
    assert all(driver.inspect_task(c.id).state == TaskState.RUNNING for c in cfgs)
    for c in cfgs:
        driver.stop_task(c.id, 1, "SIGTERM")
        assert driver.wait_task(c.id, 5).signal == signal.SIGTERM
