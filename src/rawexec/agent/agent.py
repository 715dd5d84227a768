"""The single-node agent: jobs -> allocations -> task runners over the raw_exec Driver (stub; filled in next)."""

from __future__ import annotations

from typing import Any

from rawexec.agent.agentconfig import AgentConfig
from rawexec.agent.eventstream import EventSubscription
from rawexec.driver import ExecSession
from rawexec.jobspec import Job

__all__ = ["Agent"]


class Agent:
    def __init__(self, config: AgentConfig, *, dev: bool = False) -> None:
        self.config = config.with_dev() if dev else config
        self.dev = dev
        self.node: dict[str, Any] = {}

    def start(self) -> None:
        raise NotImplementedError

    def shutdown(self, *, stop_tasks: bool) -> None:
        raise NotImplementedError

    def register_job(self, job: Job) -> dict[str, Any]:
        raise NotImplementedError

    def list_jobs(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def get_job(self, job_id: str) -> Job | None:
        raise NotImplementedError

    def job_summary(self, job_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def stop_job(self, job_id: str, *, purge: bool = False) -> dict[str, Any]:
        raise NotImplementedError

    def list_allocations(self, job_id: str | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def get_allocation(self, alloc_id_or_prefix: str) -> dict[str, Any]:
        raise NotImplementedError

    def stop_allocation(self, alloc_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def signal_allocation(self, alloc_id: str, signal: str, task: str | None = None) -> None:
        raise NotImplementedError

    def restart_allocation(self, alloc_id: str, task: str | None = None, all_tasks: bool = False) -> None:
        raise NotImplementedError

    def allocation_stats(self, alloc_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def alloc_dir(self, alloc_id: str) -> str:
        raise NotImplementedError

    def exec_task(self, alloc_id: str, task: str, command: list[str], tty: bool, rows: int = 0, cols: int = 0
                  ) -> ExecSession:
        raise NotImplementedError

    def events(self, index: int = 0) -> EventSubscription:
        raise NotImplementedError
