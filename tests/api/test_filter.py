"""``?filter=`` (go-bexpr expressions) on the list endpoints of a real agent over its unix socket."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.api.conftest import Served
from tests.api.test_http import job_json, register
from tests.helpers.util import wait_until

PARSE_ERROR = "failed to create result paginator: failed to read filter expression: "


def get(s: Served, path: str, **params: str) -> Any:
    r = s.unix.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def ids(items: list[dict[str, Any]]) -> list[str]:
    return sorted(str(i["ID"]) for i in items)


@pytest.fixture
def two_jobs(served: Served) -> Served:
    """Job ``flt-a`` with two running allocations; job ``flt-b`` with one, stopped (complete)."""
    register(served, job_json("flt-a", "sleep", "60", count=2))
    b_alloc = register(served, job_json("flt-b", "sleep", "60"))
    # the job stopped (not only the allocation, which would be rescheduled): its allocation ends
    assert served.unix.delete("/v1/job/flt-b").status_code == 200

    def b_stopped() -> bool:
        return bool(get(served, f"/v1/allocation/{b_alloc}")["ClientStatus"] not in ("pending", "running"))

    wait_until(b_stopped, 20, interval=0.05, msg="flt-b's allocation did not stop")
    return served


def test_jobs_filter(two_jobs: Served) -> None:
    s = two_jobs
    assert ids(get(s, "/v1/jobs")) == ["flt-a", "flt-b"]
    assert get(s, "/v1/jobs", filter='ID == "nosuch"') == []
    assert ids(get(s, "/v1/jobs", filter='ID == "flt-a"')) == ["flt-a"]
    assert ids(get(s, "/v1/jobs", filter='ID matches "^flt-" and not (ID == "flt-b")')) == ["flt-a"]
    assert ids(get(s, "/v1/jobs", filter='"dc1" in Datacenters or ID == "x"')) == ["flt-a", "flt-b"]
    # filtering applies after prefix
    assert ids(get(s, "/v1/jobs", prefix="flt-b", filter='ID matches "flt"')) == ["flt-b"]
    assert get(s, "/v1/jobs", prefix="flt-b", filter='ID == "flt-a"') == []
    # the objects are the ones the unfiltered list sends
    full = {j["ID"]: j for j in get(s, "/v1/jobs")}
    assert get(s, "/v1/jobs", filter='ID == "flt-a"') == [full["flt-a"]]
    # an empty filter is no filter (as Nomad)
    assert ids(get(s, "/v1/jobs", filter="")) == ["flt-a", "flt-b"]


def test_allocations_filter(two_jobs: Served) -> None:
    s = two_jobs
    everything = get(s, "/v1/allocations")
    assert len(everything) == 3
    assert get(s, "/v1/allocations", filter='ClientStatus == "dead"') == []
    running = get(s, "/v1/allocations", filter='ClientStatus == "running"')
    assert running == [a for a in everything if a["ClientStatus"] == "running"]
    assert {a["JobID"] for a in running} == {"flt-a"} and len(running) == 2
    assert ids(get(s, "/v1/allocations", filter='JobID == "flt-b"')) == ids(
        [a for a in everything if a["JobID"] == "flt-b"])
    # nested map keys: a missing key is no error, it just does not match
    assert len(get(s, "/v1/allocations", filter='TaskStates.web.State == "running"')) == 2
    assert get(s, "/v1/allocations", filter='TaskStates["nosuch"].State == "running"') == []
    assert len(get(s, "/v1/allocations", filter='TaskStates.nosuch is empty')) == 3
    # after prefix; and task_states=false strips TaskStates from what passed a filter that used them
    first = running[0]["ID"]
    assert ids(get(s, "/v1/allocations", prefix=first, filter='ClientStatus == "running"')) == [first]
    assert get(s, "/v1/allocations", prefix=first, filter='ClientStatus != "running"') == []
    bare = get(s, "/v1/allocations", task_states="false", filter='TaskStates.web.State == "running"')
    assert ids(bare) == ids(running) and all("TaskStates" not in a for a in bare)
    # the index is the whole list's, not that of what passed
    r = s.unix.get("/v1/allocations", params={"filter": 'ID == "none"'})
    assert r.json() == [] and r.headers["X-Nomad-Index"] == s.unix.get("/v1/allocations").headers["X-Nomad-Index"]


def test_job_allocations_and_nodes_filter(two_jobs: Served) -> None:
    s = two_jobs
    a_allocs = get(s, "/v1/job/flt-a/allocations")
    assert len(a_allocs) == 2
    assert get(s, "/v1/job/flt-a/allocations", filter='ClientStatus == "dead"') == []
    one = a_allocs[0]["ID"]
    assert get(s, "/v1/job/flt-a/allocations", filter=f'ID == "{one}"') == [a_allocs[0]]
    # an unknown job is still a 404, filter or not
    assert s.unix.get("/v1/job/nosuch/allocations", params={"filter": 'ID == "x"'}).status_code == 404

    nodes = get(s, "/v1/nodes")
    assert len(nodes) == 1
    assert get(s, "/v1/nodes", filter='Name == "test-node"') == nodes
    assert get(s, "/v1/nodes", filter='Name != "test-node"') == []
    assert get(s, "/v1/nodes", filter='"raw_exec" in Drivers') == nodes


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/allocations", "/v1/job/flt-a/allocations", "/v1/nodes"])
def test_malformed_filter_is_400(two_jobs: Served, path: str) -> None:
    for bad in ('ID ==', 'ID = "x"', '(ID == "x"', "NotValid", 'ID == "x" and', " "):
        r = two_jobs.unix.get(path, params={"filter": bad})
        assert r.status_code == 400, (bad, r.text)
        assert r.text.startswith(PARSE_ERROR), r.text


def test_unknown_field_is_400_like_nomad(two_jobs: Served) -> None:
    r = two_jobs.unix.get("/v1/jobs", params={"filter": 'InvalidField == "value"'})
    assert r.status_code == 400
    assert r.text.startswith("failed to read result page: error finding value in datum: /InvalidField"), r.text
    r = two_jobs.unix.get("/v1/allocations", params={"filter": 'ModifyIndex == "abc"'})
    assert r.status_code == 400 and "strconv.ParseInt" in r.text, r.text


def test_malformed_filter_is_400_on_an_empty_list(served: Served) -> None:
    r = served.unix.get("/v1/allocations", params={"filter": 'ClientStatus == '})
    assert r.status_code == 400 and r.text.startswith(PARSE_ERROR + "1:17 (16): expected a value"), r.text
    # a well-formed filter over nothing: nothing, and no evaluation error even for an unknown field
    assert get(served, "/v1/allocations", filter='InvalidField == "x"') == []


def test_huge_and_deep_filters_are_answered_not_crashed(two_jobs: Served) -> None:
    """A 1,000-term chain is evaluated; 3,000 nested parentheses or `not`s are a 400, never a 500."""
    s = two_jobs
    long_and = " and ".join(['ID matches "^flt-"'] * 1000)
    assert ids(get(s, "/v1/jobs", filter=long_and)) == ["flt-a", "flt-b"]
    assert ids(get(s, "/v1/jobs", filter=" or ".join(['ID == "nosuch"'] * 999 + ['ID == "flt-b"']))) == ["flt-b"]
    assert len(get(s, "/v1/allocations", filter=" and ".join(['ClientStatus != "x"'] * 1000))) == 3
    assert ids(get(s, "/v1/jobs", filter="not " * 3000 + 'ID == "flt-a"')) == ["flt-a"]
    for deep in ("(" * 3000 + 'ID == "flt-a"' + ")" * 3000, "not (" * 3000 + 'ID == "flt-a"' + ")" * 3000):
        r = s.unix.get("/v1/jobs", params={"filter": deep})
        assert r.status_code == 400, r.text[:300]
        assert r.text.startswith(PARSE_ERROR) and "parentheses nest deeper than" in r.text, r.text[:300]
    assert s.unix.get("/v1/agent/self").status_code == 200


def test_a_catastrophic_regex_is_400_and_stalls_nobody(two_jobs: Served) -> None:
    s = two_jobs
    # backtracks exponentially on the 36-character allocation IDs' hex-and-dash alphabet
    evil = 'ID matches "^([0-9a-f-]|[0-9a-f-]{2})+[xyz]"'
    t0 = time.monotonic()
    r = s.unix.get("/v1/allocations", params={"filter": evil})
    took = time.monotonic() - t0
    assert r.status_code == 400, r.text
    assert r.text.startswith('failed to read result page: the regular expression "^([0-9a-f-]|[0-9a-f-]{2})+[xyz]" '
                             "took too long to match ID"), r.text
    assert took < 2.0, took
    assert len(get(s, "/v1/allocations", filter='ID matches "^[0-9a-f]{8}-"')) == 3
