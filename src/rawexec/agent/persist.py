"""Group commit for the agent's state writes.

Task runners mark what changed (a task's state, an allocation, a driver handle to put or drop)
and wait until it is committed. One writer thread commits everything pending in one SQLite
transaction, so 200 tasks starting at once cost a handful of transactions instead of hundreds,
while every caller still returns only once its change is durable (kill -9 safe).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from rawexec.agent.state import StateStore, Tx

if TYPE_CHECKING:
    from rawexec.agent.allocrunner import AllocRunner
    from rawexec.agent.taskrunner import TaskRunner

__all__ = ["Persister"]

Stub = tuple["AllocRunner", str]
"""An allocation and its list stub (JSON text) as written in a commit."""

log = logging.getLogger("rawexec.agent")


class Persister:
    """Batches writes of allocations, task states and driver handles into shared transactions."""

    def __init__(self, store: StateStore, on_commit: Callable[[list[Stub], int], None], *,
                 on_idle: Callable[[], None] | None = None, idle_after: float = 2.0) -> None:
        """``on_idle`` runs once on the writer thread when ``idle_after`` seconds passed without a
        write since the last commit (after a burst of starts: give memory back). No timer runs while
        nothing is written."""
        self._store = store
        self._on_commit = on_commit
        self._on_idle = on_idle
        self._idle_after = idle_after
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # guards the state below
        self._work = threading.Condition(lock)  # something was submitted (the writer only)
        # (generation, lock held until that generation is committed): one per waiting caller, so
        # a commit wakes exactly the callers it covers -- not every waiter, most of them only to
        # wait again (200 tasks starting at once: 200 waiters, dozens of commits)
        self._waiters: list[tuple[int, threading.Lock]] = []
        self._allocs: dict[str, AllocRunner] = {}
        self._tasks: dict[tuple[str, str], TaskRunner] = {}
        self._handles: list[tuple[str, str, bytes | None]] = []
        self._submitted = 0  # generation of the latest submission
        self._committed = 0  # generation covered by the latest commit
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="rawexec-persister", daemon=True)
        self._thread.start()

    def submit(self, alloc: AllocRunner, task: TaskRunner | None = None, *, handle: bytes | None = None,
               drop_handle: bool = False, all_tasks: bool = False) -> int:
        """Queue a write; returns its generation (pass it to :meth:`wait`)."""
        with self._cond:
            if self._closed:
                return self._submitted
            self._allocs[alloc.alloc_id] = alloc
            tasks = list(alloc.runners.values()) if all_tasks else ([task] if task is not None else [])
            for t in tasks:
                self._tasks[(alloc.alloc_id, t.name)] = t
            if task is not None and (handle is not None or drop_handle):
                self._handles.append((alloc.alloc_id, task.name, handle))
            self._submitted += 1
            self._work.notify()  # wake the writer only, not every waiter
            return self._submitted

    def wait(self, generation: int, timeout: float | None = 30.0) -> None:
        """Block until ``generation`` is committed (or the persister closed, or ``timeout``)."""
        with self._cond:
            if self._committed >= generation or self._closed:
                return
            waiter = threading.Lock()
            waiter.acquire()
            entry = (generation, waiter)
            self._waiters.append(entry)
        if not waiter.acquire(True, -1 if timeout is None else timeout):
            with self._cond:
                try:
                    self._waiters.remove(entry)
                except ValueError:  # released just now
                    pass

    def _release_waiters(self, upto: int | None) -> None:
        """Wake the waiters of generations up to ``upto`` (None: all). Called with the lock held."""
        waiters = self._waiters
        if not waiters:
            return
        if upto is None:
            done, self._waiters = waiters, []
        else:
            done = [w for w in waiters if w[0] <= upto]
            if not done:
                return
            self._waiters = [w for w in waiters if w[0] > upto]
        for _, lock in done:
            lock.release()

    def flush(self) -> None:
        with self._cond:
            gen = self._submitted
        self.wait(gen)

    def close(self) -> None:
        """Commit what is pending, then stop the writer."""
        self.flush()
        with self._cond:
            self._closed = True
            self._release_waiters(None)
            self._work.notify()
        self._thread.join(10)

    def _run(self) -> None:
        busy = False  # committed something since on_idle last ran
        while True:
            with self._cond:
                def pending() -> bool:
                    return self._submitted > self._committed or self._closed

                went_idle = False
                if busy and self._on_idle is not None:
                    went_idle = not self._work.wait_for(pending, self._idle_after)
                else:
                    self._work.wait_for(pending)
                if not went_idle:
                    if self._submitted == self._committed and self._closed:
                        return
                    gen = self._submitted
                    allocs, self._allocs = self._allocs, {}
                    tasks, self._tasks = self._tasks, {}
                    handles, self._handles = self._handles, []
            if went_idle:
                busy = False
                try:
                    if self._on_idle is not None:
                        self._on_idle()
                except Exception:
                    log.exception("idle hook failed")
                continue
            busy = True
            idx = 0
            stubs: list[Stub] = []
            try:
                with self._store.transaction() as tx:
                    idx = self._write(tx, allocs, tasks, handles, stubs)
            except Exception as e:  # a closed store at shutdown, or a full disk: keep the agent alive
                log.error("writing agent state failed: %s", e)
            with self._cond:
                self._committed = gen
                self._release_waiters(gen)
            if idx:
                try:
                    self._on_commit(stubs, idx)
                except Exception:
                    log.exception("publishing state changes failed")

    @staticmethod
    def _write(tx: Tx, allocs: dict[str, AllocRunner], tasks: dict[tuple[str, str], TaskRunner],
               handles: list[tuple[str, str, bytes | None]], stubs: list[Stub]) -> int:
        idx = tx.index() + 1
        for (alloc_id, name), t in tasks.items():
            tx.put_task_state_json(alloc_id, name, t.to_record_json())
        for alloc_id, name, blob in handles:
            if blob is None:
                tx.delete_driver_handle(alloc_id, name)
            else:
                tx.put_driver_handle(alloc_id, name, blob)
        for ar in allocs.values():
            ar.stamp(idx)
            # the list stub (with TaskStates) is served from memory (Agent.allocations_json), not stored
            stub, body = ar.encode()
            stubs.append((ar, stub))
            tx.put_alloc_json(ar.alloc_id, body, job_id=ar.job.id, namespace=ar.job.namespace)
        return idx
