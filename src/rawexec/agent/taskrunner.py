"""One task of an allocation, run with Nomad's client semantics (facts §5, §6).

A :class:`TaskRunner` owns one thread while the task is active: build the task dir and env,
download artifacts, interpolate the driver config, start through :class:`rawexec.Driver`, wait,
record ``Terminated``, ask the restart tracker, and loop or finish. Every state change is
persisted (task state, restart counters, the driver handle) in one transaction before it is
acted on, so an agent killed at any moment re-attaches (:meth:`TaskRunner.recover`) instead of
starting a second copy.
"""

from __future__ import annotations

import _thread
import json
import logging
import os
import signal as _signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rawexec.agent import events as ev
from rawexec.agent.events import TaskEvent, TaskState
from rawexec.agent.flag import DoneFlag, SlimCondition
from rawexec.agent.restarts import RestartTracker
from rawexec.driver import TaskConfig, TaskHandle
from rawexec.driver.prepare import build_task_dirs
from rawexec.errors import (
    ArtifactError,
    DriverDisabledError,
    InvalidConfigError,
    RawExecError,
    TaskNotFoundError,
)
from rawexec.types import ExitResult

if TYPE_CHECKING:
    from rawexec.agent.allocrunner import AllocRunner
    from rawexec.artifacts.getter import Progress
    from rawexec.jobspec import Task

__all__ = ["ArtifactProgress", "TaskRunner", "kill_strays", "kill_strays_of"]

log = logging.getLogger("rawexec.agent")

_KILL_MARGIN_S = 5.0
"""After its kill timeout a task gets SIGKILL; the margin for that and for its runner to see it."""


@dataclass
class ArtifactProgress:
    """The latest download progress of a task's artifacts (for the live view)."""

    source: str = ""
    phase: str = ""
    bytes: int = 0
    total: int | None = None
    done: bool = False


def kill_strays(alloc_id: str, task: str) -> int:
    """Kill processes of a task whose start was not recorded (agent died mid-start): found by the
    ``NOMAD_ALLOC_ID``/``NOMAD_TASK_NAME`` pair in their environment. Returns how many were killed."""
    return kill_strays_of([(alloc_id, task)])


