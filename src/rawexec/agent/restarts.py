"""Nomad's restart policy and restart tracker (facts §6), as pure, clock-injected code.

The task runner tells the tracker what happened (:meth:`RestartTracker.set_exit_result`,
:meth:`~RestartTracker.set_start_error`, :meth:`~RestartTracker.set_killed`,
:meth:`~RestartTracker.set_restart_triggered`), then asks :meth:`~RestartTracker.get_state`
for the decision: a :class:`Decision` with the event type (``Restarting``, ``Not Restarting``,
``Terminated``, ``Killed``), the delay before the next start, and the reason text. The
decision's :meth:`Decision.event` is the exact task event Nomad emits.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rawexec.agent.events import (
    KILLED,
    NOT_RESTARTING,
    REASON_WITHIN_POLICY,
    RESTARTING,
    TERMINATED,
    TaskEvent,
    format_duration,
)
from rawexec.errors import RawExecError, ValidationError
from rawexec.types import ExitResult

__all__ = [
    "JOB_TYPES",
    "MIN_INTERVAL",
    "REASON_DELAY",
    "REASON_NO_RESTARTS_ALLOWED",
    "REASON_UNRECOVERABLE",
    "REASON_WITHIN_POLICY",
    "Decision",
    "RestartPolicy",
    "RestartTracker",
]

_RNG = random.Random()
"""Shared by every tracker without its own ``rng`` (a Random holds 2.5 KB of state; one per task adds up)."""

MODE_DELAY = "delay"
MODE_FAIL = "fail"
MIN_INTERVAL = 5.0
"""Nomad's minimum restart interval (seconds)."""

JOB_TYPES = ("service", "batch", "system", "sysbatch")

REASON_NO_RESTARTS_ALLOWED = "Policy allows no restarts"
REASON_UNRECOVERABLE = "Error was unrecoverable"
REASON_DELAY = "Exceeded allowed attempts, applying a delay"
REASON_SUCCESSFUL = "Restart unnecessary as task terminated successfully"
JITTER = 0.25

_MIN, _HOUR = 60.0, 3600.0


_last_coerced: tuple[Any, RestartPolicy] | None = None
"""The latest (model policy, :meth:`RestartPolicy.coerce` of it): one shared copy, not one per task runner."""


