"""The agent runtime in-process: batch end to end, restart policy, lifecycle, stop/purge, bad input."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from rawexec.agent.agent import Agent, reschedule_delay
from rawexec.errors import NotFoundError
from rawexec.jobspec import parse_hcl
from rawexec.jobspec.model import ReschedulePolicy
from tests.agent_runtime.conftest import MakeAgent, event_types, job_hcl, wait_terminal
from tests.helpers.util import pids_with_tag, wait_until


def task(name: str, script: str, extra: str = "") -> str:
    script = script.replace("\\", "\\\\").replace('"', '\\"')
    return f'''
    task "{name}" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "{script}"]
      }}
      {extra}
    }}'''


def group(name: str, *tasks: str, extra: str = "") -> str:
    return f'group "{name}" {{\n{extra}\n' + "\n".join(tasks) + "\n}"


def log_of(agent_alloc_dir: str, task: str, stream: str = "stdout") -> str:
    return Path(agent_alloc_dir, "alloc", "logs", f"{task}.{stream}.0").read_text()


def test_batch_job_end_to_end(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent()
    job = job_hcl(group("g", task("t", 'echo "id=$NOMAD_ALLOC_ID name=$NOMAD_ALLOC_NAME idx=$NOMAD_ALLOC_INDEX"; '
                                       'echo "port=$NOMAD_PORT_http dir=$NOMAD_TASK_DIR"; pwd; echo err >&2',
                                  'env { GREETING = "hi-${NOMAD_TASK_NAME}" }'),
                        extra='count = 2\nnetwork { port "http" {} }'), tag, job_id="e2e")
    res = agent.register_job(job)
    assert res["EvalID"] and res["JobModifyIndex"] > 0
    allocs = wait_terminal(agent, "e2e")
    assert len(allocs) == 2
    seen_idx = set()
    for a in allocs:
        assert a["ClientStatus"] == "complete", a["TaskStates"]
        assert event_types(a, "t") == ["Received", "Task Setup", "Started", "Terminated"]
        term = a["TaskStates"]["t"]["Events"][-1]
        assert term["ExitCode"] == 0 and term["DisplayMessage"] == "Exit Code: 0"
        d = agent.alloc_dir(a["ID"])
        assert d == os.path.join(agent.data_dir, "alloc", a["ID"])
        out = log_of(d, "t")
        assert f"id={a['ID']}" in out
        assert f"name=e2e.g[{a['Name'][-2]}]" in out
        seen_idx.add(a["Name"])
        port = a["AllocatedResources"]["Shared"]["Ports"][0]["Value"]
        assert f"port={port} dir={d}/t/local" in out
        assert out.splitlines()[2] == f"{d}/t"  # cwd is the task dir
        assert log_of(d, "t", "stderr") == "err\n"
        for sub in ("alloc/logs", "alloc/tmp", "alloc/data", "t/local", "t/secrets", "t/tmp"):
            assert os.path.isdir(os.path.join(d, sub)), sub
    assert seen_idx == {"e2e.g[0]", "e2e.g[1]"}
    jobs = agent.list_jobs()
    assert [j["ID"] for j in jobs] == ["e2e"]
    assert jobs[0]["Status"] == "dead"
    assert agent.job_summary("e2e")["Summary"]["g"]["Complete"] == 2
    short = allocs[0]["ID"][:8]
    assert agent.get_allocation(short)["ID"] == allocs[0]["ID"]
    with pytest.raises(NotFoundError) as ei:
        agent.get_allocation("ffffffff-0000")
    assert ei.value.grpc_code == "NOT_FOUND"
    assert pids_with_tag(tag) == []


def test_env_interpolation_in_config(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent()
    job = job_hcl(group("g", '''
    task "t" {
      driver = "raw_exec"
      env { WHO = "w-${NOMAD_JOB_ID}" }
      config {
        command = "/bin/echo"
        args    = ["${NOMAD_TASK_NAME}", "${attr.kernel.name}", "${env["WHO"]}", "${node.datacenter}"]
      }
    }'''), tag, job_id="interp")
    agent.register_job(job)
    (a,) = wait_terminal(agent, "interp")
    assert a["ClientStatus"] == "complete"
    assert log_of(agent.alloc_dir(a["ID"]), "t") == "t linux w-interp dc1\n"


def test_restart_policy_events(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent()
    job = job_hcl(group("g", task("t", "echo run >> $NOMAD_ALLOC_DIR/runs; exit 3"),
                        extra='restart {\n attempts = 2\n interval = "10s"\n delay = "50ms"\n mode = "fail"\n}'),
                  tag, job_id="rp")
    agent.register_job(job)
    (a,) = wait_terminal(agent, "rp")
    ts = a["TaskStates"]["t"]
    assert a["ClientStatus"] == "failed"
    assert ts["Failed"] is True and ts["Restarts"] == 2
    types = [e["Type"] for e in ts["Events"]]
    assert types[-1] == "Not Restarting"
    assert ts["Events"][-1]["DisplayMessage"] == 'Exceeded allowed attempts 2 in interval 10s and mode is "fail"'
    assert types.count("Restarting") == 2
    assert types[-3:] == ["Started", "Terminated", "Not Restarting"]
    assert all(e["ExitCode"] == 3 for e in ts["Events"] if e["Type"] == "Terminated")
    assert Path(agent.alloc_dir(a["ID"]), "alloc", "runs").read_text() == "run\n" * 3


def test_batch_success_is_not_restarted_but_service_is(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent()
    rp = 'restart {\n attempts = 1\n interval = "10s"\n delay = "50ms"\n mode = "fail"\n}'
    agent.register_job(job_hcl(group("g", task("t", "echo x >> $NOMAD_ALLOC_DIR/runs"), extra=rp), tag,
                               job_id="svc", job_type="service"))
    (a,) = wait_terminal(agent, "svc")
    # a service task that exits 0 is restarted, until the policy gives up
    assert Path(agent.alloc_dir(a["ID"]), "alloc", "runs").read_text() == "x\nx\n"
    assert a["TaskStates"]["t"]["Restarts"] == 1
    assert a["ClientStatus"] == "failed"


def test_lifecycle_hooks_order(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent()
    o = "$NOMAD_ALLOC_DIR/order"
    body = group(
        "g",
        task("main", f"sleep 0.3; echo main >> {o}"),
        task("pre", f"echo pre >> {o}", 'lifecycle { hook = "prestart" }'),
        task("side", f"echo side >> {o}; exec sleep 60", 'lifecycle {\n hook = "prestart"\n sidecar = true\n}'),
        task("post", f"echo poststart >> {o}", 'lifecycle { hook = "poststart" }'),
        task("stop", f"echo poststop >> {o}", 'lifecycle { hook = "poststop" }'),
    )
    agent.register_job(job_hcl(body, tag, job_id="lc"))
    (a,) = wait_terminal(agent, "lc")
    assert a["ClientStatus"] == "complete", {k: v["Events"][-1] for k, v in a["TaskStates"].items()}
    lines = Path(agent.alloc_dir(a["ID"]), "alloc", "order").read_text().split()
    assert set(lines[:2]) == {"pre", "side"}
    assert lines[2:] == ["poststart", "main", "poststop"]
    side = a["TaskStates"]["side"]
    assert side["State"] == "dead" and not side["Failed"]
    assert "Killing" in event_types(a, "side") and event_types(a, "side")[-1] == "Killed"
    assert pids_with_tag(tag) == []


def test_failed_task_kills_sibling_and_leader(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent()
    rp = 'restart {\n attempts = 0\n mode = "fail"\n}'
    agent.register_job(job_hcl(group("g", task("bad", "exit 9"), task("long", "exec sleep 60"), extra=rp),
                               tag, job_id="sib"))
    (a,) = wait_terminal(agent, "sib")
    assert a["ClientStatus"] == "failed"
    assert "Sibling Task Failed" in event_types(a, "long")
    assert a["TaskStates"]["long"]["Events"][-1]["Type"] == "Killed"
    agent.register_job(job_hcl(group("g", task("lead", "exit 0", "leader = true"), task("long", "exec sleep 60")),
                               tag, job_id="lead"))
    (b,) = wait_terminal(agent, "lead")
    assert b["ClientStatus"] == "complete"
    assert "Leader Task Dead" in event_types(b, "long")
    assert pids_with_tag(tag) == []


# A task that records when it gets SIGINT and, ``linger`` seconds later, when it exits.
_RECORDER = """
import os, signal, sys, time
name, linger = sys.argv[1], float(sys.argv[2])
out = os.path.join(os.environ["NOMAD_ALLOC_DIR"], name)
def on_int(signum, frame):
    with open(out, "a") as f:
        f.write(f"int {time.monotonic()}\\n")
    time.sleep(linger)
    with open(out, "a") as f:
        f.write(f"exit {time.monotonic()}\\n")
    os._exit(0)
