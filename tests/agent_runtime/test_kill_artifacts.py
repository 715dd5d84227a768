"""Kills that find no process to stop (in the restart delay, mid-download, as the task exits) and
failed artifact downloads, in-process agent against a real HTTP server: Nomad's events and rules."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rawexec.agent.events import TaskEvent
from tests.agent_runtime.conftest import MakeAgent, event_types, job_hcl, thread_dump, wait_terminal
from tests.artifacts.server import TestServer
from tests.helpers.util import pids_with_tag, wait_until


@pytest.fixture
def server() -> Iterator[TestServer]:
    s = TestServer()
    yield s
    s.close()


def _job(task_body: str, *, restart: str) -> str:
    return (f'group "g" {{\n  restart {{\n{restart}\n  }}\n  task "t" {{\n    driver = "raw_exec"\n'
            f'{task_body}\n  }}\n}}')


def _getters() -> list[int]:
    """This process's artifact getter children (python -c <bootstrap of rawexec.artifacts.sandbox>)."""
    out = []
    me = str(os.getpid())
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as fb:
                cmd = fb.read()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2:].split()[1] == me and b"rawexec.artifacts.sandbox" in cmd:
            out.append(int(name))
    return out


def _alloc(agent: Any, job_id: str = "j") -> dict[str, Any]:
    wait_until(lambda: agent.list_allocations(job_id), 30, 0.02, "an allocation")
    (a,) = agent.list_allocations(job_id)
    return agent.get_allocation(a["ID"])  # type: ignore[no-any-return]


def test_kill_cancels_an_artifact_download(make_agent: MakeAgent, tag: str, server: TestServer) -> None:
    """Stopping a task whose artifact is still downloading (a server that stalls) kills the getter
    child at once; the task is Killing/Killed, not a failed download waiting for the server."""
    route = server.add("/big.bin", body=b"x" * 200_000, stall=60)
    agent = make_agent()
    agent.register_job(job_hcl(_job(f'    artifact {{\n      source = "{server.url("/big.bin")}"\n    }}\n'
                                    '    config {\n      command = "/bin/echo"\n      args = ["ran"]\n    }',
                                    restart="    attempts = 0\n    mode = \"fail\""), tag))
    a = _alloc(agent)
    wait_until(lambda: route.requests and _getters(), 30, 0.02, "the download under way")
    t0 = time.monotonic()
    agent.stop_job("j")
    assert agent.allocation_runner(a["ID"]).wait(10), thread_dump()
    took = time.monotonic() - t0
    assert took < 5, took  # not the server's 60 s stall
    types = event_types(agent.get_allocation(a["ID"]), "t")
    assert types[-3:] == ["Downloading Artifacts", "Killing", "Killed"], types
    assert "Failed Artifact Download" not in types and "Started" not in types
    wait_until(lambda: _getters() == [], 5, 0.02, "no getter child left")
    assert pids_with_tag(tag) == []


@pytest.mark.parametrize(("path", "route", "options", "message"), [
    ("/missing", {"status": 404, "body": b"no"}, "", "bad response code: 404"),
    ("/app.bin", {"body": b"data"}, f'options {{\n checksum = "sha256:{"ab" * 32}"\n }}', "checksums did not match"),
    ("/plain", {"body": b"data"}, 'mode = "dir"', 'mode "dir" needs an archive'),
])
def test_a_failed_download_is_recoverable(make_agent: MakeAgent, tag: str, server: TestServer, path: str,
                                          route: dict[str, Any], options: str, message: str) -> None:
    """Every download failure is recoverable, as Nomad's artifact hook makes it: the restart policy
    applies (here: one restart) instead of "Error was unrecoverable"."""
    r = server.add(path, **route)
    agent = make_agent()
    agent.register_job(job_hcl(_job(f'    artifact {{\n      source = "{server.url(path)}"\n      {options}\n    }}\n'
                                    '    config {\n      command = "/bin/echo"\n      args = ["ran"]\n    }',
                                    restart='    attempts = 1\n    delay = "100ms"\n    mode = "fail"'), tag))
    (a,) = wait_terminal(agent, "j")
    evs = a["TaskStates"]["t"]["Events"]
    types = [e["Type"] for e in evs]
    assert types.count("Failed Artifact Download") == 2, types
    assert "Restarting" in types and types[-1] == "Not Restarting", types
    assert evs[-1]["DisplayMessage"] != "Error was unrecoverable"
    failed = next(e for e in evs if e["Type"] == "Failed Artifact Download")
    assert message in failed["DisplayMessage"]
    assert len(r.requests) == 2  # once per attempt
    assert a["ClientStatus"] == "failed"


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
