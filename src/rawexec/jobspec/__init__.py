"""Nomad job files (HCL2 with variables, and the API JSON) → a validated, immutable job model.

Entry points::

    parse_file(path, variables=None, var_files=None, env=None) -> Job
    parse_hcl(text, *, filename="<job>", variables=..., var_files=..., env=..., base_dir=...) -> Job
    parse_json(text_or_dict) -> Job
    to_api_json(job) -> {"Job": {...}}

Every problem in a file is reported at once as one :class:`rawexec.errors.ValidationError`
(``.errors`` holds one line per problem: ``file:line:col: job "x" \u203a group "y" \u203a field: message
(hint: ...)``). Durations in the model are seconds (float). See :mod:`.model` for the classes.
"""

from __future__ import annotations

from rawexec.jobspec.api import (
    MAX_JOB_FILE_BYTES,
    ParsedJob,
    load_file,
    load_hcl,
    load_json,
    parse_file,
    parse_hcl,
    parse_json,
)
from rawexec.jobspec.durations import format_duration, parse_duration_ns
from rawexec.jobspec.encode import to_api_json
from rawexec.jobspec.model import (
    JOB_TYPES,
    ArtifactSpec,
    Constraint,
    EphemeralDisk,
    Identity,
    Job,
    Lifecycle,
    LogConfig,
    Network,
    Parameterized,
    Periodic,
    Port,
    ReschedulePolicy,
    Resources,
    RestartPolicy,
    Service,
    ServiceCheck,
    Task,
    TaskGroup,
    Template,
    UpdateStrategy,
    Vault,
    Volume,
    VolumeMount,
    default_reschedule,
    default_restart,
)
from rawexec.jobspec.validate import checksum_error, validate, warnings

__all__ = [
    "JOB_TYPES",
    "MAX_JOB_FILE_BYTES",
    "ArtifactSpec",
    "Constraint",
    "EphemeralDisk",
    "Identity",
    "Job",
    "Lifecycle",
    "LogConfig",
    "Network",
    "Parameterized",
    "ParsedJob",
    "Periodic",
    "Port",
    "ReschedulePolicy",
    "Resources",
    "RestartPolicy",
    "Service",
    "ServiceCheck",
    "Task",
    "TaskGroup",
    "Template",
    "UpdateStrategy",
    "Vault",
    "Volume",
    "VolumeMount",
    "checksum_error",
    "default_reschedule",
    "default_restart",
    "format_duration",
    "load_file",
    "load_hcl",
    "load_json",
    "parse_duration_ns",
    "parse_file",
    "parse_hcl",
    "parse_json",
    "to_api_json",
    "validate",
    "warnings",
]
