"""End to end: the CLI as real subprocesses against a real ``rawexec agent`` subprocess."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import termios
import time
import uuid

from tests.cli.conftest import RAWEXEC, AgentProc, free_port, job_json
from tests.helpers.util import wait_until


def _register(agent: AgentProc, job: dict[str, object], token: str = "") -> str:
    with agent.http(token) as c:
        r = c.put("/v1/jobs", json=job)
        assert r.status_code == 200, r.text
        job_id = str(job["Job"]["ID"])  # type: ignore[index]

        def running() -> bool:
            allocs = c.get(f"/v1/job/{job_id}/allocations").json()
            return bool(allocs) and all(a["ClientStatus"] == "running" for a in allocs)

        wait_until(running, 30, interval=0.05, msg="allocation not running")
        return str(c.get(f"/v1/job/{job_id}/allocations").json()[0]["ID"])


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _wait_log(agent: AgentProc, alloc_id: str, needle: str, task: str = "web") -> None:
    with agent.http() as c:
        def has() -> bool:
            r = c.get(f"/v1/client/fs/logs/{alloc_id}", params={"task": task, "type": "stdout", "plain": "true"})
            return needle in r.text

        wait_until(has, 15, interval=0.05, msg=f"{needle!r} not in the task's stdout")


def test_read_verbs_tables_and_json(agent: AgentProc) -> None:
    alloc_id = _register(agent, job_json("web", "echo out-line; echo err-line >&2; sleep 120"))
    short = alloc_id[:8]
    r = agent.cli("status")
    assert r.code == 0 and r.out.splitlines()[0].split() == ["ID", "Type", "Priority", "Status", "Submit", "Date"]
    assert "web" in r.out and "running" in r.out
    r = agent.cli("job", "status", "-json")
    assert r.code == 0 and [j["ID"] for j in json.loads(r.out)] == ["web"]
    r = agent.cli("job", "status", "web")
    assert r.code == 0 and "Allocations" in r.out and short in r.out
    r = agent.cli("job", "inspect", "web")
    assert r.code == 0 and json.loads(r.out)["Job"]["ID"] == "web"
    r = agent.cli("alloc", "status", short)
    assert r.code == 0 and 'Task "web" is "running"' in r.out and "Started" in r.out
    _wait_log(agent, alloc_id, "out-line")
    assert agent.cli("alloc", "logs", short).out == "out-line\n"
    assert agent.cli("alloc", "logs", "-stderr", short, "web").out == "err-line\n"
    r = agent.cli("alloc", "fs", short, "web")
    assert r.code == 0 and "local/" in r.out
    r = agent.cli("node", "status", "-self")
    assert r.code == 0 and "raw_exec" in r.out


def test_filter_flag_on_the_lists(agent: AgentProc) -> None:
    _register(agent, job_json("web", "sleep 120"))
    _register(agent, job_json("api", "sleep 120"))
    r = agent.cli("job", "status", "-filter", 'ID == "api"', "-json")
    assert r.code == 0 and [j["ID"] for j in json.loads(r.out)] == ["api"]
    r = agent.cli("job", "status", "-filter", 'Status == "dead"')
    assert r.code == 0 and "web" not in r.out and "api" not in r.out
    r = agent.cli("job", "status", "-filter", "ID ==")
    assert r.code == 1 and r.err.startswith("Error querying jobs: ") and "HTTP 400" in r.err
    r = agent.cli("job", "status", "-filter", 'ID == "api"', "web")
    assert r.code == 1 and "give it without a job ID" in r.err
    r = agent.cli("node", "status", "-filter", 'Status == "ready"', "-json")
    assert r.code == 0 and len(json.loads(r.out)) == 1
    r = agent.cli("node", "status", "-filter", 'Status == "down"')
    assert r.code == 0 and "raw_exec" not in r.out and len(r.out.splitlines()) <= 1
    r = agent.cli("node", "status", "-self", "-filter", 'Status == "ready"')
    assert r.code == 1 and "give it without a node ID or -self" in r.err


def test_logs_tail_and_follow(agent: AgentProc) -> None:
    alloc_id = _register(agent, job_json("tail", "for i in 1 2 3 4 5; do echo line$i; done; sleep 120"))
    _wait_log(agent, alloc_id, "line5")
    assert agent.cli("alloc", "logs", "-tail", "-n", "2", alloc_id).out == "line4\nline5\n"
    assert agent.cli("alloc", "logs", "-tail", "-c", "6", alloc_id).out == "line5\n"
    # -f: a follower sees the output; killing the CLI mid-stream leaves the agent healthy
    env = {**os.environ, "RAWEXEC_ADDR": agent.address}
    p = subprocess.Popen([RAWEXEC, "alloc", "logs", "-f", alloc_id], stdout=subprocess.PIPE, env=env)
    assert p.stdout is not None
    seen = b""
    while b"line5" not in seen:
        seen += os.read(p.stdout.fileno(), 4096)
    p.kill()
    p.wait()
    assert agent.cli("status").code == 0


def test_exec_signal_restart_stop_purge(agent: AgentProc) -> None:
    alloc_id = _register(agent, job_json("ctl", "trap 'echo got-usr1' USR1; echo ready; "
                                                "while true; do sleep 0.1; done"))
    r = agent.cli("alloc", "exec", "-i=false", alloc_id, "/bin/sh", "-c", "echo in-task; exit 3")
    assert r.code == 3 and r.out == "in-task\n"
    r = agent.cli("alloc", "exec", alloc_id, "/bin/cat", input="piped\n")
    assert r.code == 0 and r.out == "piped\n"
    # Go's flag syntax, as `nomad alloc exec -i -t <alloc> cmd`: a bare boolean flag never takes the
    # next argument (the allocation id) as its value
    r = agent.cli("alloc", "exec", "-i", "-task", "web", "-t=false", alloc_id, "/bin/cat", input="bare\n")
    assert r.code == 0 and r.out == "bare\n", r.err
    # (a bare -t took -i=false, not the allocation id, as its value: the -i check answers)
    r = agent.cli("alloc", "exec", "-t", "-i=false", alloc_id, "/bin/sh", "-c", "test -t 1 && echo tty")
    assert r.code == 1 and "-i must be enabled if running with tty" in r.err, r
    r = agent.cli("alloc", "exec", "-i=maybe", alloc_id, "/bin/true")
    assert r.code == 1 and "-i: 'maybe' is not a boolean" in r.err
    _wait_log(agent, alloc_id, "ready")
    r = agent.cli("alloc", "signal", "-s", "SIGUSR1", alloc_id)
    assert r.code == 0, r.err
    _wait_log(agent, alloc_id, "got-usr1")
    r = agent.cli("alloc", "stop", alloc_id)
    assert r.code == 0 and "stopped" in r.out
    # stop and reschedule: a replacement of the same name is placed
    assert f'replacing "{alloc_id[:8]}"' in r.out and "created (ctl.g[0])" in r.out, r.out
    r = agent.cli("job", "stop", "-purge", "ctl")
    assert r.code == 0 and "purged" in r.out
    r = agent.cli("job", "status", "ctl")
    assert r.code == 1 and r.err.strip() == 'Error querying jobs: No job(s) with prefix or ID "ctl" found'


def test_job_ids_that_need_escaping_in_a_url(agent: AgentProc) -> None:
    """IDs with URL syntax in them (``#``, ``?``, ``/``, ``%``, dot segments, an endpoint's name
    after a slash) reach the agent as one path segment: status, inspect and stop find the job."""
    ids = ["q#x", "x?y", "../../etc", "a/b", "a/summary", "p%2Fq"]
    with agent.http() as c:
        for job_id in ids:
            r = c.put("/v1/jobs", json=job_json(job_id, "sleep 120"))
            assert r.status_code == 200, (job_id, r.text)

        def all_running() -> bool:
            allocs = c.get("/v1/allocations").json()
            return sorted(a["JobID"] for a in allocs if a["ClientStatus"] == "running") == sorted(ids)

        wait_until(all_running, 30, interval=0.05, msg="allocations not running")
    for job_id in ids:
        res = agent.cli("job", "status", job_id)
        assert res.code == 0 and res.out.splitlines()[0].split() == ["ID", "=", job_id], (job_id, res)
        assert "running" in res.out.split("Allocations")[1], (job_id, res.out)
        res = agent.cli("job", "inspect", job_id)
        assert res.code == 0 and json.loads(res.out)["Job"]["ID"] == job_id, (job_id, res)
    for job_id in ids:
        res = agent.cli("job", "stop", "-purge", job_id)
        assert res.code == 0 and res.out.startswith(f'==> Job "{job_id}" purged'), (job_id, res)
    with agent.http() as c:  # purged once their allocations have stopped
        wait_until(lambda: c.get("/v1/jobs").json() == [], 30, interval=0.05, msg="jobs not purged")


def test_exec_tty_only_with_a_terminal(agent: AgentProc) -> None:
    """As ``nomad alloc exec``: a TTY by default when stdin and stdout are terminals, never
    otherwise; ``-t`` with a redirected stdin or stdout, or with ``-i=false``, is an error."""
    alloc_id = _register(agent, job_json("tty", "exec sleep 120"))
    script = "test -t 1 && echo is-a-tty || echo not-a-tty"
    r = agent.cli("alloc", "exec", "-t", alloc_id, "/bin/sh", "-c", script, input="")
    assert r.code == 1 and r.out == "", r
    assert r.err == ("Error executing command: -t needs a terminal, and stdin is not one; run the command from a "
                     "terminal, or pass -t=false (the default when stdin or stdout is redirected)\n"), r.err
    r = agent.cli("alloc", "exec", "-t=true", "-i=false", alloc_id, "/bin/true")
    assert r.code == 1 and r.err == ("Error executing command: -i must be enabled if running with tty: drop "
                                     "-i=false, or pass -t=false\n"), r.err
    assert agent.cli("alloc", "exec", alloc_id, "/bin/sh", "-c", script, input="").out == "not-a-tty\n"
    env = {**os.environ, "RAWEXEC_ADDR": agent.address}
    master, slave = pty.openpty()
    try:
        # stdin a terminal, stdout a pipe: no TTY by default, and -t refused (stdout)
        p = subprocess.run([RAWEXEC, "alloc", "exec", alloc_id, "/bin/sh", "-c", script], stdin=slave,
                           capture_output=True, text=True, env=env, timeout=60, check=False)
        assert p.returncode == 0 and p.stdout == "not-a-tty\n", p
        p = subprocess.run([RAWEXEC, "alloc", "exec", "-t", alloc_id, "/bin/sh", "-c", script], stdin=slave,
                           capture_output=True, text=True, env=env, timeout=60, check=False)
        assert p.returncode == 1 and "-t needs a terminal, and stdout is not one" in p.stderr, p
        # both terminals: a TTY without asking
        proc = subprocess.Popen([RAWEXEC, "alloc", "exec", alloc_id, "/bin/sh", "-c", script],
                                stdin=slave, stdout=slave, stderr=slave, env=env)
        try:
            assert b"is-a-tty" in _read_until(master, b"is-a-tty", 30)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        os.close(slave)
        os.close(master)


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} not in {buf!r}"
        if select.select([fd], [], [], left)[0]:
            try:
                buf += os.read(fd, 4096)
            except OSError:  # EIO: the other side is gone
                break
    return buf


def test_exec_tty_follows_window_resizes(agent: AgentProc) -> None:
    """``alloc exec -t`` in a terminal: the task's tty gets the terminal's size, and a resize of
    the terminal (SIGWINCH to the client) resizes the task's tty too."""
    alloc_id = _register(agent, job_json("winch", "exec sleep 120"))
    master, slave = pty.openpty()
    _set_winsize(slave, 33, 91)  # not the default 24x80: seen, it was the client that sent it
    script = 'trap \'echo "size $(stty size)"\' WINCH; echo "size $(stty size)"; while :; do sleep 0.05; done'
    # COLUMNS/LINES (set by some shells and test runners) must not override the terminal's size
    env = {**os.environ, "RAWEXEC_ADDR": agent.address, "COLUMNS": "80", "LINES": "24"}
    # setsid -c: a session of its own with the pty as its controlling terminal (so the kernel
    # sends it SIGWINCH on a resize)
    p = subprocess.Popen(["setsid", "-c", RAWEXEC, "alloc", "exec", "-t=true", alloc_id, "/bin/sh", "-c", script],
                         stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    try:
        # the initial size: in the task's first line, or from its trap once the size arrived
        assert b"size 33 91" in _read_until(master, b"size 33 91", 30)
        _set_winsize(master, 40, 132)  # the kernel sends SIGWINCH to the client
        assert b"size 40 132" in _read_until(master, b"size 40 132", 15)
        _set_winsize(master, 30, 100)
        assert b"size 30 100" in _read_until(master, b"size 30 100", 15)
        os.write(master, b"\x03")  # ^C: the task's shell gets SIGINT through its tty and ends
        assert p.wait(15) != 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)


