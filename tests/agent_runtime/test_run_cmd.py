"""``rawexec run`` as a real subprocess: hello example, Ctrl-C, failures, bad input."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rawexec.driver.config import default_state_dir
from tests.agent_runtime.conftest import thread_dump
from tests.helpers.util import pids_with_tag, wait_until

ROOT = Path(__file__).resolve().parents[2]
CMD = [sys.executable, "-c", "from rawexec.cli.main import main; main()", "run"]


def run(args: list[str], tag: str, state_dir: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = _env(tag, state_dir)
    return subprocess.run([*CMD, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env,
                          check=False)


def _env(tag: str, state_dir: str) -> dict[str, str]:
    k, _, v = tag.partition("=")
    return dict(os.environ, **{k: v}, TERM="dumb", TMPDIR=state_dir)


def _popen(jf: Path, tag: str, state_dir: str) -> subprocess.Popen[str]:
    """``rawexec run JOBFILE`` in the background, output (stdout and stderr) on ``stdout``."""
    return subprocess.Popen([*CMD, str(jf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            env=_env(tag, state_dir))


def _collect_lines(proc: subprocess.Popen[str]) -> tuple[list[str], threading.Thread]:
    """A thread appending ``proc``'s output lines to the returned list as they come."""
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for ln in proc.stdout:
            lines.append(ln)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    return lines, th


def _wait_started(p: subprocess.Popen[str], n: int) -> None:
    """Read ``p``'s output until it says all ``n`` main tasks started."""
    assert p.stdout is not None
    for line in p.stdout:
        if f"All {n} main task(s) started" in line:
            return
    pytest.fail("rawexec run never started its tasks")


def _sleepers(tag: str) -> list[int]:
    """The test's ``sleep 1000`` processes."""
    out = []
    for pid in pids_with_tag(tag):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().endswith(b"1000\0"):
                out.append(pid)
        except OSError:
            pass
    return out


def test_hello_example_exits_0_and_prints_output(tag: str, state_dir: str) -> None:
    p = run(["examples/hello.nomad.hcl"], tag, state_dir)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    out = [ln for ln in lines if "/say | " in ln]
    assert len(out) == 3, p.stdout
    assert out[0].split(" | ", 1)[1].startswith("hello from say in alloc ")
    assert out[2].endswith("/say | done")
    assert "==> Summary" in p.stdout and "Terminated: Exit Code: 0" in p.stdout
    # the default data dir was a temp dir, removed at exit
    assert not list(Path(state_dir).glob("rawexec-run-*"))
    assert pids_with_tag(tag) == []