signal.signal(signal.SIGINT, on_int)
open(out + ".ready", "w").close()
while True:
    time.sleep(1)
"""


def recorder(name: str, linger: float, extra: str = "") -> str:
    return f'''
    task "{name}" {{
      driver = "raw_exec"
      config {{
        command = "{sys.executable}"
        args    = ["-c", {json.dumps(_RECORDER)}, "{name}", "{linger}"]
      }}
      {extra}
    }}'''


def recorded(alloc_dir: str, name: str) -> dict[str, float]:
    lines = Path(alloc_dir, "alloc", name).read_text().split("\n")
    return {k: float(v) for k, v in (ln.split() for ln in lines if ln)}


@pytest.mark.parametrize("with_leader", [False, True], ids=["main", "leader"])
def test_sidecars_are_killed_after_the_other_tasks(make_agent: MakeAgent, tag: str, with_leader: bool) -> None:
    # Nomad's killTasks: the leader, then the other non-sidecar tasks, then (once those are dead)
    # the sidecars; poststop tasks after all of them.
    agent = make_agent()
    side = 'lifecycle {\n hook = "prestart"\n sidecar = true\n}'
    tasks = [recorder("main", 0.4), recorder("side", 0.0, side), recorder("pside", 0.0, side.replace("pre", "post")),
             task("stop", "echo done > $NOMAD_ALLOC_DIR/stop", 'lifecycle { hook = "poststop" }')]
    if with_leader:
        tasks.append(recorder("lead", 0.4, "leader = true"))
    agent.register_job(job_hcl(group("g", *tasks), tag, job_id="side", job_type="service"))
    wait_until(lambda: [a["ClientStatus"] for a in agent.list_allocations("side")] == ["running"], 30)
    aid = agent.list_allocations("side")[0]["ID"]
    ar = agent.allocation_runner(aid)
    names = ["main", "side", "pside"] + (["lead"] if with_leader else [])
    wait_until(lambda: all(Path(ar.alloc_dir, "alloc", f"{n}.ready").exists() for n in names), 30)
    agent.stop_allocation(aid)
    assert ar.wait(30)
    t = {n: recorded(ar.alloc_dir, n) for n in names}
    for s in ("side", "pside"):
        assert t[s]["int"] >= t["main"]["exit"], t  # not while main was still running
        assert "Killed" in event_types(ar.full(), s)
    if with_leader:
        assert t["main"]["int"] >= t["lead"]["exit"], t
    assert Path(ar.alloc_dir, "alloc", "stop").exists()
    assert ar.full()["ClientStatus"] == "complete"
    assert pids_with_tag(tag) == []


def test_a_failed_task_tells_every_task_at_once_then_kills_sidecars_last(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent()
    side = 'lifecycle {\n hook = "prestart"\n sidecar = true\n}'
    rp = 'restart {\n attempts = 0\n mode = "fail"\n}'
    fail = "until [ -e $NOMAD_ALLOC_DIR/main.ready ] && [ -e $NOMAD_ALLOC_DIR/side.ready ]; do sleep 0.02; done; exit 3"
    agent.register_job(job_hcl(group("g", recorder("main", 0.4), recorder("side", 0.0, side), task("bad", fail),
                                     extra=rp), tag, job_id="sf"))
    (a,) = wait_terminal(agent, "sf")
    assert a["ClientStatus"] == "failed"
    t = {n: recorded(agent.alloc_dir(a["ID"]), n) for n in ("main", "side")}
    assert t["side"]["int"] >= t["main"]["exit"], t
    for n in ("main", "side"):
        assert event_types(a, n)[-4:] == ["Sibling Task Failed", "Killing", "Terminated", "Killed"]
    side_events = {e["Type"]: e["Time"] for e in a["TaskStates"]["side"]["Events"]}
    main_events = {e["Type"]: e["Time"] for e in a["TaskStates"]["main"]["Events"]}
    # the reason reaches the sidecar when the failure is seen, not after main has been stopped
    assert side_events["Sibling Task Failed"] < main_events["Killed"]
    assert pids_with_tag(tag) == []


def test_stop_job_kill_signal_timeout_and_purge(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent(max_kill_timeout=1.0)
    # ignores SIGINT; kill_signal SIGTERM is trapped and logged; kill_timeout is capped at 1s
    script = "trap 'echo got-term' TERM; trap '' INT; while true; do sleep 0.05; done"
    agent.register_job(job_hcl(group("g", task("t", script, 'kill_signal = "SIGTERM"\nkill_timeout = "20s"'),
                                     extra="count = 2"), tag, job_id="stopme", job_type="service"))
    wait_until(lambda: all(a["ClientStatus"] == "running" for a in agent.list_allocations("stopme"))
               and len(agent.list_allocations("stopme")) == 2, 20)
    t0 = time.monotonic()
    agent.stop_job("stopme", purge=True)
    allocs = [agent.allocation_runner(a["ID"]) for a in agent.list_allocations("stopme")]
    for ar in allocs:
        assert ar.wait(15)
    took = time.monotonic() - t0
    assert took < 8, took  # capped at max_kill_timeout (1s), not the task's 20s
    for ar in allocs:
        a = ar.full()
        assert a["DesiredStatus"] == "stop"
        evs = a["TaskStates"]["t"]["Events"]
        kill = next(e for e in evs if e["Type"] == "Killing")
        assert kill["KillTimeout"] == 1_000_000_000
        assert [e["Type"] for e in evs][-1] == "Killed"
        assert "got-term" in log_of(ar.alloc_dir, "t")
    agent.wait_purged(10)
    assert agent.get_job("stopme") is None
    assert agent.list_allocations("stopme") == []
    assert pids_with_tag(tag) == []


def test_reregister_changed_job_replaces_allocs(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent()
    agent.register_job(job_hcl(group("g", task("t", "exec sleep 60")), tag, job_id="rr", job_type="service"))
    wait_until(lambda: [a["ClientStatus"] for a in agent.list_allocations("rr")] == ["running"], 20)
    same = agent.register_job(job_hcl(group("g", task("t", "exec sleep 60")), tag, job_id="rr", job_type="service"))
    # unchanged: an evaluation that places nothing (Nomad's reply names one too)
    assert same["EvalID"] and same["JobModifyIndex"] == agent.get_job_api("rr")["JobModifyIndex"]  # type: ignore[index]
    assert len(agent.list_allocations("rr")) == 1
    assert all(a["EvalID"] != same["EvalID"] for a in agent.list_allocations("rr"))
    old = agent.list_allocations("rr")[0]["ID"]
    agent.register_job(job_hcl(group("g", task("t", "exec sleep 61")), tag, job_id="rr", job_type="service"))
    wait_until(lambda: len(agent.list_allocations("rr")) == 2, 10)
    ar_old = agent.allocation_runner(old)
    assert ar_old.wait(15)
    assert ar_old.desired_status == "stop"
    assert ar_old.desired_description == "alloc not needed due to job update"
    new = next(a for a in agent.list_allocations("rr") if a["ID"] != old)
    wait_until(lambda: agent.get_allocation(new["ID"])["ClientStatus"] == "running", 20)
    assert agent.get_job_api("rr")["Version"] == 1  # type: ignore[index]
    assert len(pids_with_tag(tag)) == 1


def test_update_in_place_vs_destructive(make_agent: MakeAgent, tag: str) -> None:
    """Nomad's tasksUpdated rules: kill_timeout and restart policy change in place (the task keeps
    running, now of the new version); job meta reaches the task's env, so changing it replaces."""
    agent = make_agent()

    def spec(kill: str, attempts: int, meta: str) -> str:
        return (f'meta {{ m = "{meta}" }}\n'
                + group("g", task("t", "exec sleep 60", f'kill_timeout = "{kill}"'),
                        extra=f"count = 2\nrestart {{\n attempts = {attempts}\n mode = \"fail\"\n}}"))

    agent.register_job(job_hcl(spec("2s", 1, "a"), tag, job_id="ip", job_type="service"))
    wait_until(lambda: [a["ClientStatus"] for a in agent.list_allocations("ip")] == ["running"] * 2, 20)
    before = {a["ID"] for a in agent.list_allocations("ip")}
    agent.register_job(job_hcl(spec("3s", 2, "a"), tag, job_id="ip", job_type="service"))
    assert {a["ID"] for a in agent.list_allocations("ip")} == before
    for aid in before:
        ar = agent.allocation_runner(aid)
        assert ar.desired_status == "run" and ar.runners["t"].task.kill_timeout == 3.0
        assert ar.runners["t"].tracker.policy.attempts == 2
        assert agent.get_allocation(aid)["JobVersion"] == 1
        assert agent.get_allocation(aid)["TaskStates"]["t"]["Restarts"] == 0
    wait_until(lambda: len(pids_with_tag(tag)) == 2, 10)  # /proc may miss one mid-exec for a moment
    agent.register_job(job_hcl(spec("3s", 2, "b"), tag, job_id="ip", job_type="service"))
    for aid in before:
        assert agent.allocation_runner(aid).desired_description == "alloc not needed due to job update"
    wait_until(lambda: len([a for a in agent.list_allocations("ip") if a["ClientStatus"] == "running"
                            and a["ID"] not in before]) == 2, 20)
    assert agent.get_job_api("ip")["Version"] == 2  # type: ignore[index]


