"""Blocking queries (``?index=&wait=``) and the indexes they wait on, over a real server and agent."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from rawexec.agent.agent import Agent
from rawexec.api.blocking import parse_go_duration
from rawexec.api.server import ApiServer
from tests.api.conftest import Served, make_config
from tests.api.test_http import job_json, register
from tests.helpers.util import wait_until


def index_of(r: httpx.Response) -> int:
    assert r.status_code == 200, r.text
    return int(r.headers["X-Nomad-Index"])


def timed_get(client: httpx.Client, path: str, **params: Any) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    r = client.get(path, params=params)
    return r, time.monotonic() - t0


def blocked_get(pool: ThreadPoolExecutor, s: Served, path: str, index: int, wait: str = "20s") -> Future[Any]:
    """Start a blocking GET; return once the server holds it (the request is parked, not answered)."""
    fut = pool.submit(timed_get, s.unix, path, index=str(index), wait=wait)
    with pytest.raises(TimeoutError):
        fut.result(timeout=0.3)  # still waiting: nothing relevant changed
    return fut


def test_go_durations() -> None:
    assert parse_go_duration("5s") == 5 and parse_go_duration("1m") == 60 and parse_go_duration("0") == 0
    assert parse_go_duration("1h2m3.5s") == 3723.5 and parse_go_duration("250ms") == pytest.approx(0.25)
    for bad, why in (("5", "missing unit"), ("5d", 'unknown unit "d"'), ("", "invalid"), ("s", "invalid")):
        with pytest.raises(ValueError, match=why):
            parse_go_duration(bad)


def test_wait_elapses_with_the_current_index(served: Served) -> None:
    node_id = served.agent.node["ID"]
    for path in ("/v1/jobs", "/v1/allocations", "/v1/nodes", f"/v1/node/{node_id}"):
        now = index_of(served.unix.get(path))
        r, took = timed_get(served.unix, path, index=str(now), wait="300ms")
        assert index_of(r) == now and 0.3 <= took < 5, (path, took)
        r, took = timed_get(served.unix, path, index="5000", wait="200ms")  # an index from the future
        assert index_of(r) == now and 0.2 <= took < 5, (path, took)
    # no index (or 0): answered at once, whatever the wait
    r, took = timed_get(served.unix, "/v1/jobs", index="0", wait="10s")
    assert r.status_code == 200 and took < 5


def test_malformed_index_or_wait_is_400(served: Served) -> None:
    for params, text in (({"index": "abc"}, "Invalid index"), ({"index": "-1"}, "Invalid index"),
                         ({"index": "1", "wait": "5"}, 'Invalid wait time: time: missing unit in duration "5"'),
                         ({"wait": "5d"}, 'unknown unit "d"'), ({"wait": "soon"}, "Invalid wait time")):
        for path in ("/v1/jobs", "/v1/allocations", "/v1/node/self"):
            r = served.unix.get(path, params=params)
            assert r.status_code == 400 and text in r.text, (path, params, r.status_code, r.text)


def test_job_status_changes_move_indexes_and_wake_watchers(served: Served) -> None:
    job = job_json("web", "sleep", "60")
    assert served.unix.put("/v1/jobs", json=job).status_code == 200
    register(served, job)
    r = served.unix.get("/v1/job/web")
    j = r.json()
    assert j["Status"] == "running"
    # pending -> running is a status change: ModifyIndex moves past the registration's JobModifyIndex
    assert j["ModifyIndex"] > j["JobModifyIndex"] == j["CreateIndex"]
    assert index_of(r) == j["ModifyIndex"]

    def summary_running() -> bool:
        return bool(served.unix.get("/v1/job/web/summary").json()["Summary"]["g"]["Running"] == 1)

    wait_until(summary_running, 10, msg="summary not running")
    summary = served.unix.get("/v1/job/web/summary")
    assert summary.json()["ModifyIndex"] > j["JobModifyIndex"]  # the counts changed after registration
    assert index_of(summary) == summary.json()["ModifyIndex"]
    jobs_idx = index_of(served.unix.get("/v1/jobs"))
    allocs_idx = index_of(served.unix.get("/v1/job/web/allocations"))

    with ThreadPoolExecutor(8) as pool:
        waiting = {
            "job": blocked_get(pool, served, "/v1/job/web", j["ModifyIndex"]),
            "summary": blocked_get(pool, served, "/v1/job/web/summary", summary.json()["ModifyIndex"]),
            "jobs": blocked_get(pool, served, "/v1/jobs", jobs_idx),
            "job_allocs": blocked_get(pool, served, "/v1/job/web/allocations", allocs_idx),
            "allocs": blocked_get(pool, served, "/v1/allocations", allocs_idx),
        }
        alloc_id = served.unix.get("/v1/job/web/allocations").json()[0]["ID"]
        alloc_idx = index_of(served.unix.get(f"/v1/allocation/{alloc_id}"))
        waiting["alloc"] = blocked_get(pool, served, f"/v1/allocation/{alloc_id}", alloc_idx)
        stopped = served.unix.delete("/v1/job/web")
        assert stopped.status_code == 200
        got = {k: f.result(timeout=30) for k, f in waiting.items()}
    for name, (_resp, took) in got.items():
        assert took < 20, (name, took)  # woken by the change, not by the wait running out
    assert index_of(got["job"][0]) > j["ModifyIndex"] and got["job"][0].json()["Stop"] is True
    assert index_of(got["jobs"][0]) > jobs_idx
    assert index_of(got["job_allocs"][0]) > allocs_idx and index_of(got["allocs"][0]) > allocs_idx
    assert index_of(got["alloc"][0]) > alloc_idx
    assert index_of(got["summary"][0]) > summary.json()["ModifyIndex"]

    # running -> dead once the allocation is gone: again a new ModifyIndex (JobModifyIndex stays)
    stop_idx = stopped.json()["JobModifyIndex"]
    r, took = timed_get(served.unix, "/v1/job/web", index=str(stop_idx), wait="20s")
    dead = r.json()
    if dead["Status"] != "dead":  # the stop's own index was passed first; wait for the next change
        r, took = timed_get(served.unix, "/v1/job/web", index=str(index_of(r)), wait="20s")
        dead = r.json()
    assert dead["Status"] == "dead" and dead["ModifyIndex"] > dead["JobModifyIndex"] == stop_idx
    assert index_of(r) == dead["ModifyIndex"] and took < 20


def test_a_thousand_waiters_cost_no_threads(served: Served) -> None:
    alloc_id = register(served, job_json("many", "sleep", "60"))
    idx = index_of(served.unix.get("/v1/allocations"))
    threads_before = threading.active_count()
    n = 1000

    async def run() -> list[tuple[int, int]]:
        transport = httpx.AsyncHTTPTransport(uds=served.server.unix_path,
                                             limits=httpx.Limits(max_connections=n + 10))
        async with httpx.AsyncClient(base_url="http://rawexec", transport=transport, timeout=60) as c:
            async def one(i: int) -> tuple[int, int]:
                path = "/v1/allocations" if i % 2 else f"/v1/allocation/{alloc_id}"
                r = await c.get(path, params={"index": str(idx), "wait": "30s"})
                return r.status_code, int(r.headers["X-Nomad-Index"])

            tasks = [asyncio.create_task(one(i)) for i in range(n)]
            await asyncio.sleep(1.0)
            assert not any(t.done() for t in tasks)  # all parked
            assert threading.active_count() < threads_before + 50  # no thread per waiting request
            t0 = time.monotonic()
            r = await c.put(f"/v1/allocation/{alloc_id}/stop")
            assert r.status_code == 200
            out = await asyncio.gather(*tasks)
            assert time.monotonic() - t0 < 20
            return out

    results = asyncio.run(run())
    assert all(code == 200 and got > idx for code, got in results)


def _held_socket(s: Served, path: str) -> socket.socket:
    """A raw HTTP/1.1 GET on the unix socket, sent and left unread (a client that may hang up)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(s.server.unix_path)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: rawexec\r\n\r\n".encode())
    return sock


