"""The event ring: payloads are JSON snapshots, bounded in count and in bytes."""

from __future__ import annotations

import json

from rawexec.agent.eventstream import Event, EventBroker


def test_payload_is_a_snapshot_and_streams_as_is() -> None:
    payload = {"Job": {"ID": "a", "Status": "pending"}}
    e = Event.of("Job", "JobRegistered", "a", 7, payload, "default")
    payload["Job"]["Status"] = "running"  # a later change to the published object does not leak in
    assert e.payload == {"Job": {"ID": "a", "Status": "pending"}}
    assert json.loads(e.to_api_json()) == e.to_api() == {
        "Topic": "Job", "Type": "JobRegistered", "Key": "a", "Namespace": "default", "FilterKeys": None,
        "Index": 7, "Payload": {"Job": {"ID": "a", "Status": "pending"}}}


def test_filter_keys_match_and_are_sent() -> None:
    e = Event("Allocation", "AllocationUpdated", "a1", 3, "{}", "team", ("web", ""))
    sent = json.loads(e.to_api_json())
    assert sent["FilterKeys"] == ["web", ""] and sent["Namespace"] == "team"
    assert e.matches("a1") and e.matches("web") and e.matches("*") and not e.matches("other")


def test_subscription_starts_at_the_index_asked_for() -> None:
    b = EventBroker()
    for i in (0, 2, 2, 5):
        b.publish(Event("Job", "JobRegistered", str(i), i))
    assert [e.index for e in b.subscribe(0).next_batch(0)] == [0, 2, 2, 5]
    assert [e.index for e in b.subscribe(2).next_batch(0)] == [2, 2, 5]  # inclusive, as Nomad
    assert [e.index for e in b.subscribe(3).next_batch(0)] == [5]  # the closest index after it
    assert b.subscribe(6).next_batch(0) == []


def test_ring_bounded_by_count_and_bytes() -> None:
    b = EventBroker(size=5, max_bytes=1000)
    for i in range(1, 9):
        b.publish(Event("Allocation", "AllocationUpdated", str(i), i, json.dumps({"x": i})))
    assert [e.index for e in b.subscribe(0).next_batch(0)] == [4, 5, 6, 7, 8]
    big = "x" * 400
    for i in range(9, 13):
        b.publish(Event("Allocation", "AllocationUpdated", str(i), i, json.dumps({"x": big})))
    got = [e.index for e in b.subscribe(0).next_batch(0)]
    assert got == [11, 12] and sum(len(e.payload_json) for e in b.subscribe(0).next_batch(0)) <= 1000
    huge = Event("Allocation", "AllocationUpdated", "h", 13, json.dumps({"x": "y" * 5000}))
    b.publish(huge)  # one event larger than the budget is still kept (the newest always is)
    assert [e.index for e in b.subscribe(0).next_batch(0)] == [13]
    assert [e.index for e in b.subscribe(13).next_batch(0)] == [13]


def test_an_event_published_late_with_a_lower_index_is_not_lost() -> None:
    b = EventBroker()
    sub = b.subscribe(0)
    b.publish(Event("Allocation", "AllocationUpdated", "a", 5))
    assert [e.index for e in sub.next_batch(0)] == [5]
    b.publish(Event("Job", "JobRegistered", "j", 4))  # committed before 5, published after it
    b.publish(Event("Allocation", "AllocationUpdated", "a", 6))
    assert [e.index for e in sub.next_batch(0)] == [4, 6]
    assert sub.next_batch(0) == []
