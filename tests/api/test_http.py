"""The HTTP API over a real uvicorn server (unix socket and TCP), in front of the test stand-in agent."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from typing import Any

import httpx
import pytest

from rawexec.api.acl import TOKENS_FILE
from rawexec.api.server import ApiServer
from rawexec.errors import InvalidConfigError, UnavailableError
from rawexec.jobspec.diagnostics import SEP
from tests.api.conftest import Served, make_config
from tests.helpers.util import TESTTASK, wait_until


def job_json(job_id: str, *ops: str, count: int = 1, driver: str = "raw_exec", task: str = "web") -> dict[str, Any]:
    return {"Job": {"ID": job_id, "Name": job_id, "Type": "service", "Datacenters": ["dc1"],
                    "TaskGroups": [{"Name": "g", "Count": count, "Tasks": [
                        {"Name": task, "Driver": driver,
                         "Config": {"command": sys.executable, "args": [TESTTASK, *ops]}}]}]}}


def register(s: Served, job: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    r = s.unix.put("/v1/jobs", json=job, headers=headers)
    assert r.status_code == 200, r.text
    path = f"/v1/job/{job['Job']['ID']}/allocations"

    def running() -> bool:
        allocs = s.unix.get(path, headers=headers).json()
        return bool(allocs) and all(a["ClientStatus"] == "running" for a in allocs)

    wait_until(running, 20, interval=0.02, msg="allocations not running")
    return str(s.unix.get(path, headers=headers).json()[0]["ID"])


def log_text(s: Served, alloc_id: str, task: str = "web", typ: str = "stdout") -> str:
    r = s.unix.get(f"/v1/client/fs/logs/{alloc_id}", params={"task": task, "type": typ, "plain": "true"})
    assert r.status_code == 200, r.text
    return r.text


def test_unix_socket_mode_and_tcp_serve_the_same(served: Served) -> None:
    st = os.stat(served.server.unix_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    a = served.unix.get("/v1/agent/self")
    b = served.tcp.get("/v1/agent/self")
    assert a.status_code == b.status_code == 200
    assert a.json()["config"]["NodeName"] == b.json()["config"]["NodeName"] == "test-node"
    assert a.json()["stats"]["client"]["node_id"] == served.agent.node["ID"]
    assert a.headers["X-Nomad-Index"] and a.headers["X-Nomad-KnownLeader"] == "true"
    assert served.tcp.get("/v1/status/leader").json()
    nodes = served.unix.get("/v1/nodes").json()
    assert [n["ID"] for n in nodes] == [served.agent.node["ID"]]
    assert nodes[0]["Version"] == served.agent.node["Attributes"]["nomad.version"]  # NodeListStub's fields
    assert nodes[0]["CreateIndex"] >= 1 and nodes[0]["ModifyIndex"] >= nodes[0]["CreateIndex"]
    node = served.unix.get(f"/v1/node/{served.agent.node['ID'][:8]}").json()
    assert node["Drivers"]["raw_exec"]["Healthy"] is True
    assert served.unix.get("/v1/node/ffffffff").status_code == 404


def test_job_lifecycle_and_nomad_shapes(served: Served) -> None:
    job = job_json("api-job", "echo", "hello-from-task", "sleep", "60")
    r = served.tcp.put("/v1/jobs", json=job)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"EvalID", "JobModifyIndex", "Warnings", "Index"}
    register(served, job)  # the same job again: no change, waits until it runs
    jobs = served.unix.get("/v1/jobs").json()
    assert [j["ID"] for j in jobs] == ["api-job"]
    assert "Meta" not in jobs[0]  # Nomad's JobListStub: Meta is omitempty
    assert served.unix.get("/v1/jobs", params={"prefix": "zzz"}).json() == []
    full = served.unix.get("/v1/job/api-job").json()
    assert full["ID"] == "api-job" and full["TaskGroups"][0]["Tasks"][0]["Driver"] == "raw_exec"
    assert full["Status"] == "running"
    summary = served.unix.get("/v1/job/api-job/summary").json()
    assert summary["Summary"]["g"]["Running"] == 1
    allocs = served.unix.get("/v1/job/api-job/allocations").json()
    alloc_id = allocs[0]["ID"]
    assert served.unix.get("/v1/allocations").json()[0]["ID"] == alloc_id
    assert "TaskStates" not in served.unix.get("/v1/allocations", params={"task_states": "false"}).json()[0]
    assert served.unix.get("/v1/allocations", params={"prefix": alloc_id[:6]}).json()[0]["ID"] == alloc_id
    alloc = served.unix.get(f"/v1/allocation/{alloc_id}").json()
    assert alloc["TaskStates"]["web"]["State"] == "running"
    wait_until(lambda: "hello-from-task" in log_text(served, alloc_id), 10)
    stats = served.unix.get(f"/v1/client/allocation/{alloc_id}/stats").json()
    assert stats["Tasks"]["web"]["ResourceUsage"]["MemoryStats"]["RSS"] > 0
    # stop + purge
    r = served.unix.delete("/v1/job/api-job", params={"purge": "true"})
    assert r.status_code == 200 and "EvalID" in r.json()
    wait_until(lambda: served.unix.get("/v1/job/api-job").status_code == 404, 20, interval=0.05)
    wait_until(lambda: served.unix.get(f"/v1/allocation/{alloc_id}").status_code == 404, 20, interval=0.05)
    # a job's Meta shows in its list stub (only when it has one: omitempty)
    with_meta = job_json("meta-job", "sleep", "60")
    with_meta["Job"]["Meta"] = {"team": "infra"}
    register(served, with_meta)
    stubs = {j["ID"]: j for j in served.unix.get("/v1/jobs").json()}
    assert stubs["meta-job"]["Meta"] == {"team": "infra"}
    assert served.unix.delete("/v1/job/meta-job", params={"purge": "true"}).status_code == 200


def test_allocation_stats_sum_every_field_of_the_tasks(served: Served) -> None:
    job = job_json("stats2", "echo", "spun", "busy", "15", "sleep", "60")
    job["Job"]["TaskGroups"][0]["Tasks"].append(
        {"Name": "other", "Driver": "raw_exec",
         "Config": {"command": sys.executable, "args": [TESTTASK, "echo", "spun", "sleep", "60"]}})
    alloc_id = register(served, job)
    stats: dict[str, Any] = {}

    def busy_seen() -> bool:
        nonlocal stats
        stats = served.unix.get(f"/v1/client/allocation/{alloc_id}/stats").json()
        return len(stats["Tasks"]) == 2 and stats["Tasks"]["web"]["ResourceUsage"]["CpuStats"]["UserMode"] > 0

    try:
        wait_until(busy_seen, 10, interval=0.2, msg="no user-mode CPU measured")
    finally:
        served.unix.delete("/v1/job/stats2", params={"purge": "true"})
    tasks = [stats["Tasks"][t]["ResourceUsage"] for t in ("web", "other")]
    total = stats["ResourceUsage"]
    for part in ("MemoryStats", "CpuStats"):
        for k, v in total[part].items():
            if k == "Measured":
                assert v == list(dict.fromkeys(m for t in tasks for m in t[part]["Measured"])), (part, v)
            else:
                assert v == pytest.approx(sum(t[part][k] for t in tasks)), (part, k)
    assert total["CpuStats"]["UserMode"] > 0 and "User Mode" in total["CpuStats"]["Measured"]


def test_bad_requests_are_400_with_clear_text(served: Served) -> None:
    r = served.unix.put("/v1/jobs", content=b'{"Job": {')
    assert r.status_code == 400 and r.text.startswith("Failed to decode request body")
    r = served.unix.put("/v1/jobs", content=b"")
    assert r.status_code == 400 and "empty" in r.text
    r = served.unix.put("/v1/jobs", json={"NotJob": 1})
    assert r.status_code == 400 and "Job must be specified" in r.text
    r = served.unix.put("/v1/jobs", json={"Job": {"ID": "x", "TaskGroups": "nope"}})
    assert r.status_code == 400 and "TaskGroups" in r.text
    r = served.unix.put("/v1/jobs", json=job_json("dock", "sleep", "1", driver="docker"))
    assert r.status_code == 400 and r.text.startswith('driver "docker" not available on this node')
    r = served.unix.put("/v1/job/other", json=job_json("mismatch", "sleep", "1"))
    assert r.status_code == 400 and r.text == "Job ID does not match name"
    r = served.unix.get("/v1/allocations", params={"task_states": "maybe"})
    assert r.status_code == 400 and "task_states" in r.text
    assert served.unix.get("/v1/event/stream", params={"index": "x"}).status_code == 400
    assert served.unix.get("/v1/nope").status_code == 404


def test_a_string_field_given_a_number_or_bool_is_400(served: Served) -> None:
    """As Go's decoder (``cannot unmarshal number into Go struct field Job.ID of type string``):
    API JSON is never coerced to a string, the error names the field and nothing is registered."""
    cases: list[tuple[str, Any, str]] = [
        ("ID", 123, f'job ""{SEP}ID: Incorrect attribute value type: inappropriate value for attribute "ID": '
                    "a string is required, got number"),
        ("Name", True, f'{SEP}Name: Incorrect attribute value type: inappropriate value for attribute "Name": '
                       "a string is required, got bool"),
        ("Type", 1.5, f'{SEP}Type: Incorrect attribute value type: inappropriate value for attribute "Type": '
                      "a string is required, got number"),
    ]
    for field, value, needle in cases:
        body = job_json("typed", "sleep", "30")
        body["Job"][field] = value
        r = served.unix.put("/v1/jobs", json=body)
        assert r.status_code == 400 and needle in r.text, (field, r.text)
    body = job_json("typed", "sleep", "30")
    body["Job"]["TaskGroups"][0]["Name"] = 5
    body["Job"]["TaskGroups"][0]["Tasks"][0]["Name"] = 6
    r = served.unix.put("/v1/jobs", json=body)
    assert r.status_code == 400, r.text
    assert f'TaskGroups[0]{SEP}Name: Incorrect attribute value type: inappropriate value for attribute "Name": ' \
           "a string is required, got number" in r.text
    assert f"Tasks[0]{SEP}Name: Incorrect attribute value type" in r.text
    assert served.unix.get("/v1/jobs").json() == []
    assert served.unix.get("/v1/job/123").status_code == 404


def test_unknown_ids_are_404(served: Served) -> None:
    for path in ("/v1/job/nope", "/v1/job/nope/summary", "/v1/job/nope/allocations", "/v1/allocation/nope",
                 "/v1/client/allocation/nope/stats", "/v1/client/fs/ls/nope"):
        r = served.unix.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text)
    assert served.unix.delete("/v1/job/nope").status_code == 404
    assert served.unix.put("/v1/allocation/nope/stop").status_code == 404
    assert served.unix.put("/v1/client/allocation/nope/signal", json={"Signal": "SIGUSR1"}).status_code == 404


def test_jobs_parse_hcl(served: Served) -> None:
    hcl = 'variable "n" { default = 1 }\njob "parsed" {\n group "g" {\n count = var.n\n task "t" {\n' \
          ' driver = "raw_exec"\n config { command = "/bin/true" }\n }\n }\n}\n'
    r = served.unix.post("/v1/jobs/parse", json={"JobHCL": hcl, "Canonicalize": True, "Variables": "n = 3\n"})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["ID"] == "parsed" and j["TaskGroups"][0]["Count"] == 3
    r = served.unix.post("/v1/jobs/parse", json={"JobHCL": 'job "x" { group "g" { bogus = 1 } }'})
    assert r.status_code == 400 and "bogus" in r.text
    assert served.unix.post("/v1/jobs/parse", json={}).status_code == 400


def test_logs_plain_framed_offsets_and_bad_params(served: Served) -> None:
    alloc_id = register(served, job_json("logs", "echo", "line-one", "eecho", "err-line", "sleep", "60"))
    wait_until(lambda: "line-one" in log_text(served, alloc_id), 10)
    assert "err-line" in log_text(served, alloc_id, typ="stderr")
    r = served.unix.get(f"/v1/client/fs/logs/{alloc_id}", params={"task": "web", "type": "stdout"})
    assert r.status_code == 200
    frames = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    data = b"".join(base64.b64decode(f["Data"]) for f in frames if "Data" in f)
    assert data == b"line-one\n"
    assert frames[-1]["File"] == "alloc/logs/web.stdout.0" and frames[-1]["Offset"] == len(data)
    r = served.unix.get(f"/v1/client/fs/logs/{alloc_id}",
                        params={"task": "web", "type": "stdout", "plain": "true", "origin": "end", "offset": "4"})
    assert r.text == "one\n"
    bad = [({"type": "stdout"}, "task name"), ({"task": "web", "type": "x"}, "log type"),
           ({"task": "web", "type": "stdout", "origin": "middle"}, "Origin"),
           ({"task": "web", "type": "stdout", "offset": "-1"}, "offset")]
    for params, needle in bad:
        r = served.unix.get(f"/v1/client/fs/logs/{alloc_id}", params=params)
        assert r.status_code in (400, 404) and needle in r.text, (params, r.status_code, r.text)
    r = served.unix.get(f"/v1/client/fs/logs/{alloc_id}", params={"task": "nope", "type": "stdout"})
    assert (r.status_code, r.text) == (400, 'unknown task name "nope"')  # Nomad's status and text


def _fds_on(path: str) -> int:
    """Open descriptors of this process on ``path`` (also a replaced one, shown as "path (deleted)")."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(path):
                n += 1
        except OSError:
            continue
    return n


