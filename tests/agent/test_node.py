"""Node fingerprint: the numbers psutil gives, without importing it where the kernel has no cpufreq."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from rawexec.agent import node


def test_memory_total_is_psutils() -> None:
    attrs = node.fingerprint_attributes(raw_exec_enabled=True)
    assert int(attrs["memory.totalbytes"]) == psutil.virtual_memory().total
    assert attrs["cpu.numcores"] == str(os.cpu_count())
    assert attrs["driver.raw_exec"] == "1"


def test_no_cpufreq_no_frequency(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(node, "_CPUFREQ_PATHS", (str(tmp_path / "missing"),))
    monkeypatch.setattr(psutil, "cpu_freq", lambda: pytest.fail("psutil asked without cpufreq"))
    attrs = node.fingerprint_attributes(raw_exec_enabled=False)
    assert "cpu.frequency" not in attrs and "cpu.totalcompute" not in attrs
    assert "driver.raw_exec" not in attrs


@pytest.mark.parametrize(("freq", "expected"), [
    (SimpleNamespace(current=1000.0, min=800.0, max=2400.0), "2400"),
    (SimpleNamespace(current=1000.0, min=0.0, max=0.0), None),
    (None, None),
])
def test_cpufreq_max_from_psutil(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, freq: object,
                                 expected: str | None) -> None:
    monkeypatch.setattr(node, "_CPUFREQ_PATHS", (str(tmp_path),))
    monkeypatch.setattr(psutil, "cpu_freq", lambda: freq)
    attrs = node.fingerprint_attributes(raw_exec_enabled=True)
    assert attrs.get("cpu.frequency") == expected
    if expected is not None:
        assert attrs["cpu.totalcompute"] == str(int(expected) * (os.cpu_count() or 1))
