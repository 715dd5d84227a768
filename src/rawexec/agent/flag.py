"""A one-way "done" flag for the agent's thousands of allocations and task runners."""

from __future__ import annotations

import threading
from typing import ClassVar

__all__ = ["DoneFlag"]


class DoneFlag:
    """``threading.Event``'s ``is_set``/``set``/``wait`` for a flag that is set once, in ~60 bytes
    instead of ~1.2 KB (an Event holds a Condition, its deque and bound methods): the Event is
    made only for a waiter that finds the flag unset. 1,000 finished allocations keep two each."""

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
