"""Shared helpers for the jobspec tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from rawexec.errors import ValidationError
from rawexec.jobspec import Job, parse_hcl

CORPUS = Path(__file__).parent / "corpus"


def parse(text: str, **kw: object) -> Job:
    """parse_hcl with an empty environment (no NOMAD_VAR_* leaking in from the test runner)."""
    kw.setdefault("env", {})
    return parse_hcl(text, **kw)  # type: ignore[arg-type]


def errors_of(text: str, **kw: object) -> list[str]:
    """The error list parse_hcl raises for ``text`` (fails the test if it parses)."""
    with pytest.raises(ValidationError) as info:
        parse(text, **kw)
    assert info.value.errors, "ValidationError without errors"
    return info.value.errors


def task_job(task_body: str, group_body: str = "", job_body: str = "") -> str:
    """A one-group, one-task job with extra HCL in the task, group and job bodies."""
    return (f'job "j" {{\n{job_body}\n  group "g" {{\n{group_body}\n    task "t" {{\n'
            f'      driver = "raw_exec"\n      config {{\n        command = "/bin/true"\n      }}\n'
            f"{task_body}\n    }}\n  }}\n}}\n")
