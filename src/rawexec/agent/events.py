"""Task events and task state, as Nomad's client records them (facts §6).

A :class:`TaskEvent` is a value: its ``type`` is one of Nomad's exact event-type strings
(``Received``, ``Started``, ``Terminated``, ...), ``time`` is UTC nanoseconds, and
``display_message`` is computed from the type and the typed fields the way Nomad's
client does, so the CLI and the HTTP API show the same words a Nomad user knows.

A :class:`TaskState` holds one task's ``state`` (``pending``/``running``/``dead``), its
``failed`` flag, restart counters and the last :data:`MAX_TASK_EVENTS` events.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ARTIFACT_DOWNLOAD_FAILED",
    "CLIENT_RECONNECTED",
    "DISK_EXCEEDED",
    "DOWNLOADING_ARTIFACTS",
    "DRIVER_FAILURE",
    "DRIVER_MESSAGE",
    "EVENT_TYPES",
    "FAILED_VALIDATION",
    "HOOK_FAILED",
    "HOOK_MESSAGE",
    "KILLED",
    "KILLING",
    "LEADER_DEAD",
    "MAIN_DEAD",
    "MAX_TASK_EVENTS",
    "NOT_RESTARTING",
    "PLUGIN_HEALTHY",
    "PLUGIN_UNHEALTHY",
    "REASON_WITHIN_POLICY",
    "RECEIVED",
    "RESTARTING",
    "RESTART_SIGNAL",
    "RESTORE_FAILED",
    "SETUP_FAILURE",
    "SIBLING_FAILED",
    "SIGNALING",
    "SKIPPING_SHUTDOWN_DELAY",
    "STARTED",
    "TASK_DEAD",
    "TASK_PENDING",
    "TASK_RUNNING",
    "TASK_SETUP",
    "TERMINATED",
    "WAITING_SHUTDOWN_DELAY",
    "TaskEvent",
    "TaskState",
    "format_duration",
]

MAX_TASK_EVENTS = 10
"""Nomad keeps the last 10 events per task."""

TASK_PENDING = "pending"
TASK_RUNNING = "running"
TASK_DEAD = "dead"
_STATES = (TASK_PENDING, TASK_RUNNING, TASK_DEAD)

# Nomad's event-type strings (exact).
SETUP_FAILURE = "Setup Failure"
DRIVER_FAILURE = "Driver Failure"
DRIVER_MESSAGE = "Driver"
RECEIVED = "Received"
FAILED_VALIDATION = "Failed Validation"
STARTED = "Started"
TERMINATED = "Terminated"
KILLING = "Killing"
KILLED = "Killed"
RESTARTING = "Restarting"
NOT_RESTARTING = "Not Restarting"
DOWNLOADING_ARTIFACTS = "Downloading Artifacts"
ARTIFACT_DOWNLOAD_FAILED = "Failed Artifact Download"
SIBLING_FAILED = "Sibling Task Failed"
SIGNALING = "Signaling"
RESTART_SIGNAL = "Restart Signaled"
LEADER_DEAD = "Leader Task Dead"
MAIN_DEAD = "Main Tasks Dead"
HOOK_FAILED = "Task hook failed"
HOOK_MESSAGE = "Task hook message"
RESTORE_FAILED = "Failed Restoring Task"
PLUGIN_UNHEALTHY = "Plugin became unhealthy"
PLUGIN_HEALTHY = "Plugin became healthy"
CLIENT_RECONNECTED = "Reconnected"
WAITING_SHUTDOWN_DELAY = "Waiting for shutdown delay"
SKIPPING_SHUTDOWN_DELAY = "Skipping shutdown delay"
DISK_EXCEEDED = "Disk Resources Exceeded"
TASK_SETUP = "Task Setup"

EVENT_TYPES = frozenset({
    SETUP_FAILURE, DRIVER_FAILURE, DRIVER_MESSAGE, RECEIVED, FAILED_VALIDATION, STARTED,
    TERMINATED, KILLING, KILLED, RESTARTING, NOT_RESTARTING, DOWNLOADING_ARTIFACTS,
    ARTIFACT_DOWNLOAD_FAILED, SIBLING_FAILED, SIGNALING, RESTART_SIGNAL, LEADER_DEAD, MAIN_DEAD,
    HOOK_FAILED, HOOK_MESSAGE, RESTORE_FAILED, PLUGIN_UNHEALTHY, PLUGIN_HEALTHY,
    CLIENT_RECONNECTED, WAITING_SHUTDOWN_DELAY, SKIPPING_SHUTDOWN_DELAY, DISK_EXCEEDED, TASK_SETUP,
})

# The "restart within policy" reason is not shown in the Restarting message.
REASON_WITHIN_POLICY = "Restart within policy"

_NS = 1_000_000_000


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    """Go's fmtFrac: the fraction digits of ``v`` / 10**prec without trailing zeros."""
    digits = ""
    printed = False
    for _ in range(prec):
        d = v % 10
        printed = printed or d != 0
        if printed:
            digits = str(d) + digits
        v //= 10
    return ("." + digits if printed else ""), v


