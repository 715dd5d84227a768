"""DoneFlag: Event's is_set/set/wait, with the Event made only for a waiter; SlimCondition."""

from __future__ import annotations

import threading
import time

import pytest

from rawexec.agent.flag import DoneFlag, SlimCondition
from tests.helpers.util import wait_until


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
    assert f._event is None  # let go once set: its waiters held their own reference


def test_set_racing_waiters_never_lost() -> None:
    for _ in range(200):
        f = DoneFlag()
        got: list[bool] = []
        w = threading.Thread(target=lambda f=f, got=got: got.append(f.wait(5)))
        w.start()
        f.set()
        w.join(5)
        assert got == [True]


def test_slim_condition_is_a_condition() -> None:
    """wait / wait_for / notify / notify_all and re-entrancy, as threading.Condition over an RLock."""
    c = SlimCondition()
    with pytest.raises(RuntimeError):
        c.wait(0)
    with pytest.raises(RuntimeError):
        c.notify()
    with c, c:  # re-entrant
        t0 = time.monotonic()
        assert c.wait(0.05) is False and time.monotonic() - t0 >= 0.04
        assert c._waiters == []
    box: list[int] = []
    woke: list[bool] = []

    def waiter() -> None:
        with c:
            woke.append(c.wait_for(lambda: bool(box), 10))

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: len(c._waiters) == 3, 5)
    with c:
        c.notify()  # one wakes, sees nothing, waits again
    with c:
        box.append(1)
        c.notify_all()
    for t in threads:
        t.join(5)
    assert woke == [True] * 3 and c._waiters == []


def test_slim_condition_is_small() -> None:
    import sys

    c = SlimCondition()
    size = sys.getsizeof(c) + sys.getsizeof(c.__dict__) + sys.getsizeof(c._waiters)
    std = threading.Condition()
    std_size = sys.getsizeof(std) + sys.getsizeof(std.__dict__) + sys.getsizeof(std._waiters)  # type: ignore[attr-defined]
    assert size < std_size / 2