def test_a_client_that_hangs_up_stops_waiting(served: Served) -> None:
    idx = index_of(served.unix.get("/v1/jobs"))
    held = [_held_socket(served, f"/v1/jobs?index={idx}&wait=10m") for _ in range(3)]
    watch = served.server.watch
    wait_until(lambda: watch.waiting == 3, 5, msg="the blocking queries are not waiting")
    for sock in held:
        sock.close()  # as `timeout 2 curl ...?index=...&wait=10m` does
    wait_until(lambda: watch.waiting == 0, 5, msg="blocking queries still wait for clients that left")
    assert index_of(served.unix.get("/v1/jobs")) == idx


def test_shutdown_ends_waiting_queries_and_streams_cleanly(short_dir: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    agent = Agent(make_config(short_dir), dev=True)
    agent.start()
    server = ApiServer(agent, agent.config, tcp=None)
    server.start()
    try:
        client = httpx.Client(base_url="http://rawexec", transport=httpx.HTTPTransport(uds=server.unix_path),
                              timeout=30)
        idx = index_of(client.get("/v1/jobs"))
        with ThreadPoolExecutor(4) as pool, caplog.at_level(logging.INFO, logger="uvicorn.error"):
            waiting = [pool.submit(client.get, "/v1/jobs", params={"index": str(idx), "wait": "10m"})
                       for _ in range(3)]

            def read_events() -> list[str]:
                with client.stream("GET", "/v1/event/stream") as r:
                    return list(r.iter_lines())  # to the stream's clean end (a broken one raises)

            events = pool.submit(read_events)
            wait_until(lambda: server.watch.waiting == 3, 5, msg="the blocking queries are not waiting")
            t0 = time.monotonic()
            server.stop()
            took = time.monotonic() - t0
            answers = [f.result(timeout=10) for f in waiting]
            events.result(timeout=10)
        client.close()
    finally:
        server.stop()
        agent.shutdown(stop_tasks=True, timeout=20)
    # each answered with the data as it is (no change: the same index), none cancelled by the server
    assert [(r.status_code, index_of(r), r.json()) for r in answers] == [(200, idx, [])] * 3
    assert took < 1.5, took  # uvicorn's graceful timeout (2 s) was never reached
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Exception in ASGI application" not in logged and "timeout graceful shutdown" not in logged, logged