def format_duration(seconds: float) -> str:
    """Format a duration the way Go's ``time.Duration.String`` does (``15s``, ``30m0s``, ``1.5s``).

    Nomad prints durations with ``%v`` in event messages and validation errors; we match.
    """
    ns = round(seconds * _NS)
    if ns == 0:
        return "0s"
    neg = ns < 0
    u = -ns if neg else ns
    if u < _NS:
        if u < 1_000:
            out = f"{u}ns"
        elif u < 1_000_000:
            frac, whole = _fmt_frac(u, 3)
            out = f"{whole}{frac}µs"
        else:
            frac, whole = _fmt_frac(u, 6)
            out = f"{whole}{frac}ms"
    else:
        frac, whole = _fmt_frac(u, 9)
        secs = whole % 60
        mins_total = whole // 60
        out = f"{secs}{frac}s"
        if mins_total > 0:
            mins = mins_total % 60
            hours = mins_total // 60
            out = f"{mins}m{out}"
            if hours > 0:
                out = f"{hours}h{out}"
    return "-" + out if neg else out


def _now_ns() -> int:
    return time.time_ns()


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One task event. Build with the constructors below (``TaskEvent.terminated(...)``...).

    ``details`` mirrors Nomad's ``Details`` map (string values); the typed fields mirror Nomad's
    legacy fields that the display message is computed from.
    """

    type: str
    time: int = field(default_factory=_now_ns)
    message: str = ""
    details: Mapping[str, str] = field(default_factory=dict)
    fails_task: bool = False
    exit_code: int = 0
    signal: int = 0
    restart_reason: str = ""
    start_delay: float = 0.0
    kill_timeout: float = 0.0
    kill_reason: str = ""
    kill_error: str = ""
    setup_error: str = ""
    driver_error: str = ""
    download_error: str = ""
    validation_error: str = ""
    failed_sibling: str = ""
    task_signal: str = ""
    task_signal_reason: str = ""
    driver_message: str = ""
    # encoded forms, made on first use (slots: thousands of events are kept)
    _api_json: str | None = field(default=None, init=False, repr=False, compare=False)
    _record_json: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown task event type {self.type!r}; expected one of {sorted(EVENT_TYPES)}")

    # -- constructors (each sets the fields and the details Nomad sets) -----------------------

    @classmethod
    def new(cls, type: str, *, at: int | None = None, **fields: Any) -> TaskEvent:
        """A generic event; ``at`` is UTC nanoseconds (default now)."""
        details = dict(fields.pop("details", {}) or {})
        _add_details(type, details, fields)  # before construction: one frozen instance, no replace()
        return cls(type=type, time=_now_ns() if at is None else at, details=details, **fields)

    @classmethod
    def received(cls, *, at: int | None = None) -> TaskEvent:
        return cls.new(RECEIVED, at=at)

    @classmethod
    def task_setup(cls, message: str, *, at: int | None = None) -> TaskEvent:
        return cls.new(TASK_SETUP, at=at, message=message)

    @classmethod
    def started(cls, *, at: int | None = None) -> TaskEvent:
        return cls.new(STARTED, at=at)

    @classmethod
    def terminated(cls, exit_code: int, signal: int = 0, *, oom_killed: bool = False,
                   err: str | None = None, at: int | None = None) -> TaskEvent:
        ev = cls.new(TERMINATED, at=at, exit_code=exit_code, signal=signal, message=err or "",
                     details={"oom_killed": "true" if oom_killed else "false"})
        return ev

    @classmethod
    def killing(cls, kill_timeout: float, reason: str = "", *, at: int | None = None) -> TaskEvent:
        return cls.new(KILLING, at=at, kill_timeout=kill_timeout, kill_reason=reason)

    @classmethod
    def killed(cls, error: str = "", *, at: int | None = None) -> TaskEvent:
        return cls.new(KILLED, at=at, kill_error=error)

    @classmethod
    def restarting(cls, delay: float, reason: str, *, at: int | None = None) -> TaskEvent:
        return cls.new(RESTARTING, at=at, start_delay=delay, restart_reason=reason)

    @classmethod
    def not_restarting(cls, reason: str, *, fails_task: bool = True, at: int | None = None) -> TaskEvent:
        return cls.new(NOT_RESTARTING, at=at, restart_reason=reason, fails_task=fails_task)

    @classmethod
    def signaling(cls, signal: str, reason: str = "", *, at: int | None = None) -> TaskEvent:
        return cls.new(SIGNALING, at=at, task_signal=signal, task_signal_reason=reason)

    @classmethod
    def driver_failure(cls, error: str, *, fails_task: bool = False, at: int | None = None) -> TaskEvent:
        """A start failure; the restart tracker's verdict (``Not Restarting``) is what fails the task."""
        return cls.new(DRIVER_FAILURE, at=at, driver_error=error, fails_task=fails_task)

    @classmethod
    def failed_validation(cls, error: str, *, fails_task: bool = False, at: int | None = None) -> TaskEvent:
        return cls.new(FAILED_VALIDATION, at=at, validation_error=error, fails_task=fails_task)

    @classmethod
    def setup_failure(cls, error: str, *, fails_task: bool = True, at: int | None = None) -> TaskEvent:
        return cls.new(SETUP_FAILURE, at=at, setup_error=error, fails_task=fails_task)

    @classmethod
    def downloading_artifacts(cls, *, at: int | None = None) -> TaskEvent:
        return cls.new(DOWNLOADING_ARTIFACTS, at=at)

    @classmethod
    def artifact_download_failed(cls, error: str, *, at: int | None = None) -> TaskEvent:
        return cls.new(ARTIFACT_DOWNLOAD_FAILED, at=at, download_error=error)

    @classmethod
    def sibling_failed(cls, sibling: str, *, at: int | None = None) -> TaskEvent:
        return cls.new(SIBLING_FAILED, at=at, failed_sibling=sibling)

    # -- display ---------------------------------------------------------------------------

    @property
    def display_message(self) -> str:
        """The one-line text Nomad shows for this event (``nomad alloc status``)."""
        t = self.type
        if t == RECEIVED:
            return "Task received by client"
        if t == STARTED:
            return "Task started by client"
        if t == TASK_SETUP:
            return self.message
        if t == FAILED_VALIDATION:
            return self.validation_error or "Validation of task failed"
        if t == SETUP_FAILURE:
            return self.setup_error or "Task setup failed"
        if t == DRIVER_FAILURE:
            return self.driver_error or "Failed to start task"
        if t == DOWNLOADING_ARTIFACTS:
            return "Client is downloading artifacts"
        if t == ARTIFACT_DOWNLOAD_FAILED:
            return self.download_error or "Failed to download artifacts"
        if t == KILLING:
            if self.kill_reason:
                return self.kill_reason
            if self.kill_timeout:
                return f"Sent interrupt. Waiting {format_duration(self.kill_timeout)} before force killing"
            return "Sent interrupt"
        if t == KILLED:
            return self.kill_error or "Task successfully killed"
        if t == TERMINATED:
            parts = [f"Exit Code: {self.exit_code}"]
            if self.signal:
                parts.append(f"Signal: {self.signal}")
            if self.message:
                parts.append(f"Exit Message: {_go_quote(self.message)}")
            return ", ".join(parts)
        if t == RESTARTING:
            text = f"Task restarting in {format_duration(self.start_delay)}"
            if self.restart_reason and self.restart_reason != REASON_WITHIN_POLICY:
                return f"{self.restart_reason} - {text}"
            return text
        if t == NOT_RESTARTING:
            return self.restart_reason or "Task exceeded restart policy"
        if t == SIBLING_FAILED:
            return f"Task's sibling {_go_quote(self.failed_sibling)} failed" if self.failed_sibling \
                else "Task's sibling failed"
        if t == SIGNALING:
            sig, why = self.task_signal, self.task_signal_reason
            if not sig and not why:
                return "Task being sent a signal"
            if not sig:
                return why
            return f"Task being sent signal {sig}: {why}" if why else f"Task being sent signal {sig}"
        if t == RESTART_SIGNAL:
            return self.restart_reason or "Task signaled to restart"
        if t == DRIVER_MESSAGE:
            return self.driver_message
        if t == LEADER_DEAD:
            return "Leader Task in Group dead"
        if t == MAIN_DEAD:
            return "Main tasks in the group died"
        if t == CLIENT_RECONNECTED:
            return "Client reconnected"
        return self.message

    # -- (de)serialisation -------------------------------------------------------------------

    def to_api(self) -> dict[str, Any]:
        """Nomad's JSON shape (``TaskEvent`` in ``/v1/allocation/:id``)."""
        return {
            "Type": self.type, "Time": self.time, "Message": self.message,
            "DisplayMessage": self.display_message, "Details": dict(self.details),
            "FailsTask": self.fails_task, "RestartReason": self.restart_reason,
            "SetupError": self.setup_error, "DriverError": self.driver_error,
            "ExitCode": self.exit_code, "Signal": self.signal,
            "KillReason": self.kill_reason, "KillTimeout": round(self.kill_timeout * _NS),
            "KillError": self.kill_error, "StartDelay": round(self.start_delay * _NS),
            "DownloadError": self.download_error, "ValidationError": self.validation_error,
            "DiskLimit": 0, "FailedSibling": self.failed_sibling, "VaultError": "",
            "TaskSignalReason": self.task_signal_reason, "TaskSignal": self.task_signal,
            "DriverMessage": self.driver_message, "GenericSource": "",
        }

    def api_json(self) -> str:
        """:meth:`to_api` as JSON text, encoded once per event (events never change)."""
        text = self._api_json
        if text is None:
            text = json.dumps(self.to_api(), separators=(",", ":"))
            object.__setattr__(self, "_api_json", text)
        return text

    def record_json(self) -> str:
        """:meth:`to_dict` as JSON text, encoded once per event (every commit of the task's state
        writes all its events)."""
        text = self._record_json
        if text is None:
            text = json.dumps(self.to_dict(), separators=(",", ":"))
            object.__setattr__(self, "_record_json", text)
        return text

    def forget_json(self) -> None:
        """Drop the encoded forms kept by :meth:`api_json` and :meth:`record_json` (made again when
        asked): a finished allocation's events are in its committed stub and in the store."""
        object.__setattr__(self, "_api_json", None)
        object.__setattr__(self, "_record_json", None)

    def to_dict(self) -> dict[str, Any]:
        """Compact form for the state store (round-trips through :meth:`from_dict`)."""
        out: dict[str, Any] = {"type": self.type, "time": self.time}
        for k, default in _DEFAULTS.items():
            v = getattr(self, k)
            if v != default:
                out[k] = dict(v) if k == "details" else v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskEvent:
        unknown = set(d) - set(_DEFAULTS) - {"type", "time"}
        if unknown:
            raise ValueError(f"task event has unknown fields {sorted(unknown)}")
        kw = {k: d[k] for k in _DEFAULTS if k in d}
        return cls(type=str(d["type"]), time=int(d["time"]), **kw)


