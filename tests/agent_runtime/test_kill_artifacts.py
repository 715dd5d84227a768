"""Kills that find no process to stop (in the restart delay, as the task exits): Nomad's events and rules."""

from __future__ import annotations

import time
from typing import Any

from rawexec.agent.events import TaskEvent
from tests.agent_runtime.conftest import MakeAgent, event_types, job_hcl, thread_dump
from tests.helpers.util import wait_until


def _job(task_body: str, *, restart: str) -> str:
    return (f'group "g" {{\n  restart {{\n{restart}\n  }}\n  task "t" {{\n    driver = "raw_exec"\n'
            f'{task_body}\n  }}\n}}')


def _alloc(agent: Any, job_id: str = "j") -> dict[str, Any]:
    wait_until(lambda: agent.list_allocations(job_id), 30, 0.02, "an allocation")
    (a,) = agent.list_allocations(job_id)
    return agent.get_allocation(a["ID"])  # type: ignore[no-any-return]


def test_kill_in_the_restart_delay_is_killing_killed(make_agent: MakeAgent, tag: str) -> None:
    """Killed while waiting out its restart delay: Nomad's Killing and Killed, at once, and the
    restart is never made."""
    agent = make_agent()
    agent.register_job(job_hcl(_job('    config {\n      command = "/bin/sh"\n      args = ["-c", "exit 1"]\n    }',
                                    restart='    attempts = 3\n    delay = "10s"\n    interval = "5m"'), tag))
    a = _alloc(agent)
    wait_until(lambda: "Restarting" in event_types(agent.get_allocation(a["ID"]), "t"), 30, 0.02, "in the delay")
    t0 = time.monotonic()
    agent.stop_job("j")
    assert agent.allocation_runner(a["ID"]).wait(5), thread_dump()
    assert time.monotonic() - t0 < 3
    st = agent.get_allocation(a["ID"])["TaskStates"]["t"]
    types = [e["Type"] for e in st["Events"]]
    assert types[-4:] == ["Terminated", "Restarting", "Killing", "Killed"], types
    assert st["State"] == "dead" and st["Restarts"] == 1 and types.count("Started") == 1


def test_no_restart_is_scheduled_after_a_kill(make_agent: MakeAgent, tag: str) -> None:
    """A kill (here: its sibling failed) that lands while the task's own exit is being handled: the
    exit would be restarted by the policy, but a killed task is never restarted (it used to log
    "Restarting: Task restarting in 1.12s" after "Sibling Task Failed")."""
    agent = make_agent()
    agent.register_job(job_hcl(_job('    config {\n      command = "/bin/sh"\n'
                                    '      args = ["-c", "sleep 0.5; exit 1"]\n    }',
                                    restart='    attempts = 3\n    delay = "1s"\n    interval = "5m"'), tag))
    a = _alloc(agent)
    runner = agent.allocation_runner(a["ID"]).runners["t"]
    destroy = agent.driver.destroy_task

    def destroy_then_kill(task_id: str, force: bool = False) -> None:
        destroy(task_id, force=force)
        runner.kill(TaskEvent.sibling_failed("other"))  # the kill arrives just after the exit was seen

    agent.driver.destroy_task = destroy_then_kill  # type: ignore[method-assign]
    try:
        assert agent.allocation_runner(a["ID"]).wait(15), thread_dump()
    finally:
        agent.driver.destroy_task = destroy  # type: ignore[method-assign]
    st = agent.get_allocation(a["ID"])["TaskStates"]["t"]
    types = [e["Type"] for e in st["Events"]]
    assert "Restarting" not in types, types
    assert types[-4:] == ["Terminated", "Sibling Task Failed", "Killing", "Killed"], types
    assert st["State"] == "dead" and types.count("Started") == 1
