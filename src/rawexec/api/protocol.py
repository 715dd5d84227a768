"""What the HTTP API needs from the agent (``rawexec.agent.agent.Agent`` fits it structurally)."""

from __future__ import annotations

from typing import Any, Protocol

from rawexec.agent.agentconfig import AgentConfig
from rawexec.agent.eventstream import EventSubscription
from rawexec.driver import ExecSession
from rawexec.jobspec import Job

__all__ = ["AgentAPI"]


class AgentAPI(Protocol):
    """The agreed agent interface (see the agent module for semantics)."""

    config: AgentConfig
    node: dict[str, Any]

    def register_job(self, job: Job) -> dict[str, Any]: ...

    def list_jobs(self, namespace: str | None = None) -> list[dict[str, Any]]: ...

    def get_job(self, job_id: str, namespace: str = "default") -> Job | None: ...

    def job_summary(self, job_id: str, *, namespace: str = "default") -> dict[str, Any]: ...

    def stop_job(self, job_id: str, *, purge: bool = False, namespace: str = "default") -> dict[str, Any]: ...

    def list_allocations(self, job_id: str | None = None, namespace: str | None = None) -> list[dict[str, Any]]: ...

    def get_allocation(self, alloc_id_or_prefix: str) -> dict[str, Any]: ...

    def stop_allocation(self, alloc_id: str) -> dict[str, Any]: ...

    def signal_allocation(self, alloc_id: str, signal: str, task: str | None = None) -> None: ...

    def restart_allocation(self, alloc_id: str, task: str | None = None, all_tasks: bool = False) -> None: ...

    def allocation_stats(self, alloc_id: str) -> dict[str, Any]: ...

    def alloc_dir(self, alloc_id: str) -> str: ...

    def exec_task(self, alloc_id: str, task: str, command: list[str], tty: bool, rows: int = 0,
                  cols: int = 0) -> ExecSession: ...

    def events(self, index: int = 0) -> EventSubscription: ...
