"""Fuzzing: random bytes and structurally valid but wrong jobs never crash the parser.

Every input either parses into a Job or raises ValidationError with at least one message — never
another exception. The random-bytes test runs ≥ 10,000 cases (RAWEXEC_FUZZ_EXAMPLES to change).
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawexec.errors import ValidationError
from rawexec.jobspec import Job, load_hcl, parse_json, to_api_json

N = int(os.environ.get("RAWEXEC_FUZZ_EXAMPLES", "10000"))
FUZZ = settings(max_examples=N, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
STRUCT = settings(max_examples=max(N // 100, 50), deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def outcome(fn: Any, *args: Any, **kw: Any) -> Job | None:
    try:
        result = fn(*args, **kw)
    except ValidationError as exc:
        assert exc.errors and all(isinstance(e, str) and e for e in exc.errors)
        return None
    return result.job if hasattr(result, "job") else result  # type: ignore[no-any-return]


HCL_PIECES = ['job "j" {', 'group "g" {', 'task "t" {', "}", "{", "[", "]", "(", ")", '"', "${", "%{", "=", ",",
              "\n", " ", "var.x", "local.y", "attr.z", "upper(", "<<EOT\n", "EOT\n", "<<-X\n", "1", "-", "?", ":",
              "driver", "config", "count", "#", "//", "/*", "*/", "\\", "true", "null", "for", "in", "if", "...",
              "é", "\x00", "\t", "$", "%", "endif", "else", "~", "=>", ".*", "[*]", "0x", "1e309", "\r\n"]


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    outcome(load_hcl, data, env={})


@STRUCT
@given(st.lists(st.sampled_from(HCL_PIECES), max_size=60).map("".join))
def test_random_hcl_token_soup(text: str) -> None:
    outcome(load_hcl, text, env={})


# Structurally valid jobs with wrong names, types and values ------------------------------------
NAMES = ["driver", "config", "command", "args", "count", "kill_timeout", "kill_signal", "restart", "attempts",
         "interval", "delay", "mode", "artifact", "source", "destination", "options", "checksum", "logs",
         "max_files", "resources", "cpu", "memory", "memory_max", "cores", "env", "meta", "lifecycle", "hook",
         "leader", "user", "network", "port", "static", "to", "type", "datacenters", "priority", "drvier",
         "cuont", "ephemeral_disk", "size", "shutdown_delay", "template", "service", "vault", "constraint",
         "periodic", "cron", "update", "identity", "volume_mount", "reschedule", "unknown_thing", "name"]
SCALARS = st.one_of(
    st.integers(min_value=-10**20, max_value=10**20), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["5s", "1m30s", "-1s", "soon", "", "raw_exec", "delay", "fail", "sometimes", "prestart",
                     "sha256:abc", "md5:d41d8cd98f00b204e9800998ecf8427e", "../../x", "local/", "${NOMAD_TASK_DIR}",
                     "SIGTERM", "SIGFOO", "batch", "service", "host", "/bin/true"]),
    st.text(max_size=8),
)


def hcl_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if isinstance(v, int) else repr(float(v))
    if isinstance(v, list):
        return "[" + ", ".join(hcl_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {hcl_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(v, ensure_ascii=False).replace("${", "$${").replace("%{", "%%{")


VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.sampled_from(NAMES), inner, max_size=3)),
                      max_leaves=6)


@st.composite
def bodies(draw: st.DrawFn, depth: int = 0) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(NAMES))
        if depth < 3 and draw(st.booleans()):
            label = draw(st.sampled_from(["", ' "a"', ' "b"']))
            lines.append(f"{name}{label} {{\n{draw(bodies(depth + 1))}\n}}")
        else:
            lines.append(f"{name} = {hcl_value(draw(VALUES))}")
    return "\n".join(lines)


@st.composite
def wrong_jobs(draw: st.DrawFn) -> str:
    task = draw(bodies(2))
    group = draw(bodies(2))
    job = draw(bodies(2))
    tname = draw(st.sampled_from(["t", "", "a/b", "t"]))
    return (f'job "{draw(st.sampled_from(["j", "with space", ""]))}" {{\n{job}\n group "g" {{\n{group}\n'
            f'  task "{tname}" {{\n driver = "raw_exec"\n config {{\n command = "/bin/true"\n }}\n'
            f"{task}\n }}\n }}\n}}\n")


@STRUCT
@given(wrong_jobs())
def test_structurally_valid_but_wrong_jobs(text: str) -> None:
    job = outcome(load_hcl, text, env={})
    if job is not None:
        # Whatever parses must survive the API JSON round trip unchanged.
        assert parse_json(json.dumps(to_api_json(job))) == job


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(
        ["ID", "Name", "Type", "TaskGroups", "Tasks", "Driver", "Config", "Count", "KillTimeout", "Resources",
         "CPU", "RestartPolicy", "Mode", "Artifacts", "GetterSource", "Env", "Networks", "x"]), inner, max_size=4)),
    max_leaves=12)


@STRUCT
@given(JSON_VALUES)
def test_random_api_json(obj: Any) -> None:
    outcome(parse_json, {"Job": obj})
    outcome(parse_json, json.dumps(obj))
