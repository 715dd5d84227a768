"""Nomad's agent, node, namespace, client-stats and fs readat/stream endpoints over a real agent and server."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import httpx
import psutil

from tests.api.conftest import Served
from tests.api.test_http import job_json, register
from tests.helpers.util import wait_until


def _frames(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.strip()]


def _data(frames: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(f["Data"]) for f in frames if "Data" in f)


def test_node_allocations_are_the_full_allocations(served: Served) -> None:
    s = served
    alloc_id = register(s, job_json("nodealloc", "sleep", "60"))
    prod = job_json("nodealloc", "sleep", "60")
    prod["Job"]["Namespace"] = "prod"
    assert s.unix.put("/v1/jobs", json=prod).status_code == 200
    node_id = s.agent.node["ID"]
    wait_until(lambda: len(s.unix.get(f"/v1/node/{node_id}/allocations").json()) == 2, 20, interval=0.05)
    r = s.unix.get(f"/v1/node/{node_id}/allocations")
    assert r.status_code == 200
    allocs = {a["ID"]: a for a in r.json()}
    assert alloc_id in allocs and {a["Namespace"] for a in allocs.values()} == {"default", "prod"}
    one = allocs[alloc_id]
    # the full allocation (`nomad node status <id>` reads Job.Version and the task states)
    assert set(one) == set(s.unix.get(f"/v1/allocation/{alloc_id}").json())
    assert one["Job"]["ID"] == "nodealloc" and "Version" in one["Job"] and one["NodeID"] == node_id
    assert one["TaskStates"]["web"]["State"] == "running"
    assert [a["ID"] for a in s.unix.get("/v1/node/self/allocations").json()] == [a["ID"] for a in r.json()]
    assert {a["ID"] for a in s.unix.get(f"/v1/node/{node_id[:8]}/allocations").json()} == set(allocs)
    # as Nomad: another node has no allocations (not a 404)
    other = s.unix.get("/v1/node/00000000-0000-0000-0000-000000000000/allocations")
    assert (other.status_code, other.json()) == (200, [])
    # a blocking query: woken by a change to the allocations
    idx = int(r.headers["X-Nomad-Index"])
    assert s.unix.put(f"/v1/allocation/{alloc_id}/stop").status_code == 200
    after = s.unix.get(f"/v1/node/{node_id}/allocations", params={"index": str(idx), "wait": "20s"})
    assert int(after.headers["X-Nomad-Index"]) > idx


def test_agent_health_and_members_as_a_client_only_agent(served_acl: Served) -> None:
    s = served_acl
    r = s.unix.get("/v1/agent/health")  # no token needed, as Nomad
    assert (r.status_code, r.json()) == (200, {"client": {"ok": True, "message": "ok"}})
    assert s.unix.get("/v1/agent/health", params={"type": "client"}).json() == {"client": {"ok": True,
                                                                                           "message": "ok"}}
    r = s.unix.get("/v1/agent/health", params={"type": "server"})
    assert r.status_code == 500 and json.loads(r.text) == {"server": {"ok": False, "message": "server not enabled"}}
    assert s.unix.get("/v1/agent/members").status_code == 403  # needs a token, as every other endpoint
    secret = s.unix.put("/v1/acl/bootstrap").json()["SecretID"]
    r = s.unix.get("/v1/agent/members", headers={"X-Nomad-Token": secret})
    assert r.status_code == 500 and r.text.startswith("no servers: rawexec is a single-node client agent"), r.text
    for path in ("/v1/namespaces", "/v1/namespace/default", "/v1/client/stats", "/v1/node/self/allocations",
                 "/v1/client/fs/readat/x?path=a&offset=0", "/v1/client/fs/stream/x?path=a"):
        assert s.unix.get(path).status_code == 403, path
        assert s.unix.get(path, headers={"X-Nomad-Token": secret}).status_code != 403, path


def test_namespaces(served: Served) -> None:
    s = served
    r = s.unix.get("/v1/namespaces")
    assert r.status_code == 200 and [n["Name"] for n in r.json()] == ["default"]
    default = s.unix.get("/v1/namespace/default").json()
    assert default == r.json()[0]
    assert default["Description"] == "Default shared namespace" and default["Quota"] == ""
    assert default["CreateIndex"] >= 1 and default["Capabilities"] is None
    missing = s.unix.get("/v1/namespace/nosuch")
    assert (missing.status_code, missing.text) == (404, "Namespace not found")
    # a namespace exists here once a job names it
    job = job_json("nsjob", "sleep", "60")
    job["Job"]["Namespace"] = "prod"
    assert s.unix.put("/v1/jobs", json=job).status_code == 200
    assert [n["Name"] for n in s.unix.get("/v1/namespaces").json()] == ["default", "prod"]
    assert [n["Name"] for n in s.unix.get("/v1/namespaces", params={"prefix": "pr"}).json()] == ["prod"]
    assert s.unix.get("/v1/namespace/prod").json()["Name"] == "prod"
    r = s.unix.put("/v1/namespace/team", json={"Name": "team"})
    assert r.status_code == 501 and "not supported by rawexec" in r.text


def test_client_stats_in_nomads_host_stats_shape(served: Served) -> None:
    s = served
    first = s.unix.get("/v1/client/stats")
    assert first.status_code == 200, first.text
    st = s.unix.get("/v1/client/stats").json()
    assert set(st) == {"Memory", "CPU", "DiskStats", "AllocDirStats", "DeviceStats", "Uptime", "Timestamp",
                       "CPUTicksConsumed"}
    assert st["Memory"]["Total"] == psutil.virtual_memory().total
    assert 0 < st["Memory"]["Available"] <= st["Memory"]["Total"] and st["Memory"]["Used"] > 0
    assert [c["CPU"] for c in st["CPU"]] == [f"cpu{i}" for i in range(psutil.cpu_count() or 1)]
    for c in st["CPU"]:
        assert set(c) == {"CPU", "User", "System", "Idle", "TotalPercent", "TotalTicks"}
        assert all(0 <= c[k] <= 100.0001 for k in ("User", "System", "Idle", "TotalPercent")), c
    assert st["CPUTicksConsumed"] == sum(c["TotalTicks"] for c in st["CPU"])
    mounts = {d["Mountpoint"]: d for d in st["DiskStats"]}
    assert mounts and all(d["Size"] >= d["Used"] >= 0 and 0 <= d["UsedPercent"] <= 100 for d in mounts.values())
    alloc_fs = os.statvfs(s.data_dir)
    assert st["AllocDirStats"]["Size"] == alloc_fs.f_blocks * alloc_fs.f_frsize
    assert st["Uptime"] > 0 and st["DeviceStats"] == [] and st["Timestamp"] > 0


def test_fs_readat(served: Served) -> None:
    s = served
    alloc_id = register(s, job_json("readat", "write", "0123456789", "local/data.txt", "sleep", "60"))
    data = os.path.join(s.agent.alloc_dir(alloc_id), "web", "local", "data.txt")
    wait_until(lambda: os.path.exists(data) and os.path.getsize(data) == 10, 10)
    url = f"/v1/client/fs/readat/{alloc_id}"
    for params, want in (({"offset": "2", "limit": "3"}, "234"), ({"offset": "0"}, "0123456789"),
                         ({"offset": "7", "limit": "0"}, "789"), ({"offset": "4", "limit": "100"}, "456789"),
                         ({"offset": "50", "limit": "3"}, "")):
        r = s.unix.get(url, params={"path": "web/local/data.txt", **params})
        assert (r.status_code, r.text) == (200, want), params
    for params, status, needle in (
            ({"offset": "0"}, 400, "must provide a file name"),
            ({"path": "web/local/data.txt"}, 400, "must provide an offset"),
            ({"path": "web/local/data.txt", "offset": "-1"}, 400, '"offset" must be >= 0'),
            ({"path": "web/local/data.txt", "offset": "0", "limit": "x"}, 400, '"limit"'),
            ({"path": "web/local", "offset": "0"}, 400, "is a directory"),
            ({"path": "web/local/nope", "offset": "0"}, 404, "not found"),
            ({"path": "../../../etc/passwd", "offset": "0"}, 400, "outside of the allocation directory")):
        r = s.unix.get(url, params=params)
        assert r.status_code == status and needle in r.text, (params, r.status_code, r.text)
    assert s.unix.get("/v1/client/fs/readat/nope", params={"path": "a", "offset": "0"}).status_code == 404


def test_fs_stream(served: Served) -> None:
    s = served
    alloc_id = register(s, job_json("fsstream", "write", "hello world", "local/out.txt", "sleep", "60"))
    path = os.path.join(s.agent.alloc_dir(alloc_id), "web", "local", "out.txt")
    wait_until(lambda: os.path.exists(path) and os.path.getsize(path) == 11, 10)
    url = f"/v1/client/fs/stream/{alloc_id}"
    # follow=false: the content, framed as the logs are, then the end
    r = s.unix.get(url, params={"path": "web/local/out.txt", "follow": "false"})
    frames = _frames(r.text.splitlines())
    assert r.status_code == 200 and _data(frames) == b"hello world"
    assert frames[-1]["File"] == "web/local/out.txt" and frames[-1]["Offset"] == 11
    r = s.unix.get(url, params={"path": "web/local/out.txt", "follow": "false", "origin": "end", "offset": "5"})
    assert _data(_frames(r.text.splitlines())) == b"world"
    r = s.unix.get(url, params={"path": "web/local/out.txt", "follow": "false", "offset": "6"})
    assert _data(_frames(r.text.splitlines())) == b"world"
    for params, needle in (({}, "must provide a file name"), ({"path": "web/local/out.txt", "origin": "mid"},
                                                              "origin must be start or end"),
                           ({"path": "web/local/out.txt", "follow": "maybe"}, "follow"),
                           ({"path": "web", "follow": "false"}, "is a directory")):
        r = s.unix.get(url, params=params)
        assert r.status_code == 400 and needle in r.text, (params, r.text)

    # follow (the default): new data as it is written, a truncation, then the deletion ends the stream
    client = httpx.Client(base_url="http://rawexec", transport=httpx.HTTPTransport(uds=s.server.unix_path),
                          timeout=30)
    got: list[dict[str, Any]] = []
    with client, client.stream("GET", url, params={"path": "web/local/out.txt", "origin": "end",
                                                    "offset": "0"}) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()

        def read_until(pred: Any) -> None:
            while not pred():
                got.extend(_frames([next(lines)]))

        with open(path, "ab") as f:
            f.write(b" and more")
        read_until(lambda: _data(got) == b" and more")
        assert got[-1]["Offset"] == 20
        with open(path, "wb") as f:
            f.write(b"new")
        read_until(lambda: any(g.get("FileEvent") == "file truncated" for g in got) and _data(got).endswith(b"new"))
        os.unlink(path)
        read_until(lambda: any(g.get("FileEvent") == "file deleted" for g in got))
        assert list(lines) == []  # the stream ended after the deletion
    assert _data(got) == b" and morenew"
