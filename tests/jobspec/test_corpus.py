"""The corpus of job files: every block parses into the model with the right values; round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rawexec.jobspec import (
    ArtifactSpec,
    Constraint,
    Job,
    Lifecycle,
    LogConfig,
    Port,
    Resources,
    RestartPolicy,
    default_restart,
    load_file,
    parse_file,
    parse_json,
    to_api_json,
)
from rawexec.jobspec.model import thaw
from tests.jobspec.conftest import CORPUS

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
JOB_FILES = sorted(p.name for p in CORPUS.glob("*.nomad.hcl"))
VARS = {"region": "eu"}


def _parse(name: str) -> Job:
    return parse_file(CORPUS / name, variables=VARS if name.startswith("variables") else None, env={})


def test_seed_sleep_example() -> None:
    job = _parse("sleep.nomad.hcl")
    assert (job.id, job.name, job.type, job.datacenters) == ("example", "example", "batch", ("dc1",))
    task = job.group("example").task("sleep")
    assert task.driver == "raw_exec"
    assert thaw(task.config) == {"command": "/bin/sleep", "args": ["1"]}
    # Nomad's defaults (facts §6)
    assert task.kill_timeout == 5.0 and task.kill_signal == "" and task.shutdown_delay == 0.0
    assert task.restart == RestartPolicy(attempts=3, interval=86400.0, delay=15.0, mode="fail")
    assert task.logs == LogConfig(max_files=10, max_file_size=10, disabled=False)
    assert task.resources == Resources(cpu=100, memory=300)
    assert job.group("example").count == 1
    assert (job.namespace, job.region, job.priority, job.node_pool) == ("default", "global", 50, "default")


def test_seed_artifact_example() -> None:
    job = _parse("artifact.nomad.hcl")
    assert job.type == "service"
    task = job.group("example").task("hello")
    assert task.config["command"] == "name-of-my-binary"
    (art,) = task.artifacts
    assert art.source == "https://internal.file.server/name-of-my-binary"
    assert art.options["checksum"].startswith("sha256:")
    assert (art.destination, art.mode) == ("local/", "any")
    assert task.restart == default_restart("service")


def test_full_job_every_block() -> None:
    job = _parse("full.nomad.hcl")
    assert (job.id, job.name, job.namespace, job.region, job.node_pool) == ("web", "web-frontend", "apps", "eu",
                                                                          "edge")
    assert (job.datacenters, job.priority, job.all_at_once) == (("dc1", "dc2"), 70, True)
    assert dict(job.meta) == {"owner": "team-web", "tier": "front"}
    assert job.constraints == (Constraint("${attr.kernel.name}", "=", "linux"), Constraint("", "distinct_hosts", ""))
    assert job.update is not None and (job.update.max_parallel, job.update.min_healthy_time, job.update.canary) == (
        2, 30.0, 1)
    g = job.group("api")
    assert (g.count, g.shutdown_delay, dict(g.meta)) == (3, 5.0, {"group_key": "g"})
    assert g.constraints == (Constraint("${meta.rack}", "regexp", "r[0-9]+"),)
    assert g.restart == RestartPolicy(attempts=4, interval=600.0, delay=20.0, mode="delay")
    assert (g.reschedule.attempts, g.reschedule.delay_function, g.reschedule.max_delay, g.reschedule.unlimited) == (
        5, "fibonacci", 120.0, False)
    assert (g.ephemeral_disk.size, g.ephemeral_disk.sticky, g.ephemeral_disk.migrate) == (500, True, True)
    (net,) = g.networks
    assert net.mode == "host"
    assert net.ports == (Port("http", static=8080, to=80), Port("metrics"))
    (svc,) = g.services
    assert (svc.name, svc.port, svc.tags, svc.provider) == ("api", "http", ("v1", "public"), "nomad")
    assert (svc.checks[0].type, svc.checks[0].interval, svc.checks[0].timeout) == ("http", 10.0, 2.0)
    assert g.volumes[0].name == "data" and g.volumes[0].read_only
    assert g.update == job.update  # the job's update block applies to groups without their own

    init = g.task("init")
    assert init.lifecycle == Lifecycle("prestart", False)
    assert init.config["args"][1] == "echo init > ${NOMAD_ALLOC_DIR}/data/ready"
    assert init.restart == g.restart  # inherited from the group

    srv = g.task("srv")
    assert (srv.user, srv.leader, srv.kill_timeout, srv.kill_signal, srv.shutdown_delay) == (
        "nobody", True, 90.0, "SIGTERM", 3.0)
    assert thaw(srv.config) == {"command": "/usr/local/bin/server",
                                "args": ["--port", "${NOMAD_PORT_http}", "--host", "${attr.unique.hostname}"],
                                "work_dir": "/tmp"}
    assert dict(srv.env) == {"LOG_LEVEL": "debug", "DC": "${node.datacenter}", "HOME_DIR": '${env["HOME"]}'}
    assert dict(srv.meta) == {"role": "server"}
    a1, a2 = srv.artifacts
    assert a1 == ArtifactSpec(source="https://example.com/server.tar.gz", destination="local/bin", mode="dir",
                              options={"checksum": "sha256:" + SHA,
                                       "archive": "tar.gz"},
                              headers={"Authorization": "Bearer abc"}, insecure=False, chown=True)
    assert (a2.destination, a2.mode) == ("../alloc/data/config.json", "file")
    assert srv.logs == LogConfig(max_files=5, max_file_size=20, disabled=False)
    assert srv.resources == Resources(cpu=500, memory=256, memory_max=512)
    # task restart overrides only what it sets; the rest comes from the group
    assert srv.restart == RestartPolicy(attempts=1, interval=600.0, delay=20.0, mode="delay")
    assert (srv.templates[0].destination, srv.templates[0].change_mode, srv.templates[0].change_signal) == (
        "local/app.conf", "signal", "SIGHUP")
    assert srv.services[0].name == "srv-metrics"
    assert srv.vault is not None and srv.vault.policies == ("read-secrets",)
    assert srv.identities[0].env and srv.identities[0].file
    assert srv.volume_mounts[0].destination == "/srv/data"


def test_full_job_warns_about_what_rawexec_ignores() -> None:
    parsed = load_file(CORPUS / "full.nomad.hcl", env={})
    text = "\n".join(parsed.warnings)
    for what in ("template", "vault", "volume_mount", "identity", 'service "api"', 'volume "data"', "constraint"):
        assert what in text, what
    # warnings carry file:line:col
    assert all(w.startswith(str(CORPUS / "full.nomad.hcl") + ":") for w in parsed.warnings)


def test_batch_periodic_and_parameterized_and_sysbatch() -> None:
    p = _parse("batch_periodic.nomad.hcl")
    assert p.periodic is not None
    assert (p.periodic.crons, p.periodic.prohibit_overlap, p.periodic.time_zone) == (("0 3 * * *",), True,
                                                                                     "Europe/Berlin")
    d = _parse("parameterized.nomad.hcl")
    assert d.parameterized is not None
    assert (d.parameterized.payload, d.parameterized.meta_required) == ("required", ("input",))
    s = _parse("sysbatch.nomad.hcl")
    assert s.type == "sysbatch"
    assert s.groups[0].restart == default_restart("sysbatch")


def test_api_json_file() -> None:
    job = parse_file(CORPUS / "api.json")
    assert (job.id, job.type) == ("from-api", "batch")
    g = job.group("g")
    assert g.count == 2 and g.networks[0].ports == (Port("http", static=0, to=8080),)
    t = g.task("t")
    assert thaw(t.config) == {"command": "/bin/echo", "args": ["hi", "${NOMAD_ALLOC_ID}"]}
    assert t.kill_timeout == 7.0
    assert t.resources == Resources(cpu=250, memory=64)
    assert t.logs == LogConfig(max_files=2, max_file_size=3)
    assert t.artifacts[0].destination == "local/x"
    assert t.restart == default_restart("batch")


@pytest.mark.parametrize("name", JOB_FILES)
def test_round_trip_hcl_model_json_model(name: str) -> None:
    job = _parse(name)
    api = to_api_json(job)
    text = json.dumps(api)  # must be plain JSON
    again = parse_json(text)
    assert again == job
    assert to_api_json(again) == api


@pytest.mark.parametrize("name", JOB_FILES)
def test_api_json_uses_nomads_field_names(name: str) -> None:
    api = to_api_json(_parse(name))
    assert set(api) == {"Job"}
    job = api["Job"]
    assert {"ID", "Name", "Type", "TaskGroups", "Datacenters"} <= set(job)
    for g in job["TaskGroups"]:
        assert {"Name", "Count", "Tasks", "RestartPolicy", "EphemeralDisk"} <= set(g)
        for t in g["Tasks"]:
            assert {"Name", "Driver", "Config", "Resources", "LogConfig", "KillTimeout"} <= set(t)
            assert isinstance(t["KillTimeout"], int)  # nanoseconds, as the API wants


def test_json_durations_are_nanoseconds() -> None:
    api = to_api_json(_parse("full.nomad.hcl"))["Job"]
    srv = api["TaskGroups"][0]["Tasks"][1]
    assert srv["KillTimeout"] == 90_000_000_000
    assert srv["RestartPolicy"] == {"Attempts": 1, "Interval": 600_000_000_000, "Delay": 20_000_000_000,
                                    "Mode": "delay", "RenderTemplates": False}
    net = api["TaskGroups"][0]["Networks"][0]
    assert net["ReservedPorts"] == [{"Label": "http", "Value": 8080, "To": 80, "HostNetwork": "default"}]
    assert net["DynamicPorts"] == [{"Label": "metrics", "Value": 0, "To": 0, "HostNetwork": "default"}]
    art = srv["Artifacts"][0]
    assert art["GetterSource"] == "https://example.com/server.tar.gz" and art["RelativeDest"] == "local/bin"


def test_model_is_immutable() -> None:
    job = _parse("full.nomad.hcl")
    with pytest.raises(AttributeError):
        job.id = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        job.meta["x"] = "y"  # type: ignore[index]
    with pytest.raises(TypeError):
        job.groups[0].tasks[1].config["command"] = "x"  # type: ignore[index]


def test_file_function_is_relative_to_the_job_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "script.sh").write_text("echo included\n")
    jobfile = tmp_path / "job.hcl"
    jobfile.write_text('job "f" {\n group "g" {\n task "t" {\n driver = "raw_exec"\n config {\n'
                       ' command = "/bin/sh"\n args = ["-c", file("sub/script.sh")]\n }\n }\n }\n}\n')
    job = parse_file(jobfile, env={})
    assert job.groups[0].tasks[0].config["args"][1] == "echo included\n"
