"""The job model → Nomad's API JSON (``{"Job": {...}}``, PascalCase, durations in nanoseconds)."""

from __future__ import annotations

from typing import Any

from rawexec.artifacts.spec import ArtifactSpec
from rawexec.jobspec import model as m
from rawexec.jobspec.durations import seconds_to_ns as ns

__all__ = ["to_api_json"]


def to_api_json(job: m.Job) -> dict[str, Any]:
    """What ``nomad job run -output`` prints for the fields rawexec models."""
    return {"Job": _job(job)}


def _constraints(cs: tuple[m.Constraint, ...]) -> list[dict[str, Any]] | None:
    return [{"LTarget": c.attribute, "RTarget": c.value, "Operand": c.operator} for c in cs] or None


def _update(u: m.UpdateStrategy | None) -> dict[str, Any] | None:
    if u is None:
        return None
    return {"MaxParallel": u.max_parallel, "HealthCheck": u.health_check, "MinHealthyTime": ns(u.min_healthy_time),
            "HealthyDeadline": ns(u.healthy_deadline), "ProgressDeadline": ns(u.progress_deadline),
            "AutoRevert": u.auto_revert, "AutoPromote": u.auto_promote, "Canary": u.canary,
            "Stagger": ns(u.stagger)}


def _restart(r: m.RestartPolicy) -> dict[str, Any]:
    return {"Attempts": r.attempts, "Interval": ns(r.interval), "Delay": ns(r.delay), "Mode": r.mode,
            "RenderTemplates": r.render_templates}


def _job(j: m.Job) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ID": j.id, "Name": j.name, "Type": j.type, "Namespace": j.namespace, "Region": j.region,
        "Datacenters": list(j.datacenters), "NodePool": j.node_pool, "Priority": j.priority,
        "AllAtOnce": j.all_at_once, "Meta": dict(j.meta) or None, "Constraints": _constraints(j.constraints),
        "Update": _update(j.update), "TaskGroups": [_group(g) for g in j.groups],
        "Periodic": None, "ParameterizedJob": None,
    }
    if j.periodic is not None:
        p = j.periodic
        out["Periodic"] = {"Enabled": p.enabled, "Spec": p.crons[0] if p.crons else "", "Specs": list(p.crons),
                           "SpecType": "cron", "ProhibitOverlap": p.prohibit_overlap, "TimeZone": p.time_zone}
    if j.parameterized is not None:
        q = j.parameterized
        out["ParameterizedJob"] = {"Payload": q.payload, "MetaRequired": list(q.meta_required) or None,
                                   "MetaOptional": list(q.meta_optional) or None}
    return out


def _group(g: m.TaskGroup) -> dict[str, Any]:
    r = g.reschedule
    return {
        "Name": g.name, "Count": g.count, "Constraints": _constraints(g.constraints),
        "RestartPolicy": _restart(g.restart),
        "ReschedulePolicy": {"Attempts": r.attempts, "Interval": ns(r.interval), "Delay": ns(r.delay),
                             "DelayFunction": r.delay_function, "MaxDelay": ns(r.max_delay),
                             "Unlimited": r.unlimited},
        "EphemeralDisk": {"SizeMB": g.ephemeral_disk.size, "Sticky": g.ephemeral_disk.sticky,
                          "Migrate": g.ephemeral_disk.migrate},
        "Meta": dict(g.meta) or None,
        "Networks": [_network(n) for n in g.networks] or None,
        "ShutdownDelay": ns(g.shutdown_delay),
        "Services": [_service(s) for s in g.services] or None,
        "Volumes": {v.name: {"Name": v.name, "Type": v.type, "Source": v.source, "ReadOnly": v.read_only}
                    for v in g.volumes} or None,
        "Update": _update(g.update),
        "Tasks": [_task(t) for t in g.tasks],
    }


def _network(n: m.Network) -> dict[str, Any]:
    def port(p: m.Port) -> dict[str, Any]:
        return {"Label": p.label, "Value": p.static, "To": p.to, "HostNetwork": p.host_network}

    return {"Mode": n.mode, "Hostname": n.hostname,
            "ReservedPorts": [port(p) for p in n.ports if p.static] or None,
            "DynamicPorts": [port(p) for p in n.ports if not p.static] or None}


def _service(s: m.Service) -> dict[str, Any]:
    return {"Name": s.name, "PortLabel": s.port, "Tags": list(s.tags) or None, "Provider": s.provider,
            "AddressMode": s.address_mode, "Meta": dict(s.meta) or None,
            "Checks": [{"Name": c.name, "Type": c.type, "Path": c.path, "Command": c.command,
                        "Args": list(c.args) or None, "PortLabel": c.port, "Protocol": c.protocol,
                        "Interval": ns(c.interval), "Timeout": ns(c.timeout)} for c in s.checks] or None}


def _artifact(a: ArtifactSpec) -> dict[str, Any]:
    return {"GetterSource": a.source, "GetterOptions": dict(a.options) or None,
            "GetterHeaders": dict(a.headers) or None, "GetterMode": a.mode, "GetterInsecure": a.insecure,
            "RelativeDest": a.destination, "Chown": a.chown}


def _identity(i: m.Identity) -> dict[str, Any]:
    return {"Name": i.name, "Audience": list(i.audience) or None, "Env": i.env, "File": i.file, "TTL": ns(i.ttl)}


def _task(t: m.Task) -> dict[str, Any]:
    res = t.resources
    return {
        "Name": t.name, "Driver": t.driver, "User": t.user, "Config": m.thaw(t.config) or None,
        "Env": dict(t.env) or None, "Meta": dict(t.meta) or None,
        "Artifacts": [_artifact(a) for a in t.artifacts] or None,
        "LogConfig": {"MaxFiles": t.logs.max_files, "MaxFileSizeMB": t.logs.max_file_size,
                      "Disabled": t.logs.disabled},
        "Resources": {"CPU": res.cpu, "MemoryMB": res.memory, "MemoryMaxMB": res.memory_max, "Cores": res.cores},
        "KillTimeout": ns(t.kill_timeout), "KillSignal": t.kill_signal, "ShutdownDelay": ns(t.shutdown_delay),
        "Lifecycle": {"Hook": t.lifecycle.hook, "Sidecar": t.lifecycle.sidecar} if t.lifecycle else None,
        "Leader": t.leader,
        "RestartPolicy": _restart(t.restart),
        "Constraints": _constraints(t.constraints),
        "Templates": [{"SourcePath": x.source, "DestPath": x.destination, "EmbeddedTmpl": x.data,
                       "ChangeMode": x.change_mode, "ChangeSignal": x.change_signal, "Splay": ns(x.splay),
                       "Perms": x.perms, "LeftDelim": x.left_delimiter, "RightDelim": x.right_delimiter,
                       "Envvars": x.env, "ErrMissingKey": x.error_on_missing_key} for x in t.templates] or None,
        "Services": [_service(s) for s in t.services] or None,
        "Vault": {"Policies": list(t.vault.policies) or None, "Role": t.vault.role, "Namespace": t.vault.namespace,
                  "ChangeMode": t.vault.change_mode, "ChangeSignal": t.vault.change_signal,
                  "Env": t.vault.env} if t.vault else None,
        # Nomad's API keeps the default identity apart from the named ones.
        "Identity": next((_identity(i) for i in t.identities if i.name == "default"), None),
        "Identities": [_identity(i) for i in t.identities if i.name != "default"] or None,
        "VolumeMounts": [{"Volume": v.volume, "Destination": v.destination, "ReadOnly": v.read_only}
                         for v in t.volume_mounts] or None,
    }
