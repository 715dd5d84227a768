"""``hashicorp.nomad.plugins.drivers.proto.Driver``: translation only.

Each method unwraps the request, calls :class:`rawexec.Driver`, wraps the answer and maps
errors through :mod:`rawexec.plugin.status`. Long-lived calls (Fingerprint, TaskEvents,
TaskStats, WaitTask, StreamStdio) each hold one server thread; they end when the client
cancels or the plugin stops, and never spin.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from rawexec.errors import (
    InvalidConfigError,
    TaskNotFoundError,
    TaskStateError,
    UnavailableError,
    UnsupportedError,
)
from rawexec.plugin import convert, hclspec
from rawexec.plugin.base_service import PluginState
from rawexec.plugin.gen import driver_pb2
from rawexec.plugin.status import abort

__all__ = ["FINGERPRINT_PERIOD", "DriverServicer"]

log = logging.getLogger("rawexec.plugin.driver")

FINGERPRINT_PERIOD = 30.0
DEFAULT_STOP_TIMEOUT = 5.0
DEFAULT_EXEC_TIMEOUT = 60.0
DEFAULT_STATS_INTERVAL = 1.0
WAIT_SLICE = 30.0  # WaitTask re-checks for a cancelled client this often while the task runs

T = TypeVar("T")


class _Cancel:
    """Set when the RPC ends (client cancel, deadline) or the plugin stops."""

    def __init__(self, context: grpc.ServicerContext, stopping: threading.Event) -> None:
        self.event = threading.Event()
        self._stopping = stopping
        if not context.add_callback(self.event.set):
            self.event.set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when the call is over."""
        if self._stopping.is_set():
            return True
        return self.event.wait(seconds) or self._stopping.is_set()

    @property
    def done(self) -> bool:
        return self.event.is_set() or self._stopping.is_set()


