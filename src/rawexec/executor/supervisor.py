"""The shim's event loop: one task, its output, its control socket, its exit.

Single-threaded, blocking in one ``epoll`` wait: zero CPU while the task is quiet. It is a
child subreaper, so every orphaned descendant of the task is reparented here, reaped here, and
can always be found and killed here (``containment.descendants`` of our own pid), with or without
cgroups.
"""

from __future__ import annotations

import _socket
import fcntl
import heapq
import importlib
import itertools
import json
import os
import select
import signal
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rawexec.containment import children, descendants
from rawexec.executor.launch import Credentials, LaunchFailure, reaped, start_process
from rawexec.executor.protocol import (
    Channel,
    ProtocolError,
    exit_record_tmp,
    remove_socket,
    stop_gate_path,
)
from rawexec.executor.sinks import Sink
from rawexec.logs import FifoWriter
from rawexec.types import ExitResult, exit_result_from_wait_status

__all__ = ["GATE_BOUND_S", "Supervisor", "on_release", "pass_stop_gate", "write_json_atomic"]

READ_CHUNK = 1024 * 1024
RETRY_WRITE_S = 0.2
KILL_BOUND_S = 5.0
CGROUP_KILL_WAIT_S = 1.0
"""After a ``cgroup.kill``: how long the shim waits for the cgroup to empty before it walks /proc
for a process that left the cgroup (hundreds of tasks stopping at once take longer than 0.25 s)."""
REWALK_S = 0.05
"""Killing without ``cgroup.kill``: how often the shim walks its descendants again while the killed
ones die (each walk finds and kills what forked in between)."""
FIFO_DRAIN_S = 2.0
DRIVER_GONE_GRACE_S = 5.0
"""A task whose spec says ``stop_with_driver``: how long it has to exit after its SIGTERM once the
driver that started it is gone, before its whole tree is killed."""
_SIGCHLD = (signal.SIGCHLD,)
# The C functions behind ``signal`` (signal, pthread_sigmask, sigtimedwait, setitimer): the
# Python wrappers convert to and from enums.
_csignal: Any = importlib.import_module("_signal")


def open_record_tmp(path: str) -> int:
    """Create (empty) the temp file of :func:`write_json_atomic` for ``path`` ahead of time."""
    return os.open(exit_record_tmp(path, os.getpid()), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)


def write_json_atomic(path: str, data: dict[str, Any], fd: int = -1) -> None:
    """temp file + rename: another process sees the old file or the new one, never half of one.

    ``fd``: the temp file, opened (empty) ahead of time by :func:`open_record_tmp` -- creating a
    file is the costly part on a file system with many recent deletions (ext4 without a journal
    skips recently freed inodes one by one), so a shim does it after the start, not at the exit.

    No fsync: the record must survive the *driver* dying, not the machine (after a reboot the
    task is gone anyway); a record lost to power failure reads as "shim lost", never as garbage.
    """
    tmp = exit_record_tmp(path, os.getpid())
    made_ahead = fd >= 0
    if not made_ahead:
        fd = open_record_tmp(path)
    try:
        os.write(fd, json.dumps(data).encode())
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except FileNotFoundError:
        if not made_ahead:
            raise
        write_json_atomic(path, data)  # the file made ahead was removed meanwhile: make it now


EVENT_READ = select.EPOLLIN


class _Poller:
    """``select.epoll`` with one callback per fd: the shim's event loop without the layers of
    :mod:`selectors` (in a freshly forked shim every Python function run costs page copies)."""

    __slots__ = ("_callbacks", "_ep")

    def __init__(self) -> None:
        self._ep = select.epoll()
        self._callbacks: dict[int, Callable[[], None]] = {}

    def register(self, fileobj: int | _socket.socket, events: int, callback: Callable[[], None]) -> None:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        if fd in self._callbacks:
            raise KeyError(f"fd {fd} is already registered")
        self._ep.register(fd, events)
        self._callbacks[fd] = callback

    def unregister(self, fileobj: int | _socket.socket) -> None:
        """KeyError when not registered (as :mod:`selectors`); a closed fd is fine."""
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        del self._callbacks[fd]
        try:
            self._ep.unregister(fd)
        except OSError:
            pass  # already closed: the kernel dropped it from the epoll set

    def callback(self, fd: int) -> Callable[[], None] | None:
        return self._callbacks.get(fd)

    def poll(self, timeout: float | None) -> list[int]:
        """The ready fds; blocks up to ``timeout`` seconds (None: forever). EINTR is retried."""
        return [fd for fd, _ in self._ep.poll(-1 if timeout is None else timeout)]


