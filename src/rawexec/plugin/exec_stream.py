"""``ExecTaskStreaming``: the bidi stream behind ``nomad alloc exec`` (facts §2.2, rawexec §3.8).

Protocol: the first client message carries ``setup``; later ones carry stdin data, a stdin
``close``, a ``tty_size``, or nothing (a heartbeat). We send stdout/stderr chunks, a ``close``
on each stream, then ``{exited: true, result}``. The session's output is read by one thread
(its API blocks) and handed to the event loop through a small queue (backpressure: the thread
waits while the client is slow); client messages are applied on the blocking pool. A client
that goes away kills the command.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from typing import Any

import grpc

from rawexec.errors import InvalidConfigError
from rawexec.plugin import convert
from rawexec.plugin.gen import driver_pb2
from rawexec.plugin.server import run_blocking

__all__ = ["exec_streaming"]

log = logging.getLogger("rawexec.plugin.exec")

_POLL = 0.25  # how often the output thread looks up from a quiet command to see if the client left
_QUEUE = 16  # output messages in flight between the output thread and the loop
_JOIN_S = 10.0  # how long a finished stream waits for its output thread before closing the session
_END = object()
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # (missing from grpc-stubs)


def _apply(session: Any, msg: Any) -> None:
    if msg.HasField("tty_size"):
        session.resize(msg.tty_size.height, msg.tty_size.width)
    if msg.HasField("stdin"):
        if msg.stdin.data:
            session.write_stdin(msg.stdin.data)
        if msg.stdin.close:
            session.close_stdin()


def _apply_logged(session: Any, msg: Any) -> None:
    try:
        _apply(session, msg)
    except (OSError, ValueError) as exc:  # the command closed its stdin or already exited
        log.debug("exec input dropped", extra={"kv": {"error": str(exc)}})


async def _pump_input(session: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Apply client messages until the client half-closes or goes away."""
    try:
        while True:
            msg = await context.read()
            if msg is _EOF:
                return
            await run_blocking(functools.partial(_apply_logged, session, msg))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the request stream ended with an error: the client is gone
        log.debug("exec input stream ended", extra={"kv": {"error": str(exc)}})


def _frame_response(frame: Any) -> Any:
    op = driver_pb2.ExecTaskStreamingIOOperation(data=frame.data, close=frame.close)
    if frame.stream == "stderr":
        return driver_pb2.ExecTaskStreamingResponse(stderr=op)
    return driver_pb2.ExecTaskStreamingResponse(stdout=op)


class _Output:
    """The output thread: session frames, then the exit, as messages on an asyncio queue."""

    def __init__(self, session: Any, tty: bool, loop: asyncio.AbstractEventLoop) -> None:
        self.session = session
        self.tty = tty
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue(_QUEUE)
        self.cancelled = threading.Event()

    def _put(self, item: Any) -> bool:
        """Hand ``item`` to the loop, waiting while the queue is full; False once cancelled."""
        fut = asyncio.run_coroutine_threadsafe(self.queue.put(item), self.loop)
        while True:
            try:
                fut.result(timeout=_POLL)
                return True
            except TimeoutError:
                if self.cancelled.is_set():
                    fut.cancel()
                    return False

    def run(self) -> None:
        try:
            open_streams = {"stdout"} if self.tty else {"stdout", "stderr"}
            while open_streams and not self.cancelled.is_set():
                for frame in self.session.frames(poll_timeout=_POLL):
                    if frame.close:
                        open_streams.discard(frame.stream)
                    if not self._put(_frame_response(frame)):
                        return
            result = self.session.result
            while result is None and not self.cancelled.is_set():
                try:
                    result = self.session.wait(timeout=_POLL)
                except TimeoutError:
                    continue
            if result is not None:
                pb, _err = convert.exit_result_to_proto(result)
                self._put(driver_pb2.ExecTaskStreamingResponse(exited=True, result=pb))
        except Exception as exc:
            self._put(exc)
        finally:
            if not self.cancelled.is_set():
                self._put(_END)


async def exec_streaming(driver: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Run one exec session, writing ExecTaskStreamingResponse messages to ``context``."""
    first = await context.read()
    if first is _EOF:
        raise InvalidConfigError("exec stream closed before its setup message")
    if not first.HasField("setup"):
        raise InvalidConfigError("the first ExecTaskStreaming message must carry setup (task_id, command)")
    setup = first.setup
    command = list(setup.command)
    if not command or not command[0]:
        raise InvalidConfigError("error cmd must have at least one value")
    rows = first.tty_size.height if first.HasField("tty_size") else 0
    cols = first.tty_size.width if first.HasField("tty_size") else 0
    session = await run_blocking(lambda: driver.exec_task_streaming(setup.task_id, command, tty=setup.tty,
                                                                     rows=rows, cols=cols))
    loop = asyncio.get_running_loop()
    output = _Output(session, setup.tty, loop)
    reader: asyncio.Task[None] | None = None
    out_thread: threading.Thread | None = None
    finished = False
    try:
        if first.HasField("stdin"):
            await run_blocking(lambda: _apply_logged(session, first))
        reader = loop.create_task(_pump_input(session, context), name="exec-input")
        out_thread = threading.Thread(target=output.run, name="exec-output", daemon=True)
        out_thread.start()
        while True:
            item = await output.queue.get()
            if item is _END:
                finished = True
                return
            if isinstance(item, BaseException):
                raise item
            await context.write(item)
    finally:
        output.cancelled.set()
        if reader is not None:
            reader.cancel()
        if not finished:
            log.debug("exec client went away; killing the command", extra={"kv": {"task_id": setup.task_id}})
        if out_thread is not None and out_thread.is_alive():
            # The output thread reads the session's descriptors: close them only once it is done
            # (it looks up every _POLL). A number closed under it is reused at once by the next
            # open of this process -- another session's pipe, which it would then read or close.
            thread = out_thread
            await run_blocking(lambda: thread.join(_JOIN_S))
            if thread.is_alive():
                log.warning("exec output thread still running after %.0fs; closing its session anyway", _JOIN_S)
        session.close()
