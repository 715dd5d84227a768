"""DoneFlag: Event's is_set/set/wait, with the Event made only for a waiter."""

from __future__ import annotations

import threading
import time

from rawexec.agent.flag import DoneFlag


def test_set_then_wait_makes_no_event() -> None:
    f = DoneFlag()
    assert not f.is_set()
    f.set()
    assert f.is_set() and f.wait() and f.wait(0) and f._event is None


def test_wait_times_out_then_is_woken() -> None:
    f = DoneFlag()
    t0 = time.monotonic()
    assert f.wait(0.05) is False and time.monotonic() - t0 >= 0.04
    results: list[bool] = []
    waiters = [threading.Thread(target=lambda: results.append(f.wait(10))) for _ in range(4)]
    for w in waiters:
        w.start()
    time.sleep(0.05)
    f.set()
    for w in waiters:
        w.join(5)
    assert results == [True] * 4 and f.is_set()


def test_set_racing_waiters_never_lost() -> None:
    for _ in range(200):
        f = DoneFlag()
        got: list[bool] = []
        w = threading.Thread(target=lambda f=f, got=got: got.append(f.wait(5)))
        w.start()
        f.set()
        w.join(5)
        assert got == [True]
