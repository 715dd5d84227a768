"""One task's state on the driver side, and the single thread that watches every shim."""

from __future__ import annotations

import json
import logging
import os
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rawexec.driver.types import TaskConfig, TaskState, TaskStatus
from rawexec.errors import UnavailableError
from rawexec.executor import procfs
from rawexec.executor.protocol import Channel, ProtocolError, sockaddr
from rawexec.types import ExitResult

__all__ = ["TaskRecord", "Watcher", "connect_shim", "read_exit_record"]

log = logging.getLogger("rawexec.driver")


def _ts(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def connect_shim(socket_path: str, timeout: float = 10.0) -> Channel:
    """Connect to a task's shim. Only a socket of our own user (or root) is trusted: an abstract
    name is open to every local user, who could bind it once the shim is gone."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sockaddr(socket_path))
        _pid, uid, _gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                           struct.calcsize("3i")))
    except OSError as e:
        s.close()
        raise UnavailableError(f"task shim unreachable at {socket_path}: {e.strerror or e}") from e
    if uid not in (0, os.geteuid()):
        s.close()
        raise UnavailableError(f"task shim unreachable at {socket_path}: the socket belongs to uid {uid}, "
                               "not to this agent's user")
    return Channel(s)


def read_exit_record(state_path: str) -> tuple[ExitResult, float | None] | None:
    try:
        with open(state_path, "rb") as f:
            d = json.load(f)
        return ExitResult.from_dict(d["exit"]), d.get("completed_at")
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class TaskRecord:
    """The driver's view of one task (Nomad's taskHandle)."""

    config: TaskConfig
    driver_state: dict[str, Any]
    started_at: float
    completed_at: float | None = None
    exit: ExitResult | None = None
    cond: threading.Condition = field(default_factory=threading.Condition)
    stats: Any = None  # a containment.StatsCollector, made on the first task_stats call
    on_event: Callable[[TaskRecord, str, dict[str, str]], None] | None = None
    # The open wait connection (the Watcher reads it). Requests that are answered on it (stop)
    # skip a new connection; the answers are counted here, in order, under ``cond``.
    wait_ch: Channel | None = field(default=None, repr=False)
    wait_closed: bool = False
    requests_sent: int = 0
    answers: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def state(self) -> TaskState:
        if self.exit is None:
            return TaskState.RUNNING
        return TaskState.UNKNOWN if self.exit.err and self.exit.exit_code == -1 else TaskState.EXITED

    @property
    def shim_alive(self) -> bool:
        return procfs.same_process(int(self.driver_state["shim_pid"]), self.driver_state.get("shim_start"))

    def set_exit(self, result: ExitResult, completed_at: float | None) -> None:
        first = False
        with self.cond:
            if self.exit is None:
                first = True
                self.exit = result
                self.completed_at = completed_at or datetime.now(UTC).timestamp()
            self.cond.notify_all()
        if first and self.on_event is not None:
            if result.oom_killed:
                self.on_event(self, "OOM Killed: the task exceeded its memory limit and the kernel killed it",
                              {"oom_killed": "true"})
            elif result.err:
                self.on_event(self, result.err, {})

    def request_on_wait(self, msg: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Send ``msg`` on the wait connection and block for its answer (which the Watcher thread
        reads). None when there is no usable wait connection: the caller falls back to a new one."""
        with self.cond:
            ch = self.wait_ch
            if ch is None or self.wait_closed:
                return None
            try:
                ch.send(msg)  # small: fits the socket buffer, so the non-blocking send is whole
            except OSError:
                return None
            ticket = self.requests_sent
            self.requests_sent += 1
            if not self.cond.wait_for(lambda: len(self.answers) > ticket or self.wait_closed, timeout):
                raise UnavailableError("task shim did not answer in time")
            if len(self.answers) > ticket:
                return self.answers[ticket]
            raise UnavailableError("task shim did not answer: its connection closed")

    def answered(self, msg: dict[str, Any]) -> None:
        with self.cond:
            self.answers.append(msg)
            self.cond.notify_all()

    def wait_connection_closed(self) -> None:
        with self.cond:
            self.wait_closed = True
            self.wait_ch = None
            self.cond.notify_all()

    def lost(self) -> None:
        """The wait connection closed without an exit: trust the shim's exit record if it left one."""
        rec = read_exit_record(self.driver_state["state_path"])
        if rec is not None:
            self.set_exit(*rec)
        else:
            self.set_exit(ExitResult(exit_code=-1, err="executor: error waiting on process: the task's shim "
                                     "exited unexpectedly"), None)

    def status(self) -> TaskStatus:
        return TaskStatus(id=self.config.id, name=self.config.name, state=self.state,
                          started_at=_ts(self.started_at), completed_at=_ts(self.completed_at),
                          exit_result=self.exit, driver_attributes={"pid": str(self.driver_state["pid"])})