def test_errors_are_one_line_and_nonzero(agent: AgentProc, data_dir: str) -> None:
    for args, needle in ((("alloc", "status", "ffffffff"), "No allocation(s)"),
                         (("node", "status", "ffff"), "node not found"),
                         (("acl", "bootstrap"), "ACL support disabled")):
        r = agent.cli(*args)
        assert r.code == 1 and needle in r.err and len(r.err.strip().splitlines()) == 1, (args, r)
    r = agent.cli("status", address=f"unix://{data_dir}/missing.sock")
    assert r.code == 1 and "cannot reach the agent" in r.err
    r = agent.cli("status", address="ftp://x")
    assert r.code == 1 and "is not valid" in r.err


def _run_agent_expecting_failure(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RAWEXEC, "agent", *args], check=False, capture_output=True, text=True, timeout=60)


def test_second_agent_on_the_same_data_dir_is_refused(agent: AgentProc) -> None:
    p = _run_agent_expecting_failure("-dev", "-data-dir", agent.data_dir)
    assert p.returncode == 1 and "in use by another rawexec agent" in p.stdout + p.stderr, p
    assert os.path.exists(agent.sock)
    with agent.http() as c:  # the first one is unharmed (its socket too)
        assert c.get("/v1/agent/self").status_code == 200


