"""Every error rawexec raises on purpose.

The tree (callers branch on the class, never on the message)::

    RawExecError                      base; .grpc_code / .exit_code / .recoverable
    ├── InvalidConfigError            bad plugin config, task config, job field    (INVALID_ARGUMENT, 1)
    │   └── ValidationError           a job file with one or more field errors      (INVALID_ARGUMENT, 1)
    ├── DriverDisabledError           raw_exec is disabled                          (FAILED_PRECONDITION, 1)
    ├── TaskNotFoundError             no task with that id                          (NOT_FOUND, 1)
    ├── TaskExistsError               a task with that id already started           (ALREADY_EXISTS, 1)
    ├── TaskStateError                verb not allowed in the task's state          (FAILED_PRECONDITION, 1)
    ├── UnsupportedError              a feature this driver does not offer          (UNIMPLEMENTED, 1)
    ├── UnavailableError              shim/agent unreachable, try again            (UNAVAILABLE, 1)
    ├── ContainmentError              cgroup setup/kill/remove failed               (INTERNAL, 1)
    ├── ArtifactError                 download/verify/unpack failed                 (INTERNAL, 1)
    ├── LaunchError                   the command could not be started              (INTERNAL, 1)
    └── NotFoundError                 no job/allocation/task with that id (agent)   (NOT_FOUND, 1)

`recoverable` mirrors Nomad's RecoverableError: the task runner may retry the start.
Translation to gRPC status codes and CLI exit codes happens at exactly one place on
each side (plugin/ and cli/), using the attributes defined here.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "ContainmentError",
    "DriverDisabledError",
    "InvalidConfigError",
    "LaunchError",
    "NotFoundError",
    "RawExecError",
    "TaskExistsError",
    "TaskNotFoundError",
    "TaskStateError",
    "UnavailableError",
    "UnsupportedError",
    "ValidationError",
]


class RawExecError(Exception):
    """Base of all rawexec errors."""

    grpc_code: str = "INTERNAL"
    exit_code: int = 1
    recoverable: bool = False

    def __init__(self, message: str, *, recoverable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if recoverable is not None:
            self.recoverable = recoverable

    def __str__(self) -> str:
        return self.message


class InvalidConfigError(RawExecError):
    """A configuration value is wrong; the message names the field and the fix."""

    grpc_code = "INVALID_ARGUMENT"


class ValidationError(InvalidConfigError):
    """One or more validation errors, all reported at once."""

    def __init__(self, errors: list[str] | str) -> None:
        self.errors: list[str] = [errors] if isinstance(errors, str) else list(errors)
        if len(self.errors) == 1:
            msg = self.errors[0]
        else:
            msg = f"{len(self.errors)} errors occurred:\n" + "\n".join(f"\t* {e}" for e in self.errors)
        super().__init__(msg)


class DriverDisabledError(RawExecError):
    """The driver is not enabled in the plugin configuration."""

    grpc_code = "FAILED_PRECONDITION"

    def __init__(self, message: str = "raw_exec is disabled") -> None:
        super().__init__(message)


class TaskNotFoundError(RawExecError):
    """No task with the given id is known to this driver."""

    grpc_code = "NOT_FOUND"

    def __init__(self, task_id: str = "", message: str = "task not found for given id") -> None:
        super().__init__(message)
        self.task_id = task_id


class TaskExistsError(RawExecError):
    """A task with the given id was already started."""

    grpc_code = "ALREADY_EXISTS"

    def __init__(self, task_id: str) -> None:
        super().__init__(f'task with ID "{task_id}" already started')
        self.task_id = task_id


class TaskStateError(RawExecError):
    """The verb is not allowed in the task's current state."""

    grpc_code = "FAILED_PRECONDITION"


class UnsupportedError(RawExecError):
    """The driver does not offer this feature."""

    grpc_code = "UNIMPLEMENTED"


class UnavailableError(RawExecError):
    """A component (shim, spawner, agent) could not be reached; retrying may help."""

    grpc_code = "UNAVAILABLE"
    recoverable = True


class ContainmentError(RawExecError):
    """Setting up, limiting, killing or removing a task's cgroup failed."""


class ArtifactError(RawExecError):
    """Fetching, verifying or unpacking an artifact failed."""


class LaunchError(RawExecError):
    """The task's command could not be started."""


class NotFoundError(RawExecError):
    """The agent has no job, allocation or task with that id (HTTP 404)."""

    grpc_code = "NOT_FOUND"