class Watcher:
    """One thread, one selector, every task's wait connection: exits are pushed, never polled."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._pending: list[tuple[Channel, TaskRecord]] = []
        self._drop: list[TaskRecord] = []
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._by_record: dict[int, Channel] = {}

    def watch(self, rec: TaskRecord, ch: Channel | None = None) -> None:
        """Watch the task's wait connection (``ch``, or a new one); its exit arrives on the watcher
        thread."""
        try:
            if ch is None:
                ch = connect_shim(rec.driver_state["socket_path"])
                ch.send({"op": "wait"})
            ch.sock.setblocking(False)
        except (UnavailableError, OSError):
            rec.lost()
            return
        with rec.cond:
            rec.wait_ch, rec.wait_closed = ch, False
        with self._lock:
            self._pending.append((ch, rec))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rawexec-watcher", daemon=True)
                self._thread.start()
        os.write(self._wake_w, b"x")

    def unwatch(self, rec: TaskRecord) -> None:
        rec.wait_connection_closed()
        with self._lock:
            self._drop.append(rec)
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _run(self) -> None:
        while not self._closed:
            for key, _ in self._sel.select():
                # This thread reports every task's exit: a bug in one task's handling must not
                # stop it for all the others.
                try:
                    if key.data is None:
                        self._service_wakeup()
                        continue
                    ch, rec = key.data
                    self._service(ch, rec)
                except Exception:
                    log.exception("task watcher: error while handling an event; continuing")

    def _service_wakeup(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            pending, self._pending = self._pending, []
            drop, self._drop = self._drop, []
        for ch, rec in pending:
            self._sel.register(ch.sock, selectors.EVENT_READ, (ch, rec))
            self._by_record[id(rec)] = ch
            # The start reply may have arrived together with the exit (a task that ends at once):
            # messages already buffered would never make the socket readable again.
            while (got := ch.buffered()) is not None:
                self._handle(rec, got[0])
        for rec in drop:
            dch = self._by_record.pop(id(rec), None)
            if dch is not None:
                self._sel.unregister(dch.sock)
                dch.close()

    def _service(self, ch: Channel, rec: TaskRecord) -> None:
        if ch.sock.fileno() < 0:
            return  # dropped (unwatch) earlier in this same select() round: already unregistered
        try:
            msgs = ch.poll()
        except (ProtocolError, OSError):
            msgs = []
            ch.eof = True
        for msg, _ in msgs:
            self._handle(rec, msg)
        if ch.eof:
            self._sel.unregister(ch.sock)
            self._by_record.pop(id(rec), None)
            rec.wait_connection_closed()
            ch.close()
            if rec.exit is None:
                rec.lost()

    @staticmethod
    def _handle(rec: TaskRecord, msg: dict[str, Any]) -> None:
        if msg.get("event") == "exit":
            rec.set_exit(ExitResult.from_dict(msg["exit"]), msg.get("completed_at"))
        elif msg.get("event") == "task":
            if rec.on_event is not None:
                rec.on_event(rec, str(msg.get("message")), {str(k): str(v) for k, v in
                                                            (msg.get("annotations") or {}).items()})
        elif "ok" in msg:  # the answer to a request sent on the wait connection
            if msg.get("exit"):  # a stop's answer carries the exit (the shim sends no separate event)
                rec.set_exit(ExitResult.from_dict(msg["exit"]), msg.get("completed_at"))
            rec.answered(msg)

    def close(self) -> None:
        self._closed = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
