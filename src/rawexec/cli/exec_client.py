"""The websocket side of ``rawexec alloc exec``: stdin → agent, agent → stdout/stderr, TTY resize."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import sys
import termios
import threading
import tty as ttymod
from collections.abc import Iterator
from types import FrameType
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect, unix_connect

from rawexec.api.client import path_escape
from rawexec.cli.client import ClientCtx
from rawexec.cli.logwatch import Waker
from rawexec.errors import RawExecError, UnavailableError

__all__ = ["run_exec"]


def _open(ctx: ClientCtx, alloc_id: str, task: str, command: list[str], tty: bool) -> ClientConnection:
    api = ctx.api
    path = f"/v1/client/allocation/{path_escape(alloc_id)}/exec"
    url = api.websocket_url(path, task=task, command=json.dumps(command), tty=tty)
    headers = {"X-Nomad-Token": api.token} if api.token else None
    try:
        if api.unix_path:
            return unix_connect(api.unix_path, url, additional_headers=headers, compression=None,
                                ping_interval=None, max_size=None)
        return connect(url, additional_headers=headers, compression=None, ping_interval=None, max_size=None,
                       proxy=None)
    except OSError as e:
        raise UnavailableError(f"cannot reach the agent at {api.address}: {e}") from None
    except Exception as e:  # handshake refused (403, 404, ...)
        raise RawExecError(f"exec refused by the agent: {e}") from None


@contextlib.contextmanager
def _raw_terminal(enabled: bool) -> Iterator[None]:
    if not enabled or not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        ttymod.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _send(ws: ClientConnection, msg: dict[str, Any]) -> bool:
    try:
        ws.send(json.dumps(msg))
        return True
    except ConnectionClosed:
        return False


def _pump_stdin(ws: ClientConnection) -> None:
    fd = sys.stdin.fileno()
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            _send(ws, {"stdin": {"close": True}})
            return
        if not _send(ws, {"stdin": {"data": base64.b64encode(data).decode("ascii")}}):
            return


def _ignore_signal(_s: int, _f: FrameType | None) -> None:
    """A Python handler that does nothing: it makes the C handler write to the wake-up fd."""


def _size() -> dict[str, int]:
    """The terminal's size now. Asked of the terminal itself, never of ``$COLUMNS``/``$LINES``
    (``shutil.get_terminal_size`` prefers those: stale after a resize)."""
    for fd in (0, 1, 2):
        try:
            cols, rows = os.get_terminal_size(fd)
        except OSError:
            continue
        if cols > 0 and rows > 0:
            return {"height": rows, "width": cols}
    return {"height": 24, "width": 80}


def run_exec(ctx: ClientCtx, alloc_id: str, task: str, command: list[str], *, tty: bool, stdin: bool) -> int:
    """Run the command; return its exit code."""
    ws = _open(ctx, alloc_id, task, command, tty)
    code = -1
    old_winch: Any = None
    old_wakeup = -1
    try:
        if tty:
            # A thread sends the new size, woken by the C signal handler through the wake-up
            # fd. Not the Python handler: it runs in the main thread only once that thread runs
            # Python code again (it sits in recv() until the task prints), and sending from it
            # would take the connection's lock, maybe while the main thread holds it.
            waker = Waker()

            def resize() -> None:
                while waker.wait(None) and _send(ws, {"tty_size": _size()}):
                    pass

            threading.Thread(target=resize, daemon=True, name="exec-resize").start()
            old_winch = signal.signal(signal.SIGWINCH, _ignore_signal)
            old_wakeup = waker.wake_on_signals()
            _send(ws, {"tty_size": _size()})  # after the handler: no resize from now on is missed
        if stdin:
            threading.Thread(target=_pump_stdin, args=(ws,), daemon=True, name="exec-stdin").start()
        else:
            _send(ws, {"stdin": {"close": True}})
        with _raw_terminal(tty and stdin):
            while True:
                try:
                    raw = ws.recv()
                except ConnectionClosed as e:
                    rcvd = e.rcvd
                    if code >= 0 or rcvd is None or rcvd.code == 1000:
                        break
                    raise RawExecError(rcvd.reason or f"the agent closed the exec stream (code {rcvd.code})") \
                        from None
                msg = json.loads(raw)
                for name, stream in (("stdout", sys.stdout.buffer), ("stderr", sys.stderr.buffer)):
                    part = msg.get(name)
                    if isinstance(part, dict) and part.get("data"):
                        stream.write(base64.b64decode(part["data"]))
                        stream.flush()
                if msg.get("exited"):
                    code = int((msg.get("result") or {}).get("exit_code", 0))
    finally:
        if old_winch is not None:
            signal.set_wakeup_fd(old_wakeup)
            signal.signal(signal.SIGWINCH, old_winch)
        with contextlib.suppress(Exception):
            ws.close()
    return code
