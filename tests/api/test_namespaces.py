"""Namespaces and EnforceIndex over the real API: Nomad's ``?namespace=`` on every job and allocation
endpoint, and a register that only happens at the expected job modify index."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Served
from tests.api.test_http import job_json
from tests.helpers.util import wait_until


def _running(s: Served, job_id: str, ns: str) -> list[dict[str, Any]]:
    path = f"/v1/job/{job_id}/allocations"

    def up() -> bool:
        allocs = s.unix.get(path, params={"namespace": ns}).json()
        return bool(allocs) and all(a["ClientStatus"] == "running" for a in allocs)

    wait_until(up, 20, interval=0.02, msg=f"{ns}/{job_id} not running")
    allocs: list[dict[str, Any]] = s.unix.get(path, params={"namespace": ns}).json()
    return allocs


def test_every_endpoint_takes_the_namespace(served: Served) -> None:
    s = served
    assert s.unix.put("/v1/jobs", json=job_json("web", "sleep", "60")).status_code == 200
    # the request's namespace wins over the job's (none here); the job's own namespace otherwise
    r = s.unix.put("/v1/jobs", params={"namespace": "prod"}, json=job_json("web", "sleep", "60"))
    assert r.status_code == 200, r.text
    only = job_json("onlyprod", "sleep", "60")
    only["Job"]["Namespace"] = "prod"
    assert s.unix.put("/v1/jobs", json=only).status_code == 200
    (web_default,) = _running(s, "web", "default")
    (web_prod,) = _running(s, "web", "prod")
    (onlyprod,) = _running(s, "onlyprod", "prod")
    assert web_default["ID"] != web_prod["ID"]
    assert web_prod["Namespace"] == "prod" and web_default["Namespace"] == "default"

    assert s.unix.get("/v1/job/web").json()["Namespace"] == "default"
    assert s.unix.get("/v1/job/web", params={"namespace": "prod"}).json()["Namespace"] == "prod"
    assert s.unix.get("/v1/job/onlyprod").status_code == 404
    assert s.unix.get("/v1/job/onlyprod", params={"namespace": "prod"}).status_code == 200
    assert s.unix.get("/v1/job/onlyprod/summary", params={"namespace": "prod"}).json()["Namespace"] == "prod"
    assert s.unix.get("/v1/job/onlyprod/summary").status_code == 404

    def ids(path: str, ns: str | None = None) -> list[tuple[str, str]]:
        items = s.unix.get(path, params={"namespace": ns} if ns else None).json()
        return sorted((i["Namespace"], i["ID"]) for i in items)

    assert ids("/v1/jobs") == [("default", "web")]  # Nomad's default namespace, not every one
    assert ids("/v1/jobs", "prod") == [("prod", "onlyprod"), ("prod", "web")]
    assert ids("/v1/jobs", "*") == [("default", "web"), ("prod", "onlyprod"), ("prod", "web")]
    assert ids("/v1/job/web/allocations") == [("default", web_default["ID"])]
    assert ids("/v1/job/web/allocations", "prod") == [("prod", web_prod["ID"])]
    assert ids("/v1/allocations") == [("default", web_default["ID"])]
    assert len(ids("/v1/allocations", "*")) == 3
    assert ids("/v1/allocations", "prod") == sorted([("prod", web_prod["ID"]), ("prod", onlyprod["ID"])])
    r = s.unix.get("/v1/job/web", params={"namespace": "*"})
    assert r.status_code == 400 and "only works when listing" in r.text

    # stop and purge reach the other namespace's job, and only it
    r = s.unix.delete("/v1/job/onlyprod", params={"namespace": "prod", "purge": "true"})
    assert r.status_code == 200, r.text
    wait_until(lambda: s.unix.get("/v1/job/onlyprod", params={"namespace": "prod"}).status_code == 404, 20)
    r = s.unix.delete("/v1/job/web", params={"namespace": "prod"})
    assert r.status_code == 200, r.text
    assert s.unix.get("/v1/job/web", params={"namespace": "prod"}).json()["Stop"] is True
    assert s.unix.get("/v1/job/web").json()["Stop"] is False
    assert s.agent.allocation_runner(web_default["ID"]).terminal is False


def test_enforce_index(served: Served) -> None:
    s = served

    def put(job: dict[str, Any], index: int) -> Any:
        return s.unix.put("/v1/jobs", json=dict(job, EnforceIndex=True, JobModifyIndex=index))

    job = job_json("guarded", "sleep", "60")
    r = put(job, 7)
    assert r.status_code == 400 and "Enforcing job modify index 7: job does not exist" in r.text
    r = put(job, 0)  # 0: only if it does not exist yet
    assert r.status_code == 200, r.text
    jmi = s.unix.get("/v1/job/guarded").json()["JobModifyIndex"]
    changed = job_json("guarded", "sleep", "61")
    r = put(changed, 0)
    assert r.status_code == 400 and "Enforcing job modify index 0: job already exists" in r.text
    r = put(changed, jmi + 100)
    assert r.status_code == 400
    assert f"Enforcing job modify index {jmi + 100}: job exists with conflicting job modify index: {jmi}" in r.text
    assert s.unix.get("/v1/job/guarded").json()["JobModifyIndex"] == jmi  # nothing changed
    r = put(changed, jmi)
    assert r.status_code == 200, r.text
    assert s.unix.get("/v1/job/guarded").json()["JobModifyIndex"] > jmi
    r = s.unix.put("/v1/jobs", json=dict(changed, EnforceIndex="yes"))
    assert r.status_code == 400 and "EnforceIndex must be true or false" in r.text
