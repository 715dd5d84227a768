"""Shared helpers for the jobspec tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lark.exceptions import LarkError

from rawexec.errors import ValidationError
from rawexec.jobspec import Job, parse_hcl
from rawexec.jobspec.hcl import structure
from rawexec.jobspec.hcl.fastparse import FastParseError
from rawexec.jobspec.hcl.tree import Tree, from_lark

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


def lark_tokens(tree: Tree) -> list[tuple[Any, ...]]:
    """Every token of a tree with its type, text and full position."""
    return [(t.type, str(t), t.value, t.line, t.column, t.end_line, t.end_column, t.start_pos, t.end_pos)
            for t in tree.tokens()]


def check_fast_parse(text: str) -> None:
    """The fast driver and Lark agree on ``text``: the same tree (tokens and positions included),
    or both refuse it. Lark is python-hcl2's own parser; the fast driver only replays its tables."""
    fast = structure._fast_parser()
    assert fast is not None, "the fast parser could not be built for this Lark/python-hcl2"
    try:
        expected: Any = from_lark(structure._parser().parse(text))
    except (LarkError, RecursionError, RuntimeError, ValueError, IndexError):
        expected = None
    try:
        got: Any = fast.parse(text)
    except FastParseError:
        got = None
    if expected is None:
        assert got is None, f"the fast parser accepted text Lark refuses: {text[:200]!r}"
        return
    assert got is not None, f"the fast parser fell back on text Lark parses: {text[:200]!r}"
    assert got == expected
    assert lark_tokens(got) == lark_tokens(expected)


@pytest.fixture(autouse=True)
def _differential_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every job file any jobspec test parses is also parsed by Lark and compared (small ones)."""
    real = structure._parse

    def checked(text: str) -> Any:
        # (test_fastparse asserts the fast parser is available; some tests take it away on purpose)
        if len(text) <= 50_000 and structure._fast_parser() is not None:
            check_fast_parse(text)
        return real(text)
    monkeypatch.setattr(structure, "_parse", checked)