def test_log_follow_streams_and_a_dropped_client_releases_the_follower(served: Served) -> None:
    alloc_id = register(served, job_json("follow", "echo", "first", "sleep", "0.5", "echo", "second",
                                         "sleep", "60"))
    log_file = os.path.join(served.agent.alloc_dir(alloc_id), "alloc", "logs", "web.stdout.0")
    wait_until(lambda: os.path.exists(log_file), 10)
    got = b""
    client = httpx.Client(base_url="http://rawexec", transport=httpx.HTTPTransport(uds=served.server.unix_path))
    with client, client.stream("GET", f"/v1/client/fs/logs/{alloc_id}",
                               params={"task": "web", "type": "stdout", "follow": "true", "plain": "true"}) as r:
        assert r.status_code == 200
        chunks = r.iter_raw()  # keep the iterator referenced: dropping it closes the connection
        while b"second\n" not in got:
            got += next(chunks)
        wait_until(lambda: _fds_on(log_file) >= 1, 5, msg="the server is not following the file")
    # The client hung up mid-stream: the server's follower must let go of the file.
    assert got == b"first\nsecond\n"
    wait_until(lambda: _fds_on(log_file) == 0, 10, msg="follower still holds the log file")
    assert served.unix.get("/v1/agent/self").status_code == 200


