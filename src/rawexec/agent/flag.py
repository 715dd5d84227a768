"""Small synchronisation objects for the agent's thousands of allocations and task runners: a
one-way "done" flag and a condition variable, each a fraction of the stdlib's size."""

from __future__ import annotations

import threading
from typing import ClassVar

__all__ = ["DoneFlag", "SlimCondition"]


class DoneFlag:
    """``threading.Event``'s ``is_set``/``set``/``wait`` for a flag that is set once, in ~60 bytes
    instead of ~1.2 KB (an Event holds a Condition, its deque and bound methods): the Event is
    made only for a waiter that finds the flag unset, and let go once set. 1,000 finished
    allocations keep two each."""

    __slots__ = ("_event", "_set")
    _lock: ClassVar[threading.Lock] = threading.Lock()  # pairs a waiter's Event with set(); held briefly

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with DoneFlag._lock:
            self._set = True
            event = self._event
            self._event = None  # its waiters hold it; a later wait() sees the flag set
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once set; False when ``timeout`` passed first."""
        if self._set:
            return True
        with DoneFlag._lock:
            if self._set:
                return True
            event = self._event
            if event is None:
                event = self._event = threading.Event()
        return event.wait(timeout)


class SlimCondition(threading.Condition):
    """``threading.Condition`` over its own ``RLock`` in ~300 bytes instead of ~1.3 KB.

    The stdlib's keeps five bound methods of its lock as attributes and its waiters in a deque
    (whose first block alone is ~600 bytes); every task runner has one, for as long as the agent
    keeps the allocation. Here the methods are plain delegates and the waiters a list: the
    inherited ``wait``/``wait_for``/``notify``/``notify_all`` only ``append``, ``remove`` and
    iterate it. Written against CPython 3.11's ``threading.Condition``.
    """

    def __init__(self) -> None:  # no super().__init__(): that is what binds the methods
        self._lock = threading.RLock()
        self._waiters: list[threading.Lock] = []  # a list: see the class docs

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def _release_save(self) -> object:
        return self._lock._release_save()  # type: ignore[attr-defined]

    def _acquire_restore(self, state: object) -> None:
        self._lock._acquire_restore(state)  # type: ignore[attr-defined]

    def _is_owned(self) -> bool:
        return bool(self._lock._is_owned())  # type: ignore[attr-defined]
