"""kill -9 of an agent process with running tasks, then a new agent on the same data dir."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from rawexec.agent.agent import Agent
from tests.agent_runtime.conftest import MakeAgent, event_types, wait_terminal
from tests.helpers.util import pids_with_tag, wait_until

ROOT = Path(__file__).resolve().parents[2]
N = 50


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _sleepers(tag: str) -> set[int]:
    return {p for p in pids_with_tag(tag) if _cmdline(p).endswith(b"sleep\x001000\x00")}


def _running_states(db: Path) -> dict[str, str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("SELECT alloc_id, task, body FROM task_states").fetchall()
    finally:
        con.close()
    return {f"{a}/{t}": json.loads(b)["state"]["state"] for a, t, b in rows}


@pytest.mark.slow
def test_kill9_agent_then_recover(make_agent: MakeAgent, tmp_path: Path, state_dir: str, tag: str) -> None:
    go = tmp_path / "go"
    job = tmp_path / "crash.nomad.hcl"
    job.write_text(f'''
job "crash" {{
  type = "service"
  group "sleepers" {{
    count = {N}
    task "s" {{
      driver = "raw_exec"
      config {{
        command = "sleep"
        args    = ["1000"]
      }}
    }}
  }}
  group "waiter" {{
    restart {{
      attempts = 1
      interval = "10m"
      delay    = "100ms"
      mode     = "fail"
    }}
    task "w" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "while [ ! -e {go} ]; do sleep 0.05; done; exit 3"]
      }}
    }}
  }}
}}
''')
    data = tmp_path / "data"
    env = dict(os.environ, PYTHONPATH=f"{ROOT}/src:{ROOT}")
    proc = subprocess.Popen([sys.executable, "-m", "tests.agent_runtime.agent_proc", str(data), state_dir, tag,
                             str(job)], stdout=subprocess.PIPE, cwd=ROOT, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"READY"
        db = data / "state.db"
        wait_until(lambda: list(_running_states(db).values()).count("running") == N + 1, 60,
                   0.05, "all tasks running")
        before = _sleepers(tag)
        assert len(before) == N
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    # while the agent is down, the waiter task exits with code 3
    go.touch()
    wait_until(lambda: not _waiters(tag), 20)
    agent = make_agent(data_dir=data)
    allocs = agent.list_allocations("crash")
    assert len(allocs) == N + 1
    (waiter,) = wait_terminal_group(agent, "waiter")
    types = event_types(waiter, "w")
    assert types[-5:] == ["Terminated", "Restarting", "Started", "Terminated", "Not Restarting"], types
    codes = [e["ExitCode"] for e in waiter["TaskStates"]["w"]["Events"] if e["Type"] == "Terminated"]
    assert codes == [3, 3]
    for a in allocs:
        if a["TaskGroup"] != "sleepers":
            continue
        full = agent.get_allocation(a["ID"])
        assert full["ClientStatus"] == "running"
        assert event_types(full, "s").count("Started") == 1
    assert _sleepers(tag) == before  # the same processes: re-attached, none started twice
    agent.stop_job("crash")
    wait_terminal(agent, "crash", 60)
    assert _sleepers(tag) == set()


def wait_terminal_group(agent: Agent, group: str) -> list[dict[str, Any]]:
    def done() -> bool:
        return all(a["ClientStatus"] in ("complete", "failed") for a in agent.list_allocations("crash")
                   if a["TaskGroup"] == group)

    wait_until(done, 30, 0.02, f"group {group} finished")
    return [agent.get_allocation(a["ID"]) for a in agent.list_allocations("crash") if a["TaskGroup"] == group]


def _sleep_job(tag: str, count: int) -> str:
    return f'''job "keep" {{
  type = "service"
  group "g" {{
    count = {count}
    task "s" {{
      driver = "raw_exec"
      config {{
        command = "sleep"
        args    = ["1000"]
      }}
    }}
  }}
}}'''


def test_graceful_restart_keeps_tasks(make_agent: MakeAgent, tmp_path: Path, tag: str) -> None:
    from rawexec.jobspec import parse_hcl

    data = tmp_path / "data"
    a = make_agent(data_dir=data)
    a.register_job(parse_hcl(_sleep_job(tag, 3)))
    wait_until(lambda: [x["ClientStatus"] for x in a.list_allocations("keep")] == ["running"] * 3, 60)
    before = _sleepers(tag)
    assert len(before) == 3
    summary_index = a.job_summary("keep")["ModifyIndex"]
    job = a.get_job_api("keep")
    assert job is not None and summary_index > job["JobModifyIndex"]  # the counts moved since registration
    a.shutdown(stop_tasks=False)
    assert _sleepers(tag) == before  # the tasks outlive the agent
    b = make_agent(data_dir=data)
    assert [x["ClientStatus"] for x in b.list_allocations("keep")] == ["running"] * 3
    # indexes never go back across a restart (a blocking query's index would otherwise never pass)
    assert b.job_summary("keep")["ModifyIndex"] >= summary_index and b.jobs_index() >= summary_index
    assert _sleepers(tag) == before
    for x in b.list_allocations("keep"):
        assert event_types(b.get_allocation(x["ID"]), "s").count("Started") == 1
    # the re-attached tasks are fully controllable: stop them
    b.stop_job("keep")
    wait_terminal(b, "keep", 60)
    assert _sleepers(tag) == set()


def test_a_stop_while_re_attaching_is_not_lost(make_agent: MakeAgent, tmp_path: Path, tag: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A job stopped while the new agent is still re-attaching to its tasks: the task runner knows
    the task runs (its recorded state), the driver does not know it yet. The stop waits for the
    re-attach instead of going to a driver that answers "task not found" (it was lost, and the
    allocation hung in Killing)."""
    from rawexec.driver import Driver
    from rawexec.jobspec import parse_hcl

    data = tmp_path / "data"
    a = make_agent(data_dir=data)
    a.register_job(parse_hcl(_sleep_job(tag, 2)))
    wait_until(lambda: [x["ClientStatus"] for x in a.list_allocations("keep")] == ["running"] * 2, 60)
    a.shutdown(stop_tasks=False)
    slow = threading.Event()
    recover = Driver.recover_task

    def slow_recover(self: Driver, handle: Any) -> None:
        slow.wait(10)  # until the stop is in
        recover(self, handle)

    monkeypatch.setattr(Driver, "recover_task", slow_recover)
    b = make_agent(data_dir=data)
    b.stop_job("keep")
    wait_until(lambda: all(event_types(b.get_allocation(x["ID"]), "s")[-1:] == ["Killing"]
                           for x in b.list_allocations("keep")), 10, msg="the stop reached every task runner")
    slow.set()
    wait_terminal(b, "keep", 30)
    wait_until(lambda: _sleepers(tag) == set(), 10, msg="no task left")


