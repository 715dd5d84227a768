"""Scheduling semantics over the real HTTP API: alloc stop reschedules, count changes update in place,
evaluations are recorded and served, and the job sub-paths are routed (never "job not found")."""

from __future__ import annotations

import os
from typing import Any

from tests.api.conftest import Served
from tests.api.test_http import job_json, register
from tests.helpers.util import wait_until


def _allocs(s: Served, job_id: str) -> list[dict[str, Any]]:
    allocs: list[dict[str, Any]] = s.unix.get(f"/v1/job/{job_id}/allocations").json()
    return allocs


def _running(s: Served, job_id: str) -> list[dict[str, Any]]:
    return [a for a in _allocs(s, job_id) if a["DesiredStatus"] == "run" and a["ClientStatus"] == "running"]


def test_alloc_stop_places_a_replacement(served: Served) -> None:
    old_id = register(served, job_json("resched", "sleep", "60"))
    r = served.unix.post(f"/v1/allocation/{old_id}/stop")
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["X-Nomad-Index"] == str(body["Index"]) and body["Index"] > 1
    wait_until(lambda: len(_running(served, "resched")) == 1
               and _running(served, "resched")[0]["ID"] != old_id, 20, interval=0.05,
               msg="no replacement allocation is running")
    new = _running(served, "resched")[0]
    assert new["Name"] == "resched.g[0]"
    assert new["PreviousAllocation"] == old_id
    assert new["EvalID"] == body["EvalID"]
    old = served.unix.get(f"/v1/allocation/{old_id}").json()
    assert old["DesiredStatus"] == "stop" and old["DesiredDescription"] == "alloc is being migrated"
    assert old["NextAllocation"] == new["ID"]
    wait_until(lambda: served.unix.get(f"/v1/allocation/{old_id}").json()["ClientStatus"] == "complete", 20)
    assert served.unix.get("/v1/job/resched").json()["Status"] == "running"
    # the EvalID is a real evaluation, and it placed the replacement
    ev = served.unix.get(f"/v1/evaluation/{body['EvalID']}").json()
    assert ev["TriggeredBy"] == "alloc-stop" and ev["JobID"] == "resched" and ev["Status"] == "complete"
    placed = served.unix.get(f"/v1/evaluation/{body['EvalID']}/allocations").json()
    assert [a["ID"] for a in placed] == [new["ID"]]
    # a stopped job is not rescheduled
    served.unix.delete("/v1/job/resched")
    r = served.unix.post(f"/v1/allocation/{new['ID']}/stop")
    assert r.status_code == 200, r.text
    wait_until(lambda: served.unix.get("/v1/job/resched").json()["Status"] == "dead", 20)
    assert {a["ID"] for a in _allocs(served, "resched")} == {old_id, new["ID"]}


def test_count_change_keeps_running_allocations(served: Served) -> None:
    first = register(served, job_json("scale", "sleep", "60", count=1))
    started_at = served.unix.get(f"/v1/allocation/{first}").json()["TaskStates"]["web"]["StartedAt"]
    r = served.unix.put("/v1/jobs", json=job_json("scale", "sleep", "60", count=2))
    assert r.status_code == 200, r.text
    eval_id = r.json()["EvalID"]
    wait_until(lambda: len(_running(served, "scale")) == 2, 20, interval=0.05, msg="not scaled to 2")
    allocs = _allocs(served, "scale")
    assert len(allocs) == 2, allocs  # nothing stopped, one placed
    kept = served.unix.get(f"/v1/allocation/{first}").json()
    assert kept["DesiredStatus"] == "run" and kept["ClientStatus"] == "running"
    assert kept["TaskStates"]["web"]["StartedAt"] == started_at and kept["TaskStates"]["web"]["Restarts"] == 0
    assert kept["JobVersion"] == 1 and kept["Job"]["Version"] == 1
    assert sorted(a["Name"] for a in allocs) == ["scale.g[0]", "scale.g[1]"]
    assert {a["EvalID"] for a in allocs} == {eval_id}  # updated in place and placed by the same eval
    assert served.unix.get("/v1/job/scale").json()["Version"] == 1
    # scale down: the highest index stops, index 0 keeps running
    second = next(a["ID"] for a in allocs if a["ID"] != first)
    r = served.unix.put("/v1/jobs", json=job_json("scale", "sleep", "60", count=1))
    assert r.status_code == 200, r.text
    wait_until(lambda: [a["ID"] for a in _running(served, "scale")] == [first], 20, interval=0.05)
    gone = served.unix.get(f"/v1/allocation/{second}").json()
    assert gone["DesiredStatus"] == "stop" and gone["DesiredDescription"] == "alloc not needed due to job update"
    assert served.unix.get(f"/v1/allocation/{first}").json()["TaskStates"]["web"]["StartedAt"] == started_at
    assert served.unix.get("/v1/job/scale").json()["Version"] == 2


