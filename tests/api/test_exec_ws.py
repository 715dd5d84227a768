"""``/v1/client/allocation/:id/exec`` over a real websocket (Nomad's message format)."""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect, unix_connect

from tests.api.conftest import Served
from tests.api.test_http import job_json, register
from tests.helpers.util import wait_until


def _url(alloc_id: str, command: list[str], *, task: str = "web", tty: bool = False, **extra: str) -> str:
    q = urlencode({"task": task, "command": json.dumps(command), "tty": "true" if tty else "false", **extra})
    return f"ws://rawexec/v1/client/allocation/{alloc_id}/exec?{q}"


def _open(s: Served, alloc_id: str, command: list[str], **kw: Any) -> ClientConnection:
    headers = kw.pop("headers", None)
    return unix_connect(s.server.unix_path, _url(alloc_id, command, **kw), additional_headers=headers,
                        compression=None, ping_interval=None)


def _drain(ws: ClientConnection, timeout: float = 20) -> tuple[bytes, bytes, int | None, list[dict[str, Any]]]:
    out, err, code, msgs = b"", b"", None, []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = json.loads(ws.recv(timeout=deadline - time.monotonic()))
        except ConnectionClosed:
            break
        msgs.append(msg)
        if "stdout" in msg and msg["stdout"].get("data"):
            out += base64.b64decode(msg["stdout"]["data"])
        if "stderr" in msg and msg["stderr"].get("data"):
            err += base64.b64decode(msg["stderr"]["data"])
        if msg.get("exited"):
            code = msg["result"]["exit_code"]
    return out, err, code, msgs


@pytest.fixture
def alloc_id(served: Served) -> str:
    return register(served, job_json("execjob", "sleep", "120"))


def test_exec_output_streams_and_exit_code(served: Served, alloc_id: str) -> None:
    with _open(served, alloc_id, ["/bin/sh", "-c", "echo out; echo err >&2; exit 7"]) as ws:
        out, err, code, msgs = _drain(ws)
        assert ws.close_code == 1000
    assert out == b"out\n" and err == b"err\n" and code == 7
    assert {"stdout": {"close": True}} in msgs and {"stderr": {"close": True}} in msgs
    assert msgs[-1] == {"exited": True, "result": {"exit_code": 7}}


def test_exec_stdin_and_close(served: Served, alloc_id: str) -> None:
    with _open(served, alloc_id, ["/bin/cat"]) as ws:
        ws.send(json.dumps({"stdin": {"data": base64.b64encode(b"ping\n").decode()}}))
        ws.send(json.dumps({"stdin": {"close": True}}))
        out, _err, code, _ = _drain(ws)
    assert out == b"ping\n" and code == 0


def test_exec_tty_and_resize(served: Served, alloc_id: str) -> None:
    script = "stty size; read x; stty size"
    with _open(served, alloc_id, ["/bin/sh", "-c", script], tty=True) as ws:
        ws.send(json.dumps({"tty_size": {"height": 42, "width": 132}}))
        ws.send(json.dumps({"stdin": {"data": base64.b64encode(b"go\r").decode()}}))
        out, _err, code, msgs = _drain(ws)
    assert out.replace(b"\r", b"").rstrip(b"\n").split(b"\n")[-1] == b"42 132", out
    assert code == 0
    assert not any("stderr" in m for m in msgs)  # a TTY merges stderr into stdout


def test_client_dropping_mid_stream_kills_the_command(served: Served, alloc_id: str, tmp_path: Any) -> None:
    pidfile = os.path.join(str(tmp_path), "exec.pid")
    with _open(served, alloc_id, ["/bin/sh", "-c", f"echo $$ > {pidfile}; echo started; exec sleep 300"]) as ws:
        got = b""
        while b"started" not in got:
            msg = json.loads(ws.recv(timeout=20))
            if "stdout" in msg and msg["stdout"].get("data"):
                got += base64.b64decode(msg["stdout"]["data"])
        with open(pidfile) as f:
            pid = int(f.read())
        assert _alive(pid)
    # the client is gone mid-stream
    wait_until(lambda: not _alive(pid), 15, msg="the exec'd command survived its client")
    assert served.unix.get("/v1/agent/self").status_code == 200


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # (reaped between the open and the read: ESRCH)
        return False


@pytest.mark.parametrize(("params", "needle"), [
    ({"command": "not-json"}, "JSON array"),
    ({"command": "[]"}, "non-empty"),
    ({"command": '["/bin/true"]', "task": ""}, "task"),
])
def test_exec_bad_requests_close_with_reason(served: Served, alloc_id: str, params: dict[str, str],
                                             needle: str) -> None:
    q = urlencode({"task": "web", "tty": "false", **params})
    with unix_connect(served.server.unix_path, f"ws://rawexec/v1/client/allocation/{alloc_id}/exec?{q}",
                      compression=None, ping_interval=None) as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1008 and needle in (ws.close_reason or "")


def test_exec_unknown_alloc_and_task(served: Served, alloc_id: str) -> None:
    for aid, task in (("nope", "web"), (alloc_id, "nope")):
        with _open(served, aid, ["/bin/true"], task=task) as ws:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
            assert ws.close_code == 1008 and "not found" in (ws.close_reason or ""), ws.close_reason


def test_exec_over_tcp(served: Served, alloc_id: str) -> None:
    assert served.server.http_url is not None
    url = _url(alloc_id, ["/bin/echo", "tcp-ok"]).replace("ws://rawexec", served.server.http_url.replace("http", "ws"))
    with connect(url, compression=None, ping_interval=None, proxy=None) as ws:
        out, _err, code, _ = _drain(ws)
    assert out == b"tcp-ok\n" and code == 0


def test_exec_needs_a_token_with_acl(served_acl: Served) -> None:
    s = served_acl
    secret = s.unix.put("/v1/acl/bootstrap").json()["SecretID"]
    auth = {"X-Nomad-Token": secret}
    alloc_id = register(s, job_json("aclexec", "sleep", "60"), headers=auth)
    with _open(s, alloc_id, ["/bin/echo", "x"]) as ws:  # no token
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1008 and ws.close_reason == "Permission denied"
    with pytest.raises(Exception, match="403"):  # a wrong token is refused at the handshake
        _open(s, alloc_id, ["/bin/echo", "x"], headers={"X-Nomad-Token": "wrong"})
    with _open(s, alloc_id, ["/bin/echo", "header"], headers=auth) as ws:
        assert _drain(ws)[0] == b"header\n"
    with _open(s, alloc_id, ["/bin/echo", "handshake"], ws_handshake="true") as ws:  # browsers: token in frame 1
        ws.send(json.dumps({"version": 1, "auth_token": secret}))
        assert _drain(ws)[0] == b"handshake\n"
