"""One allocation: its task runners, task lifecycle ordering, status, and persistence.

Lifecycle (Nomad's): prestart tasks first (sidecars keep running; the others must finish
successfully), then the main tasks, poststart tasks once every main task has started, and
poststop tasks once every other task is dead. A failed task kills its siblings (``Sibling Task
Failed``); a dead leader kills the rest (``Leader Task Dead``); when every main task is dead
the sidecars are stopped (``Main Tasks Dead``). Tasks are killed in Nomad's order: the leader,
then the other non-sidecar tasks, then the sidecars once those are dead (:meth:`AllocRunner._kill_all`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from rawexec.agent import events as ev
from rawexec.agent.events import TaskEvent
from rawexec.agent.flag import DoneFlag
from rawexec.agent.ports import AllocatedPort
from rawexec.agent.restarts import RestartPolicy
from rawexec.agent.taskrunner import TaskRunner
from rawexec.driver import TaskHandle
from rawexec.jobspec import Job, TaskGroup
from rawexec.taskenv import TaskEnv, TaskEnvBuilder

if TYPE_CHECKING:
    from rawexec.agent.agent import Agent
    from rawexec.agent.agentconfig import AgentConfig
    from rawexec.artifacts.config import GetterConfig
    from rawexec.driver import Driver

__all__ = ["AllocRunner", "job_meta_key"]


def job_meta_key(job_api: dict[str, Any]) -> str:
    """The state-store meta key holding this version of the job (allocations refer to it)."""
    return f"job:{job_api.get('Namespace', 'default')}:{job_api['ID']}:{job_api.get('Version', 0)}"


log = logging.getLogger("rawexec.agent")

_TASK_STATES_KEY = ',"TaskStates":{'

CLIENT_PENDING = "pending"
CLIENT_RUNNING = "running"
CLIENT_COMPLETE = "complete"
CLIENT_FAILED = "failed"
TERMINAL = (CLIENT_COMPLETE, CLIENT_FAILED)


_NO_HANDLES: dict[str, bytes] = {}  # shared, never written: an allocation with no restored handles


class AllocRunner:
    """Runs the tasks of one allocation of a task group."""

    # One per allocation, thousands in an agent: slots instead of a per-instance dict (past ~30
    # attributes CPython's shared-key dicts stop sharing, ~1.5 KB more per allocation).
    __slots__ = ("__weakref__", "_advancing", "_dirty", "_done", "_killing_all", "_lock", "_ports_deferred",
                 "_restored_handles", "agent", "alloc_dir", "alloc_id", "client_description", "client_status",
                 "committed_stub", "create_index", "create_time", "desired_description", "desired_status",
                 "detached", "eval_id", "followup_eval_id", "group", "index", "job", "job_api", "modify_index",
                 "modify_time", "name",
                 "next_allocation", "ports", "previous_allocation", "reschedule_at", "reschedule_events", "runners",
                 "short", "stub_cut", "wait_for")

    def __init__(self, agent: Agent, alloc_id: str, job: Job, job_api: dict[str, Any], group: TaskGroup,
                 index: int, *, eval_id: str, create_time: int | None = None) -> None:
        self.agent = agent
        self.alloc_id = alloc_id
        self.short = alloc_id[:8]
        self.job = job
        self.job_api = job_api
        self.group = group
        self.index = index
        self.eval_id = eval_id
        self.previous_allocation = ""
        """The allocation this one replaces (``alloc stop``, a destructive update), as Nomad's field."""
        self.next_allocation = ""
        self.followup_eval_id = ""
        """The evaluation that will place this failed allocation's replacement (Nomad's field)."""
        self.reschedule_at = 0
        """When (ns since the epoch) the replacement is due; 0: no reschedule pending."""
        self.reschedule_events: list[dict[str, Any]] = []
        """Nomad's RescheduleTracker events: the reschedules that led to this allocation."""
        self.wait_for: AllocRunner | None = None
        """The allocation this one replaces on this node: its tasks start once that one is done (as
        Nomad's client waits for a local previous allocation; its ports are free by then)."""
        self._ports_deferred = False
        self.name = f"{job.id}.{group.name}[{index}]"
        self.alloc_dir = os.path.join(agent.data_dir, "alloc", alloc_id)
        self.desired_status = "run"
        self.desired_description = ""
        self.client_status = CLIENT_PENDING
        self.client_description = "No tasks have started"
        self.create_time = create_time or time.time_ns()
        self.modify_time = self.create_time
        self.create_index = 0
        self.modify_index = 0
        self.ports: list[AllocatedPort] = []
        self.detached = False
        self.committed_stub = b""
        """The list stub (JSON, UTF-8) as of the latest commit of this allocation (empty before the first)."""
        self.stub_cut = 0
        """``committed_stub[:stub_cut] + b"}"`` is the stub without TaskStates."""
        self._lock = threading.RLock()
        self._advancing = False
        self._dirty = False
        self._killing_all = False
        self._done = DoneFlag()
        self._restored_handles = _NO_HANDLES
        self.runners: dict[str, TaskRunner] = {}
        for t in group.tasks:
            hook = t.lifecycle.hook if t.lifecycle else ""
            sidecar = bool(t.lifecycle and t.lifecycle.sidecar)
            self.runners[t.name] = TaskRunner(self, t, lifecycle=hook, sidecar=sidecar)

    # ------------------------------------------------------------------ context for task runners
    @property
    def driver(self) -> Driver:
        return self.agent.driver

    @property
    def config(self) -> AgentConfig:
        return self.agent.config

    def getter_config(self) -> GetterConfig:
        return self.agent.getter_config

    def build_env(self, runner: TaskRunner) -> TaskEnv:
        task = runner.task
        b = TaskEnvBuilder(self.agent.node_obj.info)
        b.set_alloc(alloc_id=self.alloc_id, job_id=self.job.id, group=self.group.name, index=self.index,
                    job_name=self.job.name or self.job.id, namespace=self.job.namespace, region=self.job.region)
        b.set_task(task.name, env=task.env, meta=[self.job.meta, self.group.meta, task.meta],
                   resources=task.resources)
        b.set_alloc_dir(self.alloc_dir)
        b.set_ports(self.ports)
        b.set_host_env(self.agent.host_env, self.agent.config.env_denylist)
        return b.build()

    # ------------------------------------------------------------------ persistence
    def _private(self) -> dict[str, Any]:
        out = {"Index": self.index, "Ports": [p.to_dict() for p in self.ports], "Group": self.group.name,
               "JobKey": job_meta_key(self.job_api)}
        if self._ports_deferred:
            out["PortsDeferred"] = True
        if self.reschedule_at:
            out["RescheduleAt"] = self.reschedule_at
        return out

    def body(self, stub: dict[str, Any] | None = None) -> dict[str, Any]:
        """The stored allocation (Nomad's Allocation JSON without TaskStates and Job, plus our private
        fields; the job version is stored once, under ``job_meta_key``)."""
        out = self.stub(task_states=False) if stub is None else {k: v for k, v in stub.items() if k != "TaskStates"}
        out["AllocatedResources"] = self._resources()
        out["RawExec"] = self._private()
        return out

    def _resources(self) -> dict[str, Any]:
        ports = [{"Label": p.label, "Value": p.value, "To": p.to, "HostIP": p.host_ip} for p in self.ports]
        tasks = {t.name: {"Cpu": {"CpuShares": t.resources.cpu},
                          "Memory": {"MemoryMB": t.resources.memory, "MemoryMaxMB": t.resources.memory_max}}
                 for t in self.group.tasks}
        return {"Tasks": tasks, "Shared": {"DiskMB": self.group.ephemeral_disk.size, "Ports": ports or None,
                                           "Networks": None}}

    def stub(self, *, task_states: bool = True) -> dict[str, Any]:
        """Nomad's AllocationListStub."""
        out: dict[str, Any] = {
            "ID": self.alloc_id, "EvalID": self.eval_id, "Name": self.name, "Namespace": self.job.namespace,
            "NodeID": self.agent.node_obj.id, "NodeName": self.agent.config.name, "JobID": self.job.id,
            "JobType": self.job.type, "JobVersion": int(self.job_api.get("Version", 0)),
            "TaskGroup": self.group.name, "DesiredStatus": self.desired_status,
            "DesiredDescription": self.desired_description, "ClientStatus": self.client_status,
            "ClientDescription": self.client_description, "FollowupEvalID": self.followup_eval_id,
            "RescheduleTracker": {"Events": self.reschedule_events} if self.reschedule_events else None,
            "PreviousAllocation": self.previous_allocation, "NextAllocation": self.next_allocation,
            "CreateIndex": self.create_index, "ModifyIndex": self.modify_index,
            "AllocModifyIndex": self.create_index, "CreateTime": self.create_time, "ModifyTime": self.modify_time,
        }
        if task_states:
            out["TaskStates"] = self.task_states_api()
        return out

    def stub_json(self, base: dict[str, Any]) -> str:
        """The list stub as JSON text: ``base`` (``stub(task_states=False)``) plus the TaskStates,
        built from each event's JSON encoded once (see :meth:`TaskState.api_json`)."""
        head = json.dumps(base, separators=(",", ":"))
        states = ",".join(json.dumps(name) + ":" + r.state.api_json() for name, r in self.runners.items())
        return head[:-1] + _TASK_STATES_KEY + states + "}}"

    def encode(self) -> tuple[str, str]:
        """(list stub, stored body) as JSON text, as the allocation is now: the stub's fields are
        encoded once for both (the persister writes every allocation of a commit this way)."""
        head = json.dumps(self.stub(task_states=False), separators=(",", ":"), allow_nan=False)[:-1]
        states = ",".join(json.dumps(name) + ":" + r.state.api_json() for name, r in self.runners.items())
        body = (head + ',"AllocatedResources":' + json.dumps(self._resources(), separators=(",", ":"))
                + ',"RawExec":' + json.dumps(self._private(), separators=(",", ":")) + "}")
        return head + _TASK_STATES_KEY + states + "}}", body

    def set_committed_stub(self, stub_json: str) -> None:
        """Record the stub of the latest commit (see :attr:`committed_stub`). The text is ASCII
        (``json.dumps`` escapes the rest), so its offsets are the bytes' offsets."""
        self.stub_cut = stub_json.index(_TASK_STATES_KEY)  # the first: no value can hold it unescaped
        self.committed_stub = stub_json.encode()
        if self.terminal:  # done: its events' JSON lives on in this stub; ~2 KB less per finished alloc
            self._forget_events_json()

    def _forget_events_json(self) -> None:
        for r in self.runners.values():
            for e in r.state.events:
                e.forget_json()

    def task_states_api(self) -> dict[str, Any]:
        return {name: r.state.to_api() for name, r in self.runners.items()}

    def full(self) -> dict[str, Any]:
        out = self.body()
        out.pop("RawExec", None)
        out["Job"] = self.job_api
        out["TaskStates"] = self.task_states_api()
        return out

    def stamp(self, idx: int) -> None:
        """Called by the persister inside the transaction that writes this allocation."""
        if self.create_index == 0:
            self.create_index = idx
        self.modify_index = idx
        self.modify_time = time.time_ns()

    def persist(self, runner: TaskRunner | None = None, *, handle: bytes | None = None,
                drop_handle: bool = False, all_tasks: bool = False, wait: bool = True) -> int:
        """Queue this allocation (and ``runner``'s task state / handle) for the next commit; with
        ``wait``, return once it is durable. Returns the persister generation."""
        gen = self.agent.persister.submit(self, runner, handle=handle, drop_handle=drop_handle,
                                          all_tasks=all_tasks)
        if wait:
            self.agent.persister.wait(gen)
        return gen

    @classmethod
    def restore(cls, agent: Agent, body: dict[str, Any], job: Job, job_api: dict[str, Any],
                states: dict[str, dict[str, Any]], handles: dict[str, bytes]) -> AllocRunner:
        priv = body.get("RawExec") or {}
        group = job.group(str(priv.get("Group", body.get("TaskGroup"))))
        ar = cls(agent, body["ID"], job, job_api, group, int(priv.get("Index", 0)), eval_id=body.get("EvalID", ""),
                 create_time=int(body.get("CreateTime", 0)) or None)
        ar.desired_status = body.get("DesiredStatus", "run")
        ar.desired_description = body.get("DesiredDescription", "")
        ar.previous_allocation = str(body.get("PreviousAllocation") or "")
        ar.next_allocation = str(body.get("NextAllocation") or "")
        ar.followup_eval_id = str(body.get("FollowupEvalID") or "")
        ar.reschedule_events = list((body.get("RescheduleTracker") or {}).get("Events") or [])
        ar.reschedule_at = int(priv.get("RescheduleAt", 0))
        ar.client_status = body.get("ClientStatus", CLIENT_PENDING)
        ar.client_description = body.get("ClientDescription", "")
        ar.create_index = int(body.get("CreateIndex", 0))
        ar.modify_index = int(body.get("ModifyIndex", 0))
        ar.ports = [AllocatedPort.from_dict(p) for p in priv.get("Ports", [])]
        ar._ports_deferred = bool(priv.get("PortsDeferred"))
        for name, rec in states.items():
            if name in ar.runners:
                ar.runners[name].load_record(rec)
        ar.set_committed_stub(ar.stub_json(ar.stub(task_states=False)))
        ar._restored_handles = handles
        return ar


    # ------------------------------------------------------------------ running
    def start(self) -> None:
        """A new allocation: allocate ports, record Received for every task (not yet committed);
        the agent commits a batch of new allocations at once, then calls :meth:`advance` (never
        before that commit: it records the ids the first starts use)."""
        if self.wait_for is not None and not self.wait_for.terminal:
            self._ports_deferred = bool(self._port_requests())  # the previous allocation may hold them
        elif not self._allocate_ports():
            return
        os.makedirs(self.alloc_dir, mode=0o755, exist_ok=True)
        for r in self.runners.values():
            r.state.append_event(TaskEvent.received())
            r.reserve_first_id()  # committed with this: the first start needs no commit of its own
        self.persist(all_tasks=True, wait=False)

    def _port_requests(self) -> list[Any]:
        return [p for n in self.group.networks for p in n.ports]

    def _allocate_ports(self) -> bool:
        """Allocate the group's ports; on failure the allocation fails (recorded) and False is returned."""
        requests = self._port_requests()
        if not requests:
            return True
        try:
            self.ports = self.agent.ports.allocate(self.alloc_id, requests)
        except Exception as e:
            for r in self.runners.values():
                r.state.set_state(ev.TASK_DEAD, TaskEvent.setup_failure(f"failed to allocate ports: {e}"))
            self.client_status = CLIENT_FAILED
            self.client_description = f"Failed to allocate ports: {e}"
            self.persist(all_tasks=True)
            self._done.set()
            return False
        return True

    def resume(self) -> None:
        """After an agent restart: re-attach running tasks, then continue the lifecycle."""
        if self.client_status in TERMINAL:
            self._done.set()
            self._forget_events_json()  # encoded once more by restore(), for the committed stub
            return
        if self.ports:
            try:
                self.agent.ports.restore(self.alloc_id, self.ports)
            except Exception as e:
                log.warning("restoring ports of %s: %s", self.alloc_id, e)
        for name, r in self.runners.items():
            blob = self._restored_handles.get(name)
            if r.dead:
                continue
            if blob is not None or r.restart_at > 0 or r.state.state == ev.TASK_RUNNING or r.task_id:
                handle = None
                if blob is not None:
                    try:
                        handle = TaskHandle.loads(blob)
                    except Exception as e:
                        log.warning("bad driver handle for %s/%s: %s", self.alloc_id, name, e)
                r.recover(handle)
        self._restored_handles = {}
        self.advance()

    def task_changed(self, runner: TaskRunner, *, handle: bytes | None = None, drop_handle: bool = False,
                     wait: bool = True) -> None:
        if self.detached:
            return
        self._update_status()
        self.persist(runner, handle=handle, drop_handle=drop_handle, wait=wait)
        self.advance()

    def publish(self, idx: int, stub_json: str) -> None:
        # Nomad's allocation events carry the JobID and DeploymentID (none here) as filter keys
        self.agent.publish_json("Allocation", "AllocationUpdated", self.alloc_id, idx,
                                '{"Allocation":' + stub_json + "}", namespace=self.job.namespace,
                                filter_keys=(self.job.id, ""))

    def task_done(self, runner: TaskRunner) -> None:
        self.advance()

    def _update_status(self) -> None:
        rs = list(self.runners.values())
        if all(r.dead for r in rs):
            failed = any(r.state.failed for r in rs)
            self.client_status = CLIENT_FAILED if failed else CLIENT_COMPLETE
            self.client_description = "Failed tasks" if failed else "All tasks have completed"
        elif any(r.running for r in rs):
            self.client_status = CLIENT_RUNNING
            self.client_description = "Tasks are running"
        elif self.client_status != CLIENT_RUNNING:
            self.client_status = CLIENT_PENDING
            self.client_description = "No tasks have started"

    def advance(self) -> None:
        """Move the lifecycle on (start/kill tasks). Re-entrant calls are folded into one more pass."""
        with self._lock:
            if self._advancing:
                self._dirty = True
                return
            self._advancing = True
        try:
            while True:
                with self._lock:
                    self._dirty = False
                self._advance_once()
                with self._lock:
                    if not self._dirty:
                        self._advancing = False
                        return
        except BaseException:
            with self._lock:
                self._advancing = False
            raise

    def _advance_once(self) -> None:
        if self.detached or self._done.is_set():
            return
        if self.desired_status == "run" and self.wait_for is not None:
            if not self.wait_for.terminal:
                return  # started again when the previous allocation is done (Agent.alloc_finished)
            self.wait_for = None
            if self._ports_deferred:
                self._ports_deferred = False
                if not self._allocate_ports():
                    self.agent.alloc_finished(self)
                    return
                self.persist(wait=False)
        rs = list(self.runners.values())
        pre = [r for r in rs if r.lifecycle == "prestart"]
        main = [r for r in rs if r.lifecycle == ""]
        poststart = [r for r in rs if r.lifecycle == "poststart"]
        poststop = [r for r in rs if r.lifecycle == "poststop"]
        others = [r for r in rs if r.lifecycle != "poststop"]
        if self._killing_all:
            self._kill_next_phase(others)
        else:
            failed = next((r for r in others if r.dead and r.state.failed), None)
            leader = next((r for r in others if r.task.leader and r.dead), None)
            if self.desired_status != "run":
                self._kill_all(others, None)
            elif failed is not None:
                self._kill_all(others, TaskEvent.sibling_failed(failed.name))
            elif leader is not None:
                self._kill_all(others, TaskEvent.new(ev.LEADER_DEAD, fails_task=False))
            elif main and all(r.dead for r in main):
                self._kill_all(others, TaskEvent.new(ev.MAIN_DEAD))
        if not self._killing_all:
            for r in pre:
                r.start()
            ready = all((r.dead and not r.state.failed) if not r.sidecar else r.started_once for r in pre)
            if ready:
                for r in main:
                    r.start()
                if main and all(r.started_once or r.dead for r in main):
                    for r in poststart:
                        r.start()
        if all(r.dead for r in others):
            for r in poststop:
                if self.desired_status == "run" or not r.started:
                    r.start()
        if all(r.dead for r in rs) and not any(r.active for r in rs):
            self._finish()

    def _kill_all(self, runners: list[TaskRunner], event: TaskEvent | None, *, force: bool = False) -> None:
        """Kill ``runners`` as Nomad's ``killTasks``: ``event`` (the reason) goes to every live one at
        once; then the leader is killed, then the other non-sidecar tasks, and the sidecars only once
        those are dead, so that a sidecar (a proxy, a log shipper) outlives the tasks it serves.
        ``force`` kills them all at once. The later phases are begun by :meth:`advance`."""
        self._killing_all = True
        if force:
            for r in runners:
                if not r.dead:
                    r.kill(event, force=True)
            return
        if event is not None:
            for r in runners:
                if not r.dead:
                    r.note_kill(event)
        self._kill_next_phase(runners)

    def _kill_next_phase(self, runners: list[TaskRunner]) -> None:
        """Kill the tasks of the first phase of ``runners`` with a live task; the next phase begins
        when they are all dead, or once they are past their kill deadline (logged)."""
        phases = _kill_phases(runners)
        for n, phase in enumerate(phases):
            live = [r for r in phase if not r.dead]
            if not live:
                continue
            fresh = [r for r in live if not r.kill_started]
            for r in fresh:
                r.kill()
            left = max(r.kill_deadline() for r in live) - time.monotonic()
            if left > 0:
                later = any(not r.dead for p in phases[n + 1:] for r in p)
                if fresh and later:  # one wake-up per phase, for a task that outlives its deadline
                    # (only when a later phase waits: 200 allocations stopping need no 200 timers)
                    timer = threading.Timer(left + 0.05, self.advance)
                    timer.daemon = True
                    timer.start()
                return
            if any(not r.dead and not r.kill_started for r in runners):  # once: before the next phase's kill
                log.warning("allocation %s: %s still not dead after their kill timeout; killing the next tasks",
                            self.alloc_id, ", ".join(sorted(r.name for r in live)))

    def _finish(self) -> None:
        if self._done.is_set():
            return
        self._done.set()
        self.agent.ports.release(self.alloc_id)
        self._update_status()
        self.persist()
        self.agent.alloc_finished(self)

    # ------------------------------------------------------------------ control
    def stop(self, description: str, *, force: bool = False) -> None:
        """Stop every task (poststop tasks still run, unless ``force``)."""
        with self._lock:
            if self.desired_status == "run":
                self.desired_status = "stop"
                self.desired_description = description
        self.persist()
        if force:
            self._kill_all(list(self.runners.values()), None, force=True)
        self.advance()

    def update_in_place(self, job: Job, job_api: dict[str, Any], group: TaskGroup, eval_id: str) -> None:
        """A non-destructive job update (count, restart policy, kill timeout, ...): this allocation
        keeps running, now of the new job version (as Nomad's in-place update). Queued for the next
        commit."""
        with self._lock:
            self.job = job
            self.job_api = job_api
            self.group = group
            self.eval_id = eval_id
            for t in group.tasks:
                r = self.runners.get(t.name)
                if r is not None:
                    r.task = t
                    try:  # the new restart policy applies from now on (the count so far is kept)
                        policy = RestartPolicy.coerce(t.restart)
                        policy.validate()
                    except Exception as e:
                        log.warning("restart policy of %s/%s not updated: %s", self.alloc_id, t.name, e)
                    else:
                        r.tracker.policy = policy
        self.persist(wait=False)

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def terminal(self) -> bool:
        return self._done.is_set()

    def detach(self) -> None:
        self.detached = True


def _kill_phases(runners: list[TaskRunner]) -> list[list[TaskRunner]]:
    """The order of Nomad's ``killTasks``: the leader, the other non-sidecar tasks, the sidecars."""
    leader = [r for r in runners if r.task.leader]
    rest = [r for r in runners if not r.task.leader]
    return [leader, [r for r in rest if not r.sidecar], [r for r in rest if r.sidecar]]
