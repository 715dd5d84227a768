"""Build the job model from a :class:`~rawexec.jobspec.reader.Reader` (HCL or API JSON).

One decoder for both inputs: each call names the jobspec field and the API JSON field
(``r.duration("kill_timeout", "KillTimeout", 5.0)``). Defaults (facts §6) are applied here, so the
result is complete: ``Task.restart`` is the effective policy (job-type default ← group ← task).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rawexec.artifacts.spec import ArtifactSpec
from rawexec.jobspec import model as m
from rawexec.jobspec.diagnostics import SEP
from rawexec.jobspec.reader import JsonReader, Reader
from rawexec.types import LogConfig, Resources

__all__ = ["decode_job"]

_CONSTRAINT_OPS = ("regexp", "version", "semver", "set_contains", "set_contains_any", "set_contains_all")


def decode_job(r: Reader, job_id: str) -> m.Job:
    """Decode the job body; ``job_id`` is the HCL label (ignored for JSON, which carries ``ID``)."""
    if r.is_json:
        job_id = r.string("id", "ID")
    name = r.string("name", "Name", job_id)
    jtype = r.string("type", "Type", "service")
    job_update = _update(r.block("update", "Update"))
    resched_base = _reschedule_partial(r.block("reschedule", "Reschedule"))
    groups = tuple(_group(n, gr, jtype, job_update, resched_base)
                   for n, gr in r.labelled("group", "TaskGroups"))
    periodic_r = r.block("periodic", "Periodic")
    param_r = r.block("parameterized", "ParameterizedJob")
    job = m.Job(
        id=job_id,
        name=name,
        type=jtype,
        namespace=r.string("namespace", "Namespace", "default"),
        region=r.string("region", "Region", "global"),
        datacenters=r.strlist("datacenters", "Datacenters", ("*",)),
        node_pool=r.string("node_pool", "NodePool", "default"),
        priority=r.integer("priority", "Priority", 50),
        all_at_once=r.boolean("all_at_once", "AllAtOnce"),
        meta=m.freeze(r.strmap("meta", "Meta")),
        constraints=_constraints(r),
        groups=groups,
        update=job_update,
        periodic=_periodic(periodic_r) if periodic_r else None,
        parameterized=_parameterized(param_r) if param_r else None,
    )
    r.finish()
    return job


def _constraints(r: Reader) -> tuple[m.Constraint, ...]:
    out = []
    for c in r.blocks("constraint", "Constraints"):
        attribute = c.string("attribute", "LTarget")
        operator = c.string("operator", "Operand", "=")
        value = c.string("value", "RTarget")
        if not c.is_json:
            if c.boolean("distinct_hosts", "", False):
                operator = "distinct_hosts"
            if c.has("distinct_property", ""):
                operator, attribute = "distinct_property", c.string("distinct_property", "")
            for op in _CONSTRAINT_OPS:
                if c.has(op, ""):
                    operator, value = op, c.string(op, "")
        c.finish()
        out.append(m.Constraint(attribute=attribute, operator=operator, value=value))
    return tuple(out)


def _restart_partial(r: Reader | None) -> dict[str, Any]:
    if r is None:
        return {}
    out: dict[str, Any] = {}
    if r.has("attempts", "Attempts"):
        out["attempts"] = r.integer("attempts", "Attempts")
    if r.has("interval", "Interval"):
        out["interval"] = r.duration("interval", "Interval", 0.0)
    if r.has("delay", "Delay"):
        out["delay"] = r.duration("delay", "Delay", 0.0)
    if r.has("mode", "Mode"):
        out["mode"] = r.string("mode", "Mode")
    if r.has("render_templates", "RenderTemplates"):
        out["render_templates"] = r.boolean("render_templates", "RenderTemplates")
    r.finish()
    return out


def _reschedule_partial(r: Reader | None) -> dict[str, Any]:
    if r is None:
        return {}
    out: dict[str, Any] = {}
    for attr, hcl, js, kind in (("attempts", "attempts", "Attempts", "int"),
                                ("interval", "interval", "Interval", "dur"),
                                ("delay", "delay", "Delay", "dur"),
                                ("delay_function", "delay_function", "DelayFunction", "str"),
                                ("max_delay", "max_delay", "MaxDelay", "dur"),
                                ("unlimited", "unlimited", "Unlimited", "bool")):
        if r.has(hcl, js):
            out[attr] = (r.integer(hcl, js) if kind == "int" else r.duration(hcl, js, 0.0) if kind == "dur"
                         else r.string(hcl, js) if kind == "str" else r.boolean(hcl, js))
    r.finish()
    return out


def _update(r: Reader | None) -> m.UpdateStrategy | None:
    if r is None:
        return None
    d = m.UpdateStrategy()
    u = m.UpdateStrategy(
        max_parallel=r.integer("max_parallel", "MaxParallel", d.max_parallel),
        health_check=r.string("health_check", "HealthCheck", d.health_check),
        min_healthy_time=r.duration("min_healthy_time", "MinHealthyTime", d.min_healthy_time),
        healthy_deadline=r.duration("healthy_deadline", "HealthyDeadline", d.healthy_deadline),
        progress_deadline=r.duration("progress_deadline", "ProgressDeadline", d.progress_deadline),
        auto_revert=r.boolean("auto_revert", "AutoRevert"),
        auto_promote=r.boolean("auto_promote", "AutoPromote"),
        canary=r.integer("canary", "Canary"),
        stagger=r.duration("stagger", "Stagger", d.stagger),
    )
    r.finish()
    return u


def _periodic(r: Reader) -> m.Periodic:
    crons = list(r.strlist("crons", "Specs"))
    one = r.string("cron", "Spec")
    if one and one not in crons:
        crons.insert(0, one)
    if r.is_json:
        r.string("", "SpecType")
    p = m.Periodic(crons=tuple(crons), prohibit_overlap=r.boolean("prohibit_overlap", "ProhibitOverlap"),
                   time_zone=r.string("time_zone", "TimeZone", "UTC"), enabled=r.boolean("enabled", "Enabled", True))
    r.finish()
    return p


def _parameterized(r: Reader) -> m.Parameterized:
    p = m.Parameterized(payload=r.string("payload", "Payload", "optional"),
                        meta_required=r.strlist("meta_required", "MetaRequired"),
                        meta_optional=r.strlist("meta_optional", "MetaOptional"))
    r.finish()
    return p


def _group(name: str, r: Reader, jtype: str, job_update: m.UpdateStrategy | None,
           resched_base: dict[str, Any]) -> m.TaskGroup:
    restart = replace(m.default_restart(jtype), **_restart_partial(r.block("restart", "RestartPolicy")))
    resched = replace(m.default_reschedule(jtype),
                      **{**resched_base, **_reschedule_partial(r.block("reschedule", "ReschedulePolicy"))})
    ed = r.block("ephemeral_disk", "EphemeralDisk")
    disk = m.EphemeralDisk()
    if ed is not None:
        disk = m.EphemeralDisk(size=ed.integer("size", "SizeMB", 300), sticky=ed.boolean("sticky", "Sticky"),
                               migrate=ed.boolean("migrate", "Migrate"))
        ed.finish()
    upd = _update(r.block("update", "Update")) or job_update
    g = m.TaskGroup(
        name=name,
        count=r.integer("count", "Count", 1),
        constraints=_constraints(r),
        restart=restart,
        reschedule=resched,
        ephemeral_disk=disk,
        meta=m.freeze(r.strmap("meta", "Meta")),
        networks=tuple(_network(n) for n in r.blocks("network", "Networks")),
        shutdown_delay=r.duration("shutdown_delay", "ShutdownDelay", 0.0),
        services=tuple(_service(s) for s in r.blocks("service", "Services")),
        volumes=_volumes(r),
        update=upd,
        tasks=tuple(_task(n, t, restart) for n, t in r.labelled("task", "Tasks")),
    )
    r.finish()
    return g


def _network(r: Reader) -> m.Network:
    ports: list[m.Port] = []
    if r.is_json:
        for key in ("ReservedPorts", "DynamicPorts"):
            for p in r.blocks("", key):
                ports.append(m.Port(label=p.string("", "Label"), static=p.integer("", "Value") if key[0] == "R" else 0,
                                    to=p.integer("", "To"), host_network=p.string("", "HostNetwork", "default")))
                if key[0] == "D":
                    p.integer("", "Value")
                p.finish()
    else:
        for label, p in r.labelled("port", ""):
            ports.append(m.Port(label=label, static=p.integer("static", ""), to=p.integer("to", ""),
                                host_network=p.string("host_network", "", "default")))
            p.finish()
    # Static ports first, then dynamic ones (the order the API's ReservedPorts/DynamicPorts keeps).
    ports = [p for p in ports if p.static] + [p for p in ports if not p.static]
    n = m.Network(mode=r.string("mode", "Mode", "host"), ports=tuple(ports), hostname=r.string("hostname", "Hostname"))
    r.finish(("dns", "DNS", "MBits", "mbits", "IP", "CIDR", "Device"))
    return n


def _volumes(r: Reader) -> tuple[m.Volume, ...]:
    out = []
    if r.is_json:
        v, _ = r.raw("", "Volumes")
        if isinstance(v, dict):
            for key, obj in v.items():
                if not isinstance(obj, dict):
                    r.err("Volumes", f"volume {key!r} must be an object")
                    continue
                jr = JsonReader(obj, f'{r.path}{SEP}volume "{key}"', r.diags)
                out.append(m.Volume(name=jr.string("", "Name", str(key)), type=jr.string("", "Type", "host"),
                                    source=jr.string("", "Source"), read_only=jr.boolean("", "ReadOnly")))
                jr.finish()
        elif isinstance(v, (str, int, float, list)) and v not in ([], ""):
            r.err("Volumes", "Volumes must be an object keyed by volume name")
        return tuple(out)
    for name, vr in r.labelled("volume", ""):
        out.append(m.Volume(name=name, type=vr.string("type", "", "host"), source=vr.string("source", ""),
                            read_only=vr.boolean("read_only", "")))
        vr.finish(("access_mode", "attachment_mode", "per_alloc", "mount_options"))
    return tuple(out)


def _service(r: Reader) -> m.Service:
    checks = []
    for c in r.blocks("check", "Checks"):
        checks.append(m.ServiceCheck(
            name=c.string("name", "Name"), type=c.string("type", "Type"), path=c.string("path", "Path"),
            command=c.string("command", "Command"), args=c.strlist("args", "Args"), port=c.string("port", "PortLabel"),
            protocol=c.string("protocol", "Protocol"), interval=c.duration("interval", "Interval", 0.0),
            timeout=c.duration("timeout", "Timeout", 0.0)))
        c.finish(("method", "header", "check_restart", "initial_status", "task", "on_update", "expose",
                  "success_before_passing", "failures_before_critical", "tls_skip_verify", "grpc_service",
                  "grpc_use_tls", "body", "address_mode"))
    s = m.Service(name=r.string("name", "Name"), port=r.string("port", "PortLabel"), tags=r.strlist("tags", "Tags"),
                  provider=r.string("provider", "Provider", "consul"),
                  address_mode=r.string("address_mode", "AddressMode", "auto"),
                  meta=m.freeze(r.strmap("meta", "Meta")), checks=tuple(checks))
    r.finish(("canary_tags", "enable_tag_override", "connect", "canary_meta", "tagged_addresses", "task",
              "on_update", "identity", "cluster", "kind", "weights"))
    return s


def _artifact(r: Reader) -> ArtifactSpec:
    a = ArtifactSpec(
        source=r.string("source", "GetterSource"),
        destination=r.string("destination", "RelativeDest", "local/"),
        mode=r.string("mode", "GetterMode", "any"),
        options=m.freeze(r.strmap("options", "GetterOptions")),
        headers=m.freeze(r.strmap("headers", "GetterHeaders")),
        insecure=r.boolean("insecure", "GetterInsecure"),
        chown=r.boolean("chown", "Chown"),
    )
    r.finish()
    return a


def _task(name: str, r: Reader, group_restart: m.RestartPolicy) -> m.Task:
    partial = _restart_partial(r.block("restart", "RestartPolicy"))
    restart = replace(group_restart, **partial) if partial else group_restart
    logs = LogConfig()
    lr = r.block("logs", "LogConfig")
    if lr is not None:
        logs = LogConfig(max_files=lr.integer("max_files", "MaxFiles", 10),
                         max_file_size=lr.integer("max_file_size", "MaxFileSizeMB", 10),
                         disabled=lr.boolean("disabled", "Disabled"))
        if lr.has("enabled", "Enabled"):
            # Nomad 1.5.4's short-lived ``enabled`` flag, replaced by ``disabled`` in 1.5.5.
            logs = replace(logs, disabled=not lr.boolean("enabled", "Enabled", True))
        lr.finish()
    res = Resources()
    rr = r.block("resources", "Resources")
    if rr is not None:
        cores = rr.integer("cores", "Cores", 0)
        res = Resources(cpu=rr.integer("cpu", "CPU", 0 if cores > 0 else 100),
                        memory=rr.integer("memory", "MemoryMB", 300),
                        memory_max=rr.integer("memory_max", "MemoryMaxMB", 0), cores=cores)
        rr.finish(("network", "Networks", "device", "Devices", "DiskMB", "IOPS", "numa", "NUMA", "secrets",
                   "SecretsMB"))
    lifecycle = None
    lc = r.block("lifecycle", "Lifecycle")
    if lc is not None:
        lifecycle = m.Lifecycle(hook=lc.string("hook", "Hook"), sidecar=lc.boolean("sidecar", "Sidecar"))
        lc.finish()
    vault = None
    vr = r.block("vault", "Vault")
    if vr is not None:
        vault = m.Vault(policies=vr.strlist("policies", "Policies"), role=vr.string("role", "Role"),
                        namespace=vr.string("namespace", "Namespace"),
                        change_mode=vr.string("change_mode", "ChangeMode", "restart"),
                        change_signal=vr.string("change_signal", "ChangeSignal"), env=vr.boolean("env", "Env", True))
        vr.finish(("cluster", "disable_file", "allow_token_expiration"))
    identities = []
    for ir in [*r.blocks("identity", "Identity"), *([] if not r.is_json else r.blocks("", "Identities"))]:
        identities.append(m.Identity(name=ir.string("name", "Name", "default"), audience=ir.strlist("aud", "Audience"),
                                     env=ir.boolean("env", "Env"), file=ir.boolean("file", "File"),
                                     ttl=ir.duration("ttl", "TTL", 0.0)))
        ir.finish(("change_mode", "change_signal", "service_name", "filepath", "ChangeMode", "ChangeSignal",
                   "ServiceName", "Filepath"))
    templates = []
    for tr in r.blocks("template", "Templates"):
        d = m.Template()
        templates.append(m.Template(
            source=tr.string("source", "SourcePath"), destination=tr.string("destination", "DestPath"),
            data=tr.string("data", "EmbeddedTmpl"), change_mode=tr.string("change_mode", "ChangeMode", d.change_mode),
            change_signal=tr.string("change_signal", "ChangeSignal"), splay=tr.duration("splay", "Splay", d.splay),
            perms=tr.string("perms", "Perms", d.perms), left_delimiter=tr.string("left_delimiter", "LeftDelim", "{{"),
            right_delimiter=tr.string("right_delimiter", "RightDelim", "}}"), env=tr.boolean("env", "Envvars"),
            error_on_missing_key=tr.boolean("error_on_missing_key", "ErrMissingKey")))
        tr.finish(("uid", "gid", "wait", "change_script", "once", "vault_grace", "Uid", "Gid", "Wait",
                   "ChangeScript", "Once", "VaultGrace"))
    mounts = []
    for mr in r.blocks("volume_mount", "VolumeMounts"):
        mounts.append(m.VolumeMount(volume=mr.string("volume", "Volume"),
                                    destination=mr.string("destination", "Destination"),
                                    read_only=mr.boolean("read_only", "ReadOnly")))
        mr.finish(("propagation_mode", "selinux_label", "PropagationMode", "SELinuxLabel"))
    t = m.Task(
        name=name,
        driver=r.string("driver", "Driver"),
        config=m.freeze(r.anymap("config", "Config")),
        user=r.string("user", "User"),
        env=m.freeze(r.strmap("env", "Env")),
        meta=m.freeze(r.strmap("meta", "Meta")),
        artifacts=tuple(_artifact(a) for a in r.blocks("artifact", "Artifacts")),
        logs=logs,
        resources=res,
        kill_timeout=r.duration("kill_timeout", "KillTimeout", 5.0),
        kill_signal=r.string("kill_signal", "KillSignal"),
        shutdown_delay=r.duration("shutdown_delay", "ShutdownDelay", 0.0),
        lifecycle=lifecycle,
        leader=r.boolean("leader", "Leader"),
        restart=restart,
        constraints=_constraints(r),
        templates=tuple(templates),
        services=tuple(_service(s) for s in r.blocks("service", "Services")),
        vault=vault,
        # The default identity first, then the named ones (the API keeps them in two fields).
        identities=tuple(sorted(identities, key=lambda i: i.name != "default")),
        volume_mounts=tuple(mounts),
    )
    r.finish()
    return t