def test_fs_ls_stat_cat_and_no_escape(served: Served) -> None:
    alloc_id = register(served, job_json("fs", "write", "payload", "local/data.txt", "sleep", "60"))
    adir = served.agent.alloc_dir(alloc_id)
    data = os.path.join(adir, "web", "local", "data.txt")
    wait_until(lambda: os.path.exists(data) and os.path.getsize(data) == len("payload"), 10)
    names = {e["Name"]: e for e in served.unix.get(f"/v1/client/fs/ls/{alloc_id}", params={"path": "/"}).json()}
    assert {"alloc", "web"} <= set(names) and names["web"]["IsDir"] is True
    st = served.unix.get(f"/v1/client/fs/stat/{alloc_id}", params={"path": "web/local/data.txt"}).json()
    assert st["Size"] == len("payload") and st["IsDir"] is False and st["FileMode"].startswith("-")
    r = served.unix.get(f"/v1/client/fs/cat/{alloc_id}", params={"path": "web/local/data.txt"})
    assert r.status_code == 200 and r.text == "payload"
    os.symlink("/etc", os.path.join(adir, "web", "local", "etc-link"))
    for bad in ("../../..", "/../../etc/passwd", "web/local/etc-link/passwd", "web/../../"):
        for verb in ("ls", "stat", "cat"):
            r = served.unix.get(f"/v1/client/fs/{verb}/{alloc_id}", params={"path": bad})
            assert r.status_code == 400 and "outside of the allocation directory" in r.text, (verb, bad, r.text)
    assert served.unix.get(f"/v1/client/fs/cat/{alloc_id}", params={"path": "web/missing"}).status_code == 404
    assert served.unix.get(f"/v1/client/fs/cat/{alloc_id}", params={"path": "web"}).status_code == 400


