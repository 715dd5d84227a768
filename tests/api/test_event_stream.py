"""``/v1/event/stream`` as Nomad sends it: event types, filter keys, start index, frames, namespaces."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.api.conftest import Served
from tests.api.test_http import job_json, register
from tests.helpers.util import wait_until

Frame = dict[str, Any]


class Reader:
    """Reads a stream's frames on a thread (heartbeats dropped); the test waits on :meth:`until`."""

    def __init__(self, s: Served, params: dict[str, str]) -> None:
        self.frames: list[Frame] = []
        self.status = 0
        self._client = httpx.Client(base_url="http://rawexec", transport=httpx.HTTPTransport(uds=s.server.unix_path),
                                    timeout=httpx.Timeout(30, read=None))
        self._params = params
        self._resp: httpx.Response | None = None
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._opened.wait(10)
        assert self.status == 200

    def _run(self) -> None:
        try:
            with self._client.stream("GET", "/v1/event/stream", params=self._params) as r:
                self._resp = r
                self.status = r.status_code
                self._opened.set()
                for line in r.iter_lines():
                    if line.strip() and line.strip() != "{}":
                        self.frames.append(json.loads(line))
        except (httpx.HTTPError, RuntimeError):  # closed by the test
            pass
        finally:
            self._opened.set()

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for f in list(self.frames) for e in f["Events"]]

    def until(self, pred: Callable[[list[dict[str, Any]]], object], msg: str, timeout: float = 20) -> None:
        wait_until(lambda: pred(self.events), timeout, interval=0.02, msg=msg)

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
        self._client.close()
        self._thread.join(10)


@contextmanager
def reading(s: Served, params: dict[str, str] | None = None) -> Iterator[Reader]:
    r = Reader(s, params or {})
    try:
        yield r
    finally:
        r.close()


def batch_job(job_id: str, *ops: str, namespace: str = "default") -> dict[str, Any]:
    job = job_json(job_id, *ops)
    job["Job"]["Type"] = "batch"
    job["Job"]["Namespace"] = namespace
    return job


def test_job_events_are_typed_by_the_change_that_made_them(served: Served) -> None:
    with reading(served, {"topic": "Job:*"}) as rd:
        assert served.unix.put("/v1/jobs", json=batch_job("fin", "exit", "0")).status_code == 200

        def dead(evs: list[dict[str, Any]]) -> bool:
            return any(e["Payload"]["Job"]["Status"] == "dead" for e in evs)

        rd.until(dead, "no event for the finished job")
        types = [e["Type"] for e in rd.events]
        assert types[0] == "JobRegistered"
        assert "JobUpdated" not in types and "JobDeregistered" not in types  # finishing is not a deregistration
        done = next(e for e in rd.events if e["Payload"]["Job"]["Status"] == "dead")
        assert done["Type"] == "AllocationUpdated" and done["Payload"]["Job"]["Stop"] is False
        assert done["Payload"]["Job"]["ModifyIndex"] == done["Index"]

        assert served.unix.delete("/v1/job/fin").status_code == 200
        rd.until(lambda evs: evs[-1]["Type"] == "JobDeregistered", "no JobDeregistered after the stop")
        assert rd.events[-1]["Payload"]["Job"]["Stop"] is True


def test_allocation_topic_matches_the_job_id_filter_key(served: Served) -> None:
    with reading(served, {"topic": "Allocation:wanted"}) as rd:
        other = register(served, job_json("other", "sleep", "60"))
        alloc_id = register(served, job_json("wanted", "sleep", "60"))
        rd.until(lambda evs: any(e["Payload"]["Allocation"]["ClientStatus"] == "running" for e in evs),
                 "no allocation event for the job's key")
        assert {e["Key"] for e in rd.events} == {alloc_id} and other not in {e["Key"] for e in rd.events}
        assert all(e["FilterKeys"] == ["wanted", ""] and e["Namespace"] == "default" for e in rd.events)


def test_start_index_is_inclusive_and_frames_hold_one_index(served: Served) -> None:
    register(served, job_json("frames", "sleep", "60", count=2))
    with reading(served, {"index": "1"}) as rd:  # everything still in the ring, delivered at once
        rd.until(lambda evs: any(e["Topic"] == "Allocation" and e["Payload"]["Allocation"]["ClientStatus"]
                                 == "running" for e in evs), "no running allocation in the replay")
        frames = list(rd.frames)
    assert len({f["Index"] for f in frames}) > 1
    for f in frames:
        assert f["Events"] and all(e["Index"] == f["Index"] for e in f["Events"]), f
    starts = [f["Index"] for f in frames]
    assert starts == sorted(starts) and len(starts) == len(set(starts))
    n = starts[len(starts) // 2]
    with reading(served, {"index": str(n)}) as rd:
        rd.until(bool, "nothing from the index asked for")
        assert rd.frames[0]["Index"] == n  # Nomad starts at the given index, not after it


def test_namespace_filter(served: Served) -> None:
    job = job_json("nsjob", "sleep", "60")
    job["Job"]["Namespace"] = "team"
    with reading(served) as default_rd, reading(served, {"namespace": "team"}) as team_rd, \
            reading(served, {"namespace": "*"}) as all_rd:
        assert served.unix.put("/v1/jobs", json=job).status_code == 200
        assert served.unix.put("/v1/jobs", json=job_json("defjob", "sleep", "60")).status_code == 200

        def both_running(evs: list[dict[str, Any]]) -> bool:
            running = {e["Payload"]["Allocation"]["JobID"] for e in evs if e["Topic"] == "Allocation"
                       and e["Payload"]["Allocation"]["ClientStatus"] == "running"}
            return running == {"nsjob", "defjob"}

        all_rd.until(both_running, "the * stream misses a namespace")
        team_rd.until(lambda evs: any(e["Topic"] == "Allocation" for e in evs), "no event in namespace team")
        default_rd.until(lambda evs: any(e["Key"] == "defjob" for e in evs), "no event in namespace default")
    # a node is in no namespace: its events reach every stream
    assert {e["Namespace"] for e in team_rd.events} == {"team", ""}
    assert {e["Namespace"] for e in default_rd.events} == {"default", ""}
    assert {e["Namespace"] for e in all_rd.events} == {"team", "default", ""}
    assert all(e["Topic"] == "Node" for e in all_rd.events if e["Namespace"] == "")
