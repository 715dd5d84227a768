"""``hashicorp.nomad.plugins.drivers.proto.Driver``: translation only.

Each method unwraps the request, calls :class:`rawexec.Driver`, wraps the answer and maps
errors through :mod:`rawexec.plugin.status`. The methods are ``grpc.aio`` coroutines; driver
calls that may block run on the blocking pool (:func:`rawexec.plugin.server.run_blocking`).

Long-lived calls cost nothing while quiet: Fingerprint and TaskEvents wait on loop events,
WaitTask parks one pool thread in the driver's own wait (no polling; it re-checks only every
30 s), and all TaskStats streams share one ticker per interval (:class:`StatsHub`). They end
when the client cancels or the plugin stops (the server cancels every call).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
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
from rawexec.plugin.server import run_blocking
from rawexec.plugin.status import abort

__all__ = ["FINGERPRINT_PERIOD", "DriverServicer", "StatsHub"]

log = logging.getLogger("rawexec.plugin.driver")

FINGERPRINT_PERIOD = 30.0
DEFAULT_STOP_TIMEOUT = 5.0
DEFAULT_EXEC_TIMEOUT = 60.0
DEFAULT_STATS_INTERVAL = 1.0
WAIT_SLICE = 30.0  # a WaitTask's pool thread wakes this often while the task runs (to let go of a cancelled call)

T = TypeVar("T")


class _StatsStream:
    """One TaskStats call as the ticker sees it: where to write, and how the call ends."""

    __slots__ = ("context", "done", "task_id", "writing")

    def __init__(self, task_id: str, context: grpc.aio.ServicerContext[Any, Any],
                 done: asyncio.Future[BaseException | None]) -> None:
        self.task_id = task_id
        self.context = context
        self.done = done  # result None: end the call cleanly; an exception: abort with it
        self.writing = False  # a sample is still on its way: skip this tick (a slow reader)

    def finish(self, outcome: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_result(outcome)

    def written(self, fut: asyncio.Future[None]) -> None:
        self.writing = False
        if fut.cancelled() or fut.exception() is not None:
            self.finish(None)  # the call is over (client gone, server stopping)


_ENDED = object()  # the task exited: its streams end cleanly


def _sample(drv: Any, task_id: str, now_ns: int) -> Any:
    """One TaskStatsResponse for ``task_id``, already serialized (``bytes``: serialized here, on
    the pool thread, not on the event loop, and written as they are); ``_ENDED`` when the task
    exited; a TaskNotFoundError instance when the task is unknown. A sample that cannot be read
    is sent as zeros (timestamp and aggregate always set: the client dereferences both), so a
    stream never ends just because /proc was racy."""
    usage = None
    try:
        usage = drv.task_stats(task_id)
    except TaskNotFoundError as exc:
        return exc
    except TaskStateError:
        return _ENDED
    except Exception as exc:
        log.debug("stats sample failed", extra={"kv": {"task_id": task_id, "error": str(exc)}})
    return convert.task_stats_to_proto(task_id, usage, now_ns).SerializeToString()


def _log_started(task_id: str, task_name: str) -> None:
    log.info("task started", extra={"kv": {"task_id": task_id, "task_name": task_name}})


class StatsHub:
    """Every TaskStats stream of the plugin, fed by one ticker per collection interval.

    A stream gets its first sample at once. After that, each tick of its interval's ticker
    collects every streamed task once, in one pass on one pool thread, and writes each stream
    its sample. No thread, timer or wake-up per stream; a quiet plugin has no ticker at all.
    """

    def __init__(self) -> None:
        self._streams: dict[float, dict[_StatsStream, None]] = {}
        self._tickers: dict[float, asyncio.Task[None]] = {}

    def stream_count(self) -> int:
        return sum(len(v) for v in self._streams.values())

    async def serve(self, drv: Any, task_id: str, interval: float,
                    context: grpc.aio.ServicerContext[Any, Any]) -> BaseException | None:
        """Run one TaskStats call; returns how it ends (None: cleanly, else the error to abort with)."""
        first = await run_blocking(lambda: _sample(drv, task_id, time.time_ns()))
        if first is _ENDED:
            return None
        if isinstance(first, BaseException):
            return first
        await context.write(first)
        loop = asyncio.get_running_loop()
        stream = _StatsStream(task_id, context, loop.create_future())
        self._streams.setdefault(interval, {})[stream] = None
        if interval not in self._tickers:
            self._tickers[interval] = loop.create_task(self._tick(drv, interval), name=f"stats-{interval}")
        try:
            return await stream.done
        finally:
            streams = self._streams.get(interval)
            if streams is not None:
                streams.pop(stream, None)

    async def _tick(self, drv: Any, interval: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + interval
        try:
            while True:
                await asyncio.sleep(max(0.0, due - loop.time()))
                due += interval
                if due < loop.time():  # fell behind (a slow pass): skip, don't burst
                    due = loop.time() + interval
                streams = list(self._streams.get(interval, ()))
                if not streams:
                    return
                task_ids = list(dict.fromkeys(s.task_id for s in streams if not s.writing))
                if not task_ids:
                    continue
                try:
                    samples = await run_blocking(functools.partial(self._collect, drv, task_ids))
                except Exception as exc:  # pragma: no cover - _sample already catches per task
                    log.error("stats collection pass failed", exc_info=exc)
                    continue
                for stream in streams:
                    if stream.writing or stream.done.done():
                        continue
                    sample = samples.get(stream.task_id)
                    if sample is None:
                        continue
                    if sample is _ENDED:
                        stream.finish(None)
                    elif isinstance(sample, BaseException):
                        stream.finish(sample)
                    else:
                        stream.writing = True
                        fut = asyncio.ensure_future(stream.context.write(sample))
                        fut.add_done_callback(stream.written)
        finally:
            self._tickers.pop(interval, None)
            if self._streams.get(interval) == {}:
                del self._streams[interval]

    @staticmethod
    def _collect(drv: Any, task_ids: list[str]) -> dict[str, Any]:
        now_ns = time.time_ns()
        return {tid: _sample(drv, tid, now_ns) for tid in task_ids}


Ctx = grpc.aio.ServicerContext[Any, Any]


class DriverServicer:
    """The Driver service over one :class:`PluginState`."""

    def __init__(self, state: PluginState) -> None:
        self.state = state
        self.stats = StatsHub()

    @staticmethod
    def _exited(drv: Any, task_id: str) -> bool:
        return str(drv.inspect_task(task_id).state) == "exited"

    async def _call(self, context: Ctx, method: str, fn: Callable[[], T]) -> T:
        """``fn()`` on the blocking pool; its exception ends the RPC with the mapped status."""
        try:
            return await run_blocking(fn)
        except Exception as exc:
            await abort(context, exc, method)

    # --- schema, capabilities, fingerprint -------------------------------------------------------

    async def TaskConfigSchema(self, request: Any, context: Ctx) -> Any:
        return driver_pb2.TaskConfigSchemaResponse(spec=hclspec.to_proto(hclspec.task_config_spec()))

    async def Capabilities(self, request: Any, context: Ctx) -> Any:
        def run() -> Any:
            from rawexec.driver import Capabilities

            drv = self.state.existing_driver()
            caps = drv.capabilities() if drv is not None else Capabilities()
            return driver_pb2.CapabilitiesResponse(capabilities=convert.capabilities_to_proto(caps))
        return await self._call(context, "Capabilities", run)

    def _fingerprint(self, drv: Any) -> Any:
        try:
            return convert.fingerprint_to_proto(drv.fingerprint(), self.state.name)
        except Exception as exc:
            log.error("fingerprint failed", exc_info=exc)
            return driver_pb2.FingerprintResponse(
                health=driver_pb2.FingerprintResponse.UNHEALTHY,
                health_description="failed to fingerprint driver", err=str(exc))

    async def Fingerprint(self, request: Any, context: Ctx) -> None:
        """Send at once, then every 30 s and whenever SetConfig changes the config; stay open."""
        drv = await self._call(context, "Fingerprint", self.state.driver)
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def on_config() -> None:
            loop.call_soon_threadsafe(wake.set)

        unwatch = self.state.watch_config(on_config)
        try:
            while True:
                await context.write(await run_blocking(lambda: self._fingerprint(drv)))
                try:
                    await asyncio.wait_for(wake.wait(), FINGERPRINT_PERIOD)
                except TimeoutError:
                    pass
                wake.clear()
        finally:
            unwatch()

    # --- lifecycle -------------------------------------------------------------------------------

    async def StartTask(self, request: Any, context: Ctx) -> Any:
        def run() -> Any:
            if not request.HasField("task"):
                raise InvalidConfigError("StartTaskRequest.task is missing; send the task's TaskConfig")
            cfg = convert.task_config_from_proto(request.task)
            handle = self.state.driver().start_task(cfg)
            return driver_pb2.StartTaskResponse(
                result=driver_pb2.StartTaskResponse.SUCCESS,
                handle=driver_pb2.TaskHandle(version=int(handle.version), config=request.task,
                                             state=driver_pb2.RUNNING, driver_state=handle.dumps()))
        resp = await self._call(context, "StartTask", run)
        # Logged once the reply is on its way (the callback runs after grpc has sent it): the
        # line's formatting and its write to the agent's pipe stay off the client's wait.
        asyncio.get_running_loop().call_soon(_log_started, request.task.id, request.task.name)
        return resp

    async def RecoverTask(self, request: Any, context: Ctx) -> Any:
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
        return await self._call(context, "RecoverTask", run)

    async def WaitTask(self, request: Any, context: Ctx) -> Any:
        """The task's exit. One pool thread waits in the driver (woken by the exit itself, and every
        WAIT_SLICE seconds so that a cancelled call lets go of it); the loop does nothing meanwhile."""
        drv = await self._call(context, "WaitTask", self.state.driver)
        task_id = request.task_id

        def wait() -> Any:
            try:
                return drv.wait_task(task_id, timeout=WAIT_SLICE)
            except TimeoutError:
                return None

        while True:
            result = await self._call(context, "WaitTask", wait)
            if result is not None:
                pb, err = convert.exit_result_to_proto(result)
                return driver_pb2.WaitTaskResponse(result=pb, err=err)

    async def StopTask(self, request: Any, context: Ctx) -> Any:
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
        return await self._call(context, "StopTask", run)

    async def DestroyTask(self, request: Any, context: Ctx) -> Any:
        def run() -> Any:
            try:
                self.state.driver().destroy_task(request.task_id, force=request.force)
            except TaskNotFoundError:
                log.debug("destroy of an unknown task: nothing to do",
                          extra={"kv": {"task_id": request.task_id}})
            return driver_pb2.DestroyTaskResponse()
        return await self._call(context, "DestroyTask", run)

    async def InspectTask(self, request: Any, context: Ctx) -> Any:
        return await self._call(context, "InspectTask", lambda: convert.task_status_to_proto(
            self.state.driver().inspect_task(request.task_id)))

    async def SignalTask(self, request: Any, context: Ctx) -> Any:
        def run() -> Any:
            if not request.signal:
                raise InvalidConfigError('signal is empty; name one, e.g. "SIGHUP"')
            self.state.driver().signal_task(request.task_id, request.signal)
            return driver_pb2.SignalTaskResponse()
        return await self._call(context, "SignalTask", run)

    async def ExecTask(self, request: Any, context: Ctx) -> Any:
        def run() -> Any:
            timeout = convert.duration_seconds(
                request.timeout if request.HasField("timeout") else None, DEFAULT_EXEC_TIMEOUT)
            res = self.state.driver().exec_task(request.task_id, list(request.command), timeout)
            pb, _err = convert.exit_result_to_proto(res.exit_result)
            return driver_pb2.ExecTaskResponse(stdout=res.output, result=pb)
        return await self._call(context, "ExecTask", run)

    # --- streams: stats, events, exec --------------------------------------------------------------

    async def TaskStats(self, request: Any, context: Ctx) -> None:
        """One sample at once, then one per ``collection_interval`` until the client goes away or
        the task exits (then the stream ends cleanly, as Nomad's drivers do). An unknown task is
        an error. Samples come from the shared :class:`StatsHub` ticker of that interval."""
        drv = await self._call(context, "TaskStats", self.state.driver)
        interval = convert.duration_seconds(
            request.collection_interval if request.HasField("collection_interval") else None,
            DEFAULT_STATS_INTERVAL) or DEFAULT_STATS_INTERVAL
        interval = max(interval, 0.01)
        outcome = await self.stats.serve(drv, request.task_id, interval, context)
        if outcome is not None:
            await abort(context, outcome, "TaskStats")

    async def TaskEvents(self, request: Any, context: Ctx) -> None:
        """The driver's task events (OOM kill, lost shim, log write failures), for as long as the
        client listens. Held open when quiet: ending it would make Nomad re-dispense the plugin."""
        drv = await self._call(context, "TaskEvents", self.state.driver)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()

        def on_event(ev: Any) -> None:
            loop.call_soon_threadsafe(events.put_nowait, ev)

        unsubscribe = drv.subscribe_events(on_event)
        try:
            while True:
                ev = await events.get()
                await context.write(convert.task_event_to_proto(ev))
        finally:
            unsubscribe()

    async def ExecTaskStreaming(self, request_iterator: Any, context: Ctx) -> None:
        from rawexec.plugin.exec_stream import exec_streaming

        try:
            drv = await run_blocking(self.state.driver)
            await exec_streaming(drv, context)
        except Exception as exc:
            await abort(context, exc, "ExecTaskStreaming")

    # --- networks, init, shutdown ------------------------------------------------------------------

    async def CreateNetwork(self, request: Any, context: Ctx) -> Any:
        await abort(context, UnsupportedError(
            "CreateNetwork RPC not supported by driver: raw_exec does not create networks "
            "(capabilities.must_create_network is false)"), "CreateNetwork")

    async def DestroyNetwork(self, request: Any, context: Ctx) -> Any:
        await abort(context, UnsupportedError(
            "DestroyNetwork RPC not supported by driver: raw_exec does not create networks "
            "(capabilities.must_create_network is false)"), "DestroyNetwork")

    async def Init(self, request: Any, context: Ctx) -> Any:
        return driver_pb2.InitResponse()

    async def Shutdown(self, request: Any, context: Ctx) -> Any:
        log.debug("driver shutdown requested; tasks keep running")
        return driver_pb2.ShutdownResponse()
