"""Fixtures for the agent runtime tests: an in-process Agent on a tmp data dir (no cgroups)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rawexec.agent.agent import Agent
from rawexec.agent.agentconfig import AgentConfig, ClientConfig, RawExecPluginConfig
from rawexec.driver import DriverConfig
from rawexec.jobspec import Job, parse_hcl
from tests.helpers.util import pids_with_tag, wait_until

MakeAgent = Callable[..., Agent]


@pytest.fixture(autouse=True)
def _kill_leftovers(tag: str) -> Iterator[None]:
    """Safety net after each test (which asserts on leaks itself): no process with its tag survives."""
    yield
    for pid in pids_with_tag(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
def make_agent(tmp_path: Path, state_dir: str, tag: str) -> Iterator[MakeAgent]:
    agents: list[Agent] = []

    def make(*, enabled: bool = True, data_dir: Path | None = None, max_kill_timeout: float = 30.0) -> Agent:
        cfg = AgentConfig(data_dir=str(data_dir or tmp_path / "data"),
                          client=ClientConfig(max_kill_timeout=max_kill_timeout),
                          raw_exec=RawExecPluginConfig(enabled=enabled, no_cgroups=True))
        a = Agent(cfg, driver_config=DriverConfig(no_cgroups=True, state_dir=state_dir))
        k, _, v = tag.partition("=")
        a.host_env[k] = v  # every task inherits the tag: leaks are found by it
        a.start()
        agents.append(a)
        return a

    yield make
    for a in agents:
        try:
            a.shutdown(stop_tasks=True, timeout=15)
        except Exception:
            pass
    for pid in pids_with_tag(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def job_hcl(body: str, tag: str, *, job_id: str = "j", job_type: str = "batch") -> Job:
    """A job from an HCL snippet of groups."""
    text = f'job "{job_id}" {{\n  type = "{job_type}"\n{body}\n}}\n'
    return parse_hcl(text)


def wait_terminal(agent: Agent, job_id: str, timeout: float = 90.0) -> list[dict[str, Any]]:
    def done() -> bool:
        allocs = agent.list_allocations(job_id)
        return bool(allocs) and all(a["ClientStatus"] in ("complete", "failed") for a in allocs)

    try:
        wait_until(done, timeout, 0.02, f"allocations of {job_id} to finish")
    except AssertionError:
        detail = {a["ID"][:8]: (a["ClientStatus"], {t: [e["Type"] for e in s["Events"]] for t, s in
                                                   agent.get_allocation(a["ID"])["TaskStates"].items()})
                  for a in agent.list_allocations(job_id)}
        raise AssertionError(f"allocations of {job_id} did not finish: {detail}\n{thread_dump()}") from None
    return [agent.get_allocation(a["ID"]) for a in agent.list_allocations(job_id)]


def thread_dump() -> str:
    """Every thread's stack: what a hang was waiting for."""
    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join(f"--- thread {names.get(ident, ident)}\n" + "".join(traceback.format_stack(frame))
                     for ident, frame in sys._current_frames().items())


def event_types(alloc: dict[str, Any], task: str) -> list[str]:
    return [e["Type"] for e in alloc["TaskStates"][task]["Events"]]