def kill_strays_of(tasks: list[tuple[str, str]]) -> int:
    """:func:`kill_strays` for several (alloc id, task name) pairs with one look at ``/proc``."""
    if not tasks:
        return 0
    wanted = {(f"NOMAD_ALLOC_ID={a}".encode(), f"NOMAD_TASK_NAME={t}".encode()) for a, t in tasks}
    killed = 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        alloc = next((e for e in env if e.startswith(b"NOMAD_ALLOC_ID=")), None)
        if alloc is None:
            continue
        if (alloc, next((e for e in env if e.startswith(b"NOMAD_TASK_NAME=")), b"")) in wanted:
            try:
                os.kill(int(name), _signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


class TaskRunner:
    """Runs one task of an allocation. Thread-safe; the alloc runner drives it."""

    def __init__(self, alloc: AllocRunner, task: Task, *, lifecycle: str, sidecar: bool) -> None:
        self.alloc = alloc
        self.task = task
        self.name = task.name
        self.lifecycle = lifecycle  # "prestart" | "poststart" | "poststop" | "" (main)
        self.sidecar = sidecar
        self.state = TaskState()
        self.tracker = RestartTracker(task.restart, alloc.job.type, lifecycle=lifecycle or None, sidecar=sidecar)
        self.attempt = 0
        self.task_id = ""  # the driver's id of the current attempt
        self.reserved_id = ""
        """The first attempt's id, recorded with the allocation before any start: that first start
        needs no commit of its own before the process exists (see :meth:`reserve_first_id`)."""
        self.handle: TaskHandle | None = None
        self.restart_at = 0.0  # wall time of a pending restart
        self.progress: ArtifactProgress | None = None
        self.started_once = False
        self._cond = SlimCondition()
        self._launched = False
        self._done_evt = DoneFlag()
        self._kill_reason: TaskEvent | None = None
        self._killing = False
        self.kill_started = 0.0
        """Monotonic time of the first :meth:`kill` (0: never killed); see :meth:`kill_deadline`."""
        self._force = False
        self._restart_requested = False
        self._dir_built = False
        self._finished = False
        self._stop_sent = False
        # A stop that came while re-attaching (the task runs, the driver does not know it yet):
        # its reason, sent once re-attached. None: no stop waiting.
        self._stop_pending: str | None = None

    # ------------------------------------------------------------------ persisted form
    def to_record(self) -> dict[str, Any]:
        return {"state": self.state.to_dict(), "attempt": self.attempt, "task_id": self.task_id,
                "reserved_id": self.reserved_id,
                "restart": self.tracker.to_dict(),
                "restart_at": self.restart_at, "started_once": self.started_once}

    def to_record_json(self) -> str:
        """:meth:`to_record` as JSON text (the events' parts are encoded once per event)."""
        head = json.dumps({"attempt": self.attempt, "task_id": self.task_id, "reserved_id": self.reserved_id,
                           "restart": self.tracker.to_dict(),
                           "restart_at": self.restart_at, "started_once": self.started_once},
                          separators=(",", ":"), allow_nan=False)
        return head[:-1] + ',"state":' + self.state.record_json() + "}"

    def load_record(self, rec: dict[str, Any]) -> None:
        self.state = TaskState.from_dict(rec["state"])
        self.attempt = int(rec.get("attempt", 0))
        self.task_id = str(rec.get("task_id", ""))
        self.reserved_id = str(rec.get("reserved_id", ""))
        if rec.get("restart"):
            self.tracker.restore(rec["restart"])
        self.restart_at = float(rec.get("restart_at", 0.0))
        self.started_once = bool(rec.get("started_once", False))
        self._dir_built = self.started_once  # Nomad's task_dir hook is done once per task

    def reserve_first_id(self) -> None:
        """Called for a new allocation before its first commit (which records it): the id the first
        start will use. A start with the reserved id skips the pre-start commit; after a crash, the
        agent kills any process of a task that has a reserved id but no recorded start
        (:func:`kill_strays_of`) before starting it."""
        self.reserved_id = f"{self.alloc.alloc_id}/{self.name}/{self.attempt + 1}"

    @property
    def start_unrecorded(self) -> bool:
        """Never recorded as started, but its first start may have begun (see :meth:`reserve_first_id`)."""
        return bool(self.reserved_id) and not self.task_id and not self.dead

    # ------------------------------------------------------------------ queries
    @property
    def dead(self) -> bool:
        return self.state.state == ev.TASK_DEAD

    @property
    def running(self) -> bool:
        return self.state.state == ev.TASK_RUNNING

    @property
    def active(self) -> bool:
        """The task's thread runs (started and not yet returned)."""
        return self._launched and not self._finished

    @property
    def started(self) -> bool:
        return self._launched

    # ------------------------------------------------------------------ state changes
    def _emit(self, event: TaskEvent | None, state: str | None = None, *, handle: bytes | None = None,
              drop_handle: bool = False, wait: bool = True, persist: bool = True) -> None:
        """Record an event and/or a state change; returns once it is committed (unless not ``wait``).
        ``persist=False`` only records it in memory: the next persisted change carries it."""
        with self._cond:
            if state is not None:
                self.state.set_state(state, event)
            elif event is not None:
                self.state.append_event(event)
        if persist:
            self.alloc.task_changed(self, handle=handle, drop_handle=drop_handle, wait=wait)

    def driver_message(self, message: str, annotations: dict[str, str]) -> None:
        self._emit(TaskEvent.new(ev.DRIVER_MESSAGE, driver_message=message, details=annotations), wait=False)

    def received(self) -> None:
        self._emit(TaskEvent.received())

    # ------------------------------------------------------------------ control (from the alloc runner / API)
    def start(self) -> None:
        """Start the task's thread (once)."""
        with self._cond:
            if self._launched or self.dead:
                return
            self._launched = True
        # _thread: no wait for the new thread to be scheduled (200 starts in a row stay cheap)
        _thread.start_new_thread(self._run_safe, ())

    def recover(self, handle: TaskHandle | None) -> None:
        """Resume after an agent restart: re-attach to the running task (or pick up a pending restart)."""
        with self._cond:
            if self._launched or self.dead:
                return
            self._launched = True
        _thread.start_new_thread(self._run_safe, (handle, True))

    def note_kill(self, event: TaskEvent) -> None:
        """Record why this task is going to be killed, before :meth:`kill` (the alloc runner tells
        every live task at once, then kills them in phases, as Nomad's). Once per task."""
        with self._cond:
            if self._kill_reason is not None or self._killing or self.dead:
                return
            self._kill_reason = event
        if event.type != ev.KILLING:
            self._emit(event)

    def kill_deadline(self) -> float:
        """Monotonic time by which a killed task should be dead: its shutdown delay and kill
        timeout from the first kill, plus a margin for the final SIGKILL (0: not killed)."""
        if not self.kill_started:
            return 0.0
        delay = 0.0 if self._force else max(self.task.shutdown_delay, self.alloc.group.shutdown_delay)
        timeout = 0.0 if self._force else self._kill_timeout()
        return self.kill_started + delay + timeout + _KILL_MARGIN_S

    def kill(self, event: TaskEvent | None = None, *, force: bool = False) -> None:
        """Stop the task (kill_signal, then kill_timeout, then SIGKILL); no restart afterwards.
        A task that never started is marked dead."""
        with self._cond:
            first = not self._killing
            self._killing = True
            if first:
                self.kill_started = time.monotonic()
            self._force = self._force or force
            announce = first and self._kill_reason is None  # else note_kill() told it already
            if event is not None and self._kill_reason is None:
                self._kill_reason = event
            self._cond.notify_all()
            never_started = not self._launched and not self.dead
            if never_started:
                self._launched = self._finished = True  # never runs
                self._done_evt.set()
        if never_started:
            self._emit(None, ev.TASK_DEAD)
            return
        if announce and event is not None and event.type != ev.KILLING and not self.dead:
            self._emit(event)
        if force and not first and self.task_id:
            try:
                self.alloc.driver.stop_task(self.task_id, timeout=0.0, signal="SIGKILL")
            except RawExecError:
                pass
        elif first:
            threading.Thread(target=self._stop_running, name=f"kill-{self.name}", daemon=True).start()

    def restart(self) -> None:
        """``alloc restart``: stop the running task and start it again at once (no policy count)."""
        with self._cond:
            if self.dead or self._killing:
                return
            self._restart_requested = True
            self._cond.notify_all()
        self._emit(TaskEvent.new(ev.RESTART_SIGNAL, restart_reason="User requested restart"))
        self._stop_current(reason="")

    def signal(self, sig: str) -> None:
        if not self.running or not self.task_id:
            from rawexec.errors import TaskStateError

            raise TaskStateError(f'task "{self.name}" is not running')
        self._emit(TaskEvent.signaling(sig, "User requested signal"))
        self.alloc.driver.signal_task(self.task_id, sig)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the task's thread to finish (True at once when it never started)."""
        if not self._launched:
            return True
        return self._done_evt.wait(timeout)

    # ------------------------------------------------------------------ kill mechanics
    def _kill_timeout(self) -> float:
        return min(self.task.kill_timeout, self.alloc.config.client.max_kill_timeout)

    def _stop_running(self) -> None:
        delay = max(self.task.shutdown_delay, self.alloc.group.shutdown_delay)
        if delay > 0 and self.running:
            if self._force:
                self._emit(TaskEvent.new(ev.SKIPPING_SHUTDOWN_DELAY,
                                         message=f"Skipping shutdown delay of {ev.format_duration(delay)}"))
            else:
                self._emit(TaskEvent.new(ev.WAITING_SHUTDOWN_DELAY,
                                         message=f"Waiting for shutdown delay of {ev.format_duration(delay)}"))
                with self._cond:
                    self._cond.wait_for(lambda: self._force, delay)
        with self._cond:
            if not self.running or self._stop_sent:
                return  # not started yet: the run loop sees _killing and stops it once started
            self._stop_sent = True
        if self.running:
            self._emit(self._killing_event())
        self._stop_current(reason="kill")

    def _killing_event(self) -> TaskEvent:
        reason = self._kill_reason.kill_reason if self._kill_reason and \
            self._kill_reason.type == ev.KILLING else ""
        return TaskEvent.killing(self._kill_timeout(), reason)

    def _stop_current(self, reason: str) -> None:
        with self._cond:
            task_id = self.task_id
            if not task_id or not self.running:
                return
            if self.handle is None:  # re-attaching: the driver does not know the task yet
                self._stop_pending = reason
                return
        timeout = 0.0 if self._force else self._kill_timeout()
        try:
            self.alloc.driver.stop_task(task_id, timeout=timeout, signal=self.task.kill_signal or "SIGINT")
        except TaskNotFoundError:
            pass
        except RawExecError as e:
            log.warning("stopping task %s failed: %s", task_id, e)

    # ------------------------------------------------------------------ the run loop
    def _run_safe(self, handle: TaskHandle | None = None, recovering: bool = False) -> None:
        try:
            self._run(handle, recovering)
        except Exception as e:  # a bug must not leave the task "running" forever
            if self.alloc.detached:
                return
            log.exception("task runner %s/%s crashed", self.alloc.alloc_id, self.name)
            self._emit(TaskEvent.new(ev.HOOK_FAILED, message=f"task runner error: {e}", fails_task=True),
                       ev.TASK_DEAD)
        finally:
            self._finished = True
            self._done_evt.set()
            if not self.alloc.detached:
                self.alloc.task_done(self)

    def _run(self, handle: TaskHandle | None, recovering: bool) -> None:
        attached = False
        if recovering:
            attached = self._reattach(handle)
            if not attached and self.restart_at > 0 and not self._sleep_until(self.restart_at):
                self._finish_killed()
                return
        while True:
            if self.alloc.detached:
                return
            if not attached:
                if self._killing:
                    self._finish_killed()
                    return
                result = self._start_once()
                if result is None:
                    return  # dead (start failed for good), state already recorded
                if result is False:
                    continue  # restart after a failed start
            attached = False
            exit_res = self._wait_exit()
            if exit_res is None:
                return  # detached
            if self._handle_exit(exit_res):
                continue
            return

    def _reattach(self, handle: TaskHandle | None) -> bool:
        """True when re-attached to a task started by an earlier agent."""
        if handle is None:
            n = kill_strays(self.alloc.alloc_id, self.name) if self.task_id else 0
            if n or self.state.state == ev.TASK_RUNNING:
                # started by the previous agent, which died before recording the driver handle
                log.warning("killed %d unrecorded process(es) of task %s/%s", n, self.alloc.alloc_id, self.name)
                self._emit(TaskEvent.new(ev.RESTORE_FAILED, message=f"no driver handle was recorded for the "
                                         f"last start; killed {n} unrecorded process(es), starting again"),
                           ev.TASK_PENDING)
            return False
        try:
            self.alloc.driver.recover_task(handle)
        except RawExecError as e:
            self._emit(TaskEvent.new(ev.RESTORE_FAILED, message=str(e)), drop_handle=True)
            kill_strays(self.alloc.alloc_id, self.name)
            res = ExitResult(exit_code=-1, err=f"failed to restore task: {e}")
            self._emit(TaskEvent.terminated(res.exit_code, err=res.err), ev.TASK_PENDING)
            self.task_id = ""
            return False
        self.task_id = handle.config.id
        with self._cond:
            self.handle = handle
            pending, self._stop_pending = self._stop_pending, None
        self.started_once = True
        if self.state.state != ev.TASK_RUNNING:
            self._emit(None, ev.TASK_RUNNING)
        if pending is not None:  # a stop came while re-attaching: it found no task to stop then
            self._stop_current(pending)
        return True

    def _sleep_until(self, wall: float) -> bool:
        """Wait for a restart delay; False when killed meanwhile."""
        with self._cond:
            while True:
                if self._killing:
                    return False
                if self._restart_requested:
                    self._restart_requested = False
                    return True
                left = wall - time.time()
                if left <= 0:
                    return True
                self._cond.wait(left)

    def _finish_killed(self) -> None:
        """Dead after a kill, with Nomad's ``Killing`` and ``Killed`` events: ``Killing`` is said
        here when no process was being stopped (killed in its restart delay, while downloading
        artifacts, before its start, or as it exited by itself), as Nomad's Kill() always says it."""
        self.restart_at = 0.0
        with self._cond:
            say_killing = not self._stop_sent
            self._stop_sent = True
        if say_killing:
            self._emit(self._killing_event(), persist=False)
        self._emit(TaskEvent.killed(), ev.TASK_DEAD)

    def _decide_after_failure(self, err: BaseException) -> bool | None:
        """After a failed start: False to try again (after the delay), None when the task is dead."""
        decision = self.tracker.set_start_error(err).get_state()
        ev_ = decision.event()
        if decision.restart:
            return self._schedule_restart(ev_, decision.delay)
        self._emit(ev_, ev.TASK_DEAD)
        return None

    def _schedule_restart(self, event: TaskEvent | None, delay: float) -> bool | None:
        with self._cond:
            killed = self._killing
        if killed:  # killed while its exit or failed start was being handled: no restart after a kill
            self._finish_killed()
            return None
        self.restart_at = time.time() + delay
        self._emit(event, ev.TASK_PENDING)
        if not self._sleep_until(self.restart_at):
            self._finish_killed()
            return None
        self.restart_at = 0.0
        return False

    def _start_once(self) -> bool | None:
        """Prestart hooks + driver start. True: started. False: retry. None: dead."""
        ar = self.alloc
        task = self.task
        if task.driver != "raw_exec":
            msg = f'driver "{task.driver}" not available on this node'
            self._emit(TaskEvent.driver_failure(msg))
            self._emit(TaskEvent.not_restarting("Error was unrecoverable"), ev.TASK_DEAD)
            return None
        with ar.agent.start_slots:  # a bounded number of starts at once: less contention, more throughput
            result = self._start_locked()
        if not isinstance(result, TaskHandle):
            return result
        # started: recorded outside the slot, so the next start does not wait for this commit
        self.handle = result
        self.started_once = True
        self._emit(TaskEvent.started(), ev.TASK_RUNNING, handle=result.dumps())
        with self._cond:
            killed_meanwhile = self._killing
        if killed_meanwhile:
            self._stop_running()
        return True

    def _start_locked(self) -> TaskHandle | bool | None:
        """Prestart hooks + driver start: the handle when started (the caller records it), else as
        :meth:`_start_once`."""
        ar = self.alloc
        task = self.task
        if not self._dir_built:
            self._emit(TaskEvent.task_setup("Building Task Directory"), persist=False)
            try:
                build_task_dirs(ar.alloc_dir, self.name)
            except (OSError, RawExecError) as e:
                self._emit(TaskEvent.setup_failure(f"failed to build task directory for {self.name!r}: {e}"),
                           ev.TASK_DEAD)
                return None
            self._dir_built = True
        try:
            env = ar.build_env(self)
        except RawExecError as e:
            self._emit(TaskEvent.setup_failure(str(e)), ev.TASK_DEAD)
            return None
        if task.artifacts:
            self._emit(TaskEvent.downloading_artifacts())
            try:
                self._fetch_artifacts(env.replace)
            except ArtifactError as e:
                if self._killing:  # the kill cancelled the download
                    self._finish_killed()
                    return None
                self._emit(TaskEvent.artifact_download_failed(str(e)))
                return self._decide_after_failure(e)
            finally:
                if self.progress is not None:
                    self.progress.done = True
        try:
            driver_config = env.parse_config(task.config)
        except InvalidConfigError as e:
            msg = str(e) if str(e).startswith("failed to parse config") else f"failed to parse config: {e}"
            self._emit(TaskEvent.failed_validation(msg))
            self._emit(TaskEvent.not_restarting("Error was unrecoverable"), ev.TASK_DEAD)
            return None
        with self._cond:
            if self._killing:
                self._finish_killed()
                return None
            self.attempt += 1
            self.task_id = f"{ar.alloc_id}/{self.name}/{self.attempt}"
            reserved = self.task_id == self.reserved_id  # recorded with the allocation already
        cfg = TaskConfig(id=self.task_id, name=self.name, alloc_id=ar.alloc_id, alloc_dir=ar.alloc_dir,
                         driver_config=driver_config, env=env.env, user=task.user, resources=task.resources,
                         logs=task.logs, job_name=ar.job.name or ar.job.id, task_group_name=ar.group.name)
        if not reserved:
            self._emit(None)  # persist the attempt's id before the process exists (stray detection)
        try:
            handle = ar.driver.start_task(cfg)
        except DriverDisabledError as e:
            self._emit(TaskEvent.driver_failure(str(e)))
            self._emit(TaskEvent.not_restarting("Error was unrecoverable"), ev.TASK_DEAD)
            return None
        except RawExecError as e:  # as Nomad: any StartTask error (bad command too) is a Driver Failure
            self._emit(TaskEvent.driver_failure(str(e)))
            return self._decide_after_failure(e)
        return handle

    def _fetch_artifacts(self, interpolate: Callable[[str], str]) -> None:
        """Download the task's artifacts; a kill cancels a download in flight (as Nomad's kill
        context does). Raises ArtifactError, recoverable (Nomad's artifact hook)."""
        from rawexec.artifacts.getter import fetch_artifact
        from rawexec.artifacts.task import hook_error

        ar = self.alloc
        self.progress = ArtifactProgress()
        task_dir = os.path.join(ar.alloc_dir, self.name)

        def on_progress(p: Progress) -> None:
            prog = self.progress
            if prog is not None:
                prog.source, prog.phase, prog.bytes, prog.total = p.source, p.phase, p.bytes, p.total

        for spec in self.task.artifacts:
            if self._killing:
                raise ArtifactError("task killed while downloading artifacts")
            try:
                fetch_artifact(spec, task_dir=task_dir, alloc_dir=ar.alloc_dir, config=ar.getter_config(),
                               progress=on_progress, interpolate=interpolate, task_user=self.task.user or None,
                               cancelled=lambda: self._killing)
            except ArtifactError as e:
                raise hook_error(e) from None

    def _wait_exit(self) -> ExitResult | None:
        task_id = self.task_id
        try:
            res = self.alloc.driver.wait_task(task_id)
        except TaskNotFoundError:
            res = ExitResult(exit_code=-1, err="task not found by the driver")
        if self.alloc.detached:
            return None
        return res

    def _handle_exit(self, res: ExitResult) -> bool:
        """Record the exit and decide; True to start again."""
        term = TaskEvent.terminated(res.exit_code, res.signal, oom_killed=res.oom_killed, err=res.err)
        task_id = self.task_id
        with self._cond:
            killing = self._killing
            restart_req = self._restart_requested
            self._restart_requested = False
        self._emit(term, ev.TASK_PENDING if not killing else None, drop_handle=True)
        try:
            self.alloc.driver.destroy_task(task_id, force=True)
        except RawExecError:
            pass
        self.handle = None
        if killing:
            self._finish_killed()
            return False
        if restart_req:
            decision = self.tracker.set_restart_triggered().get_state()
            self._emit(decision.event())
            return True
        decision = self.tracker.set_exit_result(res).get_state()
        if decision.restart:
            return self._schedule_restart(decision.event(), decision.delay) is False
        if decision.state == ev.NOT_RESTARTING:
            self._emit(decision.event(), ev.TASK_DEAD)
        elif not res.successful:
            self._emit(TaskEvent.not_restarting(decision.reason or "Task exceeded restart policy"),
                       ev.TASK_DEAD)
        else:
            self._emit(None, ev.TASK_DEAD)
        return False