_DEFAULTS: dict[str, Any] = {
    "message": "", "details": {}, "fails_task": False, "exit_code": 0, "signal": 0,
    "restart_reason": "", "start_delay": 0.0, "kill_timeout": 0.0, "kill_reason": "",
    "kill_error": "", "setup_error": "", "driver_error": "", "download_error": "",
    "validation_error": "", "failed_sibling": "", "task_signal": "", "task_signal_reason": "",
    "driver_message": "",
}


_DETAIL_FIELDS = (
    ("restart_reason", "restart_reason"), ("kill_reason", "kill_reason"), ("kill_error", "kill_error"),
    ("setup_error", "setup_error"), ("driver_error", "driver_error"), ("download_error", "download_error"),
    ("validation_error", "validation_error"), ("failed_sibling", "failed_sibling"),
    ("signal", "task_signal"), ("signal_reason", "task_signal_reason"), ("driver_message", "driver_message"),
)
"""(Nomad's ``Details`` key, our field) pairs set in the details when the field is not empty."""


def _add_details(t: str, d: dict[str, str], fields: Mapping[str, Any]) -> None:
    """Add the details Nomad sets for an event of type ``t`` with ``fields`` (TaskEvent's keyword
    arguments; absent ones are at their defaults)."""
    if t == TERMINATED:
        d.update(exit_code=str(fields.get("exit_code", 0)), signal=str(fields.get("signal", 0)))
        if fields.get("message"):
            d["exit_message"] = fields["message"]
    if fields.get("fails_task"):
        d["fails_task"] = "true"
    for key, name in _DETAIL_FIELDS:
        v = fields.get(name)
        if v and (name != "task_signal" or t == SIGNALING):
            d[key] = v
    if t == RESTARTING:
        d["start_delay"] = str(round(fields.get("start_delay", 0.0) * _NS))
    if t == KILLING:
        d["kill_timeout"] = format_duration(fields.get("kill_timeout", 0.0))