def _processes_with_env(marker: str) -> list[int]:
    """The pids whose environment holds ``marker`` (the agent's and its spawners', which inherit it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if marker.encode() in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_bad_bind_is_one_line_and_refused_before_anything_starts(data_dir: str) -> None:
    """``-bind`` takes an IP address (the port is ``ports { http }``) and a non-loopback one only
    with ACLs: refused with one line and exit 1 before the agent starts anything (no data dir, no
    spawner left), never with a traceback."""
    state = os.path.join(data_dir, "state")
    marker = f"RAWEXEC_TEST_MARK={uuid.uuid4()}"
    cases = {
        "0.0.0.0": '-bind "0.0.0.0" is not a loopback address: the HTTP API would be reachable from the '
                   "network without authentication; pass -acl-enabled (or set acl { enabled = true } in a "
                   'config file), or use -bind "127.0.0.1"',
        "127.0.0.1:4662": '-bind "127.0.0.1:4662" includes a port: -bind takes an address only; use -bind '
                          '"127.0.0.1" and set the port with ports { http = 4662 } in a config file',
        "[::1]:4662": '-bind "[::1]:4662" includes a port: -bind takes an address only; use -bind "::1" and '
                      "set the port with ports { http = 4662 } in a config file",
        "localhost": '-bind "localhost" is not an IP address (e.g. "127.0.0.1")',
    }
    for bind, message in cases.items():
        p = subprocess.run([RAWEXEC, "agent", "-dev", "-data-dir", state, "-bind", bind], check=False,
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "RAWEXEC_TEST_MARK": marker.partition("=")[2]})
        assert p.returncode == 1 and p.stdout == "", (bind, p)
        assert p.stderr == f"==> Error starting agent: {message}\n", (bind, p.stderr)
        assert not os.path.exists(state), bind
    assert _processes_with_env(marker) == []


def test_non_loopback_bind_is_allowed_with_acl_enabled(data_dir: str) -> None:
    """-acl-enabled allows a non-loopback address, given by -bind or by a config file's bind_addr."""
    port = free_port()
    cfg = os.path.join(data_dir, "agent.hcl")
    for args, text in ((["-bind", "0.0.0.0", "-acl-enabled"], f"ports {{ http = {port} }}\n"),
                       (["-acl-enabled"], f'bind_addr = "0.0.0.0"\nports {{ http = {port} }}\n')):
        with open(cfg, "w") as f:
            f.write(text)
        a = AgentProc(os.path.join(data_dir, "d"), ["-dev", "-config", cfg, *args])
        a.start()
        try:
            r = a.cli("acl", "bootstrap", "-json", address=f"http://127.0.0.1:{port}")
            assert r.code == 0, (args, r)
        finally:
            out = a.terminate()
        assert f"API (http): http://0.0.0.0:{port}" in out and "ACL: enabled" in out, out
        shutil.rmtree(a.data_dir)


