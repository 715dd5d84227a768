"""Restart tracker: every decision with exact texts, driven by a fake clock."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rawexec.agent.restarts import Decision, RestartPolicy, RestartTracker
from rawexec.errors import LaunchError, UnavailableError, ValidationError
from rawexec.types import ExitResult

FAIL = ExitResult(exit_code=1)
OK = ExitResult(exit_code=0)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def tracker(policy: RestartPolicy, job_type: str = "service", **kw: object) -> tuple[RestartTracker, Clock]:
    clock = Clock()
    return RestartTracker(policy, job_type, clock=clock, rng=random.Random(7), **kw), clock  # type: ignore[arg-type]


def test_defaults_per_job_type() -> None:
    assert RestartPolicy.default_for("service") == RestartPolicy(2, 1800, 15, "fail")
    assert RestartPolicy.default_for("system") == RestartPolicy(2, 1800, 15, "fail")
    assert RestartPolicy.default_for("batch") == RestartPolicy(3, 86400, 15, "fail")
    with pytest.raises(ValidationError, match='invalid job type "cron"'):
        RestartPolicy.default_for("cron")
    assert RestartPolicy.default_for("batch").merged({"attempts": 0}).attempts == 0
    with pytest.raises(ValidationError, match='unknown field "atempts"'):
        RestartPolicy.default_for("batch").merged({"atempts": 0})


def test_validation_messages() -> None:
    with pytest.raises(ValidationError) as e:
        RestartPolicy(attempts=0, interval=1, delay=15, mode="sometimes").validate()
    assert e.value.errors == [
        'Unsupported restart mode: "sometimes"',
        'Restart policy "sometimes" with 0 attempts is ambiguous',
        "Interval can not be less than 5s (got 1s)",
    ]
    with pytest.raises(ValidationError) as e:
        RestartPolicy(attempts=3, interval=30, delay=15, mode="delay").validate()
    assert e.value.errors == [
        "Nomad can't restart the TaskGroup 3 times in an interval of 30s with a delay of 15s"]
    with pytest.raises(ValidationError, match="must not be negative"):
        RestartPolicy(attempts=-1, interval=30, delay=1).validate()
    RestartPolicy(attempts=0, interval=5, delay=0).validate()


def test_within_policy_delay_has_jitter_up_to_25_percent() -> None:
    t, _ = tracker(RestartPolicy(attempts=100, interval=10_000, delay=15))
    delays = []
    for _ in range(50):
        d = t.set_exit_result(FAIL).get_state()
        assert d.state == "Restarting" and d.reason == "Restart within policy"
        delays.append(d.delay)
    assert all(15 <= x <= 15 * 1.25 for x in delays)
    assert len(set(delays)) > 1
    ev = d.event()
    assert ev is not None and ev.display_message.startswith("Task restarting in 1")


def test_mode_fail_after_attempts() -> None:
    t, _ = tracker(RestartPolicy.default_for("service"))
    assert t.set_exit_result(FAIL).get_state().state == "Restarting"
    assert t.set_exit_result(FAIL).get_state().state == "Restarting"
    d = t.set_exit_result(FAIL).get_state()
    assert d == Decision("Not Restarting", 0.0,
                         'Exceeded allowed attempts 2 in interval 30m0s and mode is "fail"')
    ev = d.event()
    assert ev is not None and ev.fails_task
    assert ev.display_message == 'Exceeded allowed attempts 2 in interval 30m0s and mode is "fail"'


def test_mode_delay_waits_out_the_interval() -> None:
    t, clock = tracker(RestartPolicy(attempts=1, interval=60, delay=10, mode="delay"))
    assert t.set_exit_result(FAIL).get_state().state == "Restarting"
    clock.t += 20
    d = t.set_exit_result(FAIL).get_state()
    assert d.state == "Restarting" and d.reason == "Exceeded allowed attempts, applying a delay"
    assert d.delay == pytest.approx(40)
    ev = d.event()
    assert ev is not None and ev.display_message == \
        "Exceeded allowed attempts, applying a delay - Task restarting in 40s"


def test_interval_window_resets_count() -> None:
    t, clock = tracker(RestartPolicy(attempts=1, interval=60, delay=10))
    assert t.set_exit_result(FAIL).get_state().state == "Restarting"
    clock.t += 61
    assert t.set_exit_result(FAIL).get_state().state == "Restarting"
    assert t.count == 1
    clock.t += 1
    assert t.set_exit_result(FAIL).get_state().state == "Not Restarting"


def test_success_handling_per_job_type() -> None:
    t, _ = tracker(RestartPolicy.default_for("batch"), "batch")
    d = t.set_exit_result(OK).get_state()
    assert d == Decision("Terminated", 0.0, "Restart unnecessary as task terminated successfully")
    assert d.event() is None
    t, _ = tracker(RestartPolicy.default_for("service"), "service")
    assert t.set_exit_result(OK).get_state().state == "Restarting"
    t, _ = tracker(RestartPolicy.default_for("service"), "service", lifecycle="poststop")
    assert t.set_exit_result(OK).get_state().state == "Terminated"
    t, _ = tracker(RestartPolicy.default_for("service"), "service", lifecycle="prestart")
    assert t.set_exit_result(OK).get_state().state == "Terminated"
    t, _ = tracker(RestartPolicy.default_for("service"), "service", lifecycle="prestart", sidecar=True)
    assert t.set_exit_result(OK).get_state().state == "Restarting"


def test_zero_attempts() -> None:
    pol = RestartPolicy(attempts=0, interval=60, delay=1)
    t, _ = tracker(pol, "batch")
    assert t.set_exit_result(OK).get_state() == Decision("Terminated", 0.0, "Policy allows no restarts")
    assert t.set_exit_result(FAIL).get_state() == Decision("Not Restarting", 0.0, "Policy allows no restarts")
    t, _ = tracker(pol, "service")
    assert t.set_exit_result(OK).get_state().state == "Not Restarting"


def test_start_errors() -> None:
    t, _ = tracker(RestartPolicy.default_for("service"))
    d = t.set_start_error(LaunchError("no such file")).get_state()
    assert d == Decision("Not Restarting", 0.0, "Error was unrecoverable")
    d = t.set_start_error(UnavailableError("shim busy")).get_state()
    assert d.state == "Restarting" and d.reason == "Restart within policy"


def test_killed_and_triggered() -> None:
    t, _ = tracker(RestartPolicy(attempts=0, interval=60, delay=1))
    assert t.set_exit_result(FAIL).set_killed().get_state() == Decision("Killed", 0.0, "")
    assert t.set_restart_triggered().get_state() == Decision("Restarting", 0.0, "")
    assert t.set_restart_triggered(failure=True).get_state().state == "Not Restarting"
    assert t.get_state().state == ""  # nothing recorded: no decision


def test_bad_construction() -> None:
    with pytest.raises(ValidationError, match='invalid job type "daemon"'):
        RestartTracker(RestartPolicy.default_for("batch"), "daemon")
    with pytest.raises(ValidationError, match='invalid lifecycle hook "prestop"'):
        RestartTracker(RestartPolicy.default_for("batch"), "batch", lifecycle="prestop")
    with pytest.raises(ValidationError, match="Interval can not be less than 5s"):
        RestartTracker(RestartPolicy(1, 1, 0), "batch")


def test_accepts_the_job_models_policy() -> None:
    from rawexec.jobspec.model import RestartPolicy as JobRestartPolicy

    t, _ = tracker(JobRestartPolicy(attempts=1, interval=60, delay=5, mode="fail"))  # type: ignore[arg-type]
    assert t.policy == RestartPolicy(1, 60, 5, "fail")
    assert t.set_exit_result(FAIL).get_state().state == "Restarting"
    with pytest.raises(ValidationError, match="restart policy is missing a field"):
        RestartPolicy.coerce(object())


@given(attempts=st.integers(1, 5), delay=st.floats(0, 10), steps=st.lists(st.floats(0, 100), max_size=30))
@settings(max_examples=100, deadline=None)
def test_fail_mode_never_exceeds_attempts_per_window(attempts: int, delay: float, steps: list[float]) -> None:
    interval = max(5.0, attempts * delay + 1)
    t, clock = tracker(RestartPolicy(attempts=attempts, interval=interval, delay=delay))
    window_start, restarts_in_window = clock.t, 0
    for dt in steps:
        clock.t += dt
        if clock.t > window_start + interval:
            window_start, restarts_in_window = clock.t, 0
        d = t.set_exit_result(FAIL).get_state()
        if d.state == "Restarting":
            restarts_in_window += 1
            assert d.reason == "Restart within policy"
            assert delay <= d.delay <= delay * 1.25 + 1e-9
            assert restarts_in_window <= attempts
        else:
            assert d.state == "Not Restarting" and restarts_in_window == attempts
            return


def test_state_survives_an_agent_restart() -> None:
    t, clock = tracker(RestartPolicy(attempts=2, interval=600, delay=1))
    clock.t += 10
    assert t.set_exit_result(FAIL).get_state().state == "Restarting"
    assert t.set_exit_result(FAIL).get_state().state == "Restarting"
    saved = t.to_dict(wall_now=50_000.0)
    assert saved == {"count": 2, "window_start": 50_000.0 - 10}
    # a new process: a new monotonic clock, 100 s of wall time later
    t2, clock2 = tracker(RestartPolicy(attempts=2, interval=600, delay=1))
    clock2.t = 7.0
    t2.restore(saved, wall_now=50_100.0)
    assert t2.set_exit_result(FAIL).get_state().state == "Not Restarting"  # still inside the window
    t3, _ = tracker(RestartPolicy(attempts=2, interval=600, delay=1))
    t3.restore(saved, wall_now=50_000.0 + 700)
    assert t3.set_exit_result(FAIL).get_state().state == "Restarting"  # the window has passed: count reset
    with pytest.raises(ValidationError, match="invalid restart tracker state"):
        t3.restore({"count": "many", "window_start": 1})
    with pytest.raises(ValidationError, match="count -1 is negative"):
        t3.restore({"count": -1, "window_start": 1})


def test_coerce_shares_one_copy_per_model_policy() -> None:
    """Every task runner of a job's allocations coerces the same model object: one shared copy."""
    from rawexec.jobspec.model import RestartPolicy as ModelPolicy

    a = ModelPolicy(attempts=4, interval=60.0, delay=1.0, mode="delay")
    b = ModelPolicy(attempts=5, interval=60.0, delay=1.0, mode="fail")
    pa = RestartPolicy.coerce(a)
    assert RestartPolicy.coerce(a) is pa and (pa.attempts, pa.mode) == (4, "delay")
    pb = RestartPolicy.coerce(b)
    assert pb is not pa and (pb.attempts, pb.mode) == (5, "fail")
    assert RestartPolicy.coerce(a) == pa  # another object: a fresh, equal copy