def test_disabled_driver_fails_visibly(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent(enabled=False)
    assert agent.node["Drivers"]["raw_exec"]["Detected"] is False
    assert "driver.raw_exec" not in agent.node["Attributes"]
    res = agent.register_job(job_hcl(group("g", task("t", "echo hi")), tag, job_id="dis"))
    assert "raw_exec is disabled" in res["Warnings"]
    (a,) = wait_terminal(agent, "dis")
    assert a["ClientStatus"] == "failed"
    evs = a["TaskStates"]["t"]["Events"]
    drv = next(e for e in evs if e["Type"] == "Driver Failure")
    assert drv["DisplayMessage"] == "raw_exec is disabled"
    assert evs[-1]["Type"] == "Not Restarting"


def test_other_driver_fails(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent()
    job = job_hcl('group "g" {\n task "d" {\n driver = "docker"\n config { image = "x" }\n }\n}', tag, job_id="dk")
    res = agent.register_job(job)
    assert 'driver "docker" not available on this node' in res["Warnings"]
    (a,) = wait_terminal(agent, "dk")
    assert a["ClientStatus"] == "failed"
    msgs = [e["DisplayMessage"] for e in a["TaskStates"]["d"]["Events"]]
    assert 'driver "docker" not available on this node' in msgs


def test_bad_config_fails_validation(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent()
    job = job_hcl('group "g" {\n task "t" {\n driver = "raw_exec"\n config {\n command = "/bin/echo"\n'
                  ' args = ["${nosuch.thing}"]\n }\n }\n}', tag, job_id="badcfg")
    agent.register_job(job)
    (a,) = wait_terminal(agent, "badcfg")
    evs = a["TaskStates"]["t"]["Events"]
    fv = next(e for e in evs if e["Type"] == "Failed Validation")
    assert fv["DisplayMessage"].startswith("failed to parse config")
    assert a["ClientStatus"] == "failed"


def test_missing_command_is_a_driver_failure(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent()
    job = job_hcl('group "g" {\n restart {\n attempts = 2\n delay = "1s"\n mode = "fail"\n }\n'
                  ' task "t" {\n driver = "raw_exec"\n config {\n command = "definitely-not-a-binary"\n }\n }\n}',
                  tag, job_id="nobin")
    agent.register_job(job)
    (a,) = wait_terminal(agent, "nobin")
    evs = a["TaskStates"]["t"]["Events"]
    types = [e["Type"] for e in evs]
    assert "Failed Validation" not in types
    df = next(e for e in evs if e["Type"] == "Driver Failure")
    assert df["DisplayMessage"] == ('failed to launch command with executor: '
                                    'binary "definitely-not-a-binary" could not be found')
    assert df["DriverError"] == df["DisplayMessage"]
    # not recoverable: Nomad's restart tracker does not retry it
    assert types.count("Driver Failure") == 1 and types[-1] == "Not Restarting"
    assert evs[-1]["DisplayMessage"] == "Error was unrecoverable"
    assert a["ClientStatus"] == "failed"


def test_node_fingerprint_and_persistent_id(make_agent: MakeAgent, tmp_path: Path) -> None:
    a = make_agent()
    node = a.node
    attrs = node["Attributes"]
    assert attrs["kernel.name"] == "linux"
    assert int(attrs["cpu.numcores"]) == os.cpu_count()
    assert int(attrs["memory.totalbytes"]) > 0
    assert attrs["driver.raw_exec"] == "1" and attrs["unique.hostname"]
    assert node["Drivers"]["raw_exec"]["Healthy"] is True
    node_id = node["ID"]
    a.shutdown(stop_tasks=True)
    b = make_agent()
    assert b.node["ID"] == node_id


def test_signal_restart_and_stats(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent()
    script = "trap 'echo got-usr1' USR1; echo start; while true; do sleep 0.05; done"
    agent.register_job(job_hcl(group("g", task("t", script)), tag, job_id="sig", job_type="service"))
    wait_until(lambda: [a["ClientStatus"] for a in agent.list_allocations("sig")] == ["running"], 20)
    aid = agent.list_allocations("sig")[0]["ID"]
    d = agent.alloc_dir(aid)
    agent.signal_allocation(aid, "SIGUSR1", "t")
    wait_until(lambda: "got-usr1" in log_of(d, "t"), 10)
    stats = agent.allocation_stats(aid)
    assert stats["Tasks"]["t"]["ResourceUsage"]["MemoryStats"]["RSS"] > 0
    agent.restart_allocation(aid, "t")
    wait_until(lambda: log_of(d, "t").count("start") == 2, 20)
    # the new process may print before its start is recorded (the runner records it once
    # start_task returned): wait for the record too
    wait_until(lambda: event_types(agent.get_allocation(aid), "t").count("Started") == 2, 10)
    a = agent.get_allocation(aid)
    types = event_types(a, "t")
    assert "Restart Signaled" in types and types.count("Started") == 2
    assert a["TaskStates"]["t"]["Restarts"] == 1
    agent.stop_allocation(aid)
    assert agent.allocation_runner(aid).wait(15)
    # alloc stop reschedules (Nomad's "stop and reschedule"); stopping the job ends the replacement
    assert len(agent.list_allocations("sig")) == 2
    agent.stop_job("sig")
    for stub in agent.list_allocations("sig"):
        assert agent.allocation_runner(stub["ID"]).wait(15)
    assert pids_with_tag(tag) == []


def test_shutdown_delay_and_event_stream(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent()
    sub = agent.events()
    agent.register_job(job_hcl(group("g", task("t", "exec sleep 60", 'shutdown_delay = "300ms"')), tag,
                               job_id="sd", job_type="service"))
    wait_until(lambda: [a["ClientStatus"] for a in agent.list_allocations("sd")] == ["running"], 60)
    aid = agent.list_allocations("sd")[0]["ID"]
    t0 = time.monotonic()
    agent.stop_allocation(aid)
    assert agent.allocation_runner(aid).wait(30)
    assert time.monotonic() - t0 >= 0.3
    types = event_types(agent.get_allocation(aid), "t")
    assert types[-4:] == ["Waiting for shutdown delay", "Killing", "Terminated", "Killed"]
    seen = []
    while True:
        batch = sub.next_batch(timeout=0.5)
        if not batch:
            break
        seen.extend(batch)
    topics = {(e.topic, e.type) for e in seen}
    assert ("Job", "JobRegistered") in topics and ("Allocation", "AllocationUpdated") in topics
    idx = [e.index for e in seen]
    assert idx == sorted(idx)
    last = [e for e in seen if e.key == aid][-1].to_api()
    assert last["Topic"] == "Allocation" and last["Payload"]["Allocation"]["ClientStatus"] == "complete"
    # a new subscriber from an index gets what came at and after it
    later = agent.events(idx[-1]).next_batch(timeout=0.5)
    assert later and all(e.index >= idx[-1] for e in later)


def test_lost_shim_is_a_driver_event_and_restarts(make_agent: MakeAgent, tag: str) -> None:
    import signal as sig

    agent = make_agent()
    rp = 'restart {\n attempts = 1\n interval = "10m"\n delay = "50ms"\n mode = "fail"\n}'
    agent.register_job(job_hcl(group("g", task("t", "echo up >> $NOMAD_ALLOC_DIR/runs; exec sleep 60"), extra=rp),
                               tag, job_id="lost", job_type="service"))
    wait_until(lambda: [a["ClientStatus"] for a in agent.list_allocations("lost")] == ["running"], 60)
    aid = agent.list_allocations("lost")[0]["ID"]
    runner = agent.allocation_runner(aid).runners["t"]
    assert runner.handle is not None
    d = agent.alloc_dir(aid)
    runs = Path(d, "alloc", "runs")
    # "running" is recorded once the process exists; wait until the shell got to its first line
    wait_until(lambda: runs.exists() and runs.read_text() == "up\n", 30)
    os.kill(int(runner.handle.driver_state["shim_pid"]), sig.SIGKILL)
    wait_until(lambda: runs.read_text() == "up\nup\n", 30)
    wait_until(lambda: agent.get_allocation(aid)["TaskStates"]["t"]["State"] == "running", 30)
    a = agent.get_allocation(aid)
    evs = a["TaskStates"]["t"]["Events"]
    types = [e["Type"] for e in evs]
    assert "Driver" in types, types
    term = next(e for e in evs if e["Type"] == "Terminated")
    assert term["ExitCode"] == -1 and "shim" in term["DisplayMessage"]
    assert types[-2:] == ["Restarting", "Started"]
    assert len(pids_with_tag(tag)) == 1  # the orphan of the lost shim was killed


def test_static_port_collision_fails_the_alloc(make_agent: MakeAgent, tag: str) -> None:
    import socket

    agent = make_agent()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        agent.register_job(job_hcl(group("g", task("t", "echo hi"),
                                         extra=f'network {{\n port "db" {{ static = {port} }}\n}}'), tag, job_id="pc"))
        (a,) = wait_terminal(agent, "pc")
    assert a["ClientStatus"] == "failed"
    assert "port collision" in a["ClientDescription"] and str(port) in a["ClientDescription"]
    assert a["TaskStates"]["t"]["Events"][-1]["Type"] == "Setup Failure"


def test_prepare_boots_the_driver_only_then_start_reuses_it(tmp_path: Path, state_dir: str, tag: str) -> None:
    """``Agent.prepare`` (rawexec run, while it parses): the driver's spawner boots, the data dir is
    not touched; ``start`` keeps that driver; ``shutdown`` of an agent never started releases it."""
    from rawexec.agent.agent import Agent
    from rawexec.agent.agentconfig import AgentConfig
    from rawexec.driver import DriverConfig

    data = tmp_path / "data"
    k, _, v = tag.partition("=")
    os.environ[k] = v  # the spawner inherits the tag: a leak is found by it
    try:
        a = Agent(AgentConfig(data_dir=str(data)), dev=True, driver_config=DriverConfig(no_cgroups=True,
                                                                                          state_dir=state_dir))
        a.prepare()
        driver = a.driver
        a.prepare()
        assert a.driver is driver and not data.exists()
        wait_until(lambda: bool(pids_with_tag(tag)), 10, 0.02, "the spawner to boot")
        a.shutdown(stop_tasks=True)  # never started: releases the driver (its spawner exits)
        assert not data.exists()
        wait_until(lambda: pids_with_tag(tag) == [], 10, 0.02, "the spawner to exit")

        b = Agent(AgentConfig(data_dir=str(data)), dev=True, driver_config=DriverConfig(no_cgroups=True,
                                                                                          state_dir=state_dir))
        b.prepare()
        driver = b.driver
        b.start()
        assert b.driver is driver and (data / "state.db").exists()
        b.shutdown(stop_tasks=True)
        wait_until(lambda: pids_with_tag(tag) == [], 10, 0.02, "the spawner to exit")
    finally:
        os.environ.pop(k, None)


def test_alloc_root_created_and_marked_at_start(make_agent: MakeAgent, tmp_path: Path) -> None:
    from rawexec.agent import fshint

    a = make_agent()
    root = Path(a.data_dir) / "alloc"
    assert root.is_dir()
    probe = tmp_path / "probe"
    probe.mkdir()
    if fshint.mark_top_dir(str(probe)):  # the file system has the flag: the agent set it too
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            import array
            import fcntl

            flags = array.array("i", [0])
            fcntl.ioctl(fd, fshint._FS_IOC_GETFLAGS, flags, True)
        finally:
            os.close(fd)
        assert flags[0] & fshint.FS_TOPDIR_FL


def test_committed_stub_and_stored_body_match_the_model(make_agent: MakeAgent, tag: str) -> None:
    """The persister encodes an allocation's fields once for the list stub it serves and the body
    it stores: both must be exactly what stub()/body() describe."""
    import json

    a = make_agent()
    a.register_job(job_hcl('group "g" {\n count = 2\n network {\n  port "http" {}\n }\n'
                           ' task "t" {\n  driver = "raw_exec"\n  config {\n   command = "/bin/true"\n  }\n }\n}',
                           tag))
    wait_terminal(a, "j")
    a.persister.flush()
    for ar in a._allocs.values():
        assert json.loads(ar.committed_stub) == ar.stub()
        assert a.store.get_alloc(ar.alloc_id) == ar.body()
        assert ar.body()["RawExec"]["Ports"] and ar.body()["AllocatedResources"]["Shared"]["Ports"]


def test_finished_alloc_drops_its_events_json(make_agent: MakeAgent, tag: str) -> None:
    """A finished allocation keeps its events' JSON only in its committed stub (memory): the
    events encode again, identically, when asked."""
    import json

    a = make_agent()
    a.register_job(job_hcl('group "g" {\n task "t" {\n  driver = "raw_exec"\n  config {\n'
                           '   command = "/bin/true"\n  }\n }\n}', tag))
    wait_terminal(a, "j")
    a.persister.flush()
    (ar,) = a._allocs.values()
    wait_until(lambda: ar.terminal and json.loads(ar.committed_stub)["ClientStatus"] == "complete", 10, 0.02,
               "the final commit")
    events = ar.runners["t"].state.events
    assert events and all(e._api_json is None and e._record_json is None for e in events)
    assert json.loads(ar.committed_stub) == ar.stub()  # encoded anew, the same
    assert json.loads(ar.runners["t"].to_record_json())["state"] == ar.runners["t"].state.to_dict()


def test_a_count_no_node_could_hold_is_refused_before_anything_is_placed(make_agent: MakeAgent, tag: str) -> None:
    # One request with count = 100,000,000 used to build that many allocations in the agent's
    # memory (3 GB within seconds, the API unanswered). Refused now, naming the field and the bound.
    from rawexec.errors import InvalidConfigError

    agent = make_agent()
    total_mb = int(agent.node_obj.attributes["memory.totalbytes"]) // (1 << 20)
    t0 = time.monotonic()
    with pytest.raises(InvalidConfigError) as ei:
        agent.register_job(job_hcl(group("g", task("a", "sleep 100"), task("b", "sleep 100"),
                                         extra="count = 100000000"), tag, job_id="huge"))
    assert time.monotonic() - t0 < 1.0
    msg = str(ei.value)
    assert 'task group "g": count = 100000000 cannot run on this node' in msg
    assert f"need 2000000000 MB and the node has {total_mb} MB" in msg and f"at most {total_mb // 20} here" in msg
    assert agent.list_jobs() == [] and pids_with_tag(tag) == []
    # a count within the bound is placed as before
    agent.register_job(job_hcl(group("g", task("t", "true"), extra="count = 3"), tag, job_id="fits"))
    assert len(wait_terminal(agent, "fits")) == 3


def _status(agent: Agent) -> str:
    api = agent.get_job_api("rs")
    assert api is not None
    return str(api["Status"])


def _failing(policy: str) -> str:
    return group("g", task("t", "exit 3"), extra=f'restart {{\n attempts = 0\n mode = "fail"\n }}\n{policy}')


def test_failed_allocations_are_rescheduled_as_the_policy_says(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent()
    agent.register_job(job_hcl(_failing('reschedule {\n attempts = 1\n interval = "1h"\n delay = "5s"\n'
                                        ' delay_function = "constant"\n unlimited = false\n }'), tag, job_id="rs"))
    wait_until(lambda: any(a["FollowupEvalID"] for a in agent.list_allocations("rs")), 30, 0.05, "a reschedule")
    assert _status(agent) == "pending"  # a replacement is due

    def chain_done() -> bool:
        allocs = agent.list_allocations("rs")
        return len(allocs) == 2 and all(a["ClientStatus"] == "failed" for a in allocs) and _status(agent) == "dead"
    wait_until(chain_done, 30, 0.05, "two failed allocations of rs")
    time.sleep(1)  # the second is not rescheduled: the one attempt in the hour was used
    first, second = sorted((agent.get_allocation(a["ID"]) for a in agent.list_allocations("rs")),
                           key=lambda a: a["CreateIndex"])
    assert len(agent.list_allocations("rs")) == 2 and first["Name"] == second["Name"] == "rs.g[0]"
    assert (first["PreviousAllocation"], first["NextAllocation"]) == ("", second["ID"])
    assert (second["PreviousAllocation"], second["NextAllocation"], second["FollowupEvalID"]) == (first["ID"], "", "")
    assert first["RescheduleTracker"] is None
    (event,) = second["RescheduleTracker"]["Events"]
    assert (event["PrevAllocID"], event["Delay"]) == (first["ID"], 5_000_000_000)
    ev = agent.get_evaluation(first["FollowupEvalID"])
    assert (ev["TriggeredBy"], ev["Status"], ev["PreviousEval"]) == ("alloc-failure", "complete", first["EvalID"])
    assert second["EvalID"] == ev["ID"] and ev["WaitUntil"].endswith("Z")
    assert event["RescheduleTime"] - ev["CreateTime"] >= 4_500_000_000  # placed after the delay


@pytest.mark.parametrize(("function", "delays"), [
    ("constant", [5, 5, 5, 5, 5]),
    ("exponential", [5, 10, 20, 40, 40]),  # doubled, capped at max_delay
    ("fibonacci", [5, 5, 10, 15, 25]),
])
def test_reschedule_delays_follow_the_delay_function(function: str, delays: list[int]) -> None:
    policy = ReschedulePolicy(delay=5.0, delay_function=function, max_delay=40.0, unlimited=True)
    events: list[dict[str, int]] = []
    got = []
    for _ in delays:
        d = reschedule_delay(policy, events, time.time_ns())
        assert d is not None
        got.append(d // 1_000_000_000)
        events.append({"RescheduleTime": time.time_ns(), "Delay": d})
    assert got == delays


def test_reschedule_attempts_count_within_the_interval_only() -> None:
    policy = ReschedulePolicy(attempts=2, interval=3600.0, delay=5.0, delay_function="constant", unlimited=False)
    now = time.time_ns()
    hour = 3600 * 1_000_000_000
    assert reschedule_delay(policy, [{"RescheduleTime": now - 10, "Delay": 5}] * 2, now) is None
    assert reschedule_delay(policy, [{"RescheduleTime": now - hour - 1, "Delay": 5}] * 2, now) == 5_000_000_000
    assert reschedule_delay(ReschedulePolicy(attempts=0, unlimited=False), [], now) is None


def test_a_stopped_job_cancels_its_pending_reschedule(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent()
    agent.register_job(job_hcl(_failing('reschedule {\n delay = "5s"\n delay_function = "constant"\n'
                                        ' unlimited = true\n }'), tag, job_id="rs", job_type="service"))
    wait_until(lambda: any(a["FollowupEvalID"] for a in agent.list_allocations("rs")), 30, 0.05, "a reschedule")
    assert _status(agent) == "pending"  # a replacement is due
    failed = agent.get_allocation(agent.list_allocations("rs")[0]["ID"])
    assert agent.get_evaluation(failed["FollowupEvalID"])["Status"] == "pending"
    agent.stop_job("rs")
    ev = agent.get_evaluation(failed["FollowupEvalID"])
    assert ev["Status"] == "canceled" and "stopped" in ev["StatusDescription"]
    assert not agent._reschedules  # its timer is gone: nothing will be placed
    time.sleep(0.5)
    assert len(agent.list_allocations("rs")) == 1 and _status(agent) == "dead"


def test_a_pending_reschedule_survives_an_agent_restart(make_agent: MakeAgent, tag: str, tmp_path: Path) -> None:
    agent = make_agent(data_dir=tmp_path / "d")
    agent.register_job(job_hcl(_failing('reschedule {\n attempts = 1\n interval = "1h"\n delay = "5s"\n'
                                        ' delay_function = "constant"\n unlimited = false\n }'), tag, job_id="rs"))
    wait_until(lambda: any(a["FollowupEvalID"] for a in agent.list_allocations("rs")), 30, 0.05, "a reschedule")
    agent.shutdown(stop_tasks=False)
    again = make_agent(data_dir=tmp_path / "d")
    wait_until(lambda: len(again.list_allocations("rs")) == 2, 10, 0.05, "the replacement after the restart")
    allocs = wait_terminal(again, "rs")
    assert sorted(len((a["RescheduleTracker"] or {}).get("Events") or []) for a in allocs) == [0, 1]


def test_datacenters_that_miss_this_node_are_a_warning(make_agent: MakeAgent, tag: str) -> None:
    agent = make_agent()
    ok = agent.register_job(parse_hcl('job "dc" {\n type = "batch"\n datacenters = ["d*", "us-east-1"]\n'
                                      + group("g", task("t", "true")) + "\n}\n"))
    assert "datacenter" not in ok["Warnings"]  # "d*" matches dc1, as Nomad's globs do
    res = agent.register_job(parse_hcl('job "other" {\n type = "batch"\n datacenters = ["us-east-1"]\n'
                                       + group("g", task("t", "true")) + "\n}\n"))
    assert 'job datacenters ["us-east-1"] do not include this node\'s datacenter "dc1"' in res["Warnings"]
    assert len(wait_terminal(agent, "other")) == 1  # run anyway, as the warning says


def test_a_registration_cut_short_by_a_crash_is_finished_by_the_next_agent(make_agent: MakeAgent,
                                                                           tag: str) -> None:
    # QA: kill -9 between storing the job and storing its allocations left the job "pending" with
    # no allocation, for good. A child process registers and "dies" (os._exit) right there.
    job = job_hcl(group("g", task("t", "true"), extra="count = 2"), tag, job_id="cut")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            doomed = make_agent()
            doomed.persister.flush = lambda: os._exit(9)  # type: ignore[method-assign]
            doomed.register_job(job)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 9
    agent = make_agent()
    allocs = wait_terminal(agent, "cut")
    assert len(allocs) == 2 and {a["Name"] for a in allocs} == {"cut.g[0]", "cut.g[1]"}
    assert all(a["ClientStatus"] == "complete" for a in allocs)
    ev = agent.get_evaluation(allocs[0]["EvalID"])
    assert (ev["TriggeredBy"], ev["Status"]) == ("job-register", "complete")
    assert [e["ID"] for e in agent.list_evaluations() if e["JobID"] == "cut"].count(ev["ID"]) == 1
