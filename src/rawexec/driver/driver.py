"""The raw_exec driver: Nomad's lifecycle verbs over per-task shims. Thread-safe."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import selectors
import signal as _signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rawexec.driver.config import DriverConfig, TaskDriverConfig, filter_env
from rawexec.driver.execstream import ExecSession
from rawexec.driver.handle import TaskRecord, Watcher, connect_shim, read_exit_record
from rawexec.driver.prepare import build_task_dirs, lookup_bin, parse_signal, resolve_user
from rawexec.driver.spawnclient import SpawnerClient, raise_nofile_limit
from rawexec.driver.types import (
    Capabilities,
    ExecResult,
    Fingerprint,
    HealthState,
    TaskConfig,
    TaskEvent,
    TaskHandle,
    TaskStatus,
)
from rawexec.errors import (
    DriverDisabledError,
    InvalidConfigError,
    LaunchError,
    TaskExistsError,
    TaskNotFoundError,
    TaskStateError,
    UnavailableError,
)
from rawexec.executor import procfs
from rawexec.executor.protocol import (
    RELEASE_SIGNAL,
    STOP_GATE,
    Channel,
    ProtocolError,
    exit_record_tmp,
    remove_socket,
)
from rawexec.logs.config import MB
from rawexec.logs.rotator import open_current
from rawexec.types import ExitResult, TaskResourceUsage

if TYPE_CHECKING:
    from rawexec.containment import StatsCollector

__all__ = ["Driver"]

log = logging.getLogger("rawexec.driver")

EXEC_OUTPUT_KEEP = 64 * 1024
_EXEC_DRAIN_S = 1.0
_STOP_MARGIN_S = 10.0


def _wait_gone(pid: int, rec: TaskRecord, timeout: float) -> None:
    """Wait (without polling) until the shim process is gone, through a pidfd."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return  # already gone
    try:
        if not rec.shim_alive:  # the pid may have been reused before we opened it
            return
        with selectors.DefaultSelector() as sel:
            sel.register(pidfd, selectors.EVENT_READ)
            if not sel.select(timeout):
                log.warning("shim %d of task %s still running %.0fs after kill", pid, rec.config.id, timeout)
    finally:
        os.close(pidfd)


def _wait_shim_done(rec: TaskRecord, timeout: float) -> bool:
    """Wait until the shim has done all it does for the task: it closes the wait connection last,
    after the cgroup, the socket and the logs (its process may then still be waiting at the stop
    gate). False when there is no wait connection to tell, or it did not close in ``timeout``."""
    with rec.cond:
        if rec.wait_ch is None and not rec.wait_closed:
            return False
        return rec.cond.wait_for(lambda: rec.wait_closed, timeout)


def _open_logs(spec: dict[str, Any]) -> list[int]:
    """Open the current log file of each "file" stream here, before there is a shim: one that
    cannot be opened fails the start cleanly (nothing runs yet). The fds go to the shim, whose
    rotators take them over; each stream's entry says which one it gets ("fd": its position in
    what the shim receives, after the control socket)."""
    fds: list[int] = []
    try:
        for key in ("stdout", "stderr"):
            desc = spec[key]
            if desc.get("mode") != "file":
                continue
            log_dir, base = desc["dir"], desc["base"]
            max_size = int(desc["max_file_size"]) * MB
            try:
                try:
                    fd, index, oldest = open_current(log_dir, base, max_size)
                except FileNotFoundError:  # normally there (the task dir hook made it)
                    os.makedirs(log_dir, exist_ok=True)
                    fd, index, oldest = open_current(log_dir, base, max_size)
            except OSError as e:
                raise LaunchError(f"failed to open the {key} log file in {log_dir}: {e.strerror or e}") from e
            fds.append(fd)
            desc.update(fd=len(fds), index=index, oldest=oldest)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


_GATE_WAIT_S = 0.05
_GATE_LINGER_S = 0.1
"""How long the stop gate stays held after the last stop in flight returned. An agent stopping a
job starts each task's stop on a thread of its own, one after another; when the machine is busy
with the stops, starting a thread takes milliseconds, and the stops in flight can all be done
before the next one starts. Without a linger, every such moment would let the shims waiting at
the gate go, and their clean-up and exits would run among the stops still to come."""