def test_unrecorded_start_is_not_run_twice(make_agent: MakeAgent, tmp_path: Path, tag: str) -> None:
    """The agent died after the driver started a task but before its handle was committed: the
    next agent kills that unrecorded process and starts the task once."""
    from rawexec.agent.state import StateStore
    from rawexec.jobspec import parse_hcl

    data = tmp_path / "data"
    a = make_agent(data_dir=data)
    a.register_job(parse_hcl(_sleep_job(tag, 2)))
    wait_until(lambda: [x["ClientStatus"] for x in a.list_allocations("keep")] == ["running"] * 2, 60)
    allocs = a.list_allocations("keep")
    victim = allocs[0]["ID"]
    before = _sleepers(tag)
    a.shutdown(stop_tasks=False)
    with StateStore(data) as store:  # as if the handle's commit never happened
        store.delete_driver_handle(victim, "s")
    b = make_agent(data_dir=data)
    wait_until(lambda: len(_sleepers(tag)) == 2 and _sleepers(tag) != before, 30, 0.05,
               "the unrecorded copy replaced by exactly one new one")
    # the other alloc's task was re-attached, untouched (looked for again: under load one /proc scan
    # has been seen to miss a live process; a killed one never comes back)
    wait_until(lambda: len(before & _sleepers(tag)) == 1, 5, 0.05, "the other task re-attached, untouched")
    wait_until(lambda: b.get_allocation(victim)["TaskStates"]["s"]["State"] == "running", 30)
    assert "Failed Restoring Task" in event_types(b.get_allocation(victim), "s")
    b.stop_job("keep")
    wait_terminal(b, "keep", 60)
    assert _sleepers(tag) == set()


def test_first_start_recorded_only_by_its_reservation(make_agent: MakeAgent, tmp_path: Path, tag: str) -> None:
    """A first start is not committed on its own before the process exists: the id it uses is
    reserved in the allocation's first commit. If the agent dies before the start is recorded, the
    next agent kills the process the reservation points to and starts the task exactly once."""
    from rawexec.agent.state import StateStore
    from rawexec.jobspec import parse_hcl

    data = tmp_path / "data"
    a = make_agent(data_dir=data)
    a.register_job(parse_hcl(_sleep_job(tag, 2)))
    wait_until(lambda: [x["ClientStatus"] for x in a.list_allocations("keep")] == ["running"] * 2, 60)
    victim = a.list_allocations("keep")[0]["ID"]
    before = _sleepers(tag)
    a.shutdown(stop_tasks=False)
    with StateStore(data) as store:  # back to what was committed when the first start began
        rec = store.get_task_state(victim, "s")
        assert rec is not None and rec["reserved_id"] == rec["task_id"] == f"{victim}/s/1"
        rec.update(task_id="", attempt=0, started_once=False)
        rec["state"].update(state="pending", started_at=0,
                            events=[e for e in rec["state"]["events"] if e["type"] == "Received"])
        store.put_task_state(victim, "s", rec)
        store.delete_driver_handle(victim, "s")
    b = make_agent(data_dir=data)
    wait_until(lambda: len(_sleepers(tag)) == 2 and _sleepers(tag) != before, 30, 0.05,
               "the unrecorded copy replaced by exactly one new one")
    assert len(before & _sleepers(tag)) == 1  # the other alloc's task was re-attached, untouched
    wait_until(lambda: b.get_allocation(victim)["TaskStates"]["s"]["State"] == "running", 30)
    assert event_types(b.get_allocation(victim), "s").count("Started") == 1
    b.stop_job("keep")
    wait_terminal(b, "keep", 60)
    assert _sleepers(tag) == set()


def _waiters(tag: str) -> list[int]:
    """The live tagged processes of the "waiter" group (one that exits between the scan and the
    read of its environment, ESRCH, is not one)."""
    out = []
    for p in pids_with_tag(tag):
        try:
            if b"NOMAD_GROUP_NAME=waiter" in Path(f"/proc/{p}/environ").read_bytes():
                out.append(p)
        except OSError:
            pass
    return out
