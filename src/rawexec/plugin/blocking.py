"""The blocking pool: driver calls that may block, run off the event loop.

One queue feeds a pool of daemon threads, grown on demand like ``ThreadPoolExecutor`` (a new
thread only when none is idle) and large, because every WaitTask parks one thread in the
driver's wait for as long as its task runs.

Cheaper per call than ``loop.run_in_executor``: a result goes back to the loop with a single
``call_soon_threadsafe`` as the worker's last step, with no ``concurrent.futures.Future`` (its
condition, its callbacks, the chaining into an asyncio future) in between, and the worker then
waits for its next item at once, so the woken loop finds the GIL free. Measured on a busy
2-CPU machine: a bare grpc.aio call with one hop, 1.4-1.5 -> 1.1-1.4 ms of server CPU; the
plugin's InspectTask, p50 about 0.1 ms lower.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["BlockingPool", "blocking_pool", "run_blocking"]

T = TypeVar("T")

_Item = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


def _resolve(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """On the loop: hand the outcome to the awaiting coroutine, unless it stopped waiting."""
    if fut.done():  # cancelled meanwhile (the client went away): nobody wants it
        return
    if error is None:
        fut.set_result(result)
    else:
        fut.set_exception(error)


class BlockingPool:
    """Daemon worker threads (named ``{prefix}_N``) taking ``(loop, future, fn)`` from one queue."""

    def __init__(self, max_workers: int = 4096, prefix: str = "rpc") -> None:
        self.max_workers = max_workers
        self._prefix = prefix
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # one permit per worker waiting for an item
        self._lock = threading.Lock()
        self._threads = 0

    @property
    def thread_count(self) -> int:
        return self._threads

    def submit(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], fn: Callable[[], Any]) -> None:
        """Queue ``fn``; its result or exception resolves ``fut`` on ``loop``."""
        self._queue.put((loop, fut, fn))
        if self._idle.acquire(blocking=False):
            return  # a waiting worker takes it
        with self._lock:
            if self._threads >= self.max_workers:
                return  # it waits for the next worker to come free
            self._threads += 1
            name = f"{self._prefix}_{self._threads - 1}"
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        get, idle = self._queue.get, self._idle
        while True:
            item = get()
            if item is None:
                return
            loop, fut, fn = item
            del item
            if fut.cancelled():  # (a benign racy read) the caller stopped waiting before we began
                idle.release()
                continue
            error: BaseException | None = None
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting coroutine, as run_in_executor does
                result, error = None, exc
            del fn
            # Free from here on (a permit per free worker, as ThreadPoolExecutor): released before
            # the loop hears of the result, so a call it makes next reuses this worker.
            idle.release()
            try:
                loop.call_soon_threadsafe(_resolve, fut, result, error)
            except RuntimeError:  # the loop is closed: the process is exiting
                pass
            del fut, result, error

    def stop(self) -> None:
        """Let every worker exit once it is free; the pool is not to be used afterwards."""
        with self._lock:
            n = self._threads
        for _ in range(n):
            self._queue.put(None)


_pool: BlockingPool | None = None
_pool_lock = threading.Lock()


def blocking_pool() -> BlockingPool:
    """The process's pool for blocking driver work (created on first use)."""
    global _pool
    pool = _pool
    if pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = BlockingPool()
            pool = _pool
    return pool


async def run_blocking(fn: Callable[[], T]) -> T:
    """Run ``fn`` on the blocking pool and await its result (the event loop stays free)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()
    blocking_pool().submit(loop, fut, fn)
    return await fut