@dataclass(frozen=True)
class RestartPolicy:
    """A task group's ``restart {}`` block; durations in seconds."""

    attempts: int
    interval: float
    delay: float
    mode: str = MODE_FAIL
    render_templates: bool = False

    @classmethod
    def default_for(cls, job_type: str) -> RestartPolicy:
        """Nomad's defaults: service/system 2 in 30m, batch/sysbatch 3 in 24h; delay 15s, mode fail."""
        if job_type in ("service", "system"):
            return cls(attempts=2, interval=30 * _MIN, delay=15.0, mode=MODE_FAIL)
        if job_type in ("batch", "sysbatch"):
            return cls(attempts=3, interval=24 * _HOUR, delay=15.0, mode=MODE_FAIL)
        raise ValidationError(f'invalid job type "{job_type}": must be one of {", ".join(JOB_TYPES)}')

    @classmethod
    def coerce(cls, policy: Any) -> RestartPolicy:
        """This class from any object with the same fields (e.g. the job model's ``RestartPolicy``)."""
        global _last_coerced
        if isinstance(policy, RestartPolicy):
            return policy
        last = _last_coerced  # every task runner of a job's allocations asks for the same policy object
        if last is not None and last[0] is policy and type(last[1]) is cls:
            return last[1]
        try:
            out = cls(attempts=policy.attempts, interval=float(policy.interval), delay=float(policy.delay),
                      mode=str(policy.mode), render_templates=bool(getattr(policy, "render_templates", False)))
        except AttributeError as e:
            raise ValidationError(f"restart policy is missing a field: {e}") from None
        _last_coerced = (policy, out)
        return out

    def merged(self, overrides: Mapping[str, Any]) -> RestartPolicy:
        """This policy with the fields set in ``overrides`` (a partially-specified block) replaced."""
        unknown = set(overrides) - {"attempts", "interval", "delay", "mode", "render_templates"}
        if unknown:
            raise ValidationError([f'restart: unknown field "{k}"' for k in sorted(unknown)])
        fields: dict[str, Any] = {"attempts": self.attempts, "interval": self.interval, "delay": self.delay,
                  "mode": self.mode, "render_templates": self.render_templates}
        fields.update(overrides)
        return RestartPolicy(**fields)

    def validate(self) -> None:
        """Raise :class:`ValidationError` listing every problem, with Nomad's messages."""
        errs: list[str] = []
        if not isinstance(self.attempts, int) or isinstance(self.attempts, bool):
            errs.append(f"restart attempts must be an integer, got {self.attempts!r}")
        elif self.attempts < 0:
            errs.append(f"restart attempts must not be negative (got {self.attempts})")
        if self.mode not in (MODE_DELAY, MODE_FAIL):
            errs.append(f'Unsupported restart mode: "{self.mode}"')
        if isinstance(self.attempts, int) and self.attempts == 0 and self.mode != MODE_FAIL:
            errs.append(f'Restart policy "{self.mode}" with {self.attempts} attempts is ambiguous')
        if self.delay < 0:
            errs.append(f"restart delay must not be negative (got {format_duration(self.delay)})")
        if self.interval < MIN_INTERVAL:
            errs.append(f"Interval can not be less than {format_duration(MIN_INTERVAL)} "
                        f"(got {format_duration(self.interval)})")
        if isinstance(self.attempts, int) and self.attempts * self.delay > self.interval:
            errs.append(f"Nomad can't restart the TaskGroup {self.attempts} times in an interval of "
                        f"{format_duration(self.interval)} with a delay of {format_duration(self.delay)}")
        if errs:
            raise ValidationError(errs)


@dataclass(frozen=True)
class Decision:
    """What the task runner must do next: ``state`` is an event type, ``delay`` in seconds."""

    state: str
    delay: float
    reason: str

    @property
    def restart(self) -> bool:
        return self.state == RESTARTING

    def event(self, *, at: int | None = None) -> TaskEvent | None:
        """The event Nomad records for this decision (None for Terminated/Killed: those have their own)."""
        if self.state == RESTARTING:
            return TaskEvent.restarting(self.delay, self.reason, at=at)
        if self.state == NOT_RESTARTING:
            return TaskEvent.not_restarting(self.reason, at=at)
        return None