def test_signal_reaches_the_task(served: Served) -> None:
    alloc_id = register(served, job_json("sig", "trap", "SIGUSR1", "0", "got-usr1", "echo", "ready", "sleep", "60"))
    wait_until(lambda: "ready" in log_text(served, alloc_id), 10)
    r = served.unix.post(f"/v1/client/allocation/{alloc_id}/signal", json={"Signal": "SIGUSR1", "Task": "web"})
    assert r.status_code == 200, r.text
    wait_until(lambda: "got-usr1" in log_text(served, alloc_id), 10)
    r = served.unix.post(f"/v1/client/allocation/{alloc_id}/signal", json={"Signal": "SIGUSR1", "Task": "nope"})
    assert r.status_code == 404


def test_event_stream_ndjson(served: Served) -> None:
    with served.unix.stream("GET", "/v1/event/stream", params={"topic": "Job:*"}) as r:
        assert r.status_code == 200
        register(served, job_json("evjob", "sleep", "60"))
        for line in r.iter_lines():
            if not line.strip() or line.strip() == "{}":
                continue
            msg = json.loads(line)
            ev = msg["Events"][0]
            assert ev["Topic"] == "Job" and ev["Key"] == "evjob" and msg["Index"] == ev["Index"]
            break


def test_listening_rules(short_dir: str) -> None:
    cfg = make_config(short_dir)
    agent: Any = object()
    with pytest.raises(InvalidConfigError, match="not a loopback address"):
        ApiServer(agent, cfg, tcp=("0.0.0.0", 0))
    cfg_acl = make_config(short_dir, acl=True)
    ApiServer(agent, cfg_acl, tcp=("0.0.0.0", 0))  # allowed with ACLs (not started)