def test_http_port_in_use_is_one_line_and_the_agent_shuts_down(data_dir: str) -> None:
    marker = f"RAWEXEC_TEST_MARK={uuid.uuid4()}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        cfg = os.path.join(data_dir, "agent.hcl")
        with open(cfg, "w") as f:
            f.write(f"ports {{ http = {port} }}\n")
        p = subprocess.run([RAWEXEC, "agent", "-dev", "-config", cfg, "-data-dir", os.path.join(data_dir, "d")],
                           check=False, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "RAWEXEC_TEST_MARK": marker.partition("=")[2]})
    assert p.returncode == 1, p
    assert p.stderr.splitlines()[-1] == (f"==> Error starting agent: cannot listen on 127.0.0.1:{port}: the address "
                                         "is already in use; set another ports { http = N }"), p.stderr
    assert "Traceback" not in p.stderr
    assert _processes_with_env(marker) == []
    assert not os.path.exists(os.path.join(data_dir, "d", "api.sock"))


def test_acl_bootstrap_and_tokens_over_tcp(data_dir: str) -> None:
    port = free_port()
    cfg = os.path.join(data_dir, "agent.hcl")
    with open(cfg, "w") as f:
        f.write(f'bind_addr = "127.0.0.1"\nports {{ http = {port} }}\nacl {{ enabled = true }}\n')
    a = AgentProc(os.path.join(data_dir, "d"), ["-dev", "-config", cfg])
    a.start()
    addr = f"http://127.0.0.1:{port}"
    token = ""
    try:
        r = a.cli("status", address=addr)
        assert r.code == 1 and "Permission denied" in r.err
        r = a.cli("acl", "bootstrap", "-json", address=addr)
        assert r.code == 0, r.err
        token = json.loads(r.out)["SecretID"]
        r = a.cli("acl", "bootstrap", address=addr)
        assert r.code == 1 and "already done" in r.err
        assert a.cli("status", address=addr, token=token).code == 0
        assert a.cli("status", token=token).code == 0  # the unix socket needs it too
        assert a.cli("status").code == 1
        with open(os.path.join(a.data_dir, "acl-tokens.json")) as f:
            assert token not in f.read()
    finally:
        try:
            if token:
                a.stop_all_jobs(token)
        finally:
            a.terminate()  # (even when the clean-up fails: no agent outlives its test)


