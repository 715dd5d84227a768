"""Resource → cgroup value rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawexec.containment.limits import cpu_shares, cpu_weight, format_cpu_list, parse_cpu_list, task_cpuset
from rawexec.errors import InvalidConfigError
from rawexec.types import Resources


def test_cpu_shares_are_mhz_clamped() -> None:
    assert cpu_shares(500) == 500
    assert cpu_shares(0) == 2
    assert cpu_shares(10**7) == 262144


def test_cpu_weight_matches_the_runc_mapping() -> None:
    assert cpu_weight(2) == 1
    assert cpu_weight(262144) == 10000
    assert cpu_weight(1024) == 39
    assert cpu_weight(100) == 4


@given(st.integers(min_value=2, max_value=262144), st.integers(min_value=2, max_value=262144))
def test_cpu_weight_is_monotonic_and_in_range(a: int, b: int) -> None:
    assert 1 <= cpu_weight(a) <= 10000
    if a <= b:
        assert cpu_weight(a) <= cpu_weight(b)


def test_cpu_list_round_trip() -> None:
    assert parse_cpu_list("0-2,5,7-8\n") == (0, 1, 2, 5, 7, 8)
    assert format_cpu_list([8, 7, 5, 2, 1, 0]) == "0-2,5,7-8"
    assert parse_cpu_list("") == ()
    with pytest.raises(InvalidConfigError, match="invalid cpu list"):
        parse_cpu_list("0-x")


@given(st.sets(st.integers(min_value=0, max_value=300)))
def test_cpu_list_property(cpus: set[int]) -> None:
    assert parse_cpu_list(format_cpu_list(list(cpus))) == tuple(sorted(cpus))


def test_task_cpuset() -> None:
    avail = (0, 1, 2, 3)
    assert task_cpuset(Resources(), avail) is None
    assert task_cpuset(Resources(cores=2), avail) == "0-1"
    assert task_cpuset(Resources(cores=1, cpuset=(3,)), avail) == "3"
    with pytest.raises(InvalidConfigError, match=r"resources.cpuset 7 names cpus this host does not offer \(7\)"):
        task_cpuset(Resources(cpuset=(7,)), avail)
    with pytest.raises(InvalidConfigError, match=r"resources.cores = 5 but only 4 cpus"):
        task_cpuset(Resources(cores=5), avail)


def test_memory_limits_follow_nomad() -> None:
    mb = 1024 * 1024
    assert Resources(memory=100, memory_max=0).memory_limits() == (100 * mb, None)
    assert Resources(memory=100, memory_max=200).memory_limits() == (200 * mb, 100 * mb)
    assert Resources(memory=100, memory_max=-1).memory_limits() == (None, 100 * mb)