@dataclass
class _Stream:
    fd: int
    sink: Sink
    pending: bytes = b""
    closed: bool = False
    #: the sink's own reader of the pipe (``FileRotator.write_from``: zero copy), when it has one
    write_from: Callable[[int, int], tuple[int, bytes]] | None = None

    def __post_init__(self) -> None:
        if self.write_from is None:
            self.write_from = getattr(self.sink, "write_from", None)


@dataclass
class _ExecSession:
    pid: int
    channel: Channel
    done: bool = False


@dataclass
class _Client:
    channel: Channel
    waiting: bool = False
    execs: list[int] = field(default_factory=list)


class Supervisor:
    """Owns one running task. Build it with the task already started, then call :meth:`run`."""

    def __init__(self, *, spec: dict[str, Any], listener: int, main_pid: int, streams: list[_Stream],
                 cgroup: Any, wakeup_r: int, creds: Credentials | None, log: Callable[[str], None]) -> None:
        self.spec = spec
        # The control socket's fd (listening, non-blocking); wrapped in a socket object on the
        # first connection only: an idle shim never runs socket's Python layer for it.
        self.listener_fd = listener
        self._listener: socket.socket | None = None
        self.main_pid = main_pid
        self.streams = streams
        self.cgroup = cgroup
        self.wakeup_r = wakeup_r
        self.creds = creds
        self.log = log
        self.exit: ExitResult | None = None
        self.completed_at: float | None = None
        self.sel = _Poller()
        self.clients: dict[int, _Client] = {}
        self.execs: dict[int, _ExecSession] = {}
        self.stoppers: list[Channel] = []
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self._tick = itertools.count()
        self.killing = False
        self.uid = os.geteuid()
        self.record_fd = -1  # the exit record's temp file, when made ahead (prepare_exit_record)
        self.owner: Channel | None = None  # the driver's start connection (see adopt_waiter)
        self.record_pending = False  # the exit record waits for the clean-up (see _main_exited)
        self.stopped = False  # a stop was answered: the clean-up waits at the stop gate
        self.past_gate = False
        self.driver_gone = False

    def prepare_exit_record(self) -> None:
        """Create the exit record's temp file now (off the stop path); best effort."""
        try:
            self.record_fd = open_record_tmp(self.spec["state_path"])
        except OSError:
            self.record_fd = -1

    # ------------------------------------------------------------------ timers
    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self.timers, (time.monotonic() + delay, next(self._tick), fn))

    def _run_timers(self) -> float | None:
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, fn = heapq.heappop(self.timers)
            fn()
        return max(0.0, self.timers[0][0] - time.monotonic()) if self.timers else None

    def adopt_waiter(self, ch: Channel) -> None:
        """Treat an already-connected channel as a client that asked to ``wait``."""
        ch.sock.setblocking(False)
        if self.owner is None:
            self.owner = ch  # it closes when the driver process that started the task is gone
        client = _Client(ch, waiting=True)
        self.clients[ch.fileno()] = client
        self.sel.register(ch.sock, EVENT_READ, lambda: self._on_client(client))

    def event(self, message: str, annotations: dict[str, str] | None = None) -> None:
        """Tell every connected driver about something worth a task event (also logged)."""
        self.log(message)
        for c in list(self.clients.values()):
            if c.waiting:
                self._reply(c.channel, {"event": "task", "message": message, "annotations": annotations or {}})

    # ------------------------------------------------------------------ main loop
    def run(self) -> None:
        self.sel.register(self.listener_fd, EVENT_READ, self._accept)
        self.sel.register(self.wakeup_r, EVENT_READ, self._on_wakeup)
        for st in self.streams:
            self.sel.register(st.fd, EVENT_READ, self._reader(st))
        self._reap()
        self._loop()
        if self.stopped:
            # Stopped: hundreds of tasks may be stopping at once. The rest (the last of the task's
            # output, the exit record, the cgroup dirs, the socket, the logs) waits for them; the
            # task's processes are all gone.
            pass_stop_gate(self.spec.get("state_path"))
            self.past_gate = True
            self._loop()  # drain what the task wrote last, to EOF (every writer is gone)
        self._shutdown()

    def _loop(self) -> None:
        while not self._finished():
            timeout = self._run_timers()
            if self._finished():
                break
            for fd in self.sel.poll(timeout):
                cb = self.sel.callback(fd)  # looked up now: an earlier callback may have dropped it
                if cb is not None:
                    cb()

    def _finished(self) -> bool:
        if self.exit is None or self.execs or self.stoppers:
            return False
        # (A stopped task's output is drained after the stop gate; see run.)
        if (self.past_gate or not self.stopped) and any(not st.closed for st in self.streams):
            return False
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid:
            self._reaped(pid, _)
        return False

    def _shutdown(self) -> None:
        if self.record_pending:
            self._write_exit_record()
        if self.driver_gone and self.spec.get("stop_with_driver"):
            # no driver will ever read the exit record (see _stop_without_driver): leave no file
            for path in (self.spec["state_path"], exit_record_tmp(self.spec["state_path"], os.getpid())):
                try:
                    os.unlink(path)
                except OSError:
                    pass
        if self.cgroup is not None:
            try:
                self.cgroup.destroy()
            except Exception as e:
                self.log(f"removing cgroup failed: {e}")
        remove_socket(self.spec["socket_path"])
        if self._listener is not None:
            self._listener.close()
        else:
            os.close(self.listener_fd)
        for st in self.streams:
            if isinstance(st.sink, FifoWriter):
                st.sink.close(drain_timeout=FIFO_DRAIN_S)  # let Nomad's log reader take what is left
            else:
                st.sink.close()
        # Last: the driver takes the end of the wait connection for "the shim has done all it
        # does for the task" (Driver.destroy_task). What follows, the process's exit, no one waits for.
        for c in list(self.clients.values()):
            c.channel.close()

    # ------------------------------------------------------------------ children
    def _on_wakeup(self) -> None:
        try:
            while os.read(self.wakeup_r, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        self._reap()

    def _reap(self) -> bool:
        """Reap every child that has exited; True when no child is left at all."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True
            except InterruptedError:
                continue
            if pid == 0:
                return False
            self._reaped(pid, status)

    def _reaped(self, pid: int, status: int) -> None:
        reaped(pid, status)
        if pid == self.main_pid and self.exit is None:
            self._main_exited(status)
        sess = self.execs.pop(pid, None)
        if sess is not None:
            res = exit_result_from_wait_status(status)
            try:
                sess.channel.send({"event": "exit", "exit": res.to_dict()})
            except OSError:
                pass
            self._drop_client(sess.channel)

    def _main_exited(self, status: int) -> None:
        # Everything the task wrote before exiting is in the pipes: drain first, then publish.
        for st in self.streams:
            self._drain(st, until_eagain=True)
        oom = False
        if self.cgroup is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            try:
                oom = self.cgroup.oom_kill_count() > 0
            except Exception:
                oom = False
        self.exit = exit_result_from_wait_status(status, oom_killed=oom)
        self.completed_at = time.time()
        if self.stoppers:
            # A stop ended it: the answer carries the exit, and the record (for a driver that
            # re-attaches after we are gone) is written after the stop gate, with the clean-up.
            self.record_pending = True
        else:
            self._write_exit_record()
        for c in self.clients.values():
            # A stop waiting on the same connection (the driver's wait connection) gets the exit
            # in its answer, once the whole tree is gone: one message, not two.
            if c.waiting and c.channel not in self.stoppers:
                self._send_exit(c.channel)
        if self.stoppers and not self.killing:  # (inside _kill_tree, its caller answers when the tree is gone)
            self._kill_tree()
            self._answer_stoppers()

    def _write_exit_record(self) -> None:
        assert self.exit is not None
        self.record_pending = False
        try:
            fd, self.record_fd = self.record_fd, -1
            write_json_atomic(self.spec["state_path"], {
                "task_id": self.spec["task_id"], "pid": self.main_pid, "exit": self.exit.to_dict(),
                "completed_at": self.completed_at, "started_at": self.spec.get("started_at")}, fd)
        except OSError as e:
            self.log(f"writing exit record failed: {e}")

    def _send_exit(self, ch: Channel) -> None:
        assert self.exit is not None
        try:
            ch.send({"event": "exit", "exit": self.exit.to_dict(), "completed_at": self.completed_at})
        except OSError:
            pass

    # ------------------------------------------------------------------ output
    def _reader(self, st: _Stream) -> Callable[[], None]:
        return lambda: self._drain(st, until_eagain=False)

    def _drain(self, st: _Stream, until_eagain: bool) -> None:
        write_from = st.write_from
        while not st.closed and not st.pending:
            if write_from is not None:
                # The sink reads the pipe itself (FileRotator: straight into the file, zero copy).
                try:
                    n, refused = write_from(st.fd, READ_CHUNK)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as e:
                    self.log(f"reading task output failed: {e}")
                    n, refused = 0, b""
                if n == 0:
                    self._close_stream(st)
                    return
                if refused:
                    self._hold(st, refused)
                if not until_eagain:
                    return
                continue
            try:
                data = os.read(st.fd, READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.log(f"reading task output failed: {e}")
                data = b""
            if not data:
                self._close_stream(st)
                return
            self._write(st, data)
            if not until_eagain:
                return

    def _close_stream(self, st: _Stream) -> None:
        st.closed = True
        self.sel.unregister(st.fd)
        os.close(st.fd)

    def _write(self, st: _Stream, data: bytes) -> None:
        n = st.sink.write(data)
        if n < len(data):
            self._hold(st, data[n:])

    def _hold(self, st: _Stream, rest: bytes) -> None:
        """Back-pressure: stop reading until the sink takes ``rest``. The task blocks on a full
        pipe instead of losing bytes."""
        st.pending = rest
        self.sel.unregister(st.fd)
        self.call_later(float(getattr(st.sink, "retry_delay", RETRY_WRITE_S)), lambda: self._retry(st))

    def _retry(self, st: _Stream) -> None:
        data, st.pending = st.pending, b""
        self.sel.register(st.fd, EVENT_READ, self._reader(st))
        self._write(st, data)

    # ------------------------------------------------------------------ control socket
    def _accept(self) -> None:
        try:
            if self._listener is None:
                self._listener = socket.socket(fileno=self.listener_fd)
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid not in (0, self.uid):
            conn.close()
            return
        conn.setblocking(False)
        ch = Channel(conn)
        client = _Client(ch)
        self.clients[ch.fileno()] = client
        self.sel.register(conn, EVENT_READ, lambda: self._on_client(client))

    def _drop_client(self, ch: Channel) -> None:
        fd = ch.fileno()
        client = self.clients.pop(fd, None)
        if fd >= 0:
            try:
                self.sel.unregister(fd)
            except (KeyError, ValueError):
                pass
        if client is not None:
            for pid in client.execs:
                if pid in self.execs:  # client vanished mid-exec: kill what it started
                    self._kill_exec(pid)
        ch.close()
        if ch is self.owner:
            self.owner = None
            if self.spec.get("stop_with_driver"):
                self._stop_without_driver()

    def _stop_without_driver(self) -> None:
        """The driver that started the task is gone, and no later one can re-attach (the spec's
        ``stop_with_driver``): stop the task as a driver would -- SIGTERM, then after
        :data:`DRIVER_GONE_GRACE_S` kill the whole tree -- rather than leave it running for nobody."""
        if self.driver_gone:
            return
        self.driver_gone = True
        if self.exit is None:
            self.log("the driver that started this task is gone and none can take it over: stopping the task "
                     f"(SIGTERM, then SIGKILL for the whole tree after {DRIVER_GONE_GRACE_S:g}s)")
            self._send_signal(signal.SIGTERM, False)
        # also what an exited task left behind (a shim with no children left is done before this)
        self.call_later(DRIVER_GONE_GRACE_S, self._kill_tree)

    def _on_client(self, client: _Client) -> None:
        ch = client.channel
        try:
            msgs = ch.poll()
        except (ProtocolError, OSError):
            self._drop_client(ch)
            return
        for msg, fds in msgs:
            for fd in fds:
                os.close(fd)
            try:
                self._dispatch(client, msg)
            except OSError as e:
                self._reply(ch, {"ok": False, "error": str(e)})
        if ch.eof:
            self._drop_client(ch)

    def _reply(self, ch: Channel, msg: dict[str, Any], fds: list[int] | None = None) -> None:
        try:
            ch.send(msg, fds)
        except OSError:
            pass

    def _dispatch(self, client: _Client, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        ch = client.channel
        if op == "wait":
            client.waiting = True
            if self.exit is not None:
                self._send_exit(ch)
        elif op == "status":
            self._reply(ch, self._status())
        elif op == "signal":
            self._op_signal(ch, int(msg["signal"]), bool(msg.get("group")))
        elif op == "stop":
            self._op_stop(ch, int(msg["signal"]), float(msg.get("timeout", 0)), bool(msg.get("group")))
        elif op == "kill":
            self._kill_tree()
            self._answer_stoppers()  # a stop waiting for the same exit
            self._reply(ch, {"ok": True})
        elif op == "exec":
            self._op_exec(client, msg)
        elif op == "exec_kill":
            pid = int(msg.get("pid", 0))
            if pid in self.execs:
                self._kill_exec(pid)
        else:
            self._reply(ch, {"ok": False, "error": f"unknown operation {op!r}"})

    def _status(self) -> dict[str, Any]:
        return {"ok": True, "pid": self.main_pid, "running": self.exit is None,
                "exit": self.exit.to_dict() if self.exit else None, "completed_at": self.completed_at}

    def _op_signal(self, ch: Channel, sig: int, group: bool) -> None:
        if self.exit is not None:
            self._reply(ch, {"ok": False, "kind": "state", "error": "task is not running (it has exited)"})
            return
        if not self._send_signal(sig, group):
            self._reply(ch, {"ok": False, "kind": "state", "error": "task is not running (it has exited)"})
            return
        self._reply(ch, {"ok": True})

    def _send_signal(self, sig: int, group: bool) -> bool:
        """Signal the main process (or its process group); False if it is already gone."""
        try:
            if group:
                os.killpg(self.main_pid, sig)
            else:
                os.kill(self.main_pid, sig)
        except ProcessLookupError:
            return False
        return True

    def _op_stop(self, ch: Channel, sig: int, timeout: float, group: bool) -> None:
        self.stoppers.append(ch)
        if self.exit is not None:
            self._kill_tree()
            self._answer_stoppers()
            return
        if timeout > 0 and sig != signal.SIGKILL:
            self._send_signal(sig, group)
            self.call_later(timeout, self._stop_deadline)
        else:
            self._stop_deadline()

    def _stop_deadline(self) -> None:
        if not self.stoppers:
            return
        self._kill_tree()
        self._answer_stoppers()

    def _answer_stoppers(self) -> None:
        if self.exit is None:
            return  # the SIGCHLD for the main process will come; answer then
        for ch in self.stoppers:
            self._reply(ch, {"ok": True, "exit": self.exit.to_dict(), "completed_at": self.completed_at})
            self.stopped = True
        self.stoppers.clear()

    def _kill_tree(self) -> None:
        """SIGKILL the task and every descendant; bounded. Cgroup first, then what the subreaper sees.

        Not re-entered: reaping the main process here runs ``_main_exited``, which leaves the
        killing (and answering the stoppers) to this call's caller."""
        if self.killing:
            return
        self.killing = True
        # SIGCHLD blocked while killing: each death of a child (the orphans of a fork storm are all
        # ours) would otherwise run the signal handler, write the wake-up pipe and interrupt the
        # wait, a few dozen microseconds each, when hundreds of stopping tasks need the CPU. Blocked,
        # the deaths coalesce into one pending signal, which _await_child takes synchronously.
        old_mask = _csignal.pthread_sigmask(signal.SIG_BLOCK, _SIGCHLD)
        try:
            self._kill_all_now()
        finally:
            self.killing = False
            _csignal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _kill_all_now(self) -> None:
        # No child left means no descendant left: an orphan is reparented to us (we are its
        # subreaper), so every live descendant has a parent chain ending at a child of ours. A
        # task whose main process was all there was (the common stop) needs nothing more.
        if self._reap() and self.exit is not None:
            return
        now = time.monotonic()
        deadline = now + KILL_BOUND_S
        # Without cgroup.kill, the first rounds kill our own children only (one read of /proc):
        # the orphans of a fork storm or a double fork are ours already, and what a killed child
        # leaves behind is reparented to us as it dies. A walk of the whole tree comes after
        # REWALK_S, for what is still there (a tree forking faster than its levels die).
        walk_at = now + REWALK_S
        if self.cgroup is not None:
            try:
                if self.cgroup.kill_now():
                    # Every process of the cgroup is dying: once the kernel says the cgroup is
                    # empty, our children are all zombies (or about to be), and one pass reaps
                    # them. Only a process that left the cgroup2 dir (a root task can) is still
                    # alive then: the walk of /proc below finds it, after a while.
                    walk_at = now + CGROUP_KILL_WAIT_S
                    self.cgroup.wait_empty(CGROUP_KILL_WAIT_S)
                else:
                    self.cgroup.kill_all(timeout=KILL_BOUND_S)  # v1: freeze, kill, thaw; waits
            except Exception as e:
                self.log(f"cgroup kill failed: {e}")
        me = os.getpid()
        while True:
            if self._reap() and self.exit is not None:
                return
            if self.exit is None:
                try:
                    os.killpg(self.main_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() < walk_at:
                for pid in children(me):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self._await_child(min(REWALK_S, walk_at - time.monotonic()))
                continue
            pids = descendants(me)
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self._reap()
            if not pids:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return
                if pid:
                    self._reaped(pid, status)
                if self.exit is not None and not descendants(me):
                    return
            if time.monotonic() > deadline:
                self.log(f"processes survived SIGKILL for {KILL_BOUND_S}s: {pids}")
                return
            # What it killed dies meanwhile, each death a SIGCHLD (reaped at the top of the next
            # turn). Walk again only after a while, for what forked between this walk and its kills:
            # a walk per death would cost a fork storm's shim a dozen reads of /proc per wake-up.
            walk_at = time.monotonic() + REWALK_S
            self._await_child(min(REWALK_S, deadline - time.monotonic()))

    def _await_child(self, timeout: float) -> None:
        """Sleep until a child changes state or ``timeout`` (SIGCHLD is blocked: see _kill_tree).
        Not a polling loop: when hundreds of tasks stop at once, their killed processes need the
        CPU to exit, and every shim polling would take it from them."""
        woken = False
        try:  # a SIGCHLD delivered before the kill blocked it is in the wake-up pipe
            while os.read(self.wakeup_r, 4096):
                woken = True
        except BlockingIOError:
            pass
        if not woken:
            _csignal.sigtimedwait(_SIGCHLD, max(0.0, timeout))  # (a deadline may have passed: no wait)

    # ------------------------------------------------------------------ exec
    def _op_exec(self, client: _Client, msg: dict[str, Any]) -> None:
        ch = client.channel
        if self.exit is not None:
            self._reply(ch, {"ok": False, "kind": "state", "error": "task is not running (it has exited)"})
            return
        argv = [str(a) for a in msg.get("argv") or []]
        if not argv:
            self._reply(ch, {"ok": False, "kind": "config", "error": "error cmd must have at least one value"})
            return
        env = dict(self.spec["env"])
        path = resolve_in_path(argv[0], env.get("PATH"), self.spec["cwd"])
        if path is None:
            self._reply(ch, {"ok": False, "kind": "config",
                             "error": f'exec: "{argv[0]}": executable file not found in $PATH'})
            return
        tty = bool(msg.get("tty"))
        mine: list[int] = []
        theirs: list[int] = []
        try:
            if tty:
                master, slave = os.openpty()
                os.set_blocking(master, False)
                rows, cols = int(msg.get("rows") or 0), int(msg.get("cols") or 0)
                if rows and cols:
                    import fcntl
                    import termios

                    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                env.setdefault("TERM", str(msg.get("term") or "xterm"))
                stdio = (slave, slave, slave)
                mine, theirs = [slave], [master]
            else:
                in_r, in_w = os.pipe2(os.O_CLOEXEC)
                out_r, out_w = os.pipe2(os.O_CLOEXEC)
                err_r, err_w = os.pipe2(os.O_CLOEXEC)
                stdio = (in_r, out_w, err_w)
                mine, theirs = [in_r, out_w, err_w], [in_w, out_r, err_r]
            if self.creds is not None:
                import pwd

                try:
                    pw = pwd.getpwuid(self.creds.uid)
                    env.update(USER=pw.pw_name, LOGNAME=pw.pw_name, HOME=pw.pw_dir)
                except KeyError:
                    pass
            pid = start_process([path, *argv[1:]], env, self.spec["cwd"], stdio, creds=self.creds,
                                procs_files=self.cgroup.procs_files if self.cgroup is not None else (), tty=tty)
        except LaunchFailure as e:
            for fd in mine + theirs:
                os.close(fd)
            self._reply(ch, {"ok": False, "kind": "launch", "error": f"failed to exec {argv[0]!r}: {e.detail}"})
            return
        for fd in mine:
            os.close(fd)
        self.execs[pid] = _ExecSession(pid, ch)
        client.execs.append(pid)
        self._reply(ch, {"ok": True, "pid": pid, "nfds": len(theirs)}, theirs)
        for fd in theirs:
            os.close(fd)

    def _kill_exec(self, pid: int) -> None:
        for target in descendants(pid):
            try:
                os.kill(target, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def resolve_in_path(cmd: str, path_env: str | None, cwd: str) -> str | None:
    """Resolve ``cmd`` like a shell: with a slash relative to cwd, else through PATH
    (the task's PATH first, then the shim's own)."""
    if "/" in cmd:
        full = cmd if os.path.isabs(cmd) else os.path.join(cwd, cmd)
        return full if os.path.isfile(full) and os.access(full, os.X_OK) else None
    dirs: list[str] = []
    for p in (path_env, os.environ.get("PATH"), "/usr/local/bin:/usr/bin:/bin"):
        if p:
            dirs.extend(d for d in p.split(":") if d and d not in dirs)
    for d in dirs:
        full = os.path.join(d, cmd)
        if os.path.isfile(full) and os.access(full, os.X_OK):
            return full
    return None


# ---------------------------------------------------------------------- the stop gate
#: How long a shim waits at the stop gate for the stops in flight to end.
GATE_BOUND_S = 1.0


class _GateTimeout(Exception):
    pass


_released = False
_at_gate = False
_gate_passed = False


def on_release(_sig: int, _frame: object) -> None:
    """The handler of :data:`~rawexec.executor.protocol.RELEASE_SIGNAL`."""
    global _released
    _released = True
    _leave_gate()


def _gate_timeout(_sig: int, _frame: object) -> None:
    _leave_gate()


def _leave_gate() -> None:
    """Interrupt the wait at the gate, once: a signal outside it, or a second one (a late alarm
    and a release together), must not raise in what follows."""
    global _at_gate
    if _at_gate:
        _at_gate = False
        raise _GateTimeout


def pass_stop_gate(state_path: str | None) -> None:
    """Wait, at most :data:`GATE_BOUND_S`, until no stop is in flight; once per process.

    The stop gate is ``.stop-gate`` in the state dir: a driver holds it shared while any of its
    stops is in flight. Taking it exclusively and letting go at once is waiting for them. What
    waits: a stopped shim's clean-up and every shim's exit (the kernel unmapping a forked
    interpreter). When hundreds of tasks stop at once, that work would otherwise take the CPU
    the stops still running need, and no one waits for it. Skipped (or left) on
    :data:`~rawexec.executor.protocol.RELEASE_SIGNAL`."""
    global _gate_passed, _at_gate
    if _gate_passed or not state_path:
        return
    _gate_passed = True
    try:
        fd = os.open(stop_gate_path(state_path), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        _csignal.signal(signal.SIGALRM, _gate_timeout)
        _at_gate = True
        if not _released:
            _csignal.setitimer(_csignal.ITIMER_REAL, GATE_BOUND_S)
            fcntl.flock(fd, fcntl.LOCK_EX)
        _at_gate = False  # (here, inside the try: a signal right after the lock is still caught)
    except (OSError, _GateTimeout):
        pass
    finally:
        _at_gate = False
        _csignal.setitimer(_csignal.ITIMER_REAL, 0)
        os.close(fd)  # the lock goes with it: the next shim passes