def test_acl_bootstrap_with_a_secret_from_a_file_or_stdin(data_dir: str) -> None:
    """``acl bootstrap PATH`` (Nomad 1.4+): the management token's secret is set ahead of time."""
    cfg = os.path.join(data_dir, "agent.hcl")
    with open(cfg, "w") as f:
        f.write("acl { enabled = true }\n")
    empty, bad, good = (os.path.join(data_dir, n) for n in ("empty", "bad", "good"))
    secret = str(uuid.uuid4())
    for path, text in ((empty, " \n"), (bad, "not-a-uuid\n"), (good, secret + "\n")):
        with open(path, "w") as f:
            f.write(text)
    a = AgentProc(os.path.join(data_dir, "d"), ["-dev", "-config", cfg])
    a.start()
    try:
        r = a.cli("acl", "bootstrap", os.path.join(data_dir, "missing"))
        assert r.code == 1 and "cannot read the bootstrap secret from" in r.err
        r = a.cli("acl", "bootstrap", empty)
        assert r.code == 1 and "is empty" in r.err
        r = a.cli("acl", "bootstrap", bad)
        assert r.code == 1 and "UUID" in r.err, r.err
        r = a.cli("acl", "bootstrap", "-", "-json", input=secret + "\n")
        assert r.code == 0, r.err
        assert json.loads(r.out)["SecretID"] == secret
        assert a.cli("status", token=secret).code == 0
        r = a.cli("acl", "bootstrap", good)
        assert r.code == 1 and "already done" in r.err
    finally:
        a.terminate()  # (no job ran)