def test_second_server_on_the_same_data_dir_is_refused(served: Served) -> None:
    other = ApiServer(served.agent, make_config(served.data_dir), tcp=None)
    with pytest.raises(UnavailableError, match="already serving"):
        other.start()
    assert served.unix.get("/v1/agent/self").status_code == 200


def test_stale_socket_is_replaced(short_dir: str) -> None:
    import socket as _s

    path = os.path.join(short_dir, "api.sock")
    s = _s.socket(_s.AF_UNIX, _s.SOCK_STREAM)
    s.bind(path)
    s.close()  # a socket file nobody listens on (an agent killed -9)
    from rawexec.agent.agent import Agent

    agent = Agent(make_config(short_dir), dev=True)
    agent.start()
    server = ApiServer(agent, make_config(short_dir), tcp=None)
    server.start()
    try:
        c = httpx.Client(base_url="http://x", transport=httpx.HTTPTransport(uds=path))
        assert c.get("/v1/status/leader").status_code == 200
        c.close()
    finally:
        server.stop()
        agent.shutdown(stop_tasks=True)
    assert not os.path.exists(path)


def test_acl_tokens(served_acl: Served) -> None:
    s = served_acl
    r = s.unix.get("/v1/jobs")
    assert r.status_code == 403 and r.text == "Permission denied"
    r = s.tcp.get("/v1/jobs", headers={"X-Nomad-Token": "not-a-token"})
    assert r.status_code == 403 and r.text == "ACL token not found"
    r = s.unix.put("/v1/acl/bootstrap")
    assert r.status_code == 200, r.text
    tok = r.json()
    secret = tok["SecretID"]
    assert tok["Type"] == "management" and tok["AccessorID"] and secret
    again = s.unix.put("/v1/acl/bootstrap")
    assert again.status_code == 400 and "already done" in again.text
    assert s.tcp.get("/v1/jobs", headers={"X-Nomad-Token": secret}).status_code == 200
    assert s.unix.get("/v1/jobs", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    me = s.unix.get("/v1/acl/token/self", headers={"X-Nomad-Token": secret}).json()
    assert me["AccessorID"] == tok["AccessorID"] and me["SecretID"] == secret  # the caller's own token, as Nomad
    with open(os.path.join(s.data_dir, TOKENS_FILE)) as f:
        stored = f.read()
    assert secret not in stored  # only a hash is kept
    assert stat.S_IMODE(os.stat(os.path.join(s.data_dir, TOKENS_FILE)).st_mode) == 0o600


def test_acl_bootstrap_with_a_supplied_secret(served_acl: Served) -> None:
    s = served_acl
    r = s.unix.put("/v1/acl/bootstrap", json={"BootstrapSecret": "not-a-uuid"})
    assert r.status_code == 400 and r.text == "invalid acl token"
    secret = "2b778dd9-f5f1-6f29-b4b4-9a5fa948757a"
    r = s.unix.post("/v1/acl/bootstrap", json={"BootstrapSecret": secret})
    assert r.status_code == 200, r.text
    assert r.json()["SecretID"] == secret and r.json()["Type"] == "management"
    assert s.unix.get("/v1/jobs", headers={"X-Nomad-Token": secret}).status_code == 200
    me = s.unix.get("/v1/acl/token/self", headers={"X-Nomad-Token": secret}).json()
    assert me["SecretID"] == secret and me["AccessorID"] == r.json()["AccessorID"]
    again = s.unix.put("/v1/acl/bootstrap", json={"BootstrapSecret": "not-a-uuid"})
    assert again.status_code == 400 and "already done" in again.text  # checked first, as Nomad


def test_status_endpoints_need_no_token(served_acl: Served) -> None:
    s = served_acl
    for path in ("/v1/status/leader", "/v1/status/peers"):
        r = s.tcp.get(path)
        assert r.status_code == 200, (path, r.text)
    assert s.tcp.get("/v1/agent/self").status_code == 403  # everything else still needs one


def test_acl_bootstrap_refused_when_acl_disabled(served: Served) -> None:
    r = served.unix.put("/v1/acl/bootstrap")
    assert r.status_code == 400 and r.text == "ACL support disabled"


def test_allocation_list_follows_every_change(served: Served) -> None:
    """The list is served from a cache keyed on the state index: it must never lag behind a change."""
    alloc_id = register(served, job_json("cache", "sleep", "60", count=2))
    first = served.unix.get("/v1/allocations")
    assert first.status_code == 200 and int(first.headers["X-Nomad-Index"]) >= 1
    again = served.unix.get("/v1/allocations")
    assert again.json() == first.json()
    assert served.unix.put(f"/v1/allocation/{alloc_id}/stop").status_code == 200

    def stopped() -> bool:
        by_id = {a["ID"]: a for a in served.unix.get("/v1/allocations").json()}
        return bool(by_id[alloc_id]["DesiredStatus"] == "stop" and by_id[alloc_id]["ClientStatus"] != "running")

    wait_until(stopped, 20, interval=0.05)
    wait_until(lambda: served.unix.get("/v1/allocations").json() == json.loads(served.agent.list_allocations_json()),
               10, interval=0.05, msg="the served list differs from the agent's")
    after = served.unix.get("/v1/allocations")
    assert int(after.headers["X-Nomad-Index"]) > int(first.headers["X-Nomad-Index"])


def test_restart_in_place(served: Served) -> None:
    alloc_id = register(served, job_json("rst", "sleep", "60"))
    r = served.unix.post(f"/v1/client/allocation/{alloc_id}/restart", json={"TaskName": "web"})
    assert r.status_code == 200, r.text

    def restarted() -> bool:
        ts = served.unix.get(f"/v1/allocation/{alloc_id}").json()["TaskStates"]["web"]
        return bool(ts["Restarts"] >= 1 and ts["State"] == "running")

    wait_until(restarted, 20, interval=0.05, msg="task not restarted")
    r = served.unix.post(f"/v1/client/allocation/{alloc_id}/restart", json={"TaskName": "web", "AllTasks": True})
    assert r.status_code == 400 and "cannot be set" in r.text


def test_allocation_list_variants_agree(served: Served) -> None:
    """/v1/allocations (full, task_states=false, prefix) and /v1/job/:id/allocations are cut from the
    same per-allocation stubs: they must agree with each other and with the allocation itself."""
    alloc_id = register(served, job_json("variants", "sleep", "60", count=2))

    def agree() -> bool:
        full = [a for a in served.unix.get("/v1/allocations").json() if a["JobID"] == "variants"]
        bare = [a for a in served.unix.get("/v1/allocations", params={"task_states": "false"}).json()
                if a["JobID"] == "variants"]
        return bool(
            len(full) == 2 and all(a["TaskStates"]["web"]["State"] == "running" for a in full)
            and served.unix.get("/v1/job/variants/allocations").json() == full
            and bare == [{k: v for k, v in a.items() if k != "TaskStates"} for a in full]
            and served.unix.get("/v1/allocations", params={"prefix": alloc_id}).json()
            == [a for a in full if a["ID"] == alloc_id])

    wait_until(agree, 20, interval=0.05, msg="the allocation list variants disagree")
    one = served.unix.get(f"/v1/allocation/{alloc_id}").json()
    listed = next(a for a in served.unix.get("/v1/allocations").json() if a["ID"] == alloc_id)
    assert listed["TaskStates"] == one["TaskStates"] and listed["ModifyIndex"] == one["ModifyIndex"]
