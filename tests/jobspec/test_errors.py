"""Bad job files: every mistake is a ValidationError with Nomad's message, a position and a hint."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rawexec.errors import ValidationError
from rawexec.jobspec import MAX_JOB_FILE_BYTES, checksum_error, load_hcl, parse_file
from rawexec.jobspec.diagnostics import SEP
from tests.jobspec.conftest import errors_of, parse, task_job


def one(errors: list[str]) -> str:
    assert len(errors) == 1, errors
    return errors[0]


def test_syntax_error_has_position_and_hint() -> None:
    msg = one(errors_of('job "x" {\n  group "g" {\n    count = \n  }\n}\n', filename="bad.hcl"))
    assert msg.startswith("bad.hcl:3:")
    assert "Syntax error" in msg and "hint:" in msg


def test_missing_equals_hints_at_argument_syntax() -> None:
    msg = one(errors_of('job "x" {\n  group "g" {\n    task "t" {\n      driver "raw_exec"\n    }\n  }\n}\n'))
    assert "write name = value" in msg


def test_unclosed_block() -> None:
    msg = one(errors_of('job "x" {\n  group "g" {\n', filename="j.hcl"))
    assert msg.startswith("j.hcl:") and "end of file" in msg


@pytest.mark.parametrize(("body", "field", "suggestion"), [
    ('kill_timout = "5s"', "kill_timout", "kill_timeout"),
    ('drvier = "raw_exec"', "drvier", "driver"),
    ("lifecyle {\n hook = \"prestart\"\n }", "lifecyle", "lifecycle"),
    ("resources {\n memroy = 10\n }", "memroy", "memory"),
    ("logs {\n max_file = 1\n }", "max_file", "max_files"),
])
def test_unknown_fields_say_did_you_mean(body: str, field: str, suggestion: str) -> None:
    msg = one(errors_of(task_job(body), filename="j.hcl"))
    assert f'"{field}"' in msg and f'did you mean "{suggestion}"?' in msg
    assert msg.startswith("j.hcl:")


def test_unknown_group_and_job_fields() -> None:
    errs = errors_of(task_job("", group_body="  cuont = 2", job_body="  datacenter = [\"dc1\"]"))
    assert len(errs) == 2
    assert any('"cuont"' in e and 'did you mean "count"' in e for e in errs)
    assert any('"datacenter"' in e and 'did you mean "datacenters"' in e for e in errs)


def test_field_path_names_job_group_task() -> None:
    msg = one(errors_of(task_job('kill_timeout = "soon"')))
    assert f'job "j"{SEP}group "g"{SEP}task "t"{SEP}kill_timeout:' in msg
    assert 'Invalid duration "soon"' in msg and "hint:" in msg


@pytest.mark.parametrize(("body", "text"), [
    ('kill_timeout = 5', 'a duration string is required, got number'),
    ('leader = "maybe"', '"leader": a bool is required, got string'),
    ("resources {\n cpu = \"lots\"\n }", '"cpu": a number is required, got string'),
    ("resources {\n memory = 1.5\n }", "a whole number is required, got 1.5"),
    ('user = ["a"]', '"user": a string is required, got tuple'),
    ('env = ["A=1"]', '"env": a map of string is required, got tuple'),
])
def test_wrong_types(body: str, text: str) -> None:
    assert text in one(errors_of(task_job(body)))


def test_two_tasks_with_one_name() -> None:
    text = ('job "j" {\n group "g" {\n'
            '  task "a" {\n driver = "raw_exec"\n config {\n command = "/bin/true"\n }\n }\n'
            '  task "a" {\n driver = "raw_exec"\n config {\n command = "/bin/true"\n }\n }\n }\n}\n')
    assert "Task 2 redefines 'a' from task 1" in one(errors_of(text, filename="j.hcl"))


def test_two_groups_with_one_name() -> None:
    g = 'group "g" {\n task "a" {\n driver = "raw_exec"\n config {\n command = "/bin/true"\n }\n }\n }\n'
    assert "Job task group 2 redefines 'g' from group 1" in one(errors_of(f'job "j" {{\n{g}{g}}}\n'))


def test_negative_count() -> None:
    msg = one(errors_of(task_job("", group_body="count = -1"), filename="j.hcl"))
    assert "Task group count can't be negative" in msg and msg.startswith("j.hcl:4:1:")


def test_bad_durations() -> None:
    errs = errors_of(task_job('kill_timeout = "5 seconds"\nshutdown_delay = "1d"'))
    assert len(errs) == 2
    assert any('time: unknown unit "d" in duration "1d"' in e for e in errs)


def test_restart_mode_sometimes() -> None:
    msg = one(errors_of(task_job("", group_body='restart {\n mode = "sometimes"\n }')))
    assert 'Unsupported restart mode: "sometimes"' in msg
    assert f"restart{SEP}mode" in msg


def test_restart_attempts_times_delay_over_interval() -> None:
    body = 'restart {\n attempts = 10\n delay = "1m"\n interval = "5m"\n mode = "fail"\n }'
    msg = one(errors_of(task_job("", group_body=body)))
    assert "Nomad can't restart the TaskGroup 10 times in an interval of 5m0s with a delay of 1m0s" in msg


def test_restart_interval_too_short_and_ambiguous_zero_attempts() -> None:
    errs = errors_of(task_job("", group_body='restart {\n attempts = 0\n interval = "1s"\n mode = "delay"\n }'))
    assert any("Interval can not be less than 5s (got 1s)" in e for e in errs)
    assert any('Restart policy "delay" with 0 attempts is ambiguous' in e for e in errs)


def test_task_restart_override_is_checked() -> None:
    msg = one(errors_of(task_job('restart {\n mode = "never"\n }')))
    assert f'task "t"{SEP}restart{SEP}mode' in msg


@pytest.mark.parametrize(("checksum", "message"), [
    ("", "checksum value cannot be empty"),
    ("abc", 'checksum must be given as "type:value"; got "abc"'),
    ("sha256:xyz1", "invalid checksum: encoding/hex: invalid byte: U+0078 'x'"),
    ("sha256:abc", "invalid checksum: encoding/hex: odd length hex string"),
    ("crc32:abcd", "unsupported checksum type: crc32"),
    ("md5:abcd", "invalid md5 checksum: abcd"),
    ("sha1:" + "ab" * 19, "invalid sha1 checksum: " + "ab" * 19),
    # The seed's own example: "ds" is not hex, so Nomad rejects it.
    ("sha256:abd123445ds4555555555555555555555555555555555555555555555555555a",
     "invalid checksum: encoding/hex: invalid byte: U+0073 's'"),
    ("file:SHA256SUMS", 'checksum "file:" must be followed by a URL'),
])
def test_bad_checksums_have_nomads_messages(checksum: str, message: str) -> None:
    err = checksum_error(checksum)
    assert err is not None and err.startswith(message)
    body = f'artifact {{\n source = "https://x/y"\n options {{\n checksum = "{checksum}"\n }}\n }}'
    msg = one(errors_of(task_job(body), filename="j.hcl"))
    assert message in msg and f"artifact{SEP}options{SEP}checksum" in msg and msg.startswith("j.hcl:")


@pytest.mark.parametrize("checksum", [
    "md5:d41d8cd98f00b204e9800998ecf8427e", "sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "sha256:" + "0" * 64, "sha512:" + "f" * 128, "sha256:${NOMAD_META_sum}",
    "file:https://example.com/SHA256SUMS",  # go-getter's checksum file, supported by our getter
])
def test_good_checksums(checksum: str) -> None:
    assert checksum_error(checksum) is None
    parse(task_job(f'artifact {{\n source = "https://x/y"\n options {{\n checksum = "{checksum}"\n }}\n }}'))


@pytest.mark.parametrize(("dest", "ok"), [
    ("local/", True), ("local/bin", True), ("../alloc/data", True), ("..", True), ("/etc/x", True),
    ("${NOMAD_TASK_DIR}/x", True), ("../../x", False), ("local/../../../x", False), ("../../alloc/x", False),
])
def test_artifact_destination_escaping_alloc_dir(dest: str, ok: bool) -> None:
    text = task_job(f'artifact {{\n source = "https://x/y"\n destination = "{dest}"\n }}')
    if ok:
        parse(text)
    else:
        assert "destination escapes allocation directory" in one(errors_of(text))


def test_artifact_source_and_mode() -> None:
    errs = errors_of(task_job('artifact {\n mode = "tree"\n }'))
    assert any("source must be specified" in e for e in errs)
    assert any('invalid artifact mode "tree"; must be one of: any, file, dir' in e for e in errs)


def test_undefined_variable() -> None:
    text = 'variable "image" {\n default = "x"\n}\n' + task_job('user = var.imagee')
    msg = one(errors_of(text, filename="j.hcl"))
    assert 'an input variable with the name "imagee" has not been declared' in msg
    assert 'did you mean "image"?' in msg and msg.startswith("j.hcl:")


def test_undefined_local_and_locals_cycle() -> None:
    text = 'locals {\n a = local.b\n b = local.a\n}\n' + task_job("user = local.c")
    errs = errors_of(text)
    assert any("Cycle in local values" in e for e in errs)
    assert any('no local value named "c"' in e for e in errs)


def test_variable_failing_its_validation_rule() -> None:
    text = ('variable "count" {\n type = number\n default = 1\n validation {\n condition = var.count > 1\n'
            ' error_message = "count must be greater than one."\n }\n}\n'
            + task_job("", group_body="count = var.count"))
    msg = one(errors_of(text, filename="j.hcl"))
    assert "Invalid value for variable: count must be greater than one." in msg
    assert msg.startswith("j.hcl:5:")


def test_missing_required_variable() -> None:
    text = 'variable "region" {\n type = string\n}\n' + task_job("")
    msg = one(errors_of(text))
    assert 'Missing required variable: the variable "region"' in msg and "-var region=" in msg


def test_several_errors_reported_together() -> None:
    text = task_job('kill_timeout = "x"\nkill_signal = "SIGFOO"\nresources {\n memory = 1\n }',
                    group_body="count = -2\nrestart {\n mode = \"x\"\n }")
    with pytest.raises(ValidationError) as info:
        parse(text)
    errs = info.value.errors
    assert len(errs) == 5, errs
    assert str(info.value).startswith("5 errors occurred:")


def test_job_level_errors() -> None:
    text = 'job "has space" {\n type = "cron"\n priority = 200\n datacenters = []\n}\n'
    errs = errors_of(text)
    assert any("Job ID contains a space" in e for e in errs)
    assert any('Invalid job type: "cron"' in e for e in errs)
    assert any("Job priority must be between [1, 100]" in e for e in errs)
    assert any("Missing job datacenters" in e for e in errs)
    assert any("Missing job task groups" in e for e in errs)


def test_no_job_block() -> None:
    assert "No job stanza found" in one(errors_of('variable "x" {\n default = 1\n}\n'))


def test_unknown_top_level_block() -> None:
    errs = errors_of('jbo "x" {\n}\n')
    assert any('"jbo"' in e and 'did you mean "job"?' in e for e in errs)


def test_task_semantics() -> None:
    errs = errors_of(task_job('kill_timeout = "-1s"\nlifecycle {\n hook = "prestrt"\n }\nlogs {\n max_files = 0\n }'
                              '\nresources {\n memory = 100\n memory_max = 50\n }'))
    assert any("KillTimeout must be a positive value" in e for e in errs)
    assert any("invalid hook: prestrt" in e and 'did you mean "prestart"' in e for e in errs)
    assert any("minimum number of files is 1; got 0" in e for e in errs)
    assert any("MemoryMaxMB value (50) should be larger than MemoryMB value (100)" in e for e in errs)


def test_raw_exec_config_checked() -> None:
    text = ('job "j" {\n group "g" {\n task "t" {\n driver = "raw_exec"\n config {\n comand = "/bin/true"\n'
            ' work_dir = "rel"\n }\n }\n }\n}\n')
    errs = errors_of(text)
    assert any('"comand"' in e and 'did you mean "command"' in e for e in errs)
    assert any('the argument "command" is required' in e for e in errs)
    assert any("work_dir must be an absolute path" in e for e in errs)
    # scalars in args are converted by HCL/the driver; lists are not
    parse(task_job("").replace('command = "/bin/true"', 'command = "/bin/sleep"\n args = [1, true]'))
    bad = errors_of(task_job("").replace('command = "/bin/true"', 'command = "/bin/sleep"\n args = [[1]]'))
    assert any("args must be a list of strings" in e for e in bad)


def test_duplicate_identities() -> None:
    ident = "identity {\n env = true\n }\n"
    assert 'identity "default" is defined more than once' in one(errors_of(task_job(ident + ident)))


def test_unquoted_driver_name() -> None:
    msg = one(errors_of(task_job("").replace('driver = "raw_exec"', "driver = raw_exec")))
    assert 'driver must be a plain name, got "${raw_exec}"' in msg and 'quote it: driver = "raw_exec"' in msg


def test_any_driver_parses_with_a_warning() -> None:
    text = 'job "j" {\n group "g" {\n task "t" {\n driver = "docker"\n config {\n image = "x"\n }\n }\n }\n}\n'
    parsed = load_hcl(text, env={})
    assert parsed.job.groups[0].tasks[0].driver == "docker"
    assert any('driver "docker"' in w and "only raw_exec" in w for w in parsed.warnings)


def test_scheduler_only_blocks_are_warned_not_dropped_silently() -> None:
    parsed = load_hcl(task_job("", group_body='affinity {\n attribute = "x"\n value = "y"\n }'), env={})
    assert any('"affinity"' in w and "ignored" in w for w in parsed.warnings)


def test_five_megabyte_job_file(tmp_path: Path) -> None:
    text = task_job("") + ("# padding\n" * (5 * 1024 * 1024 // 10))
    assert len(text) > 4 * 1024 * 1024 > MAX_JOB_FILE_BYTES
    msg = one(errors_of(text))
    assert "job file is too large" in msg
    path = tmp_path / "big.hcl"
    path.write_text(text)
    with pytest.raises(ValidationError, match="too large"):
        parse_file(path, env={})


@pytest.mark.parametrize("garbage", [
    "x = " + "[" * 5000 + "]" * 5000 + "\n",
    "x = " + "(" * 3000 + "1" + ")" * 3000 + "\n",
    'job "a" {\n' * 2000 + "}\n" * 2000,
    "x = " + "{a = " * 2000 + "1" + "}" * 2000 + "\n",
    "x = " + "-" * 3000 + "1\n",
])
def test_deeply_nested_garbage(garbage: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse(garbage)
    assert info.value.errors


@pytest.mark.parametrize("garbage", ["x = " + "[" * 1_000_000, "x = " + "{a = " * 300_000, "(" * 1_500_000])
def test_a_megabyte_of_nesting_fails_fast(garbage: str) -> None:
    t0 = time.process_time()
    msg = one(errors_of(garbage, filename="deep.hcl"))
    assert "nested too deeply" in msg and msg.startswith("deep.hcl:1:")
    assert time.process_time() - t0 < 5.0


def test_non_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "latin1.hcl"
    path.write_bytes(b'job "caf\xe9" {\n}\n')
    with pytest.raises(ValidationError) as info:
        parse_file(path, env={})
    msg = one(info.value.errors)
    assert "invalid UTF-8" in msg and "0xe9" in msg and msg.startswith(f"{path}:1:9")


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.hcl"
    path.write_bytes(b"\xef\xbb\xbf" + task_job("").encode())
    assert parse_file(path, env={}).id == "j"


def test_duplicate_group_volumes() -> None:
    vol = 'volume "v" {\n type = "host"\n source = "v"\n }\n'
    assert 'Volume "v" is defined more than once' in one(errors_of(task_job("", group_body=vol + vol)))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read job file"):
        parse_file(tmp_path / "nope.hcl")


def test_errors_are_capped() -> None:
    body = "\n".join(f'bogus{i} = {i}' for i in range(300))
    errs = errors_of(task_job(body))
    assert len(errs) == 101 and errs[-1].startswith("too many errors")


def test_valid_nomad_fields_rawexec_does_not_use_are_warned_about() -> None:
    parsed = load_hcl(task_job('template {\n destination = "local/x"\n data = "x"\n uid = 1000\n }'), env={})
    assert any('"uid" is accepted but not used by rawexec' in w for w in parsed.warnings)


@pytest.mark.parametrize(("body", "expected"), [
    # Nomad's ReschedulePolicy.Validate, message for message
    ('delay = "1s"', [f"reschedule{SEP}delay: Delay cannot be less than 5s (got 1s)"]),
    ('attempts = 2\n unlimited = true', ["Reschedule Policy with Attempts = 2, Interval = 24h0m0s, and Unlimited = "
                                         "true is ambiguous (hint: If Attempts >0, Unlimited cannot also be set to "
                                         "true)"]),
    ('attempts = 1\n interval = "10s"\n unlimited = false', ["Interval cannot be less than 15s (got 10s)"]),
    ('delay_function = "exponential"\n delay = "10s"\n max_delay = "6s"\n unlimited = true',
     [f"{SEP}max_delay: Max Delay cannot be less than Delay 10s (got 6s)"]),
    ('attempts = 10\n interval = "30s"\n delay = "5s"\n delay_function = "constant"\n unlimited = false',
     ['Nomad can only make 6 attempts in 30s with initial delay 5s and delay function "constant" '
      "(hint: Set the interval to at least 50s to accommodate 10 attempts)"]),
    ('attempts = 4\n interval = "30s"\n delay = "5s"\n delay_function = "exponential"\n max_delay = "1m"\n'
     ' unlimited = false', ['Nomad can only make 3 attempts in 30s with initial delay 5s, delay function '
                            '"exponential", and delay ceiling 1m0s (hint: Set the interval to at least 40s']),
    ('attempts = 0\n delay = "1s"\n unlimited = false', []),  # no rescheduling: nothing checked
])
def test_reschedule_policy_is_validated_as_nomad_does(body: str, expected: list[str]) -> None:
    text_ = task_job("", group_body=f"reschedule {{\n {body}\n }}", job_body='type = "batch"')
    if not expected:
        parse(text_)
        return
    errs = errors_of(text_)
    for text in expected:
        assert any(text in e for e in errs), errs


def test_restart_interval_too_short_and_too_many_attempts_are_both_reported() -> None:
    # as Nomad's RestartPolicy.Validate: the interval check does not hide the attempts check
    errs = errors_of(task_job("", group_body='restart {\n attempts = 5\n delay = "1s"\n interval = "2s"\n'
                                             ' mode = "fail"\n }'))
    assert any("Interval can not be less than 5s (got 2s)" in e for e in errs)
    assert any("Nomad can't restart the TaskGroup 5 times in an interval of 2s with a delay of 1s" in e for e in errs)