class RestartTracker:
    """Decides whether and when a task restarts, following its restart policy.

    ``clock`` returns monotonic seconds (default :func:`time.monotonic`); ``rng`` draws the jitter.
    ``lifecycle`` is the task's lifecycle hook (``prestart``/``poststart``/``poststop`` or None)
    and ``sidecar`` its sidecar flag.
    """

    def __init__(self, policy: Any, job_type: str, *, lifecycle: str | None = None,
                 sidecar: bool = False, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        policy = RestartPolicy.coerce(policy)
        policy.validate()
        if job_type not in JOB_TYPES:
            raise ValidationError(f'invalid job type "{job_type}": must be one of {", ".join(JOB_TYPES)}')
        if lifecycle not in (None, "", "prestart", "poststart", "poststop"):
            raise ValidationError(f'invalid lifecycle hook "{lifecycle}": must be one of '
                                  "prestart, poststart, poststop")
        on_success = job_type not in ("batch", "sysbatch")
        if lifecycle == "poststop":
            on_success = False
        elif lifecycle in ("prestart", "poststart"):
            on_success = sidecar
        self.policy = policy
        self.on_success = on_success
        self._clock = clock
        self._rng = rng or _RNG
        self._start = clock()
        self.count = 0
        self.reason = ""
        self._exit: ExitResult | None = None
        self._start_err: BaseException | None = None
        self._killed = False
        self._triggered = False
        self._failure = False

    # -- inputs -------------------------------------------------------------------------------

    def set_policy(self, policy: Any) -> None:
        policy = RestartPolicy.coerce(policy)
        policy.validate()
        self.policy = policy

    def set_exit_result(self, result: ExitResult) -> RestartTracker:
        self._exit = result
        self._failure = True
        return self

    def set_start_error(self, err: BaseException) -> RestartTracker:
        self._start_err = err
        self._failure = True
        return self

    def set_killed(self) -> RestartTracker:
        self._killed = True
        return self

    def set_restart_triggered(self, failure: bool = False) -> RestartTracker:
        """A restart was asked for (user ``alloc restart``, or a failing check when ``failure``)."""
        self._triggered = True
        self._failure = failure
        return self

    # -- persistence (so an agent restart continues the policy) -------------------------------

    def to_dict(self, *, wall_now: float | None = None) -> dict[str, Any]:
        """The tracker's progress: restarts counted in the window and the window's wall-clock start."""
        wall = time.time() if wall_now is None else wall_now
        return {"count": self.count, "window_start": wall - (self._clock() - self._start)}

    def restore(self, state: Mapping[str, Any], *, wall_now: float | None = None) -> RestartTracker:
        """Continue from :meth:`to_dict` output (possibly written by an earlier agent process)."""
        try:
            count = int(state["count"])
            started = float(state["window_start"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValidationError(f"invalid restart tracker state {dict(state)!r}: {e}") from None
        if count < 0:
            raise ValidationError(f"invalid restart tracker state: count {count} is negative")
        wall = time.time() if wall_now is None else wall_now
        self.count = count
        self._start = self._clock() - max(0.0, wall - started)
        return self

    # -- the decision -------------------------------------------------------------------------

    def get_state(self) -> Decision:
        """Consume the recorded inputs and return the decision."""
        try:
            return self._decide()
        finally:
            self._exit = None
            self._start_err = None
            self._killed = False
            self._triggered = False
            self._failure = False

    def _decide(self) -> Decision:
        if self._killed:
            return self._set(KILLED, 0.0, "")
        if self._triggered and not self._failure:
            return self._set(RESTARTING, 0.0, "")
        if self._exit is None and self._start_err is None and not self._triggered:
            return self._set("", 0.0, "")  # nothing happened: no decision
        successful = self._exit is not None and self._exit.successful and self._start_err is None
        if self.policy.attempts == 0:
            if not self.on_success and successful:
                return self._set(TERMINATED, 0.0, REASON_NO_RESTARTS_ALLOWED)
            return self._set(NOT_RESTARTING, 0.0, REASON_NO_RESTARTS_ALLOWED)
        now = self._clock()
        if now > self._start + self.policy.interval:
            self.count = 0
            self._start = now
        if self._start_err is not None:
            if not _recoverable(self._start_err):
                return self._set(NOT_RESTARTING, 0.0, REASON_UNRECOVERABLE)
        elif self._exit is not None and successful and not self.on_success:
            return self._set(TERMINATED, 0.0, REASON_SUCCESSFUL)
        self.count += 1
        if self.count > self.policy.attempts:
            if self.policy.mode == MODE_FAIL:
                return self._set(NOT_RESTARTING, 0.0,
                                 f"Exceeded allowed attempts {self.policy.attempts} in interval "
                                 f'{format_duration(self.policy.interval)} and mode is "fail"')
            remaining = max(0.0, self._start + self.policy.interval - now)
            return self._set(RESTARTING, remaining, REASON_DELAY)
        jitter = self._rng.random() * self.policy.delay * JITTER
        return self._set(RESTARTING, self.policy.delay + jitter, REASON_WITHIN_POLICY)

    def _set(self, state: str, delay: float, reason: str) -> Decision:
        self.reason = reason
        return Decision(state=state, delay=delay, reason=reason)


def _recoverable(err: BaseException) -> bool:
    if isinstance(err, RawExecError):
        return err.recoverable
    return bool(getattr(err, "recoverable", False))