def test_sigterm_leaves_tasks_running_and_the_next_agent_recovers_them(data_dir: str) -> None:
    a = AgentProc(data_dir, ["-dev"])
    a.start()
    pidfile = os.path.join(data_dir, "task.pid")
    try:
        alloc_id = _register(a, job_json("keep", f"echo $$ > {pidfile}; exec sleep 300"))
        wait_until(lambda: _read(pidfile).strip(), 15)
        pid = int(_read(pidfile))
        out = a.terminate()
        assert a.proc is not None and a.proc.returncode == 0, out
        assert "Caught signal: terminated" in out
        os.kill(pid, 0)  # still running without an agent
        assert not os.path.exists(a.sock)
        a.start()
        with a.http() as c:
            alloc = c.get(f"/v1/allocation/{alloc_id}").json()
        assert alloc["ClientStatus"] == "running" and alloc["TaskStates"]["web"]["State"] == "running"
        os.kill(pid, 0)
        a.stop_all_jobs()
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 20)
    finally:
        if a.proc is not None and a.proc.poll() is None:
            try:
                a.stop_all_jobs()
            finally:
                a.terminate()


def test_interrupt_shuts_down_cleanly(agent: AgentProc) -> None:
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGINT)
    out = agent.terminate()
    assert agent.proc.returncode == 0 and "Caught signal: interrupt" in out, out  # the log, if it hung


def test_a_thousand_simultaneous_requests(agent: AgentProc) -> None:
    """1,000 connections at once, each a complete HTTP/1.1 request (raw sockets: the test measures the
    server, not a client library's connection pool)."""
    _register(agent, job_json("many", "sleep 120", count=3))

    async def one() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_unix_connection(agent.sock)
        writer.write(b"GET /v1/allocations HTTP/1.1\r\nHost: rawexec\r\nConnection: close\r\n\r\n")
        await writer.drain()
        data = await reader.read()
        writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body

    async def run() -> list[tuple[int, bytes]]:
        return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(1000))), 120)

    results = asyncio.run(run())
    assert [code for code, _ in results] == [200] * 1000
    assert all(len(json.loads(body)) == 3 for _, body in results)


def test_job_run_registers_with_the_agent(agent: AgentProc, data_dir: str) -> None:
    jf = os.path.join(data_dir, "hello.nomad.hcl")
    with open(jf, "w") as f:
        f.write('variable "msg" { default = "x" }\n'
                'job "hello" {\n  group "g" {\n    count = 2\n    task "web" {\n      driver = "raw_exec"\n'
                '      kill_timeout = "1s"\n'
                '      config {\n        command = "/bin/sh"\n'
                '        args = ["-c", "echo ${var.msg}; exec sleep 120"]\n'
                "      }\n    }\n  }\n}\n")
    r = agent.cli("job", "run", "-var", "msg=from-cli", jf)
    assert r.code == 0, r.err
    assert r.out.startswith('==> Job "hello" registered') and r.out.count("placed") == 2
    with agent.http() as c:
        allocs = c.get("/v1/job/hello/allocations").json()
    assert len(allocs) == 2
    _wait_log(agent, allocs[0]["ID"], "from-cli")
    with open(jf) as f:
        text = f.read()
    with open(jf, "w") as f:  # count only: the two keep running, one is added
        f.write(text.replace("count = 2", "count = 3"))
    r = agent.cli("job", "run", "-var", "msg=from-cli", jf)
    assert r.code == 0, r.err
    assert r.out.count("updated in place") == 2 and r.out.count(" placed ") == 1, r.out
    with agent.http() as c:
        now = c.get("/v1/job/hello/allocations").json()
    assert len(now) == 3 and {a["ID"] for a in allocs} <= {a["ID"] for a in now if a["DesiredStatus"] == "run"}
    r = agent.cli("job", "run", "-output", jf)  # -output still prints the API JSON, agent untouched
    assert r.code == 0 and json.loads(r.out)["Job"]["ID"] == "hello"
    bad = os.path.join(data_dir, "docker.nomad.hcl")
    with open(bad, "w") as f:
        f.write('job "d" {\n  group "g" {\n    task "t" {\n      driver = "docker"\n'
                '      config {\n        image = "x"\n      }\n    }\n  }\n}\n')
    r = agent.cli("job", "run", bad)
    assert r.code == 1 and 'driver "docker" not available on this node' in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_agent_refuses_unusable_data_dir_and_bad_config(data_dir: str) -> None:
    blocker = os.path.join(data_dir, "file")
    with open(blocker, "w") as f:
        f.write("x")
    p = _run_agent_expecting_failure("-dev", "-data-dir", os.path.join(blocker, "sub"))
    assert p.returncode == 1 and "cannot use data_dir" in p.stderr, p
    cfg = os.path.join(data_dir, "bad.hcl")
    with open(cfg, "w") as f:
        f.write('datacentre = "dc1"\nports { http = 99999 }\n')
    p = _run_agent_expecting_failure("-config", cfg, "-data-dir", os.path.join(data_dir, "d"))
    assert p.returncode == 1 and "Error loading configuration" in p.stderr
    assert 'did you mean "datacenter"' in p.stderr and "ports.http" in p.stderr
    p = _run_agent_expecting_failure()
    assert p.returncode == 1 and "Must specify data directory" in p.stderr


