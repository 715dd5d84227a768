"""InMemoryAgentStandIn: a small, real implementation of the agent interface for API-layer tests.

Not the product's agent (that is ``rawexec.agent.agent.Agent``). It keeps jobs and allocations
in dicts but runs every task for real through :class:`rawexec.Driver` (no cgroups), so logs,
signals, exec and stats in these tests touch real processes and files. It exists so the HTTP
layer can be tested on its own, independent of the agent runtime's progress.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

from rawexec import Driver, DriverConfig, TaskConfig
from rawexec.agent.agentconfig import AgentConfig
from rawexec.agent.eventstream import Event, EventBroker, EventSubscription
from rawexec.driver import ExecSession
from rawexec.errors import RawExecError, TaskStateError
from rawexec.jobspec import Job


class NotFound(RawExecError):
    grpc_code = "NOT_FOUND"


class InMemoryAgentStandIn:
    def __init__(self, config: AgentConfig, *, env: dict[str, str] | None = None) -> None:
        self.config = config
        data_dir = config.require_data_dir()
        self.data_dir = data_dir
        self.env = env or {}
        self.node: dict[str, Any] = {
            "ID": str(uuid.UUID(int=0x1234)), "Name": config.name, "Datacenter": config.datacenter,
            "Region": config.region, "NodePool": "default", "Status": "ready", "SchedulingEligibility": "eligible",
            "Attributes": {"kernel.name": "linux", "os.name": "linux", "driver.raw_exec": "1"},
            "Meta": dict(config.client.meta),
            "Drivers": {"raw_exec": {"Detected": True, "Healthy": True, "HealthDescription": "Healthy"}},
        }
        self.driver = Driver(DriverConfig(enabled=True, no_cgroups=True, state_dir=os.path.join(data_dir, "s")))
        self.jobs: dict[str, Job] = {}
        self.allocs: dict[str, dict[str, Any]] = {}
        self.index = 0
        self.lock = threading.Lock()
        self.broker = EventBroker()

    def _next(self) -> int:
        self.index += 1
        return self.index

    def _publish(self, topic: str, type_: str, key: str, payload: dict[str, Any]) -> None:
        self.broker.publish(Event(topic, type_, key, self._next(), payload))

    # -- jobs --------------------------------------------------------------------------------
    def register_job(self, job: Job) -> dict[str, Any]:
        with self.lock:
            self.jobs[job.id] = job
            idx = self._next()
            for g in job.groups:
                for i in range(g.count):
                    alloc_id = str(uuid.uuid4())
                    alloc_dir = os.path.join(self.data_dir, "alloc", alloc_id)
                    states: dict[str, Any] = {}
                    for t in g.tasks:
                        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.env, **dict(t.env)}
                        self.driver.start_task(TaskConfig(id=f"{alloc_id}/{t.name}", name=t.name, alloc_id=alloc_id,
                                                          alloc_dir=alloc_dir, driver_config=dict(t.config),
                                                          env=env))
                        states[t.name] = {"State": "running", "Failed": False, "Restarts": 0,
                                          "Events": [{"Type": "Started", "Time": time.time_ns(),
                                                      "DisplayMessage": "Task started by client"}]}
                    self.allocs[alloc_id] = {
                        "ID": alloc_id, "Name": f"{job.id}.{g.name}[{i}]", "JobID": job.id, "TaskGroup": g.name,
                        "NodeID": self.node["ID"], "ClientStatus": "running", "DesiredStatus": "run",
                        "TaskStates": states, "CreateIndex": idx, "ModifyIndex": idx,
                        "CreateTime": time.time_ns(), "ModifyTime": time.time_ns(),
                    }
            self._publish("Job", "JobRegistered", job.id, {"Job": {"ID": job.id}})
            return {"EvalID": str(uuid.uuid4()), "JobModifyIndex": idx, "Warnings": ""}

    def list_jobs(self) -> list[dict[str, Any]]:
        with self.lock:
            return [{"ID": j.id, "Name": j.name or j.id, "Type": j.type, "Status": self._job_status(j.id),
                     "ModifyIndex": 1} for j in self.jobs.values()]

    def _job_status(self, job_id: str) -> str:
        running = any(a["JobID"] == job_id and a["ClientStatus"] == "running" for a in self.allocs.values())
        return "running" if running else "dead"

    def get_job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def job_summary(self, job_id: str) -> dict[str, Any]:
        job = self.jobs[job_id]
        summary = {g.name: {"Queued": 0, "Starting": 0, "Running": 0, "Complete": 0, "Failed": 0, "Lost": 0}
                   for g in job.groups}
        for a in self.allocs.values():
            if a["JobID"] == job_id:
                key = "Running" if a["ClientStatus"] == "running" else "Complete"
                summary[a["TaskGroup"]][key] += 1
        return {"JobID": job_id, "Namespace": "default", "Summary": summary}

    def stop_job(self, job_id: str, *, purge: bool = False) -> dict[str, Any]:
        if job_id not in self.jobs:
            raise NotFound("job not found")
        for a in list(self.allocs.values()):
            if a["JobID"] == job_id:
                self.stop_allocation(a["ID"])
        if purge:
            del self.jobs[job_id]
            for aid in [k for k, a in self.allocs.items() if a["JobID"] == job_id]:
                del self.allocs[aid]
        return {"EvalID": str(uuid.uuid4()), "JobModifyIndex": self._next()}

    # -- allocations -------------------------------------------------------------------------
    def list_allocations(self, job_id: str | None = None) -> list[dict[str, Any]]:
        return [dict(a) for a in self.allocs.values() if job_id is None or a["JobID"] == job_id]

    def _alloc(self, alloc_id: str) -> dict[str, Any]:
        matches = [a for k, a in self.allocs.items() if k.startswith(alloc_id)] if alloc_id else []
        if len(matches) != 1:
            raise NotFound("alloc not found")
        return matches[0]

    def get_allocation(self, alloc_id_or_prefix: str) -> dict[str, Any]:
        return dict(self._alloc(alloc_id_or_prefix))

    def stop_allocation(self, alloc_id: str) -> dict[str, Any]:
        a = self._alloc(alloc_id)
        for name in a["TaskStates"]:
            tid = f"{a['ID']}/{name}"
            if tid in self.driver.task_ids():
                self.driver.stop_task(tid, timeout=2.0, signal="SIGTERM")
                self.driver.destroy_task(tid, force=True)
            a["TaskStates"][name]["State"] = "dead"
        a["ClientStatus"] = "complete"
        a["DesiredStatus"] = "stop"
        return {"EvalID": str(uuid.uuid4()), "Index": self._next()}

    def signal_allocation(self, alloc_id: str, signal: str, task: str | None = None) -> None:
        a = self._alloc(alloc_id)
        names = [task] if task else list(a["TaskStates"])
        for n in names:
            if n not in a["TaskStates"]:
                raise NotFound(f'Failed to signal task: {n}, err: task "{n}" not found')
            self.driver.signal_task(f"{a['ID']}/{n}", signal)

    def restart_allocation(self, alloc_id: str, task: str | None = None, all_tasks: bool = False) -> None:
        self._alloc(alloc_id)
        raise TaskStateError("restart is not offered by the test stand-in")

    def allocation_stats(self, alloc_id: str) -> dict[str, Any]:
        a = self._alloc(alloc_id)
        tasks = {}
        for n in a["TaskStates"]:
            u = self.driver.task_stats(f"{a['ID']}/{n}")
            tasks[n] = {"ResourceUsage": {"MemoryStats": {"RSS": u.resource_usage.memory_stats.rss},
                                          "CpuStats": {"Percent": u.resource_usage.cpu_stats.percent}},
                        "Timestamp": u.timestamp}
        return {"ResourceUsage": {}, "Tasks": tasks, "Timestamp": time.time_ns()}

    def alloc_dir(self, alloc_id: str) -> str:
        return os.path.join(self.data_dir, "alloc", self._alloc(alloc_id)["ID"])

    def exec_task(self, alloc_id: str, task: str, command: list[str], tty: bool, rows: int = 0,
                  cols: int = 0) -> ExecSession:
        a = self._alloc(alloc_id)
        if task not in a["TaskStates"]:
            raise NotFound(f'task "{task}" not found in the allocation')
        return self.driver.exec_task_streaming(f"{a['ID']}/{task}", command, tty=tty, rows=rows, cols=cols)

    def events(self, index: int = 0) -> EventSubscription:
        return self.broker.subscribe(index)

    def close(self) -> None:
        for tid in self.driver.task_ids():
            try:
                self.driver.destroy_task(tid, force=True)
            except Exception:
                pass
        self.broker.close()
        self.driver.close()
