"""Semantic validation of a job model with Nomad's messages; warnings for what rawexec ignores.

:func:`check` adds every problem to a :class:`Diagnostics` (positions come from the locations
the HCL reader recorded, when the job came from a file); :func:`validate` raises one
:class:`~rawexec.errors.ValidationError` listing them all; :func:`warnings` lists what parses
but rawexec will not honour.
"""

from __future__ import annotations

import posixpath
import signal
from collections.abc import Mapping
from typing import Any

from rawexec.artifacts.spec import ArtifactSpec
from rawexec.jobspec import model as m
from rawexec.jobspec.diagnostics import SEP, Diagnostics, Pos, did_you_mean
from rawexec.jobspec.durations import format_duration

__all__ = ["check", "checksum_error", "destination_escapes", "validate", "warnings"]

CHECKSUM_SIZES = {"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}
RAW_EXEC_OPTIONS = ("command", "args", "cgroup_v1_override", "cgroup_v2_override", "oom_score_adj", "work_dir",
                    "denied_envvars")
MIN_RESTART_INTERVAL = 5.0
_HOOKS = ("prestart", "poststart", "poststop")
_SIGNALS = sorted({s.name for s in signal.Signals if s.name.startswith("SIG") and not s.name.startswith("SIG_")})


class _Ctx:
    def __init__(self, diags: Diagnostics, locations: Mapping[str, Pos]) -> None:
        self.diags = diags
        self.locations = locations

    def pos(self, path: str) -> Pos | None:
        p = path
        while p:
            if p in self.locations:
                return self.locations[p]
            p = p.rpartition(SEP)[0]
        return None

    def err(self, path: str, msg: str, hint: str = "") -> None:
        if path in self.diags.failed:  # its expression failed and that error is reported
            return
        self.diags.error(msg, path, self.pos(path), hint)

    def warn(self, path: str, msg: str, hint: str = "") -> None:
        self.diags.warn(msg, path, self.pos(path), hint)


def _go_hex_error(text: str) -> str | None:
    """Go's ``hex.DecodeString`` error text for ``text``, or None if it decodes."""
    def bad(c: str) -> str:
        return f"encoding/hex: invalid byte: U+{ord(c):04X} {_go_quote_rune(c)}"

    hexd = set("0123456789abcdefABCDEF")
    even = len(text) - len(text) % 2
    for c in text[:even]:
        if c not in hexd:
            return bad(c)
    if len(text) % 2:
        if text[-1] not in hexd:
            return bad(text[-1])
        return "encoding/hex: odd length hex string"
    return None


def _go_quote_rune(c: str) -> str:
    if c == "'":
        return "'\\''"
    if c == "\\":
        return "'\\\\'"
    if c.isprintable():
        return f"'{c}'"
    return f"'\\x{ord(c):02x}'" if ord(c) < 0x80 else f"'\\u{ord(c):04x}'"


def checksum_error(value: str) -> str | None:
    """Nomad's job-submit check of an artifact ``checksum`` option (facts §7); None when valid."""
    if "${" in value:
        return None
    if value == "":
        return "checksum value cannot be empty"
    kind, sep, digest = value.partition(":")
    if not sep:
        return f'checksum must be given as "type:value"; got "{value}"'
    if kind == "file":
        # A checksum file fetched at download time (go-getter's form, which Nomad's validator
        # refuses, #9764; the getter supports it, so the job may use it).
        if "://" not in digest:
            return ('checksum "file:" must be followed by a URL, e.g. '
                    f'"file:https://example.com/SHA256SUMS"; got "{value}"')
        return None
    hex_err = _go_hex_error(digest)
    if hex_err is not None:
        return f"invalid checksum: {hex_err}"
    size = CHECKSUM_SIZES.get(kind)
    if size is None:
        return f"unsupported checksum type: {kind}"
    if len(digest) // 2 != size:
        return f"invalid {kind} checksum: {digest}"
    return None


def destination_escapes(destination: str) -> bool:
    """True when ``destination``, joined to ``<alloc>/task/`` (Go ``filepath.Join``), leaves the alloc dir."""
    root = "/alloc-dir/alloc-id"
    joined = posixpath.normpath(posixpath.join(root, "task", destination.lstrip("/")))
    return not (joined == root or joined.startswith(root + "/"))


def _restart(c: _Ctx, path: str, r: m.RestartPolicy, what: str) -> None:
    if r.mode not in ("delay", "fail"):
        c.err(path + SEP + "mode", f'Unsupported restart mode: "{r.mode}"', did_you_mean(r.mode, ("delay", "fail"))
              or 'use "fail" (stop after the attempts) or "delay" (wait out the interval, then retry)')
    if r.attempts < 0:
        c.err(path + SEP + "attempts", f"restart attempts must not be negative; got {r.attempts}")
    if r.attempts == 0 and r.mode != "fail":
        c.err(path, f'Restart policy "{r.mode}" with {r.attempts} attempts is ambiguous',
              'use mode = "fail" with attempts = 0, or allow at least one attempt')
    if r.delay < 0:
        c.err(path + SEP + "delay", f"restart delay must not be negative; got {format_duration(r.delay)}")
    if r.interval < MIN_RESTART_INTERVAL:
        c.err(path + SEP + "interval", f"Interval can not be less than {format_duration(MIN_RESTART_INTERVAL)} "
                                       f"(got {format_duration(r.interval)})")
    if r.attempts * r.delay > r.interval:  # (checked whatever the interval: Nomad reports both)
        c.err(path, f"Nomad can't restart the {what} {r.attempts} times in an interval of "
                    f"{format_duration(r.interval)} with a delay of {format_duration(r.delay)}",
              "lower attempts or delay, or lengthen interval (attempts * delay must fit in interval)")


#: Nomad's ReschedulePolicyMinDelay and ReschedulePolicyMinInterval (seconds).
MIN_RESCHEDULE_DELAY = 5.0
MIN_RESCHEDULE_INTERVAL = 15.0


def _reschedule(c: _Ctx, path: str, r: m.ReschedulePolicy) -> None:
    """Nomad's ReschedulePolicy.Validate, for a policy that reschedules at all (attempts or unlimited)."""
    if not (r.attempts > 0 or r.unlimited):
        return
    d = format_duration
    if r.attempts > 0:
        if r.interval <= 0:
            c.err(path + SEP + "interval", "Interval must be a non zero value if Attempts > 0")
        if r.unlimited:
            c.err(path, f"Reschedule Policy with Attempts = {r.attempts}, Interval = {d(r.interval)}, and "
                        "Unlimited = true is ambiguous", "If Attempts >0, Unlimited cannot also be set to true")
    pre_check = True
    if r.delay < MIN_RESCHEDULE_DELAY:
        c.err(path + SEP + "delay", f"Delay cannot be less than {d(MIN_RESCHEDULE_DELAY)} (got {d(r.delay)})")
        pre_check = False
    if r.delay_function not in ("constant", "exponential", "fibonacci"):
        pre_check = False  # (reported by the caller)
    if r.delay_function != "constant":
        # (Nomad's message names the delay as what it got: the max_delay it checked is meant)
        if r.max_delay < MIN_RESCHEDULE_DELAY:
            c.err(path + SEP + "max_delay", f"Max Delay cannot be less than {d(MIN_RESCHEDULE_DELAY)} "
                                            f"(got {d(r.max_delay)})")
            pre_check = False
        if r.max_delay < r.delay:
            c.err(path + SEP + "max_delay", f"Max Delay cannot be less than Delay {d(r.delay)} (got {d(r.max_delay)})")
            pre_check = False
    if r.unlimited:
        return
    if r.interval < MIN_RESCHEDULE_INTERVAL:
        c.err(path + SEP + "interval", f"Interval cannot be less than {d(MIN_RESCHEDULE_INTERVAL)} "
                                       f"(got {d(r.interval)})")
    if not pre_check:
        return
    ok, possible, recommended = _viable_attempts(r)
    if not ok:
        ceiling = "" if r.delay_function == "constant" else f", and delay ceiling {d(r.max_delay)}"
        joiner = " and" if r.delay_function == "constant" else ","
        c.err(path, f"Nomad can only make {possible} attempts in {d(r.interval)} with initial delay {d(r.delay)}"
                    f"{joiner} delay function \"{r.delay_function}\"{ceiling}",
              f"Set the interval to at least {d(float(round(recommended)))} to accommodate {r.attempts} attempts")


def _viable_attempts(r: m.ReschedulePolicy) -> tuple[bool, int, float]:
    """Nomad's viableAttempts: whether ``attempts`` reschedules fit in ``interval``, how many do, and
    the interval that would hold them all (seconds)."""
    possible = 0
    recommended = 0.0
    valid = True
    if r.delay_function == "constant":
        recommended = r.attempts * r.delay
        if r.interval < recommended:
            possible = int(r.interval // r.delay)
            valid = False
    elif r.delay_function == "exponential":
        for i in range(r.attempts):
            nxt = (2 ** i) * r.delay
            if nxt > r.max_delay:
                recommended += r.max_delay
            else:
                recommended = nxt
            if recommended < r.interval:
                possible += 1
        valid = possible >= r.attempts
    else:  # fibonacci
        slots = [r.delay, r.delay]
        at_ceiling = False
        for i in range(2, r.attempts):
            if at_ceiling:
                nxt = slots[i - 1] + r.max_delay
            else:
                nxt = slots[i - 1] + slots[i - 2]
                if nxt > r.max_delay:
                    nxt, at_ceiling = r.max_delay, True
            slots.append(nxt)
        recommended = slots[-1]
        if r.interval < recommended:
            valid = False
            possible = next((i for i, s in enumerate(slots) if s > r.interval), 0)
    return valid, max(possible, 0), recommended


def _artifact(c: _Ctx, path: str, a: ArtifactSpec) -> None:
    if not a.source:
        c.err(path + SEP + "source", "source must be specified", 'e.g. source = "https://example.com/app.tar.gz"')
    if a.mode not in ("any", "file", "dir"):
        c.err(path + SEP + "mode", f'invalid artifact mode "{a.mode}"; must be one of: any, file, dir')
    if "${" not in a.destination and destination_escapes(a.destination):
        c.err(path + SEP + "destination", "destination escapes allocation directory",
              'use a path inside the task dir such as "local/" or the shared "../alloc/data"')
    checksum = a.options.get("checksum")
    if checksum is not None:
        msg = checksum_error(checksum)
        if msg:
            c.err(path + SEP + "options" + SEP + "checksum", msg,
                  'write "type:hex", type one of md5, sha1, sha256, sha512')


def _raw_exec_config(c: _Ctx, path: str, cfg: Mapping[str, Any]) -> None:
    for key in cfg:
        if key not in RAW_EXEC_OPTIONS:
            c.err(path + SEP + key, f'Unsupported argument: an argument named "{key}" is not expected here',
                  did_you_mean(key, RAW_EXEC_OPTIONS) or "raw_exec options: " + ", ".join(RAW_EXEC_OPTIONS))
    cmd = cfg.get("command")
    if cmd is None and path + SEP + "command" not in c.diags.failed:
        c.err(path, 'Missing required argument: the argument "command" is required', 'e.g. command = "/bin/sleep"')
    elif not isinstance(cmd, str) or not cmd:
        c.err(path + SEP + "command", "command must be a non-empty string")
    args = cfg.get("args")
    # Numbers and bools are fine: HCL converts them to strings, as the driver does.
    if args is not None and not (isinstance(args, tuple) and all(isinstance(x, (str, int, float)) for x in args)):
        c.err(path + SEP + "args", "args must be a list of strings", 'e.g. args = ["-c", "echo hi"]')
    oom = cfg.get("oom_score_adj")
    if oom is not None and (isinstance(oom, bool) or not isinstance(oom, (int, float)) or oom < 0):
        c.err(path + SEP + "oom_score_adj", "oom_score_adj must not be negative")
    wd = cfg.get("work_dir")
    if wd is not None and (not isinstance(wd, str) or (wd and not wd.startswith("/") and "${" not in wd)):
        c.err(path + SEP + "work_dir", "work_dir must be an absolute path")
    if cfg.get("cgroup_v1_override") and cfg.get("cgroup_v2_override"):
        c.err(path, "only one of cgroups_v1_override and cgroups_v2_override may be set")


def _task(c: _Ctx, path: str, t: m.Task, disk: m.EphemeralDisk, group_restart: m.RestartPolicy) -> None:
    if not t.name:
        c.err(path, "Missing task name")
    elif "/" in t.name:
        c.err(path, "Task name cannot include slashes")
    elif "\x00" in t.name:
        c.err(path, "Task name cannot include null characters")
    if not t.driver:
        c.err(path + SEP + "driver", "Missing task driver", 'add driver = "raw_exec"')
    elif "${" in t.driver:
        bare = t.driver.removeprefix("${").removesuffix("}")
        c.err(path + SEP + "driver", f'driver must be a plain name, got "{t.driver}"',
              f'quote it: driver = "{bare}"')
    elif t.driver == "raw_exec":
        _raw_exec_config(c, path + SEP + "config", t.config)
    if t.kill_timeout < 0:
        c.err(path + SEP + "kill_timeout", "KillTimeout must be a positive value")
    if t.shutdown_delay < 0:
        c.err(path + SEP + "shutdown_delay", "ShutdownDelay must be a positive value")
    if t.kill_signal:
        name = t.kill_signal.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        if name not in _SIGNALS:
            c.err(path + SEP + "kill_signal", f'unknown kill_signal "{t.kill_signal}"',
                  did_you_mean(t.kill_signal, _SIGNALS) or "use a signal name such as SIGTERM or SIGINT")
    res = t.resources
    if res.cores > 0 and res.cpu > 0:
        c.err(path + SEP + "resources", "Task can only ask for 'cpu' or 'cores' resource, not both.")
    elif res.cores < 0:
        c.err(path + SEP + "resources" + SEP + "cores", f"cores must not be negative; got {res.cores}")
    elif res.cores == 0 and res.cpu < 1:
        c.err(path + SEP + "resources" + SEP + "cpu", f"minimum CPU value is 1; got {res.cpu}")
    if res.memory < 10:
        c.err(path + SEP + "resources" + SEP + "memory", f"minimum MemoryMB value is 10; got {res.memory}")
    if res.memory_max not in (0, -1) and res.memory_max < res.memory:
        c.err(path + SEP + "resources" + SEP + "memory_max",
              f"MemoryMaxMB value ({res.memory_max}) should be larger than MemoryMB value ({res.memory})",
              "or use memory_max = -1 for no hard limit")
    if t.logs.max_files < 1:
        c.err(path + SEP + "logs" + SEP + "max_files", f"minimum number of files is 1; got {t.logs.max_files}")
    if t.logs.max_file_size < 1:
        c.err(path + SEP + "logs" + SEP + "max_file_size", f"minimum file size is 1MB; got {t.logs.max_file_size}")
    log_mb = t.logs.max_files * t.logs.max_file_size
    if not t.logs.disabled and log_mb >= disk.size > 0:
        c.err(path + SEP + "logs", f"log storage ({log_mb} MB) must be less than requested disk capacity "
                                   f"({disk.size} MB)", "lower max_files/max_file_size or raise ephemeral_disk size")
    names = [i.name for i in t.identities]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        c.err(path + SEP + "identity", f'identity "{dup}" is defined more than once',
              "give each identity block a unique name")
    if t.lifecycle is not None and t.lifecycle.hook not in _HOOKS:
        c.err(path + SEP + "lifecycle" + SEP + "hook", f"invalid hook: {t.lifecycle.hook}",
              did_you_mean(t.lifecycle.hook, _HOOKS) or "use prestart, poststart or poststop")
    if t.restart != group_restart:  # an inherited policy was already checked on the group
        _restart(c, path + SEP + "restart", t.restart, "Task")
    for i, a in enumerate(t.artifacts):
        _artifact(c, path + SEP + ("artifact" if len(t.artifacts) == 1 else f"artifact[{i}]"), a)


def _group(c: _Ctx, path: str, g: m.TaskGroup, jtype: str) -> None:
    if not g.name:
        c.err(path, "Missing task group name")
    if g.count < 0:
        c.err(path + SEP + "count", "Task group count can't be negative")
    if jtype in ("system", "sysbatch") and g.count > 1:
        c.err(path + SEP + "count", f"Job task group {g.name!r} has count {g.count}; "
                                    f"{jtype} jobs run one allocation per node", "use count = 1")
    if not g.tasks:
        c.err(path, "Missing tasks for task group", 'add a task "name" { driver = "raw_exec" ... } block')
    if g.ephemeral_disk.size < 0:
        c.err(path + SEP + "ephemeral_disk" + SEP + "size", f"ephemeral_disk size must be positive; "
                                                            f"got {g.ephemeral_disk.size}")
    if g.shutdown_delay < 0:
        c.err(path + SEP + "shutdown_delay", "ShutdownDelay must be a positive value")
    _restart(c, path + SEP + "restart", g.restart, "TaskGroup")
    if jtype != "system":
        _reschedule(c, path + SEP + "reschedule", g.reschedule)
    if g.reschedule.delay_function not in ("constant", "exponential", "fibonacci"):
        c.err(path + SEP + "reschedule" + SEP + "delay_function",
              f'Invalid delay function "{g.reschedule.delay_function}", must be one of constant, exponential, '
              "fibonacci")
    volumes: set[str] = set()
    for v in g.volumes:
        if v.name in volumes:
            c.err(path + SEP + f'volume "{v.name}"', f'Volume "{v.name}" is defined more than once')
        volumes.add(v.name)
    labels: dict[str, int] = {}
    for net in g.networks:
        for p in net.ports:
            ppath = path + SEP + "network" + SEP + f'port "{p.label}"'
            if p.label in labels:
                c.err(ppath, f"Port label {p.label} already in use")
            labels[p.label] = 1
            if not 0 <= p.static <= 65535:
                c.err(ppath + SEP + "static", f"Port {p.label} has an invalid port {p.static}", "use 1-65535")
            if not -1 <= p.to <= 65535:
                c.err(ppath + SEP + "to", f"Port {p.label} has an invalid port to value {p.to}", "use 0-65535")
    seen: dict[str, int] = {}
    leaders = 0
    for i, t in enumerate(g.tasks):
        tpath = path + SEP + f'task "{t.name}"'
        if t.name in seen:
            c.err(tpath, f"Task {i + 1} redefines '{t.name}' from task {seen[t.name] + 1}",
                  "give every task in a group a unique name")
        else:
            seen[t.name] = i
        leaders += t.leader
        _task(c, tpath, t, g.ephemeral_disk, g.restart)
    if leaders > 1:
        c.err(path, "Only one task may be marked as leader")


def check(job: m.Job, diags: Diagnostics, locations: Mapping[str, Pos] | None = None) -> None:
    """Add every validation error of ``job`` to ``diags``."""
    c = _Ctx(diags, locations or {})
    path = f'job "{job.id}"'
    if not job.id:
        c.err(path, "Missing job ID")
    elif " " in job.id:
        c.err(path, "Job ID contains a space", "use - or _ instead")
    elif "\x00" in job.id:
        c.err(path, "Job ID contains a null character")
    if not job.name:
        c.err(path + SEP + "name", "Missing job name")
    elif "\x00" in job.name:
        c.err(path + SEP + "name", "Job Name contains a null character")
    if job.type not in m.JOB_TYPES:
        c.err(path + SEP + "type", f'Invalid job type: "{job.type}"',
              did_you_mean(job.type, m.JOB_TYPES) or "use service, batch, system or sysbatch")
    if not job.region:
        c.err(path + SEP + "region", "Missing job region")
    if not job.namespace:
        c.err(path + SEP + "namespace", "Job must be in a namespace")
    if not job.datacenters:
        c.err(path + SEP + "datacenters", "Missing job datacenters", 'use ["*"] for any datacenter')
    for dc in job.datacenters:
        if not dc:
            c.err(path + SEP + "datacenters", "Job datacenter must be non-empty string")
    if not 1 <= job.priority <= 100:
        c.err(path + SEP + "priority", "Job priority must be between [1, 100]")
    if not job.groups:
        c.err(path, "Missing job task groups", 'add a group "name" { task "name" { ... } } block')
    if job.periodic is not None:
        if job.type not in ("batch", "sysbatch"):
            c.err(path + SEP + "periodic", f'Periodic can only be used with "batch" or "sysbatch" scheduler '
                                           f'(job type is "{job.type}")')
        if job.periodic.enabled and not job.periodic.crons:
            c.err(path + SEP + "periodic", "Must specify a spec", 'add cron = "*/5 * * * *"')
    if job.parameterized is not None:
        if job.type not in ("batch", "sysbatch"):
            c.err(path + SEP + "parameterized", f'Parameterized job can only be used with "batch" or "sysbatch" '
                                                f'scheduler (job type is "{job.type}")')
        if job.parameterized.payload not in ("optional", "required", "forbidden"):
            c.err(path + SEP + "parameterized" + SEP + "payload",
                  f'Unknown payload requirement: "{job.parameterized.payload}"',
                  "use optional, required or forbidden")
    seen: dict[str, int] = {}
    for i, g in enumerate(job.groups):
        gpath = path + SEP + f'group "{g.name}"'
        if g.name in seen:
            c.err(gpath, f"Job task group {i + 1} redefines '{g.name}' from group {seen[g.name] + 1}",
                  "give every group a unique name")
        else:
            seen[g.name] = i
        _group(c, gpath, g, job.type)


def validate(job: m.Job) -> None:
    """Raise :class:`~rawexec.errors.ValidationError` listing every problem of ``job``."""
    d = Diagnostics()
    check(job, d)
    d.raise_if_any()


def _warn_unsupported(c: _Ctx, job: m.Job) -> None:
    path = f'job "{job.id}"'
    if job.periodic is not None:
        c.warn(path + SEP + "periodic", "periodic is kept in the job but rawexec does not launch on a schedule")
    if job.parameterized is not None:
        c.warn(path + SEP + "parameterized", "parameterized is kept in the job but rawexec has no dispatch")
    for con in job.constraints:
        c.warn(path + SEP + "constraint", f"constraint on {con.attribute or con.operator!s} is not checked by "
                                          "rawexec (single node)")
    for g in job.groups:
        gpath = path + SEP + f'group "{g.name}"'
        for s in g.services:
            c.warn(gpath + SEP + "service", f'service "{s.name}" is not registered: not supported by rawexec')
        for v in g.volumes:
            c.warn(gpath + SEP + f'volume "{v.name}"', "volumes are not supported by rawexec (raw_exec mounts "
                                                       "nothing)")
        for n in g.networks:
            if n.mode not in ("host", "none"):
                c.warn(gpath + SEP + "network", f'network mode "{n.mode}" is not supported by rawexec; '
                                                "tasks use the host network")
        for t in g.tasks:
            tpath = gpath + SEP + f'task "{t.name}"'
            if t.driver and t.driver != "raw_exec":
                c.warn(tpath + SEP + "driver", f'driver "{t.driver}" parses, but only raw_exec tasks run on rawexec')
            for what, present in (("template", bool(t.templates)), ("service", bool(t.services)),
                                  ("vault", t.vault is not None), ("volume_mount", bool(t.volume_mounts)),
                                  ("identity", bool(t.identities))):
                if present:
                    c.warn(tpath + SEP + what, f"{what} is kept in the job but not supported by rawexec")
            for con in t.constraints:
                c.warn(tpath + SEP + "constraint", f"constraint on {con.attribute or con.operator!s} is not "
                                                   "checked by rawexec (single node)")


def warnings(job: m.Job, locations: Mapping[str, Pos] | None = None) -> list[str]:
    """What in ``job`` parses but rawexec will not honour, one message each."""
    d = Diagnostics()
    _warn_unsupported(_Ctx(d, locations or {}), job)
    return [str(w) for w in d.warnings]