def test_vars_and_data_dir(tag: str, state_dir: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    p = run(["-var", "greeting=bonjour", "-data-dir", str(data), "examples/hello.nomad.hcl"], tag, state_dir)
    assert p.returncode == 0, p.stderr
    assert "/say | bonjour from say" in p.stdout
    assert (data / "state.db").exists()  # kept: it was given


def test_job_from_standard_input(tag: str, state_dir: str, tmp_path: Path) -> None:
    # `rawexec run -` (Nomad's `job run -`): relative paths (file()) are relative to the current directory
    (tmp_path / "greeting.txt").write_text("hi-from-cwd")
    text = (ROOT / "examples" / "hello.nomad.hcl").read_text().replace('default = "hello"',
                                                                       'default = file("greeting.txt")')
    assert 'file("greeting.txt")' in text
    p = subprocess.run([*CMD, "-"], input=text, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env=_env(tag, state_dir), check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "/say | hi-from-cwd from say in alloc " in p.stdout
    assert pids_with_tag(tag) == []
    p = subprocess.run([*CMD, "-"], input='job "x" {\n', capture_output=True, text=True, timeout=120,
                       cwd=tmp_path, env=_env(tag, state_dir), check=False)
    assert p.returncode != 0 and "<stdin>:2:1: " in p.stderr, p.stderr


def test_relative_data_dir(tag: str, state_dir: str, tmp_path: Path) -> None:
    """``-data-dir dd1`` is taken from the current directory (tasks used to fail with
    "alloc_dir must be an absolute path")."""
    env = _env(tag, state_dir)
    p = subprocess.run([*CMD, "-data-dir", "dd1", str(ROOT / "examples/hello.nomad.hcl")], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path, env=env, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "/say | done" in p.stdout
    assert (tmp_path / "dd1" / "state.db").exists()
    empty = subprocess.run([*CMD, "-data-dir", "", str(ROOT / "examples/hello.nomad.hcl")], capture_output=True,
                           text=True, timeout=120, cwd=tmp_path, env=env, check=False)
    assert empty.returncode == 2 and "-data-dir must not be empty" in empty.stderr, empty.stderr


def test_failing_batch_job_exits_nonzero(tag: str, state_dir: str, tmp_path: Path) -> None:
    jf = tmp_path / "fail.nomad.hcl"
    jf.write_text('''job "fail" {
  type = "batch"
  group "g" {
    restart {
      attempts = 0
      mode     = "fail"
    }
    task "ok" {
      driver = "raw_exec"
      config {
        command = "/bin/true"
      }
    }
    task "bad" {
      driver = "raw_exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo oops >&2; exit 4"]
      }
    }
  }
}
''')
    p = run([str(jf)], tag, state_dir)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "/bad | oops" in p.stdout
    summary = p.stdout.split("==> Summary", 1)[1]
    assert "dead (failed)" in summary and "Policy allows no restarts" in summary


def test_bad_job_file_is_a_clear_error(tag: str, state_dir: str, tmp_path: Path) -> None:
    jf = tmp_path / "bad.nomad.hcl"
    jf.write_text('job "x" {\n  type = "batchy"\n  group "g" {\n    task "t" {\n      driver = "raw_exec"\n'
                  '      config { command = "/bin/true" }\n    }\n  }\n}\n')
    p = run([str(jf)], tag, state_dir)
    assert p.returncode == 1
    assert p.stderr.startswith(f'Error parsing job file "{jf}"')
    assert "batchy" in p.stderr
    p = run([str(tmp_path / "missing.hcl")], tag, state_dir)
    assert p.returncode == 1 and "missing.hcl" in p.stderr
    p = run(["-var", "novalue", "examples/hello.nomad.hcl"], tag, state_dir)
    assert p.returncode == 2 and "expected name=value" in p.stderr


def test_bad_job_file_with_data_dir_touches_nothing(tag: str, state_dir: str, tmp_path: Path) -> None:
    """The driver boots while the job file is parsed, but a bad job file leaves the given data dir
    alone (not created, nothing recovered) and no process behind."""
    jf = tmp_path / "bad.nomad.hcl"
    jf.write_text('job "x" {\n  type = "batchy"\n}\n')
    data = tmp_path / "data"
    p = run(["-data-dir", str(data), str(jf)], tag, state_dir)
    assert p.returncode == 1 and p.stderr.startswith(f'Error parsing job file "{jf}"'), p.stderr
    assert not data.exists()
    assert pids_with_tag(tag) == []


def test_other_driver_fails_run(tag: str, state_dir: str, tmp_path: Path) -> None:
    jf = tmp_path / "docker.nomad.hcl"
    jf.write_text('job "d" {\n type = "batch"\n group "g" {\n task "t" {\n driver = "docker"\n'
                  ' config { image = "redis" }\n }\n }\n}\n')
    p = run([str(jf)], tag, state_dir)
    assert p.returncode == 1
    assert 'driver "docker" not available on this node' in p.stdout + p.stderr


@pytest.mark.slow
def test_ctrl_c_stops_service_tasks(tag: str, state_dir: str, tmp_path: Path) -> None:
    jf = tmp_path / "svc.nomad.hcl"
    jf.write_text('''job "svc" {
  group "g" {
    count = 3
    task "t" {
      driver = "raw_exec"
      kill_signal = "SIGTERM"
      config {
        command = "/bin/sh"
        args    = ["-c", "trap 'echo bye; exit 0' TERM; echo up; sleep 1000 & wait"]
      }
    }
  }
}
''')
    proc = _popen(jf, tag, state_dir)
    assert proc.stdout is not None
    lines, th = _collect_lines(proc)
    try:
        wait_until(lambda: sum(" | up" in ln for ln in lines) == 3, 60, 0.05, "3 tasks up")
        # The banner and the tasks' first output lines race (output is followed from the log files).
        wait_until(lambda: any("All 3 main task(s) started" in ln for ln in lines), 30, 0.05, "started banner")
        wait_until(lambda: len(pids_with_tag(tag)) >= 6, 30, 0.05, "3 shells + 3 sleeps")
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    th.join(10)
    text = "".join(lines)
    assert rc == 130, text
    assert "Stopping every task" in text
    assert text.count("/t: Killed: Task successfully killed") == 3
    wait_until(lambda: pids_with_tag(tag) == [], 10, 0.05, "no task process left")


@pytest.mark.slow
def test_second_ctrl_c_forces(tag: str, state_dir: str, tmp_path: Path) -> None:
    jf = tmp_path / "stubborn.nomad.hcl"
    jf.write_text('''job "stubborn" {
  group "g" {
    task "t" {
      driver       = "raw_exec"
      kill_timeout = "25s"
      config {
        command = "/bin/sh"
        args    = ["-c", "trap '' INT; echo up; while true; do sleep 0.1; done"]
      }
    }
  }
}
''')
    proc = _popen(jf, tag, state_dir)
    lines, th = _collect_lines(proc)
    try:
        wait_until(lambda: any(" | up" in ln for ln in lines), 60, 0.05, "task up")
        proc.send_signal(signal.SIGINT)
        wait_until(lambda: any("/t: Killing" in ln for ln in lines), 30, 0.05, "graceful stop began")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    th.join(10)
    text = "".join(lines)
    assert rc == 130, text
    assert "Forcing: killing every task now" in text
    assert took < 15, took  # not the task's 25s kill_timeout
    wait_until(lambda: pids_with_tag(tag) == [], 10, 0.05, "no task process left")


_HUP_JOB = '''job "hup" {
  group "g" {
    task "t" {
      driver = "raw_exec"
      kill_signal = "SIGTERM"
      config {
        command = "/bin/sh"
        args    = ["-c", "trap 'echo bye > MARK.t; exit 0' TERM; echo up; sleep 1000 & wait"]
      }
    }
    task "after" {
      driver = "raw_exec"
      lifecycle {
        hook = "poststop"
      }
      config {
        command = "/bin/sh"
        args    = ["-c", "echo ran > MARK.after"]
      }
    }
  }
}
'''


@pytest.mark.slow
def test_sighup_stops_gracefully(tag: str, state_dir: str, tmp_path: Path) -> None:
    """SIGHUP is a stop request like Ctrl-C: kill_signal, poststop tasks, the temp data dir removed."""
    jf = tmp_path / "hup.nomad.hcl"
    jf.write_text(_HUP_JOB.replace("MARK", str(tmp_path / "mark")))
    proc = _popen(jf, tag, state_dir)
    lines, th = _collect_lines(proc)
    try:
        wait_until(lambda: any("/t | up" in ln for ln in lines), 60, 0.05, "task up")
        proc.send_signal(signal.SIGHUP)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    th.join(10)
    text = "".join(lines)
    assert rc == 130, text
    assert "Stopping every task" in text and "/t: Killed: Task successfully killed" in text
    assert (tmp_path / "mark.t").read_text() == "bye\n"  # its kill_signal, not the shim's last-resort stop
    assert (tmp_path / "mark.after").read_text() == "ran\n"
    assert not list(Path(state_dir).glob("rawexec-run-*"))
    wait_until(lambda: pids_with_tag(tag) == [], 10, 0.05, "no task process left")


@pytest.mark.slow
def test_terminal_closed_stops_gracefully(tag: str, state_dir: str, tmp_path: Path) -> None:
    """The terminal of a `rawexec run` closes: SIGHUP, then every write to it fails (EIO). The tasks
    are still stopped gracefully, the poststop task runs and the temp data dir goes."""
    import pty

    jf = tmp_path / "hup.nomad.hcl"
    jf.write_text(_HUP_JOB.replace("MARK", str(tmp_path / "mark")))
    master, slave = pty.openpty()
    env = dict(_env(tag, state_dir), TERM="xterm")  # a TTY: the live table
    # setsid -c: a session of its own with the pty as controlling terminal, rawexec its leader
    proc = subprocess.Popen(["setsid", "-c", *CMD, str(jf)], stdin=slave, stdout=slave, stderr=slave,
                            cwd=ROOT, env=env)
    os.close(slave)
    buf = b""
    try:
        def task_up() -> bool:
            nonlocal buf
            import select

            while select.select([master], [], [], 0)[0]:
                try:
                    buf += os.read(master, 65536)
                except OSError:
                    break
            return b"/t | up" in buf

        wait_until(task_up, 60, 0.05, "task up")
        os.close(master)  # the terminal goes away: hangup
        master = -1
        rc = proc.wait(60)
    finally:
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 130, buf.decode(errors="replace")
    assert (tmp_path / "mark.t").read_text() == "bye\n"
    assert (tmp_path / "mark.after").read_text() == "ran\n"
    assert not list(Path(state_dir).glob("rawexec-run-*"))
    wait_until(lambda: pids_with_tag(tag) == [], 10, 0.05, "no task process left")


def test_detach_leaves_tasks_for_the_next_agent(make_agent: Any, tag: str, state_dir: str, tmp_path: Path) -> None:
    jf = tmp_path / "bg.nomad.hcl"
    jf.write_text('job "bg" {\n group "g" {\n task "t" {\n driver = "raw_exec"\n'
                  ' config {\n command = "sleep"\n args = ["1000"]\n }\n }\n }\n}\n')
    data = tmp_path / "data"
    p = run(["-detach", "-data-dir", str(data), str(jf)], tag, state_dir)
    assert p.returncode == 0, p.stderr
    assert "Job 'bg' started: 1 allocation(s)" in p.stdout
    wait_until(lambda: len(_sleepers(tag)) == 1, 30, 0.05, "the detached task runs")
    agent = make_agent(data_dir=data)  # re-attaches, then stops it
    (a,) = agent.list_allocations("bg")
    wait_until(lambda: agent.get_allocation(a["ID"])["TaskStates"]["t"]["State"] == "running", 30)
    agent.stop_job("bg")
    assert agent.allocation_runner(a["ID"]).wait(30), thread_dump()
    wait_until(lambda: pids_with_tag(tag) == [], 10, 0.05, "stopped")


def test_a_run_on_a_data_dir_stops_only_its_own_job(make_agent: Any, tag: str, state_dir: str,
                                                    tmp_path: Path) -> None:
    """Tasks of another job on the same data dir (here: started with -detach) are recovered by the run's
    agent and left running when the run ends: only the run's own job is stopped."""
    bg = tmp_path / "bg.nomad.hcl"
    bg.write_text('job "bg" {\n group "g" {\n task "t" {\n driver = "raw_exec"\n'
                  ' config {\n command = "sleep"\n args = ["1000"]\n }\n }\n }\n}\n')
    short = tmp_path / "short.nomad.hcl"
    short.write_text('job "short" {\n type = "batch"\n group "g" {\n task "t" {\n driver = "raw_exec"\n'
                     ' config {\n command = "echo"\n args = ["done"]\n }\n }\n }\n}\n')
    data = tmp_path / "data"
    assert run(["-detach", "-data-dir", str(data), str(bg)], tag, state_dir).returncode == 0
    wait_until(lambda: len(_sleepers(tag)) == 1, 30, 0.05, "the detached task runs")
    (pid,) = _sleepers(tag)
    p = run(["-data-dir", str(data), str(short)], tag, state_dir)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "/t | done" in p.stdout
    assert _sleepers(tag) == [pid]  # the other job's task still runs, the same process
    agent = make_agent(data_dir=data)
    (a,) = agent.list_allocations("bg")
    assert a["ClientStatus"] == "running" and a["DesiredStatus"] == "run"
    agent.stop_job("bg")
    assert agent.allocation_runner(a["ID"]).wait(30), thread_dump()
    wait_until(lambda: pids_with_tag(tag) == [], 10, 0.05, "stopped")


def test_an_unchanged_finished_batch_job_shows_its_last_result(tag: str, state_dir: str, tmp_path: Path) -> None:
    """Run again on the same data dir, an unchanged batch job is not run again (as in Nomad): the run
    says so and shows, and exits with, the earlier run's result -- not an empty success."""
    jf = tmp_path / "fail.nomad.hcl"
    jf.write_text('job "fail" {\n type = "batch"\n group "g" {\n restart {\n attempts = 0\n mode = "fail"\n }\n'
                  ' task "bad" {\n driver = "raw_exec"\n config {\n command = "/bin/sh"\n'
                  ' args = ["-c", "echo ran; exit 4"]\n }\n }\n }\n}\n')
    data = tmp_path / "data"
    first = run(["-data-dir", str(data), str(jf)], tag, state_dir)
    assert first.returncode == 1 and "/bad | ran" in first.stdout, first.stdout + first.stderr
    again = run(["-data-dir", str(data), str(jf)], tag, state_dir)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "is unchanged and its last run" in again.stderr
    summary = again.stdout.split("==> Summary", 1)[1]
    assert "dead (failed)" in summary and "4" in summary
    # not run again: the same allocation, its output shown once more
    alloc = first.stdout.split("==> Summary", 1)[1].split("\n")[2].split("/")[0]
    assert summary.split("\n")[2].split("/")[0] == alloc


def test_a_killed_run_takes_its_tasks_along(tag: str, state_dir: str, tmp_path: Path) -> None:
    """``rawexec run`` with its temp data dir, killed with SIGKILL: no later agent can find these
    tasks, so their shims stop them (SIGTERM; what ignores it is killed after the grace period)."""
    jf = tmp_path / "k.nomad.hcl"
    mark = tag.rpartition("=")[2][:12]  # task names no other test uses: to find this test's exit records
    jf.write_text('job "k" {\n  group "g" {\n'
                  f'    task "plain_{mark}" {{\n      driver = "raw_exec"\n'
                  '      config {\n        command = "/bin/sleep"\n        args = ["1000"]\n      }\n    }\n'
                  f'    task "stubborn_{mark}" {{\n      driver = "raw_exec"\n'
                  '      config {\n        command = "/bin/sh"\n'
                  '        args = ["-c", "trap \'\' TERM; sleep 1000 & wait; wait"]\n      }\n    }\n'
                  '  }\n}\n')
    p = _popen(jf, tag, state_dir)
    try:
        _wait_started(p, 2)
        wait_until(lambda: len(_sleepers(tag)) == 2, 30, 0.05, "both tasks run")
        p.kill()
        p.wait(10)
        t0 = time.monotonic()
        # the plain task goes at its SIGTERM; the stubborn one's tree when the grace period ends
        wait_until(lambda: len(_sleepers(tag)) <= 1, 5, 0.05, "the plain task stopped")
        wait_until(lambda: pids_with_tag(tag) == [], 15, 0.1, "every task process (and shim) gone")
        assert time.monotonic() - t0 >= 4.0  # the stubborn tree had its grace period
        # no driver will ever read the shims' exit records: none is left behind
        left = []
        for f in Path(default_state_dir()).iterdir():
            try:
                if mark.encode() in f.read_bytes():
                    left.append(f.name)
            except OSError:
                pass
        assert left == []
    finally:
        if p.poll() is None:
            p.kill()
        for pid in pids_with_tag(tag):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _spawners(tag: str, parent: int) -> list[int]:
    """The spawner processes ``parent`` started (its shims are forks of one: same command line)."""
    out = []
    for pid in pids_with_tag(tag):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if b"rawexec.executor.spawner" in cmdline and ppid == parent:
            out.append(pid)
    return out


def test_one_spawner_booted_first_and_taken_over(tag: str, state_dir: str, tmp_path: Path) -> None:
    """``rawexec run`` boots the driver's spawner before it imports the agent; the agent's driver
    takes that one over (no second spawner), and it goes away with the run."""
    jf = tmp_path / "sleep.nomad.hcl"
    jf.write_text('job "s" {\n  group "g" {\n    count = 2\n    task "t" {\n      driver = "raw_exec"\n'
                  '      kill_timeout = "1s"\n      config {\n        command = "/bin/sleep"\n'
                  '        args = ["60"]\n      }\n    }\n  }\n}\n')
    p = _popen(jf, tag, state_dir)
    try:
        _wait_started(p, 2)
        assert len(_spawners(tag, p.pid)) == 1
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=60)
        assert p.returncode == 130
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    wait_until(lambda: pids_with_tag(tag) == [], 10, msg="processes left after the run")


def test_a_failed_allocation_is_rescheduled_and_its_replacement_decides(tag: str, state_dir: str,
                                                                       tmp_path: Path) -> None:
    # fails the first time (no marker yet), succeeds on the reschedule: the run follows the
    # replacement and exits as it did
    marker = tmp_path / "ran-once"
    jf = tmp_path / "flaky.nomad.hcl"
    jf.write_text(f'''job "flaky" {{
  type = "batch"
  group "g" {{
    restart {{
      attempts = 0
      mode     = "fail"
    }}
    reschedule {{
      attempts       = 1
      interval       = "1h"
      delay          = "5s"
      delay_function = "constant"
      unlimited      = false
    }}
    task "t" {{
      driver = "raw_exec"
      config {{
        command = "/bin/sh"
        args    = ["-c", "if [ -e {marker} ]; then echo second; else touch {marker}; echo first; exit 3; fi"]
      }}
    }}
  }}
}}
''')
    p = run([str(jf)], tag, state_dir)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "| first" in p.stdout and "| second" in p.stdout
    assert re.search(r"failed; rescheduling in [45]\.\ds", p.stdout)
    assert "rescheduled as" in p.stdout and "(reschedule 1)" in p.stdout
    summary = p.stdout.split("==> Summary", 1)[1]
    assert "dead (failed)" in summary and "Exit Code: 0" in summary


@pytest.mark.skipif(os.geteuid() != 0, reason="running a task as another user needs root")
def test_a_task_run_as_another_user_can_write_its_task_dir(tag: str, state_dir: str, tmp_path: Path) -> None:
    # run's private data dir came from mkdtemp (0700): "nobody" could not reach its own task dir
    os.chmod(state_dir, 0o711)  # (the TMPDIR the run makes its data dir in, here: /tmp itself is 1777)
    jf = tmp_path / "nobody.nomad.hcl"
    jf.write_text('job "nb" {\n type = "batch"\n group "g" {\n task "t" {\n driver = "raw_exec"\n'
                  ' user = "nobody"\n config {\n command = "/bin/sh"\n'
                  ' args = ["-c", "touch $NOMAD_TASK_DIR/x && echo wrote as $(id -un)"]\n }\n }\n }\n}\n')
    p = run([str(jf)], tag, state_dir)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "| wrote as nobody" in p.stdout
