"""The single-node agent: jobs -> allocations (count) -> task runners over the raw_exec Driver.

State lives in the SQLite store in ``data_dir`` (jobs, allocations, task states, driver
handles); :meth:`Agent.start` re-attaches every task that was running when the previous agent
stopped or died, reports exits that happened meanwhile and continues restart policies.
Shapes returned here are Nomad's API JSON (PascalCase) so the HTTP API passes them through.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from rawexec.agent.agentconfig import AgentConfig
from rawexec.agent.allocrunner import CLIENT_FAILED, TERMINAL, AllocRunner, job_meta_key
from rawexec.agent.eventstream import Event, EventBroker, EventSubscription
from rawexec.agent.fshint import mark_top_dir
from rawexec.agent.memory import trim_malloc
from rawexec.agent.node import Node
from rawexec.agent.persist import Persister
from rawexec.agent.ports import PortAllocator
from rawexec.agent.state import StateStore
from rawexec.agent.taskrunner import kill_strays_of
from rawexec.driver import Driver, DriverConfig, ExecSession
from rawexec.errors import InvalidConfigError, NotFoundError, TaskStateError
from rawexec.jobspec import Job, TaskGroup, parse_json, to_api_json
from rawexec.jobspec.model import ReschedulePolicy

__all__ = ["Agent"]

log = logging.getLogger("rawexec.agent")


START_CONCURRENCY = 16
#: The start of the error of a register whose ``EnforceIndex`` does not hold (Nomad's text: clients
#: such as ``nomad job run -check-index`` look for it).
ENFORCE_INDEX_ERR = "Enforcing job modify index"
"""Task starts in flight at once (directory setup, env, artifacts, driver start)."""

EVALS_PER_JOB = 100
"""Evaluations kept (in memory and in the state store) per job: the newest."""
EVALS_MAX = 5000
"""Evaluations kept in memory in all: the oldest are forgotten first."""


class Agent:
    """A single-node Nomad-like agent running raw_exec tasks. Thread-safe."""

    def __init__(self, config: AgentConfig, *, dev: bool = False, driver_config: DriverConfig | None = None,
                 stop_tasks_with_driver: bool = False) -> None:
        """``stop_tasks_with_driver``: this agent's tasks stop when its process dies without stopping
        them (see :class:`DriverConfig`); for an agent whose data dir no later agent will use."""
        self.config = config.with_dev() if dev else config
        self._stop_tasks_with_driver = stop_tasks_with_driver
        self.dev = dev
        self.data_dir = self.config.require_data_dir()
        self._driver_config = driver_config
        self.node: dict[str, Any] = {}
        self.host_env = dict(os.environ)
        self._lock = threading.RLock()
        self._allocs: dict[str, AllocRunner] = {}
        self._jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self._evals: OrderedDict[str, dict[str, Any]] = OrderedDict()  # by ID, oldest first
        self._job_evals: dict[tuple[str, str], list[str]] = {}
        self._broker = EventBroker()
        self._started = False
        self._prepared = False
        self._closed = False
        self._purge_waiters: list[threading.Thread] = []
        self._reschedules: dict[str, threading.Timer] = {}  # by the failed allocation's ID
        self.start_slots = threading.BoundedSemaphore(START_CONCURRENCY)
        self.changes = 0
        """Bumped on every state commit: a cheap "anything new?" check for pollers."""
        self._commit_listeners: list[Callable[[], None]] = []
        self._list_lock = threading.Lock()
        self._alloc_index = 0  # state index of the latest commit that changed an allocation
        # GET /v1/allocations body per namespace (None: all), until the next change
        self._alloc_list: dict[str | None, tuple[int, bytes]] = {}
        # Nomad's table indexes for blocking queries: the latest commit that changed a job (or a job's
        # summary), each job summary's ModifyIndex, and the client status each summary last counted
        self._jobs_index = 0
        self._summary_index: dict[tuple[str, str], int] = {}
        self._summary_status: dict[str, str] = {}
        self.store: StateStore
        self.persister: Persister
        self.driver: Driver
        self.node_obj: Node
        from rawexec.artifacts.config import GetterConfig

        art = self.config.client.artifact
        self.getter_config = GetterConfig(**{f.name: getattr(art, f.name) for f in dataclasses.fields(art)
                                             if f.name in {g.name for g in dataclasses.fields(GetterConfig)}})
        self.ports = PortAllocator(min_port=self.config.client.min_dynamic_port,
                                   max_port=self.config.client.max_dynamic_port)

    # ------------------------------------------------------------------ lifecycle
    def _make_driver_config(self) -> DriverConfig:
        if self._driver_config is not None:
            return dataclasses.replace(self._driver_config, enabled=self.config.raw_exec_enabled,
                                       stop_tasks_with_driver=self._stop_tasks_with_driver)
        rc = self.config.raw_exec
        return DriverConfig(enabled=rc.enabled, no_cgroups=rc.no_cgroups, denied_host_uids=rc.denied_host_uids,
                            denied_host_gids=rc.denied_host_gids, denied_envvars=rc.denied_envvars,
                            cgroup_parent=self.config.cgroup_parent,
                            stop_tasks_with_driver=self._stop_tasks_with_driver)

    def prepare(self) -> None:
        """Create the driver and boot its spawner, touching no state (the data dir is not even
        looked at): ``rawexec run`` does this while it parses the job file. :meth:`start` does it
        when not done yet; :meth:`shutdown` of an agent never started releases it."""
        if self._prepared:
            return
        self.driver = Driver(self._make_driver_config())
        self._prepared = True
        # boot the driver's spawner now, in parallel with recovery and the first job's parsing
        spawner = getattr(self.driver, "_spawner", None)
        if spawner is not None and hasattr(spawner, "start"):
            threading.Thread(target=_quietly, args=(spawner.start,), name="spawner-warmup", daemon=True).start()

    def start(self) -> None:
        """Lock and open the state store, fingerprint the node, recover every allocation."""
        if self._started:
            return
        self.store = StateStore(self.data_dir)
        try:
            # the allocations' root, created as Nomad's client does at start, with ext4's placement
            # hint for independent trees (see rawexec.agent.fshint)
            alloc_root = os.path.join(self.data_dir, "alloc")
            try:
                os.makedirs(alloc_root, mode=0o755, exist_ok=True)
            except OSError:  # reported by the first allocation that needs it
                pass
            else:
                mark_top_dir(alloc_root)
            self.prepare()
            subscribe = getattr(self.driver, "subscribe_events", None)
            if subscribe is not None:
                subscribe(self._driver_event)
            fp = self.driver.fingerprint()
            self.node_obj = Node(self.config, self.store, health=str(fp.health),
                                 health_description=fp.description)
            self.node = self.node_obj.to_api()
            self.persister = Persister(self.store, self._committed, on_idle=_after_burst)
            for w in self.config.warnings:
                log.warning("%s", w)
            self._recover()
        except BaseException:
            if hasattr(self, "persister"):
                self.persister.close()
            self.store.close()
            raise
        self._started = True
        self.publish("Node", "NodeRegistration", self.node_obj.id, self.store.index(), {"Node": self.node})

    def _recover(self) -> None:
        for body in self.store.list_jobs():
            self._jobs[(body.get("Namespace", "default"), body["ID"])] = body
        self._recover_evals()
        handles = self.store.driver_handles()
        by_alloc: dict[str, dict[str, bytes]] = {}
        for (alloc_id, task), blob in handles.items():
            by_alloc.setdefault(alloc_id, {})[task] = blob
        runners = []
        jobs: dict[str, tuple[Job, dict[str, Any]]] = {}
        for body in self.store.list_allocs():
            try:
                key = str((body.get("RawExec") or {})["JobKey"])
                if key not in jobs:
                    text = self.store.get_meta(key)
                    if text is None:
                        raise InvalidConfigError(f"the job version {key} is missing from the state store")
                    api = json.loads(text)
                    jobs[key] = (job_from_api(api), api)
                job, job_api = jobs[key]
                ar = AllocRunner.restore(self, body, job, job_api, self.store.task_states(body["ID"]),
                                         by_alloc.get(body["ID"], {}))
            except Exception as e:
                log.error("cannot restore allocation %s: %s", body.get("ID"), e)
                continue
            self._allocs[ar.alloc_id] = ar
            runners.append(ar)
        self._alloc_index = self._jobs_index = self.store.index()
        # summaries' indexes never go back across a restart: at least their allocations' latest commits
        for (ns, job_id), body in self._jobs.items():
            self._summary_index[(ns, job_id)] = int(body.get("JobModifyIndex", 0))
        for ar in runners:
            self._summary_status[ar.alloc_id] = ar.client_status
            jkey = (ar.job.namespace, ar.job.id)
            self._summary_index[jkey] = max(self._summary_index.get(jkey, 0), ar.modify_index)
        # tasks whose first start may have begun without being recorded (the agent died in between):
        # kill what they left running before anything starts them (one look at /proc for all)
        unrecorded = [(ar.alloc_id, r.name) for ar in runners if ar.client_status not in TERMINAL
                      for r in ar.runners.values() if r.start_unrecorded]
        if unrecorded:
            n = kill_strays_of(unrecorded)
            if n:
                log.warning("killed %d unrecorded process(es) of %d task(s) that had not been recorded as "
                            "started", n, len(unrecorded))
        for ar in runners:  # a replacement not started yet waits for its previous allocation again
            prev = self._allocs.get(ar.previous_allocation) if ar.previous_allocation else None
            if prev is not None and ar.client_status not in TERMINAL and prev.client_status not in TERMINAL \
                    and not any(r.started_once or r.task_id for r in ar.runners.values()):
                ar.wait_for = prev
        for ar in runners:
            ar.resume()
        self._finish_registrations()
        for ar in runners:  # a reschedule that was due while no agent ran is done now
            if ar.reschedule_at and not ar.next_allocation and ar.client_status == CLIENT_FAILED:
                self._arm_reschedule(ar)
        for (ns, job_id), body in list(self._jobs.items()):
            if body.get("RawExecPurge"):
                self._schedule_purge(ns, job_id)

    def shutdown(self, *, stop_tasks: bool, timeout: float | None = None,
                 job: tuple[str, str] | None = None) -> None:
        """``stop_tasks``: stop tasks gracefully first (``rawexec run``): every task, or with ``job``
        (namespace, job id) only that job's. The others keep running and the next agent on this data
        dir re-attaches to them."""
        if not self._started:
            if self._prepared and not self._closed:  # prepared (or failed to start): release the driver
                self._closed = True
                self.driver.close()
            return
        if self._closed:
            return
        if stop_tasks:
            self.stop_all(job=job)
            limit = timeout if timeout is not None else self.config.client.max_kill_timeout + 30.0
            deadline = time.monotonic() + limit
            for ar in self._allocs_of(job):
                ar.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._closed = True
            for timer in self._reschedules.values():  # (kept in the allocations: the next agent re-arms them)
                timer.cancel()
            self._reschedules.clear()
            for ar in self._allocs.values():
                ar.detach()
        self.persister.close()
        self._broker.close()
        self.driver.close()
        self.store.close()

    def stop_all(self, *, force: bool = False, job: tuple[str, str] | None = None) -> None:
        """Stop every allocation, or with ``job`` (namespace, job id) that job's (``force``: SIGKILL at
        once, skip shutdown delays and poststop tasks)."""
        self._cancel_reschedules(job)
        for ar in self._allocs_of(job):
            if not ar.terminal:
                ar.stop("agent shutting down", force=force)

    def _cancel_reschedules(self, job: tuple[str, str] | None) -> None:
        """Drop the pending reschedules of ``job`` (of every job: None): their evaluations are canceled."""
        for ar in self._allocs_of(job):
            if ar.reschedule_at and not ar.next_allocation:
                self._reschedule(ar.alloc_id, cancel=True)

    def _allocs_of(self, job: tuple[str, str] | None) -> list[AllocRunner]:
        """Every allocation, or those of ``job`` (namespace, job id)."""
        with self._lock:
            allocs = list(self._allocs.values())
        if job is None:
            return allocs
        return [a for a in allocs if (a.job.namespace, a.job.id) == job]

    def __enter__(self) -> Agent:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(stop_tasks=True)

    # ------------------------------------------------------------------ events
    def publish(self, topic: str, type_: str, key: str, index: int, payload: dict[str, Any], *,
                namespace: str = "") -> None:
        """``namespace``: the object's (jobs, allocations); "" for objects outside namespaces (nodes)."""
        self._broker.publish(Event.of(topic, type_, key, index, payload, namespace))

    def publish_json(self, topic: str, type_: str, key: str, index: int, payload_json: str, *,
                     namespace: str = "", filter_keys: tuple[str, ...] = ()) -> None:
        """:meth:`publish` with the payload already encoded as a JSON object."""
        self._broker.publish(Event(topic, type_, key, index, payload_json, namespace, filter_keys))

    def _committed(self, stubs: list[tuple[AllocRunner, str]], idx: int) -> None:
        """Called by the persister after each commit, in commit order."""
        for ar, stub in stubs:
            ar.set_committed_stub(stub)
            if self._summary_status.get(ar.alloc_id) != ar.client_status:  # the job summary's counts moved
                self._summary_status[ar.alloc_id] = ar.client_status
                self._summary_index[(ar.job.namespace, ar.job.id)] = idx
                self._jobs_index = max(self._jobs_index, idx)
        self._allocs_changed(idx)
        self.changes += 1
        for ar, stub in stubs:
            ar.publish(idx, stub)
        for fn in self._commit_listeners:
            fn()

    def add_commit_listener(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` (on the writer thread; keep it short) after every state commit: lets a viewer
        sleep until something changed instead of polling :attr:`changes`."""
        self._commit_listeners.append(fn)

    def _jobs_changed(self, idx: int) -> None:
        """After a commit that wrote or deleted a job: move the jobs index, tell the listeners."""
        self._jobs_index = max(self._jobs_index, idx)
        for fn in self._commit_listeners:
            fn()

    def jobs_index(self) -> int:
        """The index of the latest change to any job or job summary (``X-Nomad-Index`` of ``/v1/jobs``)."""
        return max(self._jobs_index, 1)

    def _allocs_changed(self, idx: int) -> None:
        """Drop the cached allocation list (after the allocations' stubs were updated)."""
        with self._list_lock:
            self._alloc_index = max(self._alloc_index, idx)
            self._alloc_list = {}

    def _driver_event(self, event: Any) -> None:
        """A driver task event (OOM kill, lost shim, log write trouble) -> a ``Driver`` task event
        (called on a driver thread: recorded without waiting for the commit)."""
        ar = self._allocs.get(getattr(event, "alloc_id", ""))
        if ar is None or ar.detached:
            return
        r = ar.runners.get(getattr(event, "task_name", ""))
        if r is not None and r.task_id == getattr(event, "task_id", None):
            r.driver_message(str(event.message), dict(getattr(event, "annotations", {}) or {}))

    def events(self, index: int = 0) -> EventSubscription:
        return self._broker.subscribe(index)

    def alloc_finished(self, ar: AllocRunner) -> None:
        if ar.client_status == CLIENT_FAILED:
            self._plan_reschedule(ar)
        self._refresh_job_status(ar.job.namespace, ar.job.id)
        nxt = self._allocs.get(ar.next_allocation) if ar.next_allocation else None
        # the replacement waited for this one; before its first commit, its creator advances it
        if nxt is not None and nxt.wait_for is ar and nxt.committed_stub:
            nxt.advance()

    # ------------------------------------------------------------------ jobs
    def _job_key(self, job_id: str, namespace: str = "default") -> tuple[str, str]:
        return (namespace, job_id)

    def _job_warnings(self, job: Job) -> list[str]:
        out = []
        for g in job.groups:
            for t in g.tasks:
                if t.driver != "raw_exec":
                    out.append(f'task "{g.name}/{t.name}": driver "{t.driver}" not available on this node')
        dc = self.config.datacenter
        if job.datacenters and not any(fnmatch.fnmatchcase(dc, pattern) for pattern in job.datacenters):
            wanted = ", ".join(f'"{d}"' for d in job.datacenters)
            out.append(f'job datacenters [{wanted}] do not include this node\'s datacenter "{dc}": Nomad would '
                       "place nothing here; rawexec runs it anyway (set datacenter in the agent config, or use "
                       'datacenters = ["*"])')
        if not self.config.raw_exec_enabled and any(t.driver == "raw_exec" for g in job.groups for t in g.tasks):
            out.append("raw_exec is disabled on this node (enable it with plugin \"raw_exec\" "
                       "{ config { enabled = true } }, or run the agent with -dev)")
        return out

    def _check_count_can_fit(self, job: Job) -> None:
        """Refuse a group whose ``count`` could not run on this node whatever its resources: this
        agent places every allocation a job asks for (it has no resource feasibility check and no
        blocked evaluations: see the README), so a count like 100,000,000 would otherwise have it
        build that many allocations, in memory, in one request. The bound is the node's memory at
        Nomad's minimum of 10 MB per task, which no job can go below."""
        try:
            total_mb = int(self.node_obj.attributes.get("memory.totalbytes", "0")) // (1 << 20)
        except (AttributeError, ValueError):
            return
        if total_mb <= 0:
            return
        for g in job.groups:
            per_alloc = _MIN_TASK_MEMORY_MB * max(1, len(g.tasks))
            if g.count * per_alloc > total_mb:
                raise InvalidConfigError(
                    f'task group "{g.name}": count = {g.count} cannot run on this node: even at the '
                    f"minimum of {_MIN_TASK_MEMORY_MB} MB per task (resources.memory), {g.count} allocations of "
                    f"{len(g.tasks)} task(s) need {g.count * per_alloc} MB and the node has {total_mb} MB of memory; "
                    f"lower count (at most {total_mb // per_alloc} here)")

    def register_job(self, job: Job) -> dict[str, Any]:
        """Register (or update) a job, as Nomad's scheduler: allocations whose tasks are unchanged are
        kept (updated in place to the new version), missing ones placed, excess ones (highest index
        first) stopped; a destructive change (see :func:`_tasks_updated`) replaces the allocations.
        An unchanged job is a no-op."""
        self._require_started()
        self._check_count_can_fit(job)
        api = to_api_json(job)["Job"]
        key = self._job_key(job.id, job.namespace)
        warnings = self._job_warnings(job)
        eval_id = str(uuid.uuid4())
        with self._lock:
            prev = self._jobs.get(key)
            live = [a for a in self._allocs.values() if a.job.id == job.id and a.job.namespace == job.namespace
                    and not a.terminal and a.desired_status == "run"]
            unchanged = prev is not None and not prev.get("Stop") and _spec(prev) == _spec(api) and (
                live or job.type in ("batch", "sysbatch"))
            if unchanged and prev is not None:
                # Nomad evaluates an unchanged job too: the reply names an evaluation (recorded, so
                # /v1/evaluation/:id finds it) that places nothing; EvalCreateIndex 0 says so
                with self.store.transaction() as tx:
                    self._record_eval(tx, self._new_eval(eval_id, prev, "job-register", tx.bump()))
                return {"EvalID": eval_id, "EvalCreateIndex": 0, "JobModifyIndex": prev["JobModifyIndex"],
                        "Warnings": "\n".join(warnings), "Index": prev["ModifyIndex"]}
            # this registration places what is missing, a pending reschedule's replacement included
            self._cancel_reschedules(key)
            version = 0 if prev is None else int(prev.get("Version", 0)) + 1
            now = time.time_ns()
            api.update({"Version": version, "Stop": False, "Status": "pending", "StatusDescription": "",
                        "SubmitTime": now, "Stable": False})
            with self.store.transaction() as tx:
                idx = tx.index() + 1
                api["CreateIndex"] = prev["CreateIndex"] if prev else idx
                api["ModifyIndex"] = api["JobModifyIndex"] = idx
                tx.put_job(job.namespace, job.id, api, summary=self._job_stub(api))
                tx.put_meta(job_meta_key(api), json.dumps(api, separators=(",", ":")))
                # pending until the allocations it places are stored: an agent that dies in between
                # leaves it pending, and the next one finishes it (see _finish_registrations)
                ev = self._new_eval(eval_id, api, "job-register", idx)
                ev["Status"] = "pending"
                self._record_eval(tx, ev)
            self._jobs[key] = api
            self._summary_index[key] = idx
            self._jobs_changed(idx)
            new = self._plan(job, api, eval_id, live)
        self.publish("Job", "JobRegistered", job.id, idx, {"Job": api}, namespace=job.namespace)
        self._launch(new, ev)
        self._refresh_job_status(job.namespace, job.id, cause="PlanResult")
        return {"EvalID": eval_id, "EvalCreateIndex": idx, "JobModifyIndex": idx, "Warnings": "\n".join(warnings),
                "Index": idx}

    def _plan(self, job: Job, api: dict[str, Any], eval_id: str, live: list[AllocRunner]) -> list[AllocRunner]:
        """Apply a registration to the job's live allocations (under the lock): stop the excess,
        update in place the unchanged, and return the new ones (not started yet)."""
        keep, stop, place = _reconcile(live, job, api)
        for a in stop:
            a.stop("alloc not needed due to job update")
        for a, g in keep:
            a.update_in_place(job, api, g, eval_id)
        new: list[AllocRunner] = []
        for g, i, prev_alloc in place:
            ar = AllocRunner(self, str(uuid.uuid4()), job, api, g, i, eval_id=eval_id)
            if prev_alloc is not None:
                ar.previous_allocation = prev_alloc.alloc_id
                ar.wait_for = prev_alloc
                prev_alloc.next_allocation = ar.alloc_id
            self._allocs[ar.alloc_id] = ar
            new.append(ar)
        return new

    def _launch(self, new: list[AllocRunner], ev: dict[str, Any]) -> None:
        """Store the new allocations (one commit), mark the evaluation complete, start their tasks."""
        for ar in new:
            ar.start()
        self.persister.flush()  # every new allocation committed at once, then their tasks start
        with self._lock:
            if not self._closed:
                with self.store.transaction() as tx:
                    ev.update(Status="complete", ModifyIndex=tx.bump(), ModifyTime=time.time_ns())
                    self._record_eval(tx, ev)
        for ar in new:
            ar.advance()

    def _finish_registrations(self) -> None:
        """At start: a registration whose evaluation is still pending (the agent died between storing
        the job and storing its allocations) is applied again, as Nomad's scheduler re-processes an
        unfinished evaluation: what is missing is placed, nothing is placed twice."""
        for key, api in list(self._jobs.items()):
            ids = self._job_evals.get(key) or []
            ev = next((self._evals[i] for i in reversed(ids) if i in self._evals
                       and self._evals[i].get("TriggeredBy") == "job-register"), None)
            if ev is None or ev.get("Status") != "pending" or api.get("Stop"):
                continue
            log.warning("job %s: finishing a registration the previous agent did not (evaluation %s)",
                        api["ID"], ev["ID"])
            with self._lock:
                job = job_from_api(api)
                live = [a for a in self._job_allocs(job.id, job.namespace)
                        if not a.terminal and a.desired_status == "run"]
                new = self._plan(job, api, str(ev["ID"]), live)
            self._launch(new, dict(ev))
            self._refresh_job_status(*key, cause="PlanResult")

    def register_job_checked(self, job: Job, enforce_index: int | None = None) -> dict[str, Any]:
        """:meth:`register_job`; with ``enforce_index`` (Nomad's ``EnforceIndex`` + ``JobModifyIndex``)
        only if the job's current modify index is that one -- 0: only if the job does not exist yet."""
        if enforce_index is None:
            return self.register_job(job)
        with self._lock:  # re-entered by register_job: the check and the register are one step
            prev = self._jobs.get(self._job_key(job.id, job.namespace))
            if prev is not None and enforce_index == 0:
                raise InvalidConfigError(f"{ENFORCE_INDEX_ERR} 0: job already exists")
            if prev is not None and enforce_index != int(prev.get("JobModifyIndex", 0)):
                raise InvalidConfigError(f"{ENFORCE_INDEX_ERR} {enforce_index}: job exists with conflicting job "
                                         f"modify index: {prev.get('JobModifyIndex', 0)}")
            if prev is None and enforce_index != 0:
                raise InvalidConfigError(f"{ENFORCE_INDEX_ERR} {enforce_index}: job does not exist")
            return self.register_job(job)

    def _job_allocs(self, job_id: str, namespace: str = "default") -> list[AllocRunner]:
        return [a for a in self._allocs.values() if a.job.id == job_id and a.job.namespace == namespace]

    def _job_status(self, api: dict[str, Any]) -> str:
        allocs = self._job_allocs(api["ID"], api.get("Namespace", "default"))
        if any(not a.terminal for a in allocs):
            return "running"
        if not api.get("Stop") and any(a.reschedule_at and not a.next_allocation for a in allocs):
            return "pending"  # a replacement is due (a pending evaluation, in Nomad's terms)
        if api.get("Stop") or allocs:
            return "dead"
        return "pending"

    def _refresh_job_status(self, namespace: str, job_id: str, *, cause: str = "AllocationUpdated") -> None:
        """Store the job's status when its allocations changed it. As in Nomad, the change moves the
        job's ModifyIndex (not its JobModifyIndex) and is published on topic Job with the type of the
        state change that caused it: ``AllocationUpdated`` (a client update), ``PlanResult`` (the
        allocations placed for a registration)."""
        with self._lock:
            api = self._jobs.get((namespace, job_id))
            if api is None or self._closed:
                return
            status = self._job_status(api)
            if status == api.get("Status"):
                return
            api["Status"] = status
            try:
                with self.store.transaction() as tx:
                    idx = tx.index() + 1
                    api["ModifyIndex"] = idx
                    tx.put_job(namespace, job_id, api, summary=self._job_stub(api))
            except Exception as e:  # store closed during shutdown
                log.debug("job status not persisted: %s", e)
                return
            self._jobs_changed(idx)
        self.publish("Job", cause, job_id, idx, {"Job": api}, namespace=namespace)

    def _job_stub(self, api: dict[str, Any]) -> dict[str, Any]:
        return {
            "ID": api["ID"], "ParentID": "", "Name": api.get("Name", api["ID"]), "Namespace": api.get("Namespace"),
            "Datacenters": api.get("Datacenters"), "NodePool": api.get("NodePool", "default"),
            "Type": api.get("Type"), "Priority": api.get("Priority"), "Periodic": api.get("Periodic") is not None,
            "ParameterizedJob": api.get("ParameterizedJob") is not None, "Stop": api.get("Stop", False),
            "Status": api.get("Status", "pending"), "StatusDescription": api.get("StatusDescription", ""),
            "CreateIndex": api.get("CreateIndex", 0), "ModifyIndex": api.get("ModifyIndex", 0),
            "JobModifyIndex": api.get("JobModifyIndex", 0), "SubmitTime": api.get("SubmitTime", 0),
            "Version": api.get("Version", 0),
            # Nomad's JobListStub: Meta with omitempty
            **({"Meta": api["Meta"]} if api.get("Meta") else {}),
        }

    def list_jobs(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """The job list stubs, of one namespace or (None) of all."""
        self._require_started()
        with self._lock:
            out = []
            for (ns, job_id), api in sorted(self._jobs.items()):
                if namespace is not None and ns != namespace:
                    continue
                stub = self._job_stub(api)
                stub["Status"] = self._job_status(api)  # as of now (see get_job_api)
                stub["JobSummary"] = self.job_summary(job_id, namespace=ns)
                out.append(stub)
            return out

    def get_job(self, job_id: str, namespace: str = "default") -> Job | None:
        api = self.get_job_api(job_id, namespace)
        return None if api is None else job_from_api(api)

    def get_job_api(self, job_id: str, namespace: str = "default") -> dict[str, Any] | None:
        """The job in Nomad's API JSON (with Status, Version, indexes)."""
        self._require_started()
        with self._lock:
            api = self._jobs.get((namespace, job_id))
            if api is None:
                return None
            out = dict(api)
            # as of now, like the summary: the stored status follows a moment later (alloc_finished)
            out["Status"] = self._job_status(api)
            return out

    def job_summary(self, job_id: str, *, namespace: str = "default") -> dict[str, Any]:
        with self._lock:
            api = self._jobs.get((namespace, job_id))
            if api is None:
                raise NotFoundError(f"job not found: {job_id}")
            groups = {g["Name"]: {"Queued": 0, "Complete": 0, "Failed": 0, "Running": 0, "Starting": 0,
                                  "Lost": 0, "Unknown": 0} for g in api.get("TaskGroups") or []}
            for a in self._job_allocs(job_id, namespace):
                s = groups.setdefault(a.group.name, {"Queued": 0, "Complete": 0, "Failed": 0, "Running": 0,
                                                     "Starting": 0, "Lost": 0, "Unknown": 0})
                key = {"pending": "Starting", "running": "Running", "complete": "Complete",
                       "failed": "Failed"}.get(a.client_status, "Unknown")
                s[key] += 1
            return {"JobID": job_id, "Namespace": namespace, "Summary": groups,
                    "Children": {"Pending": 0, "Running": 0, "Dead": 0},
                    "CreateIndex": api.get("CreateIndex", 0),
                    "ModifyIndex": self._summary_index.get((namespace, job_id), api.get("JobModifyIndex", 0))}

    def stop_job(self, job_id: str, *, purge: bool = False, namespace: str = "default") -> dict[str, Any]:
        """Stop every allocation of the job; ``purge`` also forgets the job once they are gone."""
        self._require_started()
        key = (namespace, job_id)
        eval_id = str(uuid.uuid4())
        with self._lock:
            api = self._jobs.get(key)
            if api is None:
                raise NotFoundError(f"job not found: {job_id}")
            api["Stop"] = True
            if purge:
                api["RawExecPurge"] = True
            api["Status"] = self._job_status(api)
            with self.store.transaction() as tx:
                idx = tx.index() + 1
                api["ModifyIndex"] = api["JobModifyIndex"] = idx
                tx.put_job(namespace, job_id, api, summary=self._job_stub(api))
                self._record_eval(tx, self._new_eval(eval_id, api, "job-deregister", idx))
            self._jobs_changed(idx)
            allocs = [a for a in self._job_allocs(job_id, namespace) if not a.terminal]
        self.publish("Job", "JobDeregistered", job_id, idx, {"Job": api}, namespace=namespace)
        self._cancel_reschedules(key)
        for a in allocs:
            a.stop("alloc not needed as job is stopped")
        if purge:
            self._schedule_purge(namespace, job_id)
        self._refresh_job_status(namespace, job_id)
        return {"EvalID": eval_id, "EvalCreateIndex": idx, "JobModifyIndex": idx, "Index": idx}

    def _schedule_purge(self, namespace: str, job_id: str) -> None:
        def purge() -> None:
            for a in self._job_allocs(job_id, namespace):
                a.wait()
            self.persister.flush()
            with self._lock:
                if self._closed:
                    return
                api = self._jobs.get((namespace, job_id))
                if api is None or not api.get("RawExecPurge"):
                    return
                ids = [a.alloc_id for a in self._job_allocs(job_id, namespace)]
                with self.store.transaction() as tx:
                    for aid in ids:
                        tx.delete_alloc(aid)
                    tx.delete_job(namespace, job_id)
                    for v in range(int(api.get("Version", 0)) + 1):
                        tx.put_meta(job_meta_key({**api, "Version": v}), "{}")
                    tx.put_meta(_evals_meta_key(namespace, job_id), "[]")
                    idx = tx.index()
                for aid in ids:
                    self._allocs.pop(aid, None)
                    self._summary_status.pop(aid, None)
                self._jobs.pop((namespace, job_id), None)
                self._summary_index.pop((namespace, job_id), None)
            self._allocs_changed(idx)
            # Nomad publishes no Job event for the deletion: the stop already said JobDeregistered
            self._jobs_changed(idx)

        t = threading.Thread(target=purge, name=f"purge-{job_id}", daemon=True)
        t.start()
        self._purge_waiters.append(t)

    def wait_purged(self, timeout: float | None = None) -> None:
        for t in list(self._purge_waiters):
            t.join(timeout)

    # ------------------------------------------------------------------ allocations
    def _alloc(self, alloc_id_or_prefix: str) -> AllocRunner:
        self._require_started()
        with self._lock:
            ar = self._allocs.get(alloc_id_or_prefix)
            if ar is not None:
                return ar
            if not alloc_id_or_prefix:
                raise NotFoundError("alloc not found: an allocation id is required")
            matches = [a for i, a in self._allocs.items() if i.startswith(alloc_id_or_prefix)]
        if not matches:
            raise NotFoundError(f"alloc not found: {alloc_id_or_prefix}")
        if len(matches) > 1:
            raise InvalidConfigError(f'prefix "{alloc_id_or_prefix}" matched multiple allocations: '
                                     + ", ".join(sorted(a.alloc_id for a in matches)[:10]))
        return matches[0]

    def _committed_allocs(self, job_id: str | None = None, prefix: str = "",
                          namespace: str | None = None) -> list[AllocRunner]:
        """Allocations that were committed at least once, in creation order (the store's order), of
        one namespace or (None) of all."""
        allocs = [a for a in list(self._allocs.values())
                  if a.committed_stub and (job_id is None or a.job.id == job_id) and a.alloc_id.startswith(prefix)
                  and (namespace is None or a.job.namespace == namespace)]
        allocs.sort(key=lambda a: (a.create_index, a.alloc_id))
        return allocs

    def list_allocations(self, job_id: str | None = None, namespace: str | None = None) -> list[dict[str, Any]]:
        """Nomad's allocation list stubs (with TaskStates) as of the latest commit; with ``job_id``, of
        that job in ``namespace`` ("default" when not given)."""
        self._require_started()
        if job_id is not None and namespace is None:
            namespace = "default"
        return [json.loads(a.committed_stub) for a in self._committed_allocs(job_id, namespace=namespace)]

    def list_allocations_json(self, job_id: str | None = None) -> str:
        """Same as :meth:`list_allocations`, as JSON text (fast path)."""
        return self.allocations_json(job_id=job_id)[1].decode()

    def allocations_json(self, *, job_id: str | None = None, prefix: str = "", task_states: bool = True,
                         namespace: str | None = None) -> tuple[int, bytes]:
        """``GET /v1/allocations`` (and ``/v1/job/:id/allocations``): (state index, JSON body), joined
        from each allocation's stub as encoded once per commit of that allocation; of one namespace
        or (None) of all -- with ``job_id``, of that job in ``namespace`` ("default" when not given).
        The unfiltered list of a namespace is reused until the next change."""
        self._require_started()
        if job_id is not None and namespace is None:
            namespace = "default"
        plain = job_id is None and not prefix and task_states
        with self._list_lock:
            if plain and namespace in self._alloc_list:
                return self._alloc_list[namespace]
            idx = self._alloc_index
            allocs = self._committed_allocs(job_id, prefix, namespace)
            # one join into the final buffer: each extra copy of a multi-MB body costs more than the join
            parts = [b"["]
            for a in allocs:
                if task_states:
                    parts.append(a.committed_stub)
                else:
                    parts.append(a.committed_stub[:a.stub_cut])
                    parts.append(b"}")
                parts.append(b",")
            if allocs:
                parts.pop()
            parts.append(b"]")
            out = (idx, b"".join(parts))
            if plain:
                self._alloc_list[namespace] = out
            return out

    def node_allocations(self) -> tuple[int, list[dict[str, Any]]]:
        """``GET /v1/node/:id/allocations``: (state index, every committed allocation of every
        namespace in full, its job included), the index read first so it is never newer than the data."""
        self._require_started()
        with self._list_lock:
            idx = self._alloc_index
        return max(idx, 1), [a.full() for a in self._committed_allocs()]

    def allocation_runner(self, alloc_id_or_prefix: str) -> AllocRunner:
        return self._alloc(alloc_id_or_prefix)

    def get_allocation(self, alloc_id_or_prefix: str) -> dict[str, Any]:
        return self._alloc(alloc_id_or_prefix).full()

    def stop_allocation(self, alloc_id: str) -> dict[str, Any]:
        """``alloc stop``: stop the allocation and, as Nomad's migration, place a replacement (same
        name and index, ``PreviousAllocation`` set) unless the job is stopped, the allocation is
        already done or stopping, or the job is not a service/batch job."""
        ar = self._alloc(alloc_id)
        key = (ar.job.namespace, ar.job.id)
        eval_id = str(uuid.uuid4())
        new: AllocRunner | None = None
        with self._lock:
            api = self._jobs.get(key)
            job_api = api if api is not None else ar.job_api
            if (api is not None and not api.get("Stop") and not ar.terminal and ar.desired_status == "run"
                    and ar.job.type in ("service", "batch")):
                job = ar.job if ar.job_api.get("Version") == api.get("Version") else job_from_api(api)
                group = next((g for g in job.groups if g.name == ar.group.name), None)
                if group is not None:
                    new = AllocRunner(self, str(uuid.uuid4()), job, api, group, ar.index, eval_id=eval_id)
                    new.previous_allocation = ar.alloc_id
                    new.wait_for = ar
                    ar.next_allocation = new.alloc_id
                    self._allocs[new.alloc_id] = new
            with self.store.transaction() as tx:
                idx = tx.bump()
                self._record_eval(tx, self._new_eval(eval_id, job_api, "alloc-stop", idx))
        ar.stop("alloc is being migrated" if new is not None else "alloc was stopped by user")
        if new is not None:
            new.start()
            self.persister.flush()
            new.advance()
        self._refresh_job_status(*key)
        return {"EvalID": eval_id, "Index": idx}

    # ------------------------------------------------------------------ rescheduling
    def _plan_reschedule(self, ar: AllocRunner) -> None:
        """A failed allocation of a running service or batch job: as Nomad's scheduler, place a
        replacement (same name, ``PreviousAllocation``, the ``RescheduleTracker`` extended) after the
        delay of the group's ``reschedule`` policy, if the policy has an attempt left. The pending
        replacement is an evaluation (``alloc-failure``, ``WaitUntil``) named by the allocation's
        ``FollowupEvalID``; the job is "pending" meanwhile, and a stop of the job cancels it."""
        key = (ar.job.namespace, ar.job.id)
        with self._lock:
            api = self._jobs.get(key)
            if (api is None or api.get("Stop") or self._closed or ar.desired_status != "run" or ar.next_allocation
                    or ar.followup_eval_id or ar.job.type not in ("service", "batch")):
                return
            group = next((g for g in self._current_job(ar, api).groups if g.name == ar.group.name), None)
            if group is None:
                return
            now = time.time_ns()
            delay = reschedule_delay(group.reschedule, ar.reschedule_events, now)
            if delay is None:
                return
            eval_id = str(uuid.uuid4())
            ar.followup_eval_id = eval_id
            ar.reschedule_at = now + delay
            with self.store.transaction() as tx:
                ev = self._new_eval(eval_id, api, "alloc-failure", tx.bump())
                ev.update(Status="pending", WaitUntil=_rfc3339(ar.reschedule_at), PreviousEval=ar.eval_id,
                          StatusDescription="created for delayed rescheduling")
                self._record_eval(tx, ev)
        ar.persist(wait=False)
        self._arm_reschedule(ar)

    def _arm_reschedule(self, ar: AllocRunner) -> None:
        delay = max(0.0, (ar.reschedule_at - time.time_ns()) / 1e9)
        timer = threading.Timer(delay, self._reschedule, (ar.alloc_id,))
        timer.daemon = True
        with self._lock:
            if self._closed:
                return
            old = self._reschedules.pop(ar.alloc_id, None)
            if old is not None:
                old.cancel()
            self._reschedules[ar.alloc_id] = timer
        timer.start()

    def _reschedule(self, alloc_id: str, *, cancel: bool = False) -> None:
        """The delay is over: place the replacement, unless the job was stopped (or replaced)
        meanwhile; ``cancel``: do not place it (the job's allocations are being stopped)."""
        new: AllocRunner | None = None
        with self._lock:
            timer = self._reschedules.pop(alloc_id, None)
            if timer is not None:
                timer.cancel()
            ar = self._allocs.get(alloc_id)
            if self._closed or ar is None or ar.next_allocation or not ar.reschedule_at:
                return
            key = (ar.job.namespace, ar.job.id)
            api = self._jobs.get(key)
            job = None if api is None or api.get("Stop") or cancel else self._current_job(ar, api)
            group = None if job is None else next((g for g in job.groups if g.name == ar.group.name), None)
            ev = dict(self._evals.get(ar.followup_eval_id) or {})
            if job is not None and group is not None and api is not None:
                new = AllocRunner(self, str(uuid.uuid4()), job, api, group, ar.index, eval_id=ar.followup_eval_id)
                new.previous_allocation = ar.alloc_id
                new.reschedule_events = [*ar.reschedule_events, {
                    "RescheduleTime": time.time_ns(), "PrevAllocID": ar.alloc_id, "PrevNodeID": self.node_obj.id,
                    "Delay": next_delay(group.reschedule, ar.reschedule_events)}]
                ar.next_allocation = new.alloc_id
                self._allocs[new.alloc_id] = new
            ar.reschedule_at = 0
            if ev:
                with self.store.transaction() as tx:
                    idx = tx.bump()
                    ev.update(Status="complete" if new is not None else "canceled", ModifyIndex=idx,
                              ModifyTime=time.time_ns(), StatusDescription="" if new is not None else
                              "the job was stopped before the rescheduling delay was over")
                    self._record_eval(tx, ev)
        if new is not None:
            new.start()
            self.persister.flush()
            new.advance()
        ar.persist(wait=False)
        self._refresh_job_status(*key)

    def _current_job(self, ar: AllocRunner, api: dict[str, Any]) -> Job:
        return ar.job if ar.job_api.get("Version") == api.get("Version") else job_from_api(api)

    # ------------------------------------------------------------------ evaluations
    def _new_eval(self, eval_id: str, api: dict[str, Any], triggered_by: str, idx: int) -> dict[str, Any]:
        """Nomad's Evaluation JSON for a scheduling pass done on the spot (so it is complete)."""
        now = time.time_ns()
        return {
            "ID": eval_id, "Namespace": api.get("Namespace", "default"), "Priority": api.get("Priority", 50),
            "Type": api.get("Type", "service"), "TriggeredBy": triggered_by, "JobID": api["ID"],
            "JobModifyIndex": api.get("JobModifyIndex", 0), "NodeID": "", "NodeModifyIndex": 0,
            "DeploymentID": "", "Status": "complete", "StatusDescription": "", "Wait": 0, "WaitUntil": None,
            "NextEval": "", "PreviousEval": "", "BlockedEval": "", "RelatedEvals": None, "FailedTGAllocs": None,
            "ClassEligibility": None, "EscapedComputedClass": False, "QuotaLimitReached": "",
            "AnnotatePlan": False, "QueuedAllocations": {g["Name"]: 0 for g in api.get("TaskGroups") or []},
            "LeaderACL": "", "SnapshotIndex": idx, "CreateIndex": idx, "ModifyIndex": idx,
            "CreateTime": now, "ModifyTime": now,
        }

    def _remember_eval(self, ev: dict[str, Any]) -> list[str]:
        """Keep ``ev`` in memory (the newest EVALS_PER_JOB per job, EVALS_MAX in all); the job's eval IDs."""
        key = (str(ev["Namespace"]), str(ev["JobID"]))
        ids = self._job_evals.setdefault(key, [])
        if ev["ID"] in self._evals and ev["ID"] in ids:  # an update (pending -> complete): same place
            self._evals[ev["ID"]] = ev
            return ids
        ids.append(ev["ID"])
        self._evals[ev["ID"]] = ev
        while len(ids) > EVALS_PER_JOB:
            self._evals.pop(ids.pop(0), None)
        while len(self._evals) > EVALS_MAX:
            old_id, old = self._evals.popitem(last=False)
            old_key = (str(old["Namespace"]), str(old["JobID"]))
            old_ids = self._job_evals.get(old_key, [])
            if old_id in old_ids:
                old_ids.remove(old_id)
            if not old_ids:
                self._job_evals.pop(old_key, None)
        return ids

    def _record_eval(self, tx: Any, ev: dict[str, Any]) -> None:
        """Remember ``ev`` and store its job's evaluations in ``tx`` (under the agent lock)."""
        ids = self._remember_eval(ev)
        tx.put_meta(_evals_meta_key(ev["Namespace"], ev["JobID"]),
                    json.dumps([self._evals[i] for i in ids if i in self._evals], separators=(",", ":")))

    def _recover_evals(self) -> None:
        found: list[dict[str, Any]] = []
        for ns, job_id in self._jobs:
            text = self.store.get_meta(_evals_meta_key(ns, job_id))
            try:
                items = json.loads(text) if text else []
            except ValueError as e:
                log.warning("evaluations of job %s not restored: %s", job_id, e)
                continue
            found.extend(ev for ev in items if isinstance(ev, dict) and "ID" in ev)
        for ev in sorted(found, key=lambda e: int(e.get("CreateIndex", 0))):
            self._remember_eval(ev)

    def get_evaluation(self, eval_id: str) -> dict[str, Any]:
        """One evaluation (``GET /v1/evaluation/:id``)."""
        self._require_started()
        with self._lock:
            ev = self._evals.get(eval_id)
        if ev is None:
            raise NotFoundError("eval not found")
        return dict(ev)

    def list_evaluations(self, job_id: str | None = None, namespace: str = "default") -> list[dict[str, Any]]:
        """Evaluations, oldest first: all of them, or one job's (``GET /v1/evaluations``,
        ``GET /v1/job/:id/evaluations``)."""
        self._require_started()
        with self._lock:
            if job_id is None:
                return [dict(e) for e in self._evals.values()]
            return [dict(self._evals[i]) for i in self._job_evals.get((namespace, job_id), []) if i in self._evals]

    def evaluation_allocations(self, eval_id: str) -> list[dict[str, Any]]:
        """The allocations an evaluation placed or updated (``GET /v1/evaluation/:id/allocations``)."""
        ev = self.get_evaluation(eval_id)
        return [json.loads(a.committed_stub) for a in self._committed_allocs(str(ev["JobID"]))
                if a.eval_id == eval_id and a.job.namespace == ev["Namespace"]]

    def job_versions(self, job_id: str, namespace: str = "default") -> list[dict[str, Any]]:
        """Every stored version of the job, newest first (the current one as :meth:`get_job_api`)."""
        cur = self.get_job_api(job_id, namespace)
        if cur is None:
            raise NotFoundError(f"job versions not found: {job_id}")
        out = [cur]
        for v in range(int(cur.get("Version", 0)) - 1, -1, -1):
            text = self.store.get_meta(job_meta_key({**cur, "Version": v}))
            old = json.loads(text) if text else None
            if old:
                out.append(old)
        return out

    def _runner(self, ar: AllocRunner, task: str) -> Any:
        r = ar.runners.get(task)
        if r is None:
            raise NotFoundError(f'task "{task}" not found in allocation {ar.alloc_id}')
        return r

    def signal_allocation(self, alloc_id: str, signal: str, task: str | None = None) -> None:
        ar = self._alloc(alloc_id)
        from rawexec.driver.prepare import parse_signal

        parse_signal(signal or "SIGKILL")
        runners = [self._runner(ar, task)] if task else [r for r in ar.runners.values() if r.running]
        if not runners:
            raise TaskStateError(f"allocation {ar.alloc_id} has no running task to signal")
        for r in runners:
            r.signal(signal or "SIGKILL")

    def restart_allocation(self, alloc_id: str, task: str | None = None, all_tasks: bool = False) -> None:
        ar = self._alloc(alloc_id)
        if ar.terminal:
            raise TaskStateError(f"allocation {ar.alloc_id} is not running")
        runners = [self._runner(ar, task)] if task else [r for r in ar.runners.values() if r.running]
        for r in runners:
            if not r.running:
                raise TaskStateError(f'task "{r.name}" is not running')
            r.restart()

    def allocation_stats(self, alloc_id: str) -> dict[str, Any]:
        ar = self._alloc(alloc_id)
        tasks: dict[str, Any] = {}
        ts = time.time_ns()
        for name, r in ar.runners.items():
            if not r.running or not r.task_id:
                continue
            try:
                u = self.driver.task_stats(r.task_id)
            except Exception:
                continue
            api = _usage_api(u)
            tasks[name] = api
            ts = max(ts, api["Timestamp"])
        return {"ResourceUsage": _sum_usage([t["ResourceUsage"] for t in tasks.values()]),
                "Tasks": tasks, "Timestamp": ts}

    def alloc_dir(self, alloc_id: str) -> str:
        return self._alloc(alloc_id).alloc_dir

    def exec_task(self, alloc_id: str, task: str, command: list[str], tty: bool, rows: int = 0, cols: int = 0
                  ) -> ExecSession:
        ar = self._alloc(alloc_id)
        r = self._runner(ar, task)
        if not r.running or not r.task_id:
            raise TaskStateError(f'task "{task}" is not running')
        return self.driver.exec_task_streaming(r.task_id, command, tty=tty, rows=rows, cols=cols)

    # ------------------------------------------------------------------ helpers
    def _require_started(self) -> None:
        if not self._started:
            raise TaskStateError("the agent is not started; call start() first")


def _after_burst() -> None:
    """Once the state writes of a burst (many starts or exits) are over: return freed heap pages."""
    trim_malloc()


def _quietly(fn: Any) -> None:
    try:
        fn()
    except Exception as e:  # the first start_task reports it properly
        log.debug("spawner warm-up failed: %s", e)


_SERVER_FIELDS = frozenset({"Version", "Stop", "Status", "StatusDescription", "SubmitTime", "Stable", "CreateIndex",
                            "ModifyIndex", "JobModifyIndex", "RawExecPurge"})


def job_from_api(api: dict[str, Any]) -> Job:
    """The job model from its stored API JSON (the server-set fields dropped)."""
    return parse_json({"Job": {k: v for k, v in api.items() if k not in _SERVER_FIELDS}})


def _evals_meta_key(namespace: str, job_id: str) -> str:
    """The state-store meta key holding a job's evaluations (a JSON list, oldest first)."""
    return f"evals:{namespace}:{job_id}"


def _combined_meta(api: dict[str, Any], group: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    return {**(api.get("Meta") or {}), **(group.get("Meta") or {}), **(task.get("Meta") or {})}


def _port_map(networks: Any) -> list[dict[str, Any]]:
    """Networks with dynamic port values blanked (an allocated value is no change)."""
    out = []
    for net in networks or []:
        n = dict(net)
        n["DynamicPorts"] = [{**p, "Value": -1} for p in n.get("DynamicPorts") or []]
        out.append(n)
    return out


_TASK_DESTRUCTIVE = ("Driver", "User", "Config", "Env", "Artifacts", "Vault", "Templates", "Lifecycle",
                     "Identity", "Identities", "VolumeMounts", "Kind", "CSIPluginConfig")


def _tasks_updated(old: dict[str, Any], new: dict[str, Any], group_name: str) -> bool:
    """Whether group ``group_name`` changed destructively between two job versions (API JSON), after
    Nomad's ``tasksUpdated``: tasks added or removed, ephemeral disk, networks (dynamic port values
    aside), volumes, and per task its driver, user, config, env, artifacts, templates, vault,
    lifecycle, identities, volume mounts, combined job/group/task meta, resources and whether logs are
    disabled. Count, restart/reschedule/update policies, constraints, services, kill timeout/signal and
    shutdown delay are not: those allocations are updated in place."""
    a = next((g for g in old.get("TaskGroups") or [] if g.get("Name") == group_name), None)
    b = next((g for g in new.get("TaskGroups") or [] if g.get("Name") == group_name), None)
    if a is None or b is None:
        return True
    ta = {t.get("Name"): t for t in a.get("Tasks") or []}
    tb = {t.get("Name"): t for t in b.get("Tasks") or []}
    if ta.keys() != tb.keys():
        return True
    for field in ("EphemeralDisk", "Volumes", "Consul"):
        if a.get(field) != b.get(field):
            return True
    if _port_map(a.get("Networks")) != _port_map(b.get("Networks")):
        return True
    for name, x in ta.items():
        y = tb[name]
        if any(x.get(f) != y.get(f) for f in _TASK_DESTRUCTIVE):
            return True
        if _combined_meta(old, a, x) != _combined_meta(new, b, y):
            return True
        rx, ry = dict(x.get("Resources") or {}), dict(y.get("Resources") or {})
        if _port_map(rx.pop("Networks", None)) != _port_map(ry.pop("Networks", None)) or rx != ry:
            return True
        if bool((x.get("LogConfig") or {}).get("Disabled")) != bool((y.get("LogConfig") or {}).get("Disabled")):
            return True
    return False


def next_delay(policy: ReschedulePolicy, events: list[dict[str, Any]]) -> int:
    """The delay (ns) before the next reschedule, after ``events`` (Nomad's RescheduleTracker):
    ``constant`` the policy's delay; ``exponential`` the last delay doubled; ``fibonacci`` the sum
    of the last two; the last two capped at ``max_delay``."""
    base = int(policy.delay * 1e9)
    delays = [int(e.get("Delay", 0)) for e in events]
    if policy.delay_function == "exponential" and delays:
        d = delays[-1] * 2
    elif policy.delay_function == "fibonacci" and len(delays) >= 2:
        d = delays[-1] + delays[-2]
    else:
        d = base
    if policy.delay_function != "constant" and policy.max_delay > 0:
        d = min(d, int(policy.max_delay * 1e9))
    return max(d, 0)


def reschedule_delay(policy: ReschedulePolicy, events: list[dict[str, Any]], now: int) -> int | None:
    """The delay (ns) before a failed allocation is replaced, or None when its group's policy has no
    attempt left: ``attempts`` within the last ``interval`` (all of them when ``unlimited``)."""
    if not policy.unlimited:
        window = int(policy.interval * 1e9)
        recent = [e for e in events if now - int(e.get("RescheduleTime", 0)) < window]
        if policy.attempts <= 0 or len(recent) >= policy.attempts:
            return None
    return next_delay(policy, events)


def _rfc3339(ns: int) -> str:
    """Go's time.Time in JSON (RFC 3339 with nanoseconds, UTC)."""
    secs, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return text + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


#: Nomad's smallest ``resources.memory`` (MB): the job validator refuses less.
_MIN_TASK_MEMORY_MB = 10


def _reconcile(live: list[AllocRunner], job: Job, api: dict[str, Any]
               ) -> tuple[list[tuple[AllocRunner, TaskGroup]], list[AllocRunner],
                          list[tuple[TaskGroup, int, AllocRunner | None]]]:
    """What a job update does to the job's live allocations: (kept and updated in place, stopped,
    placed as (group, index, the allocation it replaces)). Per group: allocations changed
    destructively are replaced at their index; of the others the lowest indexes up to ``count`` are
    kept, the rest (highest index first) stopped; missing indexes (lowest first) are placed."""
    keep: list[tuple[AllocRunner, TaskGroup]] = []
    stop: list[AllocRunner] = []
    place: list[tuple[TaskGroup, int, AllocRunner | None]] = []
    names = {g.name for g in job.groups}
    by_group: dict[str, list[AllocRunner]] = {}
    for a in live:
        if a.group.name in names:
            by_group.setdefault(a.group.name, []).append(a)
        else:
            stop.append(a)
    for g in job.groups:
        survivors: list[AllocRunner] = []
        taken: set[int] = set()
        replaced: dict[int, AllocRunner] = {}
        destructive: dict[int, bool] = {}  # by id() of the allocation's job version: compared once
        for a in sorted(by_group.get(g.name, []), key=lambda a: (a.index, a.create_index)):
            changed = destructive.get(id(a.job_api))
            if changed is None:
                changed = destructive[id(a.job_api)] = _tasks_updated(a.job_api, api, g.name)
            if changed or a.index in taken:
                stop.append(a)
                replaced.setdefault(a.index, a)
            else:
                survivors.append(a)
                taken.add(a.index)
        stop.extend(reversed(survivors[g.count:]))
        survivors = survivors[:g.count]
        keep.extend((a, g) for a in survivors)
        used = {a.index for a in survivors}
        free = (i for i in itertools.count() if i not in used)
        for _ in range(g.count - len(survivors)):
            i = next(free)
            place.append((g, i, replaced.get(i)))
    return keep, stop, place


def _spec(api: dict[str, Any]) -> dict[str, Any]:
    """The user-visible part of a job (what decides whether a re-register changes anything)."""
    return {k: v for k, v in api.items() if k not in _SERVER_FIELDS}


_MEMORY_FIELDS = ("RSS", "Cache", "Swap", "Usage", "MaxUsage", "KernelUsage", "KernelMaxUsage")
_CPU_FIELDS = ("SystemMode", "UserMode", "TotalTicks", "ThrottledPeriods", "ThrottledTime", "Percent")


def _sum_usage(usages: list[dict[str, Any]]) -> dict[str, Any]:
    """An allocation's ResourceUsage as Nomad adds its tasks' (MemoryStats.Add, CpuStats.Add): every
    field summed, the Measured lists joined in order without repeats (null when no task reported)."""
    out: dict[str, Any] = {"MemoryStats": dict.fromkeys(_MEMORY_FIELDS, 0) | {"Measured": None},
                           "CpuStats": dict.fromkeys(_CPU_FIELDS, 0) | {"Measured": None}, "DeviceStats": None}
    for u in usages:
        for part, fields in (("MemoryStats", _MEMORY_FIELDS), ("CpuStats", _CPU_FIELDS)):
            acc, add = out[part], u.get(part) or {}
            for f in fields:
                acc[f] += add.get(f) or 0
            measured = list(acc["Measured"] or [])
            measured += [m for m in add.get("Measured") or [] if m not in measured]
            acc["Measured"] = measured
    return out


def _usage_api(u: Any) -> dict[str, Any]:
    """TaskResourceUsage -> Nomad's JSON."""
    def ru(r: Any) -> dict[str, Any]:
        m, c = r.memory_stats, r.cpu_stats
        return {"MemoryStats": {k: getattr(m, s, 0) for k, s in (
                    ("RSS", "rss"), ("Cache", "cache"), ("Swap", "swap"), ("Usage", "usage"),
                    ("MaxUsage", "max_usage"), ("KernelUsage", "kernel_usage"),
                    ("KernelMaxUsage", "kernel_max_usage"))} | {"Measured": list(getattr(m, "measured", ()))},
                "CpuStats": {k: getattr(c, s, 0) for k, s in (
                    ("SystemMode", "system_mode"), ("UserMode", "user_mode"), ("TotalTicks", "total_ticks"),
                    ("ThrottledPeriods", "throttled_periods"), ("ThrottledTime", "throttled_time"),
                    ("Percent", "percent"))} | {"Measured": list(getattr(c, "measured", ()))},
                "DeviceStats": None}

    return {"ResourceUsage": ru(u.resource_usage), "Timestamp": u.timestamp,
            "Pids": {pid: ru(r) for pid, r in (u.pids or {}).items()}}


