"""The env builder and config engine fed from a real job file parsed by rawexec.jobspec."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rawexec.errors import InvalidConfigError
from rawexec.jobspec import parse_file
from rawexec.taskenv import NodeInfo, PortInfo, TaskEnvBuilder

JOB = """
job "web" {
  type = "service"
  meta { owner = "me" }
  group "api" {
    meta { tier = "front" }
    network { port "http" {} }
    task "server" {
      driver = "raw_exec"
      meta { owner = "task" }
      config {
        command = "${NOMAD_TASK_DIR}/bin/app"
        args    = ["-port", "${NOMAD_PORT_http}", "${attr.kernel.name}", "${env["HOME"]}", "${NOMAD_META_tier}"]
      }
      env { GREETING = "hi ${NOMAD_SHORT_ALLOC_ID} from ${node.unique.name}" }
      resources { cpu = 200  memory = 64 }
    }
  }
}
"""


def test_job_file_to_env_and_config(tmp_path: Path) -> None:
    path = tmp_path / "web.nomad.hcl"
    path.write_text(JOB)
    job = parse_file(str(path))
    group = job.groups[0]
    task = group.tasks[0]
    env = (TaskEnvBuilder(NodeInfo(id="nid", name="n1", attributes={"kernel.name": "linux"}))
           .set_alloc(alloc_id="abcdef01-2345-4678-9abc-def012345678", job_id=job.id, group=group.name)
           .set_task(task.name, env=task.env, meta=[job.meta, group.meta, task.meta], resources=task.resources)
           .set_alloc_dir(tmp_path / "alloc")
           .set_ports([PortInfo("http", 23001)])
           .set_host_env({"HOME": "/root", "PATH": "/bin"})
           .build())
    assert env.env["GREETING"] == "hi abcdef01 from n1"
    assert env.env["NOMAD_META_owner"] == "task" and env.env["NOMAD_META_TIER"] == "front"
    assert env.env["NOMAD_CPU_LIMIT"] == "200" and env.env["NOMAD_MEMORY_LIMIT"] == "64"
    cfg = env.parse_config(task.config)
    assert cfg == {"command": f"{tmp_path}/alloc/server/local/bin/app",
                   "args": ["-port", "23001", "linux", "/root", "front"]}


def test_undefined_variable_in_job_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.nomad.hcl"
    path.write_text(JOB.replace("${NOMAD_PORT_http}", "${NOMAD_PORT_nope}"))
    job = parse_file(str(path))
    env = TaskEnvBuilder().set_task("server").set_alloc_dir(tmp_path).build()
    with pytest.raises(InvalidConfigError, match=re.escape(
            'failed to parse config: args[1]: Unknown variable; There is no variable named "NOMAD_PORT_nope"')):
        env.parse_config(job.groups[0].tasks[0].config)
