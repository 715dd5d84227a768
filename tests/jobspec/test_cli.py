"""``rawexec job validate`` and ``rawexec job run -output`` through the real click entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rawexec.cli.main import cli
from rawexec.jobspec import parse_file, parse_json
from tests.jobspec.conftest import CORPUS


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_validate_success() -> None:
    code, out, _ = run("job", "validate", str(CORPUS / "sleep.nomad.hcl"))
    assert code == 0 and out.strip() == "Job validation successful"


def test_validate_with_vars_and_var_file() -> None:
    code, out, _ = run("job", "validate", str(CORPUS / "variables.nomad.hcl"), "-var", "region=eu",
                       "-var-file", str(CORPUS / "variables.vars.hcl"))
    assert code == 0 and "Job validation successful" in out


def test_validate_prints_every_error_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.hcl"
    bad.write_text('job "j" {\n group "g" {\n count = -1\n task "t" {\n driver = "raw_exec"\n'
                   ' kill_timout = "5s"\n config {\n command = "/bin/true"\n }\n }\n }\n}\n')
    code, out, err = run("job", "validate", str(bad))
    assert code == 1 and out == ""
    assert err.startswith("Job validation errors:")
    lines = [ln for ln in err.splitlines() if ln.startswith("  * ")]
    assert len(lines) == 2
    assert any(f"{bad}:3:2" in ln and "count can't be negative" in ln for ln in lines)
    assert any('did you mean "kill_timeout"?' in ln for ln in lines)


def test_validate_missing_variable_value() -> None:
    code, _, err = run("job", "validate", str(CORPUS / "variables.nomad.hcl"))
    assert code == 1 and 'Missing required variable: the variable "region"' in err


def test_bad_var_flag() -> None:
    r = CliRunner().invoke(cli, ["job", "validate", str(CORPUS / "sleep.nomad.hcl"), "-var", "novalue"])
    assert r.exit_code == 2 and "expected name=value" in r.output


def test_run_output_prints_api_json() -> None:
    code, out, _ = run("job", "run", "-output", str(CORPUS / "full.nomad.hcl"))
    assert code == 0
    api = json.loads(out)
    assert api["Job"]["ID"] == "web"
    assert parse_json(api) == parse_file(CORPUS / "full.nomad.hcl", env={})


def test_run_without_a_reachable_agent_says_how_to_proceed() -> None:
    code, _, err = run("job", "run", "-address", "unix:///nonexistent/api.sock", str(CORPUS / "sleep.nomad.hcl"))
    assert code == 1 and "cannot reach the agent" in err and "-output" in err


def test_installed_entry_point_runs_validate() -> None:
    # The real process, as a user would run it.
    proc = subprocess.run([sys.executable, "-c", "from rawexec.cli.main import main; main()", "job", "validate",
                           str(CORPUS / "artifact.nomad.hcl")], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Job validation successful"


def test_job_file_dash_reads_standard_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nomad's `job run -`: the job comes from stdin; file() paths are relative to the current directory
    (tmp_path / "greeting.txt").write_text("from-cwd")
    monkeypatch.chdir(tmp_path)
    text = (CORPUS / "sleep.nomad.hcl").read_text().replace(
        'driver = "raw_exec"', 'driver = "raw_exec"\n      meta { g = file("greeting.txt") }', 1)

    def run_stdin(*args: str, stdin: str) -> tuple[int, str, str]:
        r = CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)
        return r.exit_code, r.stdout, r.stderr

    code, api, err = run_stdin("job", "run", "-output", "-", stdin=text)
    assert code == 0, err
    (task,) = json.loads(api)["Job"]["TaskGroups"][0]["Tasks"]
    assert task["Meta"] == {"g": "from-cwd"}
    assert run_stdin("job", "validate", "-", stdin=text)[:2] == (0, "Job validation successful\n")
    # API JSON too (`rawexec job inspect web | rawexec job run -json -`)
    code, again, err = run_stdin("job", "run", "-json", "-output", "-", stdin=api)
    assert code == 0 and json.loads(again) == json.loads(api), err
    code, _, err = run_stdin("job", "validate", "-", stdin='job "x" {\n  group "g" {\n')
    assert code == 1 and "  * <stdin>:3:1: " in err, err