def test_namespace_flag_and_env(agent: AgentProc, data_dir: str) -> None:
    """A job file's namespace is where `job run` registers it; reads default to "default" and take
    -namespace (or RAWEXEC_NAMESPACE) as nomad's do."""
    jf = os.path.join(data_dir, "ns.nomad.hcl")
    with open(jf, "w") as f:
        f.write('job "nsjob" {\n  namespace = "prod"\n  group "g" {\n    task "web" {\n      driver = "raw_exec"\n'
                '      kill_timeout = "1s"\n      config {\n        command = "/bin/sleep"\n        args = ["120"]\n'
                "      }\n    }\n  }\n}\n")
    r = agent.cli("job", "run", jf)
    assert r.code == 0 and "placed" in r.out, r.out + r.err
    assert "nsjob" not in agent.cli("job", "status").out
    r = agent.cli("job", "status", "-namespace", "prod")
    assert r.code == 0 and "nsjob" in r.out, r.err
    r = agent.cli("job", "status", "-namespace", "*", "-json", "nsjob")
    assert r.code == 0 and json.loads(r.out)["Job"]["Namespace"] == "prod", r.err
    os.environ["RAWEXEC_NAMESPACE"] = "prod"
    try:
        r = agent.cli("job", "stop", "-purge", "nsjob")
    finally:
        del os.environ["RAWEXEC_NAMESPACE"]
    assert r.code == 0 and "purged" in r.out, r.err
    assert "nsjob" not in agent.cli("job", "status", "-namespace", "*").out


def test_job_inspect_output_runs_again(agent: AgentProc, data_dir: str) -> None:
    job = job_json("sc", "exec sleep 120")
    _register(agent, job)
    job["Job"]["Meta"] = {"v": "2"}  # a second version: Version 1, Stable, indexes all set
    with agent.http() as c:
        assert c.put("/v1/jobs", json=job).status_code == 200
    r = agent.cli("job", "inspect", "-json", "sc")
    assert r.code == 0, r.err
    inspected = json.loads(r.out)
    assert inspected["Job"]["Version"] == 1 and inspected["Job"]["JobModifyIndex"] > 0
    path = os.path.join(data_dir, "sc.json")
    with open(path, "w") as f:
        f.write(r.out)
    r = agent.cli("job", "validate", path)
    assert r.code == 0 and "Job validation successful" in r.out, r.err
    assert r.err == ""  # the read-only fields are ignored silently, as Nomad does
    r = agent.cli("job", "run", "-detach", path)
    assert r.code == 0, r.err
    bare = os.path.join(data_dir, "sc.job")  # -json: JSON whatever the name; the bare job works too
    with open(bare, "w") as f:
        json.dump({**inspected["Job"], "Meta": {"v": "3"}}, f)
    r = agent.cli("job", "run", "-json", "-detach", bare)
    assert r.code == 0, r.err
    with agent.http() as c:
        assert c.get("/v1/job/sc").json()["Meta"] == {"v": "3"}