def _go_quote(s: str) -> str:
    """Go's ``%q`` for ordinary text: double quotes, backslash escapes."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


@dataclass
class TaskState:
    """One task's state as the agent tracks it (Nomad's ``TaskState``).

    :meth:`append_event` keeps at most :data:`MAX_TASK_EVENTS` (oldest dropped), sets ``failed``
    for events that fail the task and counts restarts on ``Restarting`` events.
    """

    state: str = TASK_PENDING
    failed: bool = False
    restarts: int = 0
    last_restart: int = 0
    started_at: int = 0
    finished_at: int = 0
    events: list[TaskEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.state not in _STATES:
            raise ValueError(f"invalid task state {self.state!r}; expected one of {list(_STATES)}")

    def append_event(self, event: TaskEvent) -> None:
        if event.fails_task:
            self.failed = True
        if event.type == RESTARTING:
            self.restarts += 1
            self.last_restart = event.time
        self.events.append(event)
        if len(self.events) > MAX_TASK_EVENTS:
            del self.events[: len(self.events) - MAX_TASK_EVENTS]

    def set_state(self, state: str, event: TaskEvent | None = None) -> None:
        """Move to ``state`` (recording ``event`` first, as Nomad does).

        Entering ``running`` stamps ``started_at`` (again on every restart); entering ``dead``
        stamps ``finished_at`` once (Nomad keeps the first).
        """
        if state not in _STATES:
            raise ValueError(f"invalid task state {state!r}; expected one of {list(_STATES)}")
        if event is not None:
            self.append_event(event)
        now = event.time if event is not None else _now_ns()
        if state == TASK_RUNNING and self.state != TASK_RUNNING:
            self.started_at = now
        elif state == TASK_DEAD and self.finished_at == 0:
            self.finished_at = now
        self.state = state

    @property
    def successful(self) -> bool:
        return self.state == TASK_DEAD and not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "failed": self.failed, "restarts": self.restarts,
                "last_restart": self.last_restart, "started_at": self.started_at,
                "finished_at": self.finished_at, "events": [e.to_dict() for e in self.events]}

    def record_json(self) -> str:
        """:meth:`to_dict` as JSON text."""
        head = json.dumps({"state": self.state, "failed": self.failed, "restarts": self.restarts,
                           "last_restart": self.last_restart, "started_at": self.started_at,
                           "finished_at": self.finished_at}, separators=(",", ":"))
        return head[:-1] + ',"events":[' + ",".join(e.record_json() for e in self.events) + "]}"

    def api_json(self) -> str:
        """:meth:`to_api` as JSON text (each event's part is encoded once)."""
        head = json.dumps({"State": self.state, "Failed": self.failed, "Restarts": self.restarts,
                           "LastRestart": _rfc3339(self.last_restart), "StartedAt": _rfc3339(self.started_at),
                           "FinishedAt": _rfc3339(self.finished_at)}, separators=(",", ":"))
        return head[:-1] + ',"Events":[' + ",".join(e.api_json() for e in self.events) + "]}"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskState:
        return cls(state=str(d.get("state", TASK_PENDING)), failed=bool(d.get("failed", False)),
                   restarts=int(d.get("restarts", 0)), last_restart=int(d.get("last_restart", 0)),
                   started_at=int(d.get("started_at", 0)), finished_at=int(d.get("finished_at", 0)),
                   events=[TaskEvent.from_dict(e) for e in d.get("events", [])])

    def to_api(self) -> dict[str, Any]:
        """Nomad's JSON shape; times are RFC 3339 strings as Nomad's API renders them."""
        return {"State": self.state, "Failed": self.failed, "Restarts": self.restarts,
                "LastRestart": _rfc3339(self.last_restart), "StartedAt": _rfc3339(self.started_at),
                "FinishedAt": _rfc3339(self.finished_at),
                "Events": [e.to_api() for e in self.events]}


def _rfc3339(ns: int) -> str:
    """Go's zero time for 0, else RFC 3339 with nanoseconds in UTC."""
    if ns == 0:
        return "0001-01-01T00:00:00Z"
    secs, frac = divmod(ns, _NS)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        return f"{base}.{frac:09d}".rstrip("0") + "Z"
    return base + "Z"
