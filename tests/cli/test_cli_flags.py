"""Nomad-style help and version flags (no agent needed)."""

from __future__ import annotations

import subprocess

import pytest

from rawexec import __version__
from tests.cli.conftest import RAWEXEC


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RAWEXEC, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("flag", ["-h", "-help", "--help"])
@pytest.mark.parametrize("where", [(), ("job",), ("job", "run"), ("alloc", "status"), ("acl", "bootstrap"),
                                   ("agent",), ("run",)])
def test_help_flags_everywhere(where: tuple[str, ...], flag: str) -> None:
    p = _run(*where, flag)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Usage: rawexec") and "No such option" not in p.stderr


@pytest.mark.parametrize("flag", ["-version", "--version", "-v"])
def test_version_flags_at_the_top(flag: str) -> None:
    p = _run(flag)
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"rawexec v{__version__}\n" == _run("version").stdout