def test_status_displays_like_nomad(agent: AgentProc, data_dir: str) -> None:
    jf = os.path.join(data_dir, "sc.nomad.hcl")
    with open(jf, "w") as f:
        f.write('job "sc" {\n  group "g" {\n    task "web" {\n      driver = "raw_exec"\n      kill_timeout = "1s"\n'
                '      config {\n        command = "/bin/sleep"\n        args = ["120"]\n      }\n    }\n  }\n}\n')
    r = agent.cli("job", "run", jf)
    assert r.code == 0 and r.out.count("placed") == 1, r.err
    r = agent.cli("job", "run", jf)  # unchanged: an evaluation that places nothing
    assert r.code == 0, r.err
    assert 'evaluation ""' not in r.out and re.search(r'evaluation "[0-9a-f]{8}"', r.out) and "placed" not in r.out
    with agent.http() as c:
        wait_until(lambda: c.get("/v1/job/sc/allocations").json()[0]["ClientStatus"] == "running", 30)
        alloc_id = c.get("/v1/job/sc/allocations").json()[0]["ID"]
    r = agent.cli("alloc", "status", alloc_id)
    assert r.code == 0, r.err
    assert re.search(r"^Started At\s+= \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", r.out, re.M), r.out
    assert re.search(r"^Finished At\s+= N/A$", r.out, re.M), r.out
    assert "0001-01-01" not in r.out
    assert agent.cli("job", "stop", "sc").code == 0
    with agent.http() as c:
        wait_until(lambda: c.get("/v1/job/sc").json()["Status"] == "dead", 30, interval=0.1)
    r = agent.cli("job", "status", "sc")
    assert re.search(r"^Status\s+= dead \(stopped\)$", r.out, re.M), r.out
    r = agent.cli("status")
    assert "dead (stopped)" in r.out, r.out
    r = agent.cli("alloc", "status", alloc_id)
    assert not re.search(r"^Finished At\s+= N/A$", r.out, re.M) and "0001-01-01" not in r.out, r.out


def test_alloc_status_shows_rescheduling_as_nomad(agent: AgentProc, data_dir: str) -> None:
    jf = os.path.join(data_dir, "flaky.nomad.hcl")
    with open(jf, "w") as f:
        f.write('job "flaky" {\n  type = "batch"\n  group "g" {\n'
                '    restart {\n      attempts = 0\n      mode = "fail"\n    }\n'
                '    reschedule {\n      attempts = 2\n      interval = "1h"\n      delay = "5s"\n'
                '      delay_function = "constant"\n      unlimited = false\n    }\n'
                '    task "t" {\n      driver = "raw_exec"\n      config {\n        command = "/bin/sh"\n'
                '        args = ["-c", "exit 3"]\n      }\n    }\n  }\n}\n')
    assert agent.cli("job", "run", "-detach", jf).code == 0
    with agent.http() as c:
        def allocs() -> list[dict[str, object]]:
            return sorted(c.get("/v1/job/flaky/allocations").json(), key=lambda a: a["CreateIndex"])
        wait_until(lambda: any(a["FollowupEvalID"] for a in allocs()), 30, 0.05, "a pending reschedule")
        first = str(allocs()[0]["ID"])
        r = agent.cli("alloc", "status", first)
        assert r.code == 0, r.err
        assert re.search(r"Reschedule Eligibility\s+= [1-5]s from now", r.out), r.out
        assert "Replacement Alloc ID" not in r.out
        wait_until(lambda: len(allocs()) == 2, 15, 0.05, "the replacement")
        second = str(allocs()[1]["ID"])
    r = agent.cli("alloc", "status", first)
    assert re.search(rf"Replacement Alloc ID\s+= {second[:8]}\n", r.out) and "Reschedule Eligibility" not in r.out
    r = agent.cli("alloc", "status", second)
    assert re.search(r"Reschedule Attempts\s+= 1/2\n", r.out), r.out
