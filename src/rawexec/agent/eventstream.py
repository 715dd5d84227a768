"""The agent's event stream: Nomad ``/v1/event/stream`` events (Topic, Type, Key, Index, Payload)."""

from __future__ import annotations

import collections
import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Event", "EventBroker", "EventSubscription"]


@dataclass(frozen=True)
class Event:
    """One Nomad stream event. The payload is kept as JSON text, encoded once when published: a
    snapshot of that moment (later changes to the published object do not leak in), compact in the
    ring (thousands of allocation stubs), and copied as is into the stream."""

    topic: str
    type: str
    key: str
    index: int
    payload_json: str = "{}"
    namespace: str = ""
    """The object's namespace; "" for objects outside namespaces (nodes): those pass every filter."""
    filter_keys: tuple[str, ...] = ()
    """More keys a ``Topic:Key`` subscription matches (an allocation's JobID and DeploymentID)."""

    @classmethod
    def of(cls, topic: str, type_: str, key: str, index: int, payload: dict[str, Any],
           namespace: str = "", filter_keys: tuple[str, ...] = ()) -> Event:
        """An event with ``payload`` encoded now."""
        return cls(topic, type_, key, index, json.dumps(payload, separators=(",", ":"), default=str), namespace,
                   filter_keys)

    @property
    def payload(self) -> dict[str, Any]:
        """The payload, decoded (a fresh copy on every access)."""
        out: dict[str, Any] = json.loads(self.payload_json)
        return out

    def matches(self, key: str) -> bool:
        """Whether a subscription key selects this event: ``*``, its Key, or one of its FilterKeys."""
        return key in ("*", self.key) or key in self.filter_keys

    def to_api(self) -> dict[str, Any]:
        return {"Topic": self.topic, "Type": self.type, "Key": self.key, "Namespace": self.namespace,
                "FilterKeys": list(self.filter_keys) or None, "Index": self.index, "Payload": self.payload}

    def to_api_json(self) -> str:
        """:meth:`to_api` as JSON text, with the payload copied in without decoding it."""
        head = json.dumps({"Topic": self.topic, "Type": self.type, "Key": self.key, "Namespace": self.namespace,
                           "FilterKeys": list(self.filter_keys) or None, "Index": self.index},
                          separators=(",", ":"))
        return head[:-1] + ',"Payload":' + self.payload_json + "}"


class EventBroker:
    """A bounded in-memory ring of recent events with blocking subscriptions: at most ``size``
    events and ``max_bytes`` of payload text (the oldest are dropped first; Nomad keeps 100: 1 MiB
    still holds ~400 allocation updates of ~2.5 KB, and is 1 MiB of the agent's RSS less than 2)."""

    def __init__(self, size: int = 4096, max_bytes: int = 1024 * 1024) -> None:
        self._ring: collections.deque[Event] = collections.deque()
        self._size = size
        self._max_bytes = max_bytes
        self._bytes = 0
        self._cond = threading.Condition()
        self._closed = False
        self._published = 0  # events ever published: the sequence number of the next one

    def publish(self, event: Event) -> None:
        with self._cond:
            self._ring.append(event)
            self._published += 1
            self._bytes += len(event.payload_json)
            while len(self._ring) > 1 and (len(self._ring) > self._size or self._bytes > self._max_bytes):
                self._bytes -= len(self._ring.popleft().payload_json)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(self, index: int = 0) -> EventSubscription:
        """Events with Index >= ``index`` (those still in the ring; Nomad starts at the closest index at
        or after the one asked for), then new ones as they come."""
        with self._cond:
            first = self._published - len(self._ring)
            start = next((first + i for i, e in enumerate(self._ring) if e.index >= index), self._published)
        return EventSubscription(self, index, start)

    def _since(self, seq: int, timeout: float | None) -> tuple[list[Event], int]:
        """Events published from sequence number ``seq`` on (those still in the ring) and the next
        sequence number. By publication order, not by index: an event published late with a lower
        index (its publisher was slower than a later commit's) is still delivered."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._published > seq, timeout)
            skip = max(0, seq - (self._published - len(self._ring)))
            return list(itertools.islice(self._ring, skip, None)), self._published


class EventSubscription:
    """Iterator over events; ``next_batch(timeout)`` for non-blocking polling (API heartbeats)."""

    def __init__(self, broker: EventBroker, index: int, seq: int) -> None:
        self._broker = broker
        self.index = index
        """The lowest index delivered (events from before the subscription's start are skipped)."""
        self._seq = seq
        self._pending: collections.deque[Event] = collections.deque()

    def next_batch(self, timeout: float | None = None) -> list[Event]:
        """Events newer than the last one returned; [] on timeout or when the broker closed."""
        if self._pending:
            out = list(self._pending)
            self._pending.clear()
            return out
        return self._fetch(timeout)

    def _fetch(self, timeout: float | None) -> list[Event]:
        batch, self._seq = self._broker._since(self._seq, timeout)
        return [e for e in batch if e.index >= self.index]

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        while not self._pending:
            if self._broker.closed:
                raise StopIteration
            self._pending.extend(self._fetch(None))
        return self._pending.popleft()