def test_destructive_change_still_replaces(served: Served) -> None:
    first = register(served, job_json("destr", "sleep", "60"))
    job = job_json("destr", "sleep", "60")
    job["Job"]["TaskGroups"][0]["Tasks"][0]["Env"] = {"NEW": "1"}
    r = served.unix.put("/v1/jobs", json=job)
    assert r.status_code == 200, r.text
    wait_until(lambda: len(_running(served, "destr")) == 1 and _running(served, "destr")[0]["ID"] != first, 20)
    new = _running(served, "destr")[0]
    assert new["Name"] == "destr.g[0]" and new["PreviousAllocation"] == first
    old = served.unix.get(f"/v1/allocation/{first}").json()
    assert old["DesiredDescription"] == "alloc not needed due to job update"


def test_evaluations_are_recorded_and_served(served: Served) -> None:
    r = served.unix.put("/v1/jobs", json=job_json("evals", "sleep", "60"))
    reg = r.json()
    wait_until(lambda: len(_running(served, "evals")) == 1, 20)
    ev = served.unix.get(f"/v1/evaluation/{reg['EvalID']}")
    assert ev.status_code == 200, ev.text
    e = ev.json()
    assert e["ID"] == reg["EvalID"] and e["TriggeredBy"] == "job-register" and e["Status"] == "complete"
    assert e["Type"] == "service" and e["Namespace"] == "default" and e["Priority"] == 50
    assert e["JobModifyIndex"] == reg["JobModifyIndex"] and e["CreateIndex"] == reg["EvalCreateIndex"]
    # complete once its allocations are stored: updated at a later index, as Nomad's scheduler updates it
    assert e["CreateTime"] > 10**18 and e["ModifyIndex"] > e["CreateIndex"] and e["ModifyTime"] >= e["CreateTime"]
    assert ev.headers["X-Nomad-Index"] == str(e["ModifyIndex"])
    placed = served.unix.get(f"/v1/evaluation/{reg['EvalID']}/allocations").json()
    assert [a["ID"] for a in placed] == [a["ID"] for a in _allocs(served, "evals")]
    stop = served.unix.delete("/v1/job/evals").json()
    e2 = served.unix.get(f"/v1/evaluation/{stop['EvalID']}").json()
    assert e2["TriggeredBy"] == "job-deregister"
    listed = served.unix.get("/v1/job/evals/evaluations").json()
    assert [x["ID"] for x in listed] == [reg["EvalID"], stop["EvalID"]]
    assert {x["ID"] for x in served.unix.get("/v1/evaluations").json()} >= {reg["EvalID"], stop["EvalID"]}
    assert [x["ID"] for x in served.unix.get("/v1/evaluations",
                                             params={"prefix": stop["EvalID"][:8]}).json()] == [stop["EvalID"]]
    missing = served.unix.get("/v1/evaluation/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and "eval not found" in missing.text


def test_job_sub_paths_are_routed(served: Served) -> None:
    register(served, job_json("subs", "sleep", "60"))
    served.unix.put("/v1/jobs", json=job_json("subs", "sleep", "60", count=2))
    v = served.unix.get("/v1/job/subs/versions")
    assert v.status_code == 200, v.text
    body = v.json()
    assert [x["Version"] for x in body["Versions"]] == [1, 0] and body["Diffs"] is None
    assert body["Versions"][0]["TaskGroups"][0]["Count"] == 2
    assert served.unix.get("/v1/job/nope/versions").status_code == 404
    ev = served.unix.get("/v1/job/subs/evaluations")
    assert ev.status_code == 200 and len(ev.json()) == 2
    assert served.unix.get("/v1/job/subs/deployments").json() == []
    d = served.unix.get("/v1/job/subs/deployment")
    assert d.status_code == 200 and d.json() is None
    plan = served.unix.put("/v1/job/subs/plan", json={"Job": job_json("subs", "sleep", "1")["Job"]})
    assert plan.status_code == 501 and "job plan is not supported by rawexec" in plan.text
    for sub in ("dispatch", "scale", "periodic/force", "revert"):
        r = served.unix.post(f"/v1/job/subs/{sub}", json={})
        assert r.status_code == 501, (sub, r.text)
        assert "not supported by rawexec" in r.text and "not found" not in r.text


def test_job_id_with_a_slash_still_works(served: Served) -> None:
    job = job_json("team/web", "sleep", "60")
    register(served, job)
    got = served.unix.get("/v1/job/team/web")
    assert got.status_code == 200 and got.json()["ID"] == "team/web"
    assert served.unix.get("/v1/job/team/web/versions").json()["Versions"][0]["ID"] == "team/web"
    assert served.unix.delete("/v1/job/team/web").status_code == 200


def test_evaluations_survive_an_agent_restart(served: Served) -> None:
    r = served.unix.put("/v1/jobs", json=job_json("persist", "sleep", "60"))
    eval_id = r.json()["EvalID"]
    wait_until(lambda: len(_running(served, "persist")) == 1, 20)
    from rawexec.agent.agent import Agent

    served.agent.wait_purged(1)
    served.agent.shutdown(stop_tasks=True, timeout=20)
    again = Agent(served.agent.config)
    again.start()
    try:
        assert again.get_evaluation(eval_id)["TriggeredBy"] == "job-register"
        assert [e["ID"] for e in again.list_evaluations("persist")] == [eval_id]
    finally:
        again.shutdown(stop_tasks=True, timeout=20)
    assert os.path.isdir(served.data_dir)


def _free_port() -> int:
    import random
    import socket

    for _ in range(50):
        port = random.randint(30000, 39000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free TCP port found")


def test_replacement_waits_for_the_previous_allocation(served: Served) -> None:
    """As Nomad's client: the replacement's tasks start once the stopped allocation is done, so a
    static port it held is free again (no port collision)."""
    port = _free_port()
    job = job_json("static", "sleep", "60")
    job["Job"]["TaskGroups"][0]["Networks"] = [{"ReservedPorts": [{"Label": "http", "Value": port}]}]
    job["Job"]["TaskGroups"][0]["Tasks"][0]["KillTimeout"] = 1_000_000_000
    old_id = register(served, job)
    r = served.unix.post(f"/v1/allocation/{old_id}/stop")
    assert r.status_code == 200, r.text
    wait_until(lambda: any(a["ID"] != old_id and a["ClientStatus"] in ("running", "failed")
                           for a in _allocs(served, "static")), 20, interval=0.05)
    new = next(a for a in _allocs(served, "static") if a["ID"] != old_id)
    assert new["ClientStatus"] == "running", served.unix.get(f"/v1/allocation/{new['ID']}").json()["TaskStates"]
    full = served.unix.get(f"/v1/allocation/{new['ID']}").json()
    assert full["AllocatedResources"]["Shared"]["Ports"][0]["Value"] == port
    old = served.unix.get(f"/v1/allocation/{old_id}").json()
    assert old["ClientStatus"] == "complete"
    finished = max(s["FinishedAt"] for s in old["TaskStates"].values())
    assert full["TaskStates"]["web"]["StartedAt"] >= finished
