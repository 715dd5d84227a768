"""TaskEnvBuilder: NOMAD_* variables, precedence, deny lists, simple interpolation."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rawexec.artifacts.spec import ArtifactSpec
from rawexec.errors import InvalidConfigError
from rawexec.taskenv import (
    DEFAULT_ENV_DENYLIST,
    NodeInfo,
    PortInfo,
    TaskEnvBuilder,
    filter_denied_envvars,
    go_glob,
    replace_env,
)
from rawexec.types import Resources

NODE = NodeInfo(id="node-uuid", name="n1", datacenter="dc2", region="eu", node_class="big",
                attributes={"kernel.name": "linux", "unique.hostname": "h1"}, meta={"rack": "r7"},
                cgroup_parent="nomad.slice")
ALLOC = "7d9b2a1c-0000-4000-8000-123456789abc"


def builder(tmp_path: Path) -> TaskEnvBuilder:
    return (TaskEnvBuilder(NODE)
            .set_alloc(alloc_id=ALLOC, job_id="web", group="api", index=2, namespace="prod")
            .set_task("server", env={"GREETING": "hi ${NOMAD_ALLOC_ID} on ${node.unique.name}",
                                     "KEEP": "${NOT_SET}", "HOME": "/override"},
                      meta=[{"owner": "job", "team": "a"}, {"team": "b"}, {"Role-x": "db"}],
                      resources=Resources(cpu=500, memory=256, memory_max=512, cpuset=(0, 1, 2, 5)))
            .set_alloc_dir(tmp_path / "alloc" / ALLOC)
            .set_ports([PortInfo("http", 23456), PortInfo("db", 24000, to=5432, host_ip="10.0.0.5"),
                        PortInfo("v6", 25000, host_ip="::1")])
            .set_host_env({"PATH": "/usr/bin", "HOME": "/root", "VAULT_TOKEN": "s3cret",
                           "NOMAD_TASK_NAME": "from-host", "AWS_SECRET_ACCESS_KEY": "x"}))


def test_nomad_variables(tmp_path: Path) -> None:
    env = builder(tmp_path).build().env
    root = str(tmp_path / "alloc" / ALLOC)
    expect = {
        "NOMAD_ALLOC_DIR": f"{root}/alloc", "NOMAD_TASK_DIR": f"{root}/server/local",
        "NOMAD_SECRETS_DIR": f"{root}/server/secrets", "NOMAD_MEMORY_LIMIT": "256",
        "NOMAD_MEMORY_MAX_LIMIT": "512", "NOMAD_CPU_LIMIT": "500", "NOMAD_CPU_CORES": "0-2,5",
        "NOMAD_ALLOC_ID": ALLOC, "NOMAD_SHORT_ALLOC_ID": "7d9b2a1c", "NOMAD_ALLOC_NAME": "web.api[2]",
        "NOMAD_ALLOC_INDEX": "2", "NOMAD_TASK_NAME": "server", "NOMAD_GROUP_NAME": "api",
        "NOMAD_JOB_ID": "web", "NOMAD_JOB_NAME": "web", "NOMAD_DC": "dc2", "NOMAD_REGION": "eu",
        "NOMAD_NAMESPACE": "prod", "NOMAD_PARENT_CGROUP": "nomad.slice",
        "NOMAD_IP_http": "127.0.0.1", "NOMAD_PORT_http": "23456", "NOMAD_HOST_PORT_http": "23456",
        "NOMAD_ADDR_http": "127.0.0.1:23456", "NOMAD_HOST_IP_http": "127.0.0.1",
        "NOMAD_HOST_ADDR_http": "127.0.0.1:23456", "NOMAD_ALLOC_PORT_http": "23456",
        "NOMAD_PORT_db": "5432", "NOMAD_HOST_PORT_db": "24000", "NOMAD_ADDR_db": "10.0.0.5:24000",
        "NOMAD_IP_db": "10.0.0.5", "NOMAD_ADDR_v6": "[::1]:25000",
        "NOMAD_META_owner": "job", "NOMAD_META_OWNER": "job", "NOMAD_META_team": "b",
        "NOMAD_META_TEAM": "b", "NOMAD_META_Role_x": "db", "NOMAD_META_ROLE_X": "db",
    }
    for k, v in expect.items():
        assert env.get(k) == v, k
    assert "NOMAD_JOB_PARENT_ID" not in env  # empty values are not set


def test_precedence_and_denylist(tmp_path: Path) -> None:
    env = builder(tmp_path).build().env
    assert env["NOMAD_TASK_NAME"] == "server"  # host env does not override Nomad vars
    assert env["PATH"] == "/usr/bin"  # host env passed through
    assert env["HOME"] == "/override"  # task env overrides host env
    assert "VAULT_TOKEN" not in env and "AWS_SECRET_ACCESS_KEY" not in env  # default denylist
    assert env["GREETING"] == f"hi {ALLOC} on n1"  # interpolated from env then node attrs
    assert env["KEEP"] == "${NOT_SET}"  # unknown left verbatim
    custom = builder(tmp_path).set_host_env({"VAULT_TOKEN": "v", "SECRET": "s"}, denylist=["SECRET"]).build()
    assert custom.env["VAULT_TOKEN"] == "v" and "SECRET" not in custom.env
    hooked = builder(tmp_path).add_hook_env({"HOME": "/hook"}).build()
    assert hooked.env["HOME"] == "/hook"
    assert set(DEFAULT_ENV_DENYLIST) >= {"CONSUL_TOKEN", "CONSUL_HTTP_TOKEN", "VAULT_TOKEN", "NOMAD_LICENSE"}


def test_task_env_cannot_forge_nomad_vars_of_others_but_may_set_its_own(tmp_path: Path) -> None:
    b = builder(tmp_path)
    b.set_task("server", env={"NOMAD_ALLOC_ID": "forged"})
    assert b.build().env["NOMAD_ALLOC_ID"] == "forged"  # Nomad: task env {} wins over Nomad vars


def test_key_cleaning() -> None:
    env = (TaskEnvBuilder().set_alloc(alloc_id="a" * 36, job_id="j", group="g")
           .set_task("t", meta={"my key/é": "v", "ok.dot": "w"})
           .set_ports([PortInfo("we b", 20001)]).build().env)
    assert env["NOMAD_META_my_key___"] == "v"  # é is two bytes: two underscores
    assert env["NOMAD_META_ok.dot"] == "w"
    assert env["NOMAD_PORT_we_b"] == "20001" and env["NOMAD_ADDR_we_b"] == "127.0.0.1:20001"


def test_other_task_ports() -> None:
    env = (TaskEnvBuilder().set_alloc(alloc_id="x" * 36, job_id="j", group="g").set_task("t")
           .set_task_ports("sidecar", [PortInfo("admin", 21000, to=9000)]).build().env)
    assert env["NOMAD_ADDR_sidecar_admin"] == "127.0.0.1:21000"
    assert env["NOMAD_PORT_sidecar_admin"] == "9000" and env["NOMAD_IP_sidecar_admin"] == "127.0.0.1"


def test_host_env_default_is_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAWEXEC_TEST_MARK", "here")
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "secret")
    env = TaskEnvBuilder().set_task("t").set_host_env().build().env
    assert env["RAWEXEC_TEST_MARK"] == "here" and "CONSUL_HTTP_TOKEN" not in env


def test_env_really_reaches_a_process(tmp_path: Path) -> None:
    tenv = builder(tmp_path).build()
    out = subprocess.run([sys.executable, "-c", "import os,json; print(json.dumps(dict(os.environ)))"],
                         env=tenv.env, capture_output=True, text=True, check=True).stdout
    seen = json.loads(out)
    assert seen["NOMAD_ALLOC_ID"] == ALLOC and seen["NOMAD_META_TEAM"] == "b"
    assert tenv.env_list() == sorted(tenv.env_list()) and f"NOMAD_ALLOC_ID={ALLOC}" in tenv.env_list()


def test_simple_interpolation(tmp_path: Path) -> None:
    tenv = builder(tmp_path).build()
    assert tenv.replace("${NOMAD_ALLOC_ID}/${attr.kernel.name}/${meta.rack}/${node.region}") == \
        f"{ALLOC}/linux/r7/eu"
    assert tenv.replace("${nope} ${NOMAD_TASK_NAME} ${not valid} $NOMAD_TASK_NAME") == \
        "${nope} server ${not valid} $NOMAD_TASK_NAME"
    assert tenv.replace_all(["${node.class}", "${node.unique.id}"]) == ["big", "node-uuid"]
    assert replace_env("${a}${b}", {"a": "1"}, {"b": "2"}) == "12"
    assert replace_env("${a}", {"a": "env"}, {"a": "attr"}) == "env"
    art = ArtifactSpec(source="https://example.com/${NOMAD_JOB_ID}.tgz", destination="local/${NOMAD_TASK_NAME}",
                       options={"checksum": "sha256:${meta.rack}"}, headers={"X-Alloc": "${NOMAD_SHORT_ALLOC_ID}"})
    got = tenv.replace_artifact(art)
    assert got.source == "https://example.com/web.tgz" and got.destination == "local/server"
    assert dict(got.options) == {"checksum": "sha256:r7"} and dict(got.headers) == {"X-Alloc": "7d9b2a1c"}


def test_parse_config(tmp_path: Path) -> None:
    tenv = builder(tmp_path).build()
    cfg = tenv.parse_config({"command": "${NOMAD_TASK_DIR}/bin/app",
                             "args": ["-port", "${NOMAD_PORT_http}", "${attr.kernel.name}", "${env[\"HOME\"]}"]})
    assert cfg == {"command": f"{tmp_path}/alloc/{ALLOC}/server/local/bin/app",
                   "args": ["-port", "23456", "linux", "/override"]}
    with pytest.raises(InvalidConfigError, match=re.escape(
            'failed to parse config: args[0]: Unknown variable; There is no variable named "UNDEFINED_VAR".')):
        tenv.parse_config({"command": "x", "args": ["${UNDEFINED_VAR}"]})


def test_go_glob_and_denied_envvars() -> None:
    assert go_glob("*_TOKEN", "VAULT_TOKEN") and not go_glob("*_TOKEN", "TOKEN_X")
    assert go_glob("AWS_*", "AWS_KEY") and not go_glob("AWS_*", "XAWS_KEY")
    assert go_glob("*SECRET*", "MY_SECRET_KEY") and go_glob("A*B*C", "AxxBxxC") and not go_glob("A*B*C", "AxxC")
    assert go_glob("*", "anything") and go_glob("EXACT", "EXACT") and not go_glob("EXACT", "EXACTX")
    assert filter_denied_envvars({"AWS_SECRET_KEY": "1", "VAULT_TOKEN": "2", "PATH": "3"},
                                 ["AWS_SECRET_KEY", "*_TOKEN"]) == {"PATH": "3"}


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="alloc index must not be negative"):
        TaskEnvBuilder().set_alloc(alloc_id="a", job_id="j", group="g", index=-1)
    with pytest.raises(ValueError, match="set_task\\(\\) must be called before set_alloc_dir"):
        TaskEnvBuilder().set_alloc_dir("/x")
    assert "NOMAD_TASK_DIR" not in TaskEnvBuilder().set_task("t").build().env
    assert os.sep == "/"


def test_alloc_name_uses_job_id_and_job_name_defaults_to_id() -> None:
    env = TaskEnvBuilder().set_alloc(alloc_id="a" * 36, job_id="web-1", job_name="Web", group="g",
                                     index=3, parent_id="web").set_task("t").build().env
    assert env["NOMAD_ALLOC_NAME"] == "web-1.g[3]" and env["NOMAD_JOB_NAME"] == "Web"
    assert env["NOMAD_JOB_PARENT_ID"] == "web"
    env = TaskEnvBuilder().set_alloc(alloc_id="a", job_id="j", group="g", alloc_name="custom").set_task("t").build().env
    assert env["NOMAD_ALLOC_NAME"] == "custom" and env["NOMAD_JOB_NAME"] == "j" and env["NOMAD_SHORT_ALLOC_ID"] == "a"
