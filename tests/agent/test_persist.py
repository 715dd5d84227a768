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
