"""``ExecTaskStreaming``: the bidi stream behind ``nomad alloc exec`` (facts §2.2, rawexec §3.8).

Protocol: the first client message carries ``setup``; later ones carry stdin data, a stdin
``close``, a ``tty_size``, or nothing (a heartbeat). We send stdout/stderr chunks, a ``close``
on each stream, then ``{exited: true, result}``. A reader thread applies client messages to the
session while this generator forwards output; a client that goes away kills the command.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import grpc

from rawexec.errors import InvalidConfigError
from rawexec.plugin import convert
from rawexec.plugin.gen import driver_pb2

__all__ = ["exec_streaming"]

log = logging.getLogger("rawexec.plugin.exec")

_POLL = 0.25  # how often the output loop looks up from a quiet command to see if the client left


def _apply(session: Any, msg: Any) -> None:
    if msg.HasField("tty_size"):
        session.resize(msg.tty_size.height, msg.tty_size.width)
    if msg.HasField("stdin"):
        if msg.stdin.data:
            session.write_stdin(msg.stdin.data)
        if msg.stdin.close:
            session.close_stdin()


def _pump_input(session: Any, requests: Iterator[Any]) -> None:
    """Apply client messages until the client half-closes or goes away."""
    try:
        for msg in requests:
            try:
                _apply(session, msg)
            except (OSError, ValueError) as exc:  # the command closed its stdin or already exited
                log.debug("exec input dropped", extra={"kv": {"error": str(exc)}})
    except Exception as exc:  # the request stream ended with an error: the client is gone
        log.debug("exec input stream ended", extra={"kv": {"error": str(exc)}})


def _frame_response(frame: Any) -> Any:
    op = driver_pb2.ExecTaskStreamingIOOperation(data=frame.data, close=frame.close)
    if frame.stream == "stderr":
        return driver_pb2.ExecTaskStreamingResponse(stderr=op)
    return driver_pb2.ExecTaskStreamingResponse(stdout=op)


def exec_streaming(driver: Any, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    """Run one exec session; yields ExecTaskStreamingResponse messages."""
    try:
        first = next(requests)
    except StopIteration:
        raise InvalidConfigError("exec stream closed before its setup message") from None
    if not first.HasField("setup"):
        raise InvalidConfigError("the first ExecTaskStreaming message must carry setup (task_id, command)")
    setup = first.setup
    command = list(setup.command)
    if not command or not command[0]:
        raise InvalidConfigError("error cmd must have at least one value")
    rows = first.tty_size.height if first.HasField("tty_size") else 0
    cols = first.tty_size.width if first.HasField("tty_size") else 0
    session = driver.exec_task_streaming(setup.task_id, command, tty=setup.tty, rows=rows, cols=cols)
    cancelled = threading.Event()
    if not context.add_callback(cancelled.set):
        cancelled.set()
    try:
        if first.HasField("stdin"):
            _apply(session, first)
        reader = threading.Thread(target=_pump_input, args=(session, requests), name="exec-input",
                                  daemon=True)
        reader.start()
        open_streams = {"stdout"} if setup.tty else {"stdout", "stderr"}
        while open_streams and not cancelled.is_set():
            for frame in session.frames(poll_timeout=_POLL):
                if frame.close:
                    open_streams.discard(frame.stream)
                yield _frame_response(frame)
        result = session.result
        while result is None and not cancelled.is_set():
            try:
                result = session.wait(timeout=_POLL)
            except TimeoutError:
                continue
        if result is None:
            log.debug("exec client went away; killing the command", extra={"kv": {"task_id": setup.task_id}})
            return
        pb, _err = convert.exit_result_to_proto(result)
        yield driver_pb2.ExecTaskStreamingResponse(exited=True, result=pb)
    finally:
        session.close()
