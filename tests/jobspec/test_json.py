"""Nomad API JSON in: PascalCase, nanosecond durations, bare or wrapped, clear errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rawexec.errors import ValidationError
from rawexec.jobspec import load_json, parse_json, to_api_json


def minimal(**task: Any) -> dict[str, Any]:
    t = {"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/true"}, **task}
    return {"Job": {"ID": "j", "TaskGroups": [{"Name": "g", "Tasks": [t]}]}}


def errs(obj: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse_json(obj)
    return info.value.errors


def test_minimal_job_gets_nomads_defaults() -> None:
    job = parse_json(minimal())
    assert (job.id, job.name, job.type, job.datacenters, job.priority) == ("j", "j", "service", ("*",), 50)
    t = job.groups[0].tasks[0]
    assert (t.kill_timeout, t.restart.attempts, t.restart.interval) == (5.0, 2, 1800.0)


def test_bare_job_object_and_text_and_bytes() -> None:
    obj = minimal()
    assert parse_json(obj["Job"]) == parse_json(obj) == parse_json(json.dumps(obj)) == parse_json(
        json.dumps(obj).encode())


def test_nulls_and_zero_values_of_unmodelled_nomad_fields_are_accepted() -> None:
    obj = minimal(Affinities=None, Services=None, CSIPluginConfig=None, DispatchPayload=None)
    obj["Job"].update({"Stop": False, "Spreads": None, "Multiregion": None, "CreateIndex": 0})
    parse_json(obj)


def test_scheduler_only_fields_are_warned_about() -> None:
    obj = minimal()
    obj["Job"]["TaskGroups"][0]["Affinities"] = [{"LTarget": "${node.class}", "RTarget": "x", "Operand": "="}]
    parsed = load_json(obj)
    assert any('"Affinities"' in w and "ignored" in w for w in parsed.warnings)


def test_unknown_fields_are_errors_with_did_you_mean() -> None:
    e = errs(minimal(KillTimout=5))
    assert len(e) == 1 and '"KillTimout"' in e[0] and 'did you mean "KillTimeout"?' in e[0]
    e = errs(minimal(kill_timeout=5))
    assert 'did you mean "KillTimeout"?' in e[0]


def test_wrong_types_in_json() -> None:
    e = errs(minimal(KillTimeout="5s", Resources={"CPU": "lots"}, Env={"A": 1}))
    text = "\n".join(e)
    assert "KillTimeout must be a duration in integer nanoseconds, got string" in text
    assert '"CPU": a number is required, got string' in text
    assert "a string is required, got number" in text
    assert len(e) == 3


def test_semantic_validation_applies_to_json_too() -> None:
    obj = minimal(RestartPolicy={"Mode": "sometimes", "Attempts": 1, "Interval": 60_000_000_000, "Delay": 0},
                  Artifacts=[{"GetterSource": "https://x", "GetterOptions": {"checksum": "md5:zz"}}])
    text = "\n".join(errs(obj))
    assert 'Unsupported restart mode: "sometimes"' in text
    assert "invalid checksum: encoding/hex: invalid byte: U+007A 'z'" in text


@pytest.mark.parametrize(("raw", "text"), [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "must be an object"),
    ('{"Job": 3}', '"Job" must be an object'),
    ('{"job": {"x": {}}}', "HCL written in JSON syntax"),
    ("[" * 100000, "invalid JSON"),
])
def test_bad_json_documents(raw: str, text: str) -> None:
    assert any(text in e for e in errs(raw))


def test_task_groups_must_be_objects() -> None:
    assert any("TaskGroups must be an object or a list of objects" in e for e in errs({"Job": {"ID": "j",
                                                                                                "TaskGroups": 5}}))


def test_api_json_round_trip_is_stable() -> None:
    job = parse_json(minimal(Env={"A": "b"}, KillTimeout=1_500_000_000))
    assert job.groups[0].tasks[0].kill_timeout == 1.5
    assert parse_json(to_api_json(job)) == job
    assert to_api_json(job)["Job"]["TaskGroups"][0]["Tasks"][0]["KillTimeout"] == 1_500_000_000


def test_top_level_submit_fields_are_tolerated() -> None:
    obj = minimal()
    obj["EnforceIndex"] = False
    assert load_json(obj).warnings == ()
    obj["Weird"] = 1
    assert any("ignored top-level fields: Weird" in w for w in load_json(obj).warnings)


def test_server_set_job_fields_are_ignored_silently() -> None:
    """``job inspect`` output (Status, Version, indexes, ...) registers again, as in Nomad."""
    obj = minimal()
    base = load_json(obj).job
    obj["Job"].update(Status="running", StatusDescription="", Stable=True, Version=3, SubmitTime=1795890076881086617,
                      CreateIndex=7, ModifyIndex=9, JobModifyIndex=9, NomadTokenID="x", Stop=False)
    parsed = load_json(obj)
    assert parsed.job == base and parsed.warnings == ()
    obj["Job"]["Stop"] = True
    assert any('"Stop" is ignored' in w for w in load_json(obj).warnings)
