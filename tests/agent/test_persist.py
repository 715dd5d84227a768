"""The persister's group commit and its idle hook."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from rawexec.agent.persist import Persister
from rawexec.agent.state import StateStore


class _Job:
    id = "j"
    namespace = "default"


class _Alloc:
    """The part of an AllocRunner the persister uses."""

    def __init__(self, alloc_id: str) -> None:
        self.alloc_id = alloc_id
        self.runners: dict[str, Any] = {}
        self.job = _Job()
        self.idx = 0

    def stamp(self, idx: int) -> None:
        self.idx = idx

    def stub(self, *, task_states: bool = True) -> dict[str, Any]:
        return {"ID": self.alloc_id, "ModifyIndex": self.idx}

    def encode(self) -> tuple[str, str]:
        base = self.stub(task_states=False)
        return json.dumps(base)[:-1] + ',"TaskStates":{}}', json.dumps(base)


def test_commits_then_runs_the_idle_hook_once_per_burst(tmp_path: Path) -> None:
    commits: list[tuple[list[str], int]] = []
    idle = threading.Semaphore(0)
    idle_calls: list[float] = []

    def on_idle() -> None:
        idle_calls.append(time.monotonic())
        idle.release()

    with StateStore(tmp_path) as store:
        p = Persister(store, lambda stubs, idx: commits.append(([s for _, s in stubs], idx)),
                      on_idle=on_idle, idle_after=0.2)
        try:
            time.sleep(0.4)
            assert idle_calls == []  # nothing written yet: no hook, no timer
            a = _Alloc("a1")
            p.wait(p.submit(a))  # type: ignore[arg-type]
            assert store.get_alloc("a1") == {"ID": "a1", "ModifyIndex": commits[-1][1]}
            assert json.loads(commits[-1][0][0]) == {"ID": "a1", "ModifyIndex": commits[-1][1], "TaskStates": {}}
            assert idle.acquire(timeout=10)
            time.sleep(0.5)
            assert len(idle_calls) == 1  # once per burst, not periodically
            p.wait(p.submit(_Alloc("a2")))  # type: ignore[arg-type]
            assert idle.acquire(timeout=10) and len(idle_calls) == 2
        finally:
            p.close()


def test_waiters_wake_when_their_generation_commits(tmp_path: Path) -> None:
    """Each caller returns once its own write is committed; a commit wakes only the callers it
    covers; a timed-out wait leaves nothing behind; close() wakes everyone."""
    with StateStore(tmp_path) as store:
        gate = threading.Event()
        commits: list[int] = []

        def on_commit(stubs: list[Any], idx: int) -> None:
            commits.append(idx)
            gate.wait(10)  # holds the writer: the next submissions wait for the next commit

        p = Persister(store, on_commit)
        try:
            g1 = p.submit(_Alloc("a1"))  # type: ignore[arg-type]
            # the first commit is in on_commit, held: a2..a9 go into the next one
            deadline = time.monotonic() + 10
            while not commits and time.monotonic() < deadline:
                time.sleep(0.01)
            p.wait(g1)
            done: list[str] = []
            threads = []
            def wait_then(gen: int, name: str, out: list[str], timeout: float | None = 30.0) -> None:
                p.wait(gen, timeout)
                out.append(name)

            for i in range(2, 10):
                g = p.submit(_Alloc(f"a{i}"))  # type: ignore[arg-type]
                t = threading.Thread(target=wait_then, args=(g, f"a{i}", done))
                t.start()
                threads.append(t)
            time.sleep(0.2)
            assert done == [] and len(p._waiters) == 8  # not committed yet: all still waiting
            t0 = time.monotonic()
            p.wait(p._submitted, timeout=0.05)  # a timed-out wait
            assert time.monotonic() - t0 >= 0.04 and len(p._waiters) == 8  # and takes its entry out again
            gate.set()
            for t in threads:
                t.join(10)
            assert sorted(done) == [f"a{i}" for i in range(2, 10)] and p._waiters == []
            assert all(store.get_alloc(f"a{i}") is not None for i in range(1, 10))
            gate.clear()
            late = p.submit(_Alloc("late"))  # type: ignore[arg-type]
            woke: list[str] = []
            t = threading.Thread(target=wait_then, args=(late, "late", woke, None))
            t.start()
        finally:
            gate.set()
            p.close()
        t.join(10)
        assert woke == ["late"] and p._waiters == []