class _StopGate:
    """A shared ``flock`` on ``<state_dir>/.stop-gate`` held while any stop of this driver is in
    flight, and :data:`_GATE_LINGER_S` after. A stopped task's shim takes the lock exclusively,
    bounded, before its clean-up, and every shim before it exits: that work, a good part of what
    a stop costs, runs once no stop is waiting for the CPU instead of slowing the stops still
    running (a job of 200 tasks stopping at once). Best effort: without the file, shims go on at
    once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._in_flight = 0
        self._held = False  # the shared lock is held (in flight, or lingering after)
        self._idle_since = 0.0
        self._keeper: threading.Thread | None = None
        self._fd = -1
        self._path = ""
        self._closed = False

    def enter(self, state_dir: str) -> None:
        with self._lock:
            self._in_flight += 1
            if self._in_flight > 1:
                return
            try:
                path = os.path.join(state_dir, STOP_GATE)
                if path != self._path:
                    self._unlock()
                    if self._fd >= 0:
                        os.close(self._fd)
                        self._fd = -1
                    os.makedirs(state_dir, mode=0o700, exist_ok=True)
                    self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                    self._path = path
                if not self._held:
                    self._held = self._lock_shared()
            except OSError as e:
                log.debug("stop gate %s: %s", state_dir, e)

    def _lock_shared(self) -> bool:
        """A shim holds the gate exclusively for microseconds; a shim stopped (SIGSTOP) right then
        must not hold up every stop: wait at most _GATE_WAIT_S, then go on without the gate."""
        deadline = time.monotonic() + _GATE_WAIT_S
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    log.debug("stop gate busy for %.0f ms: stopping without it", _GATE_WAIT_S * 1000)
                    return False
                time.sleep(0.0005)

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._in_flight == 0 and self._held:
                self._idle_since = time.monotonic()
                if self._keeper is None:
                    self._keeper = threading.Thread(target=self._keep, name="rawexec-stop-gate", daemon=True)
                    self._keeper.start()
                self._cond.notify()

    def _keep(self) -> None:
        """Let go of the lock once no stop has been in flight for :data:`_GATE_LINGER_S`."""
        with self._lock:
            while not self._closed:
                if not self._held or self._in_flight:
                    self._cond.wait()
                    continue
                left = self._idle_since + _GATE_LINGER_S - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._unlock()

    def _unlock(self) -> None:
        if self._held and self._fd >= 0:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            except OSError:
                pass
        self._held = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._unlock()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
                self._path = ""
            self._cond.notify_all()


class Driver:
    """Nomad's raw_exec driver as a Python object. Every method is synchronous and thread-safe."""

    name = "raw_exec"

    def __init__(self, config: DriverConfig | None = None) -> None:
        self.config = config or DriverConfig()
        self._tasks: dict[str, TaskRecord] = {}
        self._lock = threading.Lock()
        raise_nofile_limit()
        self._spawner = SpawnerClient()
        self._watcher = Watcher()
        self._subscribers: list[Callable[[TaskEvent], None]] = []
        self._stop_gate = _StopGate()

    # ----------------------------------------------------------------- events
    def subscribe_events(self, callback: Callable[[TaskEvent], None]) -> Callable[[], None]:
        """Call ``callback`` (on a driver thread) for every task event; returns an unsubscribe."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, rec: TaskRecord, message: str, annotations: dict[str, str]) -> None:
        ev = TaskEvent(task_id=rec.config.id, alloc_id=rec.config.alloc_id, task_name=rec.config.name,
                       timestamp=datetime.now(UTC), message=message, annotations=annotations)
        with self._lock:
            subs = list(self._subscribers)
        for cb in subs:
            try:
                cb(ev)
            except Exception:
                log.exception("task event subscriber failed")

    # ----------------------------------------------------------------- plugin-level
    def set_config(self, config: DriverConfig) -> None:
        self.config = config

    def fingerprint(self) -> Fingerprint:
        if not self.config.enabled:
            return Fingerprint(HealthState.UNDETECTED, "disabled", {})
        return Fingerprint(HealthState.HEALTHY, "Healthy", {"driver.raw_exec": True})

    def capabilities(self) -> Capabilities:
        return Capabilities()

    def close(self) -> None:
        """Release the spawner and the watcher thread. Running tasks live on (recover them later)."""
        self._spawner.close()
        self._watcher.close()
        self._stop_gate.close()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- helpers
    def _get(self, task_id: str) -> TaskRecord:
        with self._lock:
            rec = self._tasks.get(task_id)
        if rec is None:
            raise TaskNotFoundError(task_id)
        return rec

    def _key(self, task_id: str) -> str:
        return hashlib.sha256(task_id.encode()).hexdigest()[:24]

    def _cgroup_request(self, cfg: TaskConfig, tcfg: TaskDriverConfig) -> dict[str, Any] | None:
        if self.config.no_cgroups:
            return None
        parent = cfg.env.get("NOMAD_PARENT_CGROUP") or self.config.cgroup_parent
        res = cfg.resources
        create = {
            "alloc_id": cfg.alloc_id, "task_name": cfg.name, "parent": parent,
            "v1_override": dict(tcfg.cgroup_v1_override) or None, "v2_override": tcfg.cgroup_v2_override or None,
            "resources": None if res is None else {"cpu": res.cpu, "memory": res.memory,
                                                   "memory_max": res.memory_max, "cores": res.cores,
                                                   "cpuset": list(res.cpuset)},
        }
        required = os.geteuid() == 0 or bool(tcfg.cgroup_v1_override or tcfg.cgroup_v2_override)
        return {"create": create, "required": required}

    def _create_cgroup(self, cfg: TaskConfig, tcfg: TaskDriverConfig) -> tuple[Any, list[str]]:
        """The task's cgroup, made here rather than in the fresh shim (whose every Python step costs
        page copies): (TaskCgroup or None, notes for the task's executor.out). Required (root, or
        overrides asked for) and impossible: LaunchError, as Nomad's executor fails."""
        req = self._cgroup_request(cfg, tcfg)
        if req is None:
            return None, []
        try:
            from rawexec.containment import TaskCgroup, detect

            system = detect(no_cgroups=False)
            if system.mode == "off":
                return None, []
            return TaskCgroup.create(system, **req["create"]), []
        except Exception as e:
            if req["required"]:
                raise LaunchError(f"unable to configure cgroups: {e}") from e
            return None, [f"cgroups unavailable, continuing without: {e}"]

    def _sink(self, cfg: TaskConfig, path: str | None, stream: str) -> dict[str, Any]:
        if cfg.logs.disabled or path == os.devnull:
            return {"mode": "null"}
        if path:
            return {"mode": "fifo", "path": path}
        return {"mode": "file", "dir": os.path.join(cfg.alloc_dir, "alloc", "logs"),
                "base": f"{cfg.name}.{stream}", "max_files": cfg.logs.max_files,
                "max_file_size": cfg.logs.max_file_size}

    # ----------------------------------------------------------------- lifecycle
    def start_task(self, cfg: TaskConfig) -> TaskHandle:
        """Validate, prepare and start the task in a new shim; return the handle to persist."""
        if not self.config.enabled:
            raise DriverDisabledError()
        with self._lock:
            if cfg.id in self._tasks:
                raise TaskExistsError(cfg.id)
            self._tasks[cfg.id] = placeholder = TaskRecord(cfg, {"pid": 0, "shim_pid": 0}, time.time())
        try:
            handle, rec, wait_ch = self._start(cfg)
        except BaseException:
            with self._lock:
                if self._tasks.get(cfg.id) is placeholder:
                    del self._tasks[cfg.id]
            raise
        with self._lock:
            self._tasks[cfg.id] = rec
        self._watcher.watch(rec, wait_ch)
        return handle

    def _start(self, cfg: TaskConfig) -> tuple[TaskHandle, TaskRecord, Channel | None]:
        if not cfg.id:
            raise InvalidConfigError("task id must not be empty")
        tcfg = TaskDriverConfig.decode(cfg.driver_config)
        if cfg.logs.max_files < 1:
            raise InvalidConfigError(f"minimum number of files is 1; got {cfg.logs.max_files}")
        if cfg.logs.max_file_size < 1:
            raise InvalidConfigError(f"minimum file size is 1MB; got {cfg.logs.max_file_size}")
        creds = resolve_user(cfg.user, self.config)
        build_task_dirs(cfg.alloc_dir, cfg.name)
        task_dir = cfg.task_dir
        binary = lookup_bin(task_dir, tcfg.command, cfg.env.get("PATH"), cfg.alloc_dir)
        env = filter_env(cfg.env, (*self.config.denied_envvars, *tcfg.denied_envvars))
        state_dir = self.config.state_dir
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        key = self._key(cfg.id)
        # An abstract socket (see protocol.sockaddr): a socket file would cost an inode, which
        # ext4 finds by scanning past every recently deleted one -- the costliest step of a start
        # on a busy file system. The random part keeps two starts of one task id apart.
        socket_path = f"@rawexec/{key}.{os.urandom(4).hex()}"
        state_path = os.path.join(state_dir, f"{key}.json")
        try:
            os.unlink(state_path)
        except FileNotFoundError:
            pass
        spec = {
            "task_id": cfg.id, "task_dir": task_dir, "argv": [binary, *tcfg.args], "env": env,
            "cwd": tcfg.work_dir or task_dir,
            "creds": None if creds is None else [creds.uid, creds.gid, list(creds.groups)],
            "stdout": self._sink(cfg, cfg.stdout_path, "stdout"),
            "stderr": self._sink(cfg, cfg.stderr_path, "stderr"),
            "socket_path": socket_path, "state_path": state_path,
            "oom_score_adj": tcfg.oom_score_adj,
            "stop_with_driver": self.config.stop_tasks_with_driver,
        }
        log_fds = _open_logs(spec)
        try:
            cgroup, notes = self._create_cgroup(cfg, tcfg)
            spec["cgroup"] = None if cgroup is None else {"state": cgroup.to_state()}
            spec["notes"] = notes
            try:
                reply, wait_ch = self._spawner.spawn(spec, log_fds)
            except BaseException:
                if cgroup is not None:
                    cgroup.destroy()
                raise
        finally:
            for fd in log_fds:
                os.close(fd)
        if not reply.get("ok"):
            if cgroup is not None:
                cgroup.destroy()  # idempotent: the shim may have removed it already
            kind, err = reply.get("kind"), str(reply.get("error"))
            if kind == "config":
                raise InvalidConfigError(err)
            raise LaunchError(err)
        driver_state = {
            "shim_pid": reply["shim_pid"], "shim_start": reply["shim_start"], "pid": reply["pid"],
            "pid_start": reply["pid_start"], "socket_path": socket_path, "state_path": state_path,
            "started_at": reply["started_at"], "cgroup": reply.get("cgroup"),
            # what its shim takes as "clean up now" (a shim of an older release has no handler:
            # that signal would kill it)
            "release_signal": int(RELEASE_SIGNAL),
        }
        rec = TaskRecord(cfg, driver_state, float(reply["started_at"]), on_event=self._emit)
        return TaskHandle(config=cfg, driver_state=driver_state), rec, wait_ch

    def recover_task(self, handle: TaskHandle | None) -> None:
        """Re-attach to a task started by another (possibly dead) driver process."""
        if handle is None:
            raise InvalidConfigError("handle cannot be nil")
        cfg = handle.config
        with self._lock:
            if cfg.id in self._tasks:
                return
        ds = dict(handle.driver_state)
        for k in ("shim_pid", "pid", "socket_path", "state_path", "started_at"):
            if k not in ds:
                raise InvalidConfigError(f"failed to decode task state from handle: missing {k!r}")
        rec = TaskRecord(cfg, ds, float(ds["started_at"]), on_event=self._emit)
        if not rec.shim_alive:
            exit_rec = read_exit_record(ds["state_path"])
            if exit_rec is not None:
                rec.set_exit(*exit_rec)
            else:
                rec.set_exit(ExitResult(exit_code=-1, err="failed to reattach to executor: the task's shim is "
                                        "gone and left no exit record"), None)
            with self._lock:
                self._tasks.setdefault(cfg.id, rec)
            return
        with self._lock:
            if cfg.id in self._tasks:
                return
            self._tasks[cfg.id] = rec
        self._watcher.watch(rec)

    def wait_task(self, task_id: str, timeout: float | None = None) -> ExitResult:
        """Block until the task exits; TimeoutError if ``timeout`` passes first."""
        rec = self._get(task_id)
        with rec.cond:
            if not rec.cond.wait_for(lambda: rec.exit is not None, timeout):
                raise TimeoutError(f"task {task_id} still running after {timeout}s")
        assert rec.exit is not None
        return rec.exit

    def _request(self, rec: TaskRecord, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
        ch = connect_shim(rec.driver_state["socket_path"], timeout)
        try:
            ch.send(msg)
            reply, _ = ch.recv()
            return reply
        except (ProtocolError, OSError) as e:
            raise UnavailableError(f"task shim did not answer: {e}") from e
        finally:
            ch.close()

    def stop_task(self, task_id: str, timeout: float = 5.0, signal: str | int | None = "SIGINT",
                  group: bool = False) -> None:
        """Send ``signal``, wait up to ``timeout`` s, then SIGKILL the task's whole tree. Bounded."""
        sig = parse_signal(signal)
        rec = self._get(task_id)
        self._stop_gate.enter(self.config.state_dir)
        try:
            self._stop(rec, sig, timeout, group)
        finally:
            self._stop_gate.leave()

    def _stop(self, rec: TaskRecord, sig: int, timeout: float, group: bool) -> None:
        msg = {"op": "stop", "signal": sig, "timeout": max(0.0, timeout), "group": group}
        reply: dict[str, Any] | None
        try:
            # On the open wait connection when there is one (no connect/accept per stop, and no
            # /proc read: an open connection is a live shim); else on a new one if the shim lives.
            reply = rec.request_on_wait(msg, timeout + _STOP_MARGIN_S)
            if reply is None and rec.shim_alive:
                reply = self._request(rec, msg, timeout + _STOP_MARGIN_S)
        except UnavailableError:
            # The shim may be on its way out (the task just ended and it is cleaning up), or
            # dead: give it a moment, then clean up whatever it left. Not holding the stop gate
            # meanwhile: the shim may be waiting at it before it exits.
            self._stop_gate.leave()
            try:
                _wait_gone(int(rec.driver_state["shim_pid"]), rec, 2.0)
            finally:
                self._stop_gate.enter(self.config.state_dir)
            if rec.shim_alive:
                raise
            self._kill_orphans(rec)
            reply = {"ok": True}
        if reply is None:  # no shim: kill what it left
            self._kill_orphans(rec)
        else:
            if not reply.get("ok"):
                raise LaunchError(f"executor Shutdown failed: {reply.get('error')}")
            if reply.get("exit") and rec.exit is None:  # (on the wait connection the watcher set it already)
                rec.set_exit(ExitResult.from_dict(reply["exit"]), reply.get("completed_at"))
        with rec.cond:
            rec.cond.wait_for(lambda: rec.exit is not None, _STOP_MARGIN_S)

    def _kill_orphans(self, rec: TaskRecord) -> None:
        """The shim is gone: kill what it left (task group by verified identity, and its cgroup)."""
        ds = rec.driver_state
        if procfs.same_process(int(ds["pid"]), ds.get("pid_start")):
            from rawexec.containment import descendants

            for pid in descendants(int(ds["pid"])):
                try:
                    os.kill(pid, _signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.killpg(int(ds["pid"]), _signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if ds.get("cgroup"):
            try:
                from rawexec.containment import TaskCgroup

                TaskCgroup.from_state(ds["cgroup"]).destroy()
            except Exception as e:
                log.warning("cleaning up cgroup of task %s failed: %s", rec.config.id, e)
        if rec.exit is None:
            rec.lost()

    def destroy_task(self, task_id: str, force: bool = False) -> None:
        """Forget the task; refuses a running one unless ``force`` (then it is killed first)."""
        rec = self._get(task_id)
        if rec.exit is None and not force:
            raise TaskStateError("cannot destroy running task")
        if rec.shim_alive:
            release = rec.driver_state.get("release_signal")
            if rec.exit is not None and release:
                # A stopped task's shim cleans up after the stops in flight (the stop gate):
                # this one's clean-up is wanted now.
                try:
                    os.kill(int(rec.driver_state["shim_pid"]), int(release))
                except ProcessLookupError:
                    pass
            try:
                self._request(rec, {"op": "kill"}, _STOP_MARGIN_S)
            except UnavailableError:
                pass
            if not _wait_shim_done(rec, _STOP_MARGIN_S):
                _wait_gone(int(rec.driver_state["shim_pid"]), rec, _STOP_MARGIN_S)
        # Whatever the shim could not clean up (it was killed, or hung): the task's group by
        # verified identity, and its cgroup. A no-op when everything is already gone.
        self._kill_orphans(rec)
        self._watcher.unwatch(rec)
        if rec.exit is None:
            rec.lost()
        state_path = rec.driver_state.get("state_path")
        remove_socket(str(rec.driver_state.get("socket_path") or ""))
        leftovers = (state_path,
                     # the exit record's temp file, made after the start (left by a killed shim)
                     exit_record_tmp(state_path, int(rec.driver_state.get("shim_pid") or 0)) if state_path else None)
        for p in leftovers:
            if p:
                try:
                    os.unlink(p)
                except OSError:
                    pass
        if rec.stats is not None:
            rec.stats.close()
        with self._lock:
            if self._tasks.get(task_id) is rec:
                del self._tasks[task_id]

    def inspect_task(self, task_id: str) -> TaskStatus:
        return self._get(task_id).status()

    def signal_task(self, task_id: str, signal: str | int, group: bool = False) -> None:
        """Deliver a signal by name to the task (or, with ``group``, to its whole process group)."""
        sig = parse_signal(signal, default="")
        rec = self._get(task_id)
        if rec.exit is not None:
            raise TaskStateError(f"task {task_id} is not running (it has exited)")
        reply = self._request(rec, {"op": "signal", "signal": sig, "group": group}, 10.0)
        if not reply.get("ok"):
            raise TaskStateError(str(reply.get("error")))

    # ----------------------------------------------------------------- exec
    def _open_exec(self, rec: TaskRecord, cmd: list[str], tty: bool, rows: int = 0, cols: int = 0,
                   term: str | None = None) -> tuple[Channel, int, list[int], ExitResult | None]:
        if not cmd or not cmd[0]:
            raise InvalidConfigError("error cmd must have at least one value")
        if rec.exit is not None or not rec.shim_alive:
            raise TaskStateError(f"task {rec.config.id} is not running (it has exited)")
        ch = connect_shim(rec.driver_state["socket_path"])
        try:
            ch.send({"op": "exec", "argv": list(cmd), "tty": tty, "rows": rows, "cols": cols, "term": term})
            reply, fds = ch.recv()
        except (ProtocolError, OSError) as e:
            ch.close()
            raise UnavailableError(f"task shim did not answer: {e}") from e
        if not reply.get("ok"):
            ch.close()
            kind, err = reply.get("kind"), str(reply.get("error"))
            if kind == "state":
                raise TaskStateError(err)
            if kind == "config":
                raise InvalidConfigError(err)
            raise LaunchError(err)
        # A command that ends at once: its exit may have come in the same read as the reply.
        early = ch.buffered()
        result = ExitResult.from_dict(early[0]["exit"]) if early and early[0].get("event") == "exit" else None
        return ch, int(reply["pid"]), fds, result

    def exec_task(self, task_id: str, cmd: list[str], timeout: float = 30.0) -> ExecResult:
        """Run ``cmd`` in the task's context (env, cwd, user, cgroup); keep the last 64 KiB of output.
        At the deadline the command is killed and its exit reflects that."""
        rec = self._get(task_id)
        deadline = time.monotonic() + timeout
        ch, pid, fds, result = self._open_exec(rec, cmd, tty=False)
        stdin_w, out_r, err_r = fds
        os.close(stdin_w)
        buf: deque[bytes] = deque()
        size = 0
        sel = selectors.DefaultSelector()
        drain_until: float | None = None  # once the command exited: how long to wait for its pipes' EOF
        try:
            for fd in (out_r, err_r):
                os.set_blocking(fd, False)
                sel.register(fd, selectors.EVENT_READ, "out")
            ch.sock.setblocking(False)
            sel.register(ch.sock, selectors.EVENT_READ, "ch")
            open_fds = 2
            killed = False
            while result is None or open_fds:
                now = time.monotonic()
                if result is not None:
                    drain_until = drain_until or now + _EXEC_DRAIN_S
                    if now >= drain_until:
                        break  # background children hold the pipes; the command itself is done
                elif now >= deadline and not killed:
                    killed = True
                    try:
                        ch.send({"op": "exec_kill", "pid": pid})
                    except OSError:
                        pass
                limit = drain_until if drain_until is not None else (deadline if not killed else now + 1.0)
                for key, _ in sel.select(max(limit - now, 0.01)):
                    if key.data == "ch":
                        for msg, _f in ch.poll():
                            if msg.get("event") == "exit":
                                result = ExitResult.from_dict(msg["exit"])
                        if ch.eof:
                            sel.unregister(ch.sock)
                            if result is None:
                                result = ExitResult(exit_code=-1, err="exec: the task's shim went away")
                        continue
                    try:
                        data = os.read(key.fd, 65536)
                    except BlockingIOError:
                        continue
                    if not data:
                        sel.unregister(key.fd)
                        open_fds -= 1
                        continue
                    buf.append(data)
                    size += len(data)
                    while size - len(buf[0]) >= EXEC_OUTPUT_KEEP:
                        size -= len(buf.popleft())
        finally:
            sel.close()
            for fd in (out_r, err_r):
                os.close(fd)
            ch.close()
        assert result is not None
        out = b"".join(buf)
        if len(out) > EXEC_OUTPUT_KEEP:
            out = out[-EXEC_OUTPUT_KEEP:]
        return ExecResult(output=out, exit_result=result)

    def exec_task_streaming(self, task_id: str, command: list[str], tty: bool = False, rows: int = 0,
                            cols: int = 0, term: str | None = None) -> ExecSession:
        """Start an interactive exec; see :class:`rawexec.driver.execstream.ExecSession`."""
        rec = self._get(task_id)
        ch, pid, fds, result = self._open_exec(rec, command, tty=tty, rows=rows, cols=cols, term=term)
        session = ExecSession(ch, pid, fds, tty)
        session.result = result
        return session

    # ----------------------------------------------------------------- stats
    def _collector(self, rec: TaskRecord) -> StatsCollector:
        with rec.cond:
            if rec.stats is None:
                from rawexec.containment import StatsCollector, TaskCgroup

                ds = rec.driver_state
                cgroup = TaskCgroup.from_state(ds["cgroup"]) if ds.get("cgroup") else None
                shim = int(ds["shim_pid"])
                # Without a cgroup, walk from the shim: orphans of the task are reparented there.
                rec.stats = StatsCollector(cgroup, shim, exclude_pids=[shim])
            collector: StatsCollector = rec.stats
            return collector

    def task_stats(self, task_id: str) -> TaskResourceUsage:
        """Resource usage of the task's whole tree, in Nomad's TaskResourceUsage shape. Read
        directly from the cgroup files (or /proc without cgroups): no round trip to the shim."""
        rec = self._get(task_id)
        if rec.exit is not None:
            raise TaskStateError(f"task {task_id} is not running (it has exited)")
        collector = self._collector(rec)
        with rec.cond:
            return collector.collect()

    def stream_task_stats(self, task_id: str, interval: float = 1.0,
                          stop: threading.Event | None = None) -> Iterator[TaskResourceUsage]:
        """Yield a sample now, then every ``interval`` s, until the task exits or ``stop`` is set."""
        if interval <= 0:
            interval = 1.0
        rec = self._get(task_id)
        stop = stop or threading.Event()
        while not stop.is_set() and rec.exit is None:
            try:
                yield self.task_stats(task_id)
            except (TaskStateError, TaskNotFoundError):
                return
            with rec.cond:
                rec.cond.wait_for(lambda: rec.exit is not None or stop.is_set(), interval)

    # ----------------------------------------------------------------- introspection
    def task_ids(self) -> list[str]:
        with self._lock:
            return list(self._tasks)

    def task_record(self, task_id: str) -> TaskRecord:
        return self._get(task_id)

