"""The blocking pool behind every driver call of the plugin (rawexec.plugin.blocking)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from rawexec.plugin.blocking import BlockingPool, blocking_pool, run_blocking


def test_results_and_exceptions_come_back_on_the_loop() -> None:
    async def main() -> None:
        loop_thread = threading.get_ident()
        seen: list[int] = []

        def work() -> int:
            seen.append(threading.get_ident())
            return 42

        assert await run_blocking(work) == 42
        assert seen and seen[0] != loop_thread

        def boom() -> None:
            raise KeyError("nope")

        with pytest.raises(KeyError, match="nope"):
            await run_blocking(boom)
        assert threading.current_thread().name.startswith("MainThread")

    asyncio.run(main())
    assert blocking_pool() is blocking_pool()


def test_a_parked_worker_does_not_hold_up_new_work_and_idle_workers_are_reused() -> None:
    """Like WaitTask: a call parked for a long time; other calls still run at once, on a worker
    that has come free where there is one (no thread per call)."""
    pool = BlockingPool(max_workers=64, prefix="t")
    release = threading.Event()

    async def submit(fn: object) -> object:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[object] = loop.create_future()
        pool.submit(loop, fut, fn)  # type: ignore[arg-type]
        return await fut

    async def main() -> None:
        parked = asyncio.ensure_future(submit(lambda: release.wait(30)))
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        for i in range(50):
            assert await submit(lambda i=i: i * 2) == i * 2
        assert time.monotonic() - t0 < 10
        assert pool.thread_count == 2  # the parked one, and one reused for the 50 quick calls
        release.set()
        assert await parked is True

    try:
        asyncio.run(main())
    finally:
        release.set()
        pool.stop()


def test_a_cancelled_call_is_skipped_or_its_result_dropped() -> None:
    pool = BlockingPool(max_workers=1, prefix="c")
    gate = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        busy: asyncio.Future[object] = loop.create_future()
        pool.submit(loop, busy, lambda: gate.wait(10))
        queued: asyncio.Future[object] = loop.create_future()
        pool.submit(loop, queued, lambda: ran.append("queued"))
        queued.cancel()  # the client went away while the call waited for a worker
        gate.set()
        assert await busy is True
        after: asyncio.Future[object] = loop.create_future()
        pool.submit(loop, after, lambda: ran.append("after"))
        await after
        assert ran == ["after"]

    try:
        asyncio.run(main())
    finally:
        gate.set()
        pool.stop()


def test_the_pool_is_bounded() -> None:
    """Past max_workers, calls wait for a worker to come free instead of adding threads."""
    pool = BlockingPool(max_workers=2, prefix="b")
    gate = threading.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        futs = []
        for _ in range(5):
            fut: asyncio.Future[object] = loop.create_future()
            pool.submit(loop, fut, lambda: gate.wait(10))
            futs.append(fut)
        await asyncio.sleep(0.05)
        assert pool.thread_count == 2 and not any(f.done() for f in futs)
        gate.set()
        assert await asyncio.gather(*futs) == [True] * 5

    try:
        asyncio.run(main())
    finally:
        gate.set()
        pool.stop()
