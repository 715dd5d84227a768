"""``/v1/client/allocation/:id/exec``: ``nomad alloc exec`` over a websocket, in Nomad's message format.

Query: ``task``, ``command`` (a JSON array), ``tty``, ``ws_handshake``. Text frames, JSON:

- client → agent: ``{"stdin": {"data": "<base64>"}}``, ``{"stdin": {"close": true}}``,
  ``{"tty_size": {"height": H, "width": W}}``; with ``ws_handshake=true`` the first frame is
  ``{"version": 1, "auth_token": "..."}``.
- agent → client: ``{"stdout": {"data": "<base64>"}}``, ``{"stderr": {...}}``, ``{"stdout": {"close": true}}``,
  then ``{"exited": true, "result": {"exit_code": N}}`` and a normal close (1000).

Errors close the socket with 1008 (bad request / not found / denied) or 1011 (internal) and the
message as the close reason. A client that goes away mid-stream kills the command.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import threading
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from rawexec.api.acl import PermissionDeniedError, TokenStore
from rawexec.api.common import ApiError, status_for, to_thread
from rawexec.api.protocol import AgentAPI
from rawexec.driver import ExecSession
from rawexec.driver.execstream import ExecFrame

__all__ = ["exec_endpoint"]

_POLL_S = 0.05
WS_POLICY = 1008
WS_INTERNAL = 1011


def _close_code(exc: BaseException) -> int:
    return WS_INTERNAL if status_for(exc) >= 500 else WS_POLICY


def _reason(text: str) -> str:
    # A close reason must fit in 123 bytes.
    raw = text.encode("utf-8")[:120]
    return raw.decode("utf-8", errors="ignore")


def _parse_command(raw: str | None) -> list[str]:
    if not raw:
        raise ApiError(400, 'missing command: add ?command=["/bin/sh"] (a JSON array)')
    try:
        cmd = json.loads(raw)
    except ValueError:
        raise ApiError(400, f"command must be a JSON array of strings, got {raw!r}") from None
    if not isinstance(cmd, list) or not cmd or not all(isinstance(c, str) for c in cmd):
        raise ApiError(400, "command must be a non-empty JSON array of strings")
    return cmd


def _frame_json(fr: ExecFrame) -> str:
    op: dict[str, Any] = {"close": True} if fr.close else {"data": base64.b64encode(fr.data).decode("ascii")}
    return json.dumps({fr.stream: op})


class _Pump:
    """Reads the session's output in a worker thread and hands frames to the event loop."""

    def __init__(self, session: ExecSession, loop: asyncio.AbstractEventLoop) -> None:
        self.session = session
        self.loop = loop
        self.queue: asyncio.Queue[ExecFrame | None] = asyncio.Queue()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="exec-output", daemon=True)

    def _put(self, item: ExecFrame | None) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def _run(self) -> None:
        s = self.session
        open_streams = 1 if s.tty else 2
        try:
            while not self.stop.is_set():
                for fr in s.frames(poll_timeout=_POLL_S):
                    self._put(fr)
                    if fr.close:
                        open_streams -= 1
                    if self.stop.is_set():
                        return
                if open_streams <= 0:
                    while s.result is None and not self.stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            s.wait(timeout=_POLL_S)
                    return
        except BaseException as e:  # reported to the client as the close reason
            self.error = e
        finally:
            self._put(None)


async def _authenticate(ws: WebSocket, tokens: TokenStore) -> None:
    """With ``ws_handshake=true`` the token comes in the first frame (browsers cannot set headers)."""
    first = await ws.receive_text()
    try:
        msg = json.loads(first)
    except ValueError:
        raise ApiError(400, "handshake: the first frame must be JSON {\"version\": 1, \"auth_token\": \"...\"}") \
            from None
    if not isinstance(msg, dict) or msg.get("version") != 1:
        raise ApiError(400, 'handshake: unsupported version; send {"version": 1, "auth_token": "..."}')
    if tokens.enabled and not ws.scope.get("rawexec.authenticated"):
        try:
            tokens.resolve(str(msg.get("auth_token") or ""))
        except PermissionDeniedError as e:
            raise ApiError(403, e.message) from None


async def exec_endpoint(agent: AgentAPI, tokens: TokenStore, ws: WebSocket) -> None:
    await ws.accept()
    session: ExecSession | None = None
    pump: _Pump | None = None
    try:
        q = ws.query_params
        if q.get("ws_handshake", "").lower() in ("1", "true", "t"):
            await _authenticate(ws, tokens)
        elif tokens.enabled and not ws.scope.get("rawexec.authenticated"):
            raise ApiError(403, "Permission denied")
        task = q.get("task", "")
        if not task:
            raise ApiError(400, "missing task name: add ?task=<name>")
        command = _parse_command(q.get("command"))
        tty = q.get("tty", "").lower() in ("1", "true", "t")
        alloc_id = ws.path_params["alloc_id"]
        session = await to_thread(agent.exec_task, alloc_id, task, command, tty)
        pump = _Pump(session, asyncio.get_running_loop())
        pump.thread.start()
        reader = asyncio.create_task(_read_input(ws, session))
        try:
            while True:
                getter = asyncio.ensure_future(pump.queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    raise WebSocketDisconnect(1001)  # the client went away mid-stream
                fr = getter.result()
                if fr is None:
                    break
                await ws.send_text(_frame_json(fr))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        if pump.error is not None:
            raise pump.error
        result = session.result
        code = result.exit_code if result is not None else -2
        await ws.send_text(json.dumps({"exited": True, "result": {"exit_code": code}}))
        await ws.close(1000)
    except WebSocketDisconnect:
        pass  # the client went away: the finally below kills the command
    except Exception as e:
        if ws.application_state == WebSocketState.CONNECTED:
            msg = e.message if isinstance(e, ApiError) else str(e) or type(e).__name__
            with contextlib.suppress(Exception):
                await ws.close(_close_code(e), _reason(msg))
    finally:
        if pump is not None:
            pump.stop.set()
            await asyncio.to_thread(pump.thread.join, 5.0)
        if session is not None:
            session.close()


async def _read_input(ws: WebSocket, session: ExecSession) -> None:
    """Client frames → the session (stdin data/close, tty resizes). Ends when the client disconnects."""
    try:
        while True:
            raw = await ws.receive_text()
            try:
                msg = json.loads(raw)
            except ValueError:
                continue  # Nomad ignores frames it cannot decode
            if not isinstance(msg, dict):
                continue
            stdin = msg.get("stdin")
            if isinstance(stdin, dict):
                data = stdin.get("data")
                if isinstance(data, str) and data:
                    try:
                        payload = base64.b64decode(data, validate=True)
                    except (binascii.Error, ValueError):
                        continue
                    with contextlib.suppress(ValueError, OSError):
                        await asyncio.to_thread(session.write_stdin, payload)
                if stdin.get("close"):
                    with contextlib.suppress(ValueError, OSError):
                        session.close_stdin()
            size = msg.get("tty_size")
            if isinstance(size, dict):
                h, w = size.get("height"), size.get("width")
                if isinstance(h, int) and isinstance(w, int):
                    with contextlib.suppress(OSError):
                        session.resize(h, w)
    except WebSocketDisconnect:
        return  # the client dropped mid-stream: the endpoint stops and kills the command
