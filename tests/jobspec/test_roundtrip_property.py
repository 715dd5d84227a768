"""Property: any model → API JSON → model is the identity (every field is encoded and decoded)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawexec.jobspec import model as m
from rawexec.jobspec import to_api_json
from rawexec.jobspec.decode import decode_job
from rawexec.jobspec.diagnostics import Diagnostics
from rawexec.jobspec.durations import ns_to_seconds
from rawexec.jobspec.reader import JsonReader
from rawexec.types import LogConfig, Resources

TEXT = st.text(st.characters(codec="utf-8"), max_size=6)
NAME = st.text("abcxyz-_0123", min_size=1, max_size=5)
INT = st.integers(min_value=-(2**40), max_value=2**40)
DUR = st.integers(min_value=0, max_value=10**15).map(ns_to_seconds)
STRS = st.lists(TEXT, max_size=3).map(tuple)
SMAP = st.dictionaries(NAME, TEXT, max_size=3).map(m.freeze)
JSONV = st.recursive(st.one_of(st.none(), st.booleans(), INT, TEXT),
                     lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(NAME, inner, max_size=3)),
                     max_leaves=8)

def _default_first(ids: list[m.Identity]) -> tuple[m.Identity, ...]:
    return tuple(sorted(ids, key=lambda i: i.name != "default"))


restart = st.builds(m.RestartPolicy, attempts=INT, interval=DUR, delay=DUR, mode=TEXT, render_templates=st.booleans())
constraint = st.builds(m.Constraint, attribute=TEXT, operator=TEXT, value=TEXT)
update = st.builds(m.UpdateStrategy, max_parallel=INT, health_check=TEXT, min_healthy_time=DUR,
                   healthy_deadline=DUR, progress_deadline=DUR, auto_revert=st.booleans(),
                   auto_promote=st.booleans(), canary=INT, stagger=DUR)
check = st.builds(m.ServiceCheck, name=TEXT, type=TEXT, path=TEXT, command=TEXT, args=STRS, port=TEXT,
                  protocol=TEXT, interval=DUR, timeout=DUR)
service = st.builds(m.Service, name=TEXT, port=TEXT, tags=STRS, provider=TEXT, address_mode=TEXT, meta=SMAP,
                    checks=st.lists(check, max_size=2).map(tuple))
artifact = st.builds(m.ArtifactSpec, source=TEXT, destination=TEXT, mode=TEXT, options=SMAP, headers=SMAP,
                     insecure=st.booleans(), chown=st.booleans())
task = st.builds(
    m.Task, name=NAME, driver=TEXT, config=st.dictionaries(NAME, JSONV, max_size=3).map(m.freeze), user=TEXT,
    env=SMAP, meta=SMAP, artifacts=st.lists(artifact, max_size=2).map(tuple),
    logs=st.builds(LogConfig, max_files=INT, max_file_size=INT, disabled=st.booleans()),
    resources=st.builds(Resources, cpu=INT, memory=INT, memory_max=INT, cores=INT),
    kill_timeout=DUR, kill_signal=TEXT, shutdown_delay=DUR,
    lifecycle=st.none() | st.builds(m.Lifecycle, hook=TEXT, sidecar=st.booleans()), leader=st.booleans(),
    restart=restart, constraints=st.lists(constraint, max_size=2).map(tuple),
    templates=st.lists(st.builds(m.Template, source=TEXT, destination=TEXT, data=TEXT, change_mode=TEXT,
                                 change_signal=TEXT, splay=DUR, perms=TEXT, left_delimiter=TEXT,
                                 right_delimiter=TEXT, env=st.booleans(), error_on_missing_key=st.booleans()),
                       max_size=1).map(tuple),
    services=st.lists(service, max_size=1).map(tuple),
    vault=st.none() | st.builds(m.Vault, policies=STRS, role=TEXT, namespace=TEXT, change_mode=TEXT,
                                change_signal=TEXT, env=st.booleans()),
    identities=st.lists(st.builds(m.Identity, name=st.sampled_from(["default", "vault", "aws"]), audience=STRS,
                                  env=st.booleans(), file=st.booleans(), ttl=DUR), max_size=3,
                        unique_by=lambda i: i.name).map(_default_first),
    volume_mounts=st.lists(st.builds(m.VolumeMount, volume=TEXT, destination=TEXT, read_only=st.booleans()),
                           max_size=1).map(tuple),
)
port = st.builds(m.Port, label=NAME, static=st.integers(0, 65535), to=INT, host_network=TEXT)
ports = st.lists(port, max_size=3).map(lambda ps: tuple([p for p in ps if p.static] + [p for p in ps if not p.static]))
group = st.builds(
    m.TaskGroup, name=NAME, count=INT, tasks=st.lists(task, max_size=2).map(tuple),
    constraints=st.lists(constraint, max_size=2).map(tuple), restart=restart,
    reschedule=st.builds(m.ReschedulePolicy, attempts=INT, interval=DUR, delay=DUR, delay_function=TEXT,
                         max_delay=DUR, unlimited=st.booleans()),
    ephemeral_disk=st.builds(m.EphemeralDisk, size=INT, sticky=st.booleans(), migrate=st.booleans()),
    meta=SMAP, networks=st.lists(st.builds(m.Network, mode=TEXT, ports=ports,
                                           hostname=TEXT), max_size=1).map(tuple),
    shutdown_delay=DUR, services=st.lists(service, max_size=1).map(tuple),
    volumes=st.lists(st.builds(m.Volume, name=NAME, type=TEXT, source=TEXT, read_only=st.booleans()),
                     max_size=2, unique_by=lambda v: v.name).map(tuple),
    update=st.none() | update,
)
job = st.builds(
    m.Job, id=NAME, name=TEXT, type=TEXT, namespace=TEXT, region=TEXT, datacenters=STRS, node_pool=TEXT,
    priority=INT, all_at_once=st.booleans(), meta=SMAP, constraints=st.lists(constraint, max_size=2).map(tuple),
    groups=st.lists(group, max_size=2).map(tuple), update=st.none() | update,
    periodic=st.none() | st.builds(m.Periodic, crons=st.lists(NAME, max_size=2, unique=True).map(tuple),
                                   prohibit_overlap=st.booleans(), time_zone=TEXT, enabled=st.booleans()),
    parameterized=st.none() | st.builds(m.Parameterized, payload=TEXT, meta_required=STRS, meta_optional=STRS),
)


@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(job)
def test_every_field_survives_api_json(j: m.Job) -> None:
    api: Any = json.loads(json.dumps(to_api_json(j)))
    d = Diagnostics()
    again = decode_job(JsonReader(api["Job"], "job", d), "")
    assert not d.errors, d.errors
    if j.update is not None:
        # A group without its own update block inherits the job's (Nomad's merge), so compare after it.
        j = m.Job(**{**j.__dict__, "groups": tuple(
            g if g.update is not None else m.TaskGroup(**{**g.__dict__, "update": j.update}) for g in j.groups)})
    assert again == j