class DriverServicer:
    """The Driver service over one :class:`PluginState`."""

    def __init__(self, state: PluginState) -> None:
        self.state = state

    @staticmethod
    def _exited(drv: Any, task_id: str) -> bool:
        return str(drv.inspect_task(task_id).state) == "exited"

    def _call(self, context: grpc.ServicerContext, method: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception as exc:
            abort(context, exc, method)

    # --- schema, capabilities, fingerprint -------------------------------------------------------

    def TaskConfigSchema(self, request: Any, context: grpc.ServicerContext) -> Any:
        return driver_pb2.TaskConfigSchemaResponse(spec=hclspec.to_proto(hclspec.task_config_spec()))

    def Capabilities(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run() -> Any:
            from rawexec.driver import Capabilities

            drv = self.state.existing_driver()
            caps = drv.capabilities() if drv is not None else Capabilities()
            return driver_pb2.CapabilitiesResponse(capabilities=convert.capabilities_to_proto(caps))
        return self._call(context, "Capabilities", run)

    def Fingerprint(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        """Send at once, then every 30 s and whenever SetConfig changes the config; stay open."""
        cancel = _Cancel(context, self.state.stopping)
        drv = self._call(context, "Fingerprint", self.state.driver)
        wake = threading.Event()
        if not context.add_callback(wake.set):
            return
        unwatch = self.state.watch_config(wake)
        try:
            while not cancel.done:
                try:
                    resp = convert.fingerprint_to_proto(drv.fingerprint(), self.state.name)
                except Exception as exc:
                    log.error("fingerprint failed", exc_info=exc)
                    resp = driver_pb2.FingerprintResponse(
                        health=driver_pb2.FingerprintResponse.UNHEALTHY,
                        health_description="failed to fingerprint driver", err=str(exc))
                yield resp
                wake.wait(FINGERPRINT_PERIOD)
                wake.clear()
        finally:
            unwatch()

    # --- lifecycle -------------------------------------------------------------------------------

    def StartTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run() -> Any:
            if not request.HasField("task"):
                raise InvalidConfigError("StartTaskRequest.task is missing; send the task's TaskConfig")
            cfg = convert.task_config_from_proto(request.task)
            handle = self.state.driver().start_task(cfg)
            log.info("task started", extra={"kv": {"task_id": cfg.id, "task_name": cfg.name}})
            return driver_pb2.StartTaskResponse(
                result=driver_pb2.StartTaskResponse.SUCCESS,
                handle=driver_pb2.TaskHandle(version=int(handle.version), config=request.task,
                                             state=driver_pb2.RUNNING, driver_state=handle.dumps()))
        return self._call(context, "StartTask", run)

    def RecoverTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run() -> Any:
            from rawexec.driver import TaskHandle

            if not request.HasField("handle"):
                raise InvalidConfigError("handle cannot be nil")
            pb = request.handle
            if not pb.driver_state:
                raise InvalidConfigError(
                    "failed to decode task state from handle: driver_state is empty (the handle was not "
                    "made by this driver)")
            handle = TaskHandle.loads(pb.driver_state)
            want = pb.config.id or request.task_id
            if want and want != handle.config.id:
                raise InvalidConfigError(
                    f"handle mismatch: handle.config.id is {want!r} but driver_state belongs to task "
                    f"{handle.config.id!r}")
            self.state.driver().recover_task(handle)
            log.info("task recovered", extra={"kv": {"task_id": handle.config.id}})
            return driver_pb2.RecoverTaskResponse()
        return self._call(context, "RecoverTask", run)

    def WaitTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        drv = self._call(context, "WaitTask", self.state.driver)
        cancel = _Cancel(context, self.state.stopping)
        task_id = request.task_id
        while True:
            try:
                result = drv.wait_task(task_id, timeout=WAIT_SLICE)
            except TimeoutError:
                result = None
            except Exception as exc:
                abort(context, exc, "WaitTask")
            if result is not None:
                pb, err = convert.exit_result_to_proto(result)
                return driver_pb2.WaitTaskResponse(result=pb, err=err)
            if cancel.done:
                context.abort(grpc.StatusCode.CANCELLED, "WaitTask cancelled")

    def StopTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run() -> Any:
            timeout = convert.duration_seconds(
                request.timeout if request.HasField("timeout") else None, DEFAULT_STOP_TIMEOUT)
            kwargs = {"signal": request.signal} if request.signal else {}
            drv = self.state.driver()
            try:
                if self._exited(drv, request.task_id):
                    return driver_pb2.StopTaskResponse()  # already gone: success, as Nomad expects
                drv.stop_task(request.task_id, timeout, **kwargs)
            except TaskNotFoundError:
                log.debug("stop of an unknown task: nothing to do", extra={"kv": {"task_id": request.task_id}})
            except UnavailableError:
                if not self._exited(drv, request.task_id):
                    raise
            return driver_pb2.StopTaskResponse()
        return self._call(context, "StopTask", run)

    def DestroyTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run() -> Any:
            try:
                self.state.driver().destroy_task(request.task_id, force=request.force)
            except TaskNotFoundError:
                log.debug("destroy of an unknown task: nothing to do",
                          extra={"kv": {"task_id": request.task_id}})
            return driver_pb2.DestroyTaskResponse()
        return self._call(context, "DestroyTask", run)

    def InspectTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._call(context, "InspectTask", lambda: convert.task_status_to_proto(
            self.state.driver().inspect_task(request.task_id)))

    def SignalTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run() -> Any:
            if not request.signal:
                raise InvalidConfigError('signal is empty; name one, e.g. "SIGHUP"')
            self.state.driver().signal_task(request.task_id, request.signal)
            return driver_pb2.SignalTaskResponse()
        return self._call(context, "SignalTask", run)

    def ExecTask(self, request: Any, context: grpc.ServicerContext) -> Any:
        def run() -> Any:
            timeout = convert.duration_seconds(
                request.timeout if request.HasField("timeout") else None, DEFAULT_EXEC_TIMEOUT)
            res = self.state.driver().exec_task(request.task_id, list(request.command), timeout)
            pb, _err = convert.exit_result_to_proto(res.exit_result)
            return driver_pb2.ExecTaskResponse(stdout=res.output, result=pb)
        return self._call(context, "ExecTask", run)

    # --- streams: stats, events, exec --------------------------------------------------------------

    def TaskStats(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        """One sample per ``collection_interval`` until the client goes away or the task exits.

        A sample that cannot be read is sent as zeros (timestamp and aggregate always set: the
        client dereferences both), so the stream never ends just because /proc was racy.
        """
        drv = self._call(context, "TaskStats", self.state.driver)
        task_id = request.task_id
        interval = convert.duration_seconds(
            request.collection_interval if request.HasField("collection_interval") else None,
            DEFAULT_STATS_INTERVAL) or DEFAULT_STATS_INTERVAL
        interval = max(interval, 0.01)
        cancel = _Cancel(context, self.state.stopping)
        # An unknown task is an error at once; after that the stream runs until cancelled.
        self._call(context, "TaskStats", lambda: drv.inspect_task(task_id))
        while not cancel.done:
            usage = None
            try:
                usage = drv.task_stats(task_id)
            except TaskNotFoundError as exc:
                abort(context, exc, "TaskStats")
            except TaskStateError:
                return  # the task exited: end the stream cleanly, as Nomad's drivers do
            except Exception as exc:
                log.debug("stats sample failed", extra={"kv": {"task_id": task_id, "error": str(exc)}})
            yield convert.task_stats_to_proto(task_id, usage, time.time_ns())
            cancel.wait(interval)

    def TaskEvents(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        """The driver's task events (OOM kill, lost shim, log write failures), for as long as the
        client listens. Held open when quiet: ending it would make Nomad re-dispense the plugin."""
        drv = self._call(context, "TaskEvents", self.state.driver)
        events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        if not context.add_callback(lambda: events.put(None)):
            return
        unsubscribe = drv.subscribe_events(events.put)
        try:
            while not self.state.stopping.is_set():
                ev = events.get()
                if ev is None:  # the call ended (client went away, or stop() cancelled it)
                    break
                yield convert.task_event_to_proto(ev)
        finally:
            unsubscribe()

    def ExecTaskStreaming(self, request_iterator: Iterator[Any],
                          context: grpc.ServicerContext) -> Iterator[Any]:
        from rawexec.plugin.exec_stream import exec_streaming

        try:
            yield from exec_streaming(self.state.driver(), request_iterator, context)
        except Exception as exc:
            abort(context, exc, "ExecTaskStreaming")

    # --- networks, init, shutdown ------------------------------------------------------------------

    def CreateNetwork(self, request: Any, context: grpc.ServicerContext) -> Any:
        abort(context, UnsupportedError(
            "CreateNetwork RPC not supported by driver: raw_exec does not create networks "
            "(capabilities.must_create_network is false)"), "CreateNetwork")

    def DestroyNetwork(self, request: Any, context: grpc.ServicerContext) -> Any:
        abort(context, UnsupportedError(
            "DestroyNetwork RPC not supported by driver: raw_exec does not create networks "
            "(capabilities.must_create_network is false)"), "DestroyNetwork")

    def Init(self, request: Any, context: grpc.ServicerContext) -> Any:
        return driver_pb2.InitResponse()

    def Shutdown(self, request: Any, context: grpc.ServicerContext) -> Any:
        log.debug("driver shutdown requested; tasks keep running")
        return driver_pb2.ShutdownResponse()
