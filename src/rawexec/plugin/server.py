"""The go-plugin side of the plugin: handshake, socket, server and go-plugin's own services.

What go-plugin's Go server does, done in Python (facts §1.3): check the magic cookie,
negotiate the app protocol from ``PLUGIN_PROTOCOL_VERSIONS``, listen on a unix socket in
``PLUGIN_UNIX_SOCKET_DIR`` (or the temp dir), register grpc health ("plugin" SERVING),
``plugin.GRPCController`` and ``plugin.GRPCStdio`` next to the app services, print the one
handshake line on stdout, ignore SIGINT, and serve until ``GRPCController/Shutdown`` or SIGTERM.

The server is ``grpc.aio``: one event loop serves every call, so the hundreds of long-lived
calls Nomad keeps open (a WaitTask and a TaskStats stream per task) cost nothing while quiet and
no thread each, except WaitTask's one parked pool thread (:mod:`rawexec.plugin.driver_service`).
Blocking driver work runs on a thread pool (:func:`run_blocking`, :mod:`rawexec.plugin.blocking`).

Launch time matters (every agent start launches the plugin three times, and go-plugin waits for
the handshake line): before the line only ``grpc`` itself is imported. Each service's handlers
are built, with their imports (protobufs, cty, the driver), on the first call to that service
(:class:`LazyHandlers`); the controller's Shutdown needs no import at all.

Never ``os.fork`` here: the process is threaded. Task processes come from the driver's own
pre-started spawner.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, cast

import grpc

from rawexec.errors import InvalidConfigError
from rawexec.plugin.blocking import blocking_pool, run_blocking

__all__ = [
    "APP_PROTOCOL",
    "CORE_PROTOCOL",
    "MAGIC_COOKIE_KEY",
    "MAGIC_COOKIE_VALUE",
    "HandshakeError",
    "LazyHandlers",
    "PluginServer",
    "ServiceTable",
    "blocking_pool",
    "check_cookie",
    "collect_handlers",
    "handshake_line",
    "negotiate_protocol",
    "new_socket_path",
    "run_blocking",
    "serve",
]

log = logging.getLogger("rawexec.plugin.server")

MAGIC_COOKIE_KEY = "NOMAD_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255"
CORE_PROTOCOL = 1
APP_PROTOCOL = 2  # Nomad's plugin protocol since 0.9 (gRPC)
_SUN_PATH_MAX = 107
_MAX_MESSAGE = 2**31 - 1  # go-plugin dials with MaxInt32 send/receive limits


class HandshakeError(Exception):
    """The plugin cannot start talking to this host; the message says why and what to do."""


def check_cookie(env: Mapping[str, str]) -> None:
    """Refuse to run outside a Nomad client (go-plugin's check)."""
    if env.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        raise HandshakeError(
            "This binary is a plugin. These are not meant to be executed directly.\n"
            "nomad-driver-rawexec is a Nomad task-driver plugin: put it in the Nomad client's plugin_dir "
            "and reference it with a plugin \"raw_exec\" {} block; the Nomad agent launches it.\n"
            "To run jobs without Nomad, use `rawexec run job.nomad.hcl`.")


def negotiate_protocol(env: Mapping[str, str]) -> int:
    """Pick the app protocol from ``PLUGIN_PROTOCOL_VERSIONS`` (comma-separated ints).

    Absent means the host did not say, so our own (2) is used, as go-plugin does. Entries that
    are not integers are ignored with a warning. If the host offers versions but not 2, fail.
    """
    raw = env.get("PLUGIN_PROTOCOL_VERSIONS")
    if raw is None or raw.strip() == "":
        return APP_PROTOCOL
    offered: list[int] = []
    for entry in raw.split(","):
        part = entry.strip()
        try:
            offered.append(int(part))
        except ValueError:
            log.warning("ignoring a PLUGIN_PROTOCOL_VERSIONS entry that is not an integer",
                     extra={"kv": {"entry": part}})
    if APP_PROTOCOL in offered:
        return APP_PROTOCOL
    raise HandshakeError(
        f"Incompatible plugin protocol: this plugin speaks Nomad plugin protocol {APP_PROTOCOL} (Nomad 0.9 "
        f"and later), the host offered {raw!r} (PLUGIN_PROTOCOL_VERSIONS). Use a Nomad 0.9+ client.")


def new_socket_path(env: Mapping[str, str]) -> str:
    """A fresh socket path in ``PLUGIN_UNIX_SOCKET_DIR`` or the temp dir (short: sun_path limit)."""
    base = env.get("PLUGIN_UNIX_SOCKET_DIR") or tempfile.gettempdir()
    base = os.path.abspath(base)
    if not os.path.isdir(base):
        raise HandshakeError(f"PLUGIN_UNIX_SOCKET_DIR {base!r} is not a directory; create it or unset it")
    for _ in range(100):
        path = os.path.join(base, f"plugin{secrets.randbelow(10**9):09d}")
        if not os.path.lexists(path):
            break
    else:  # pragma: no cover - 100 collisions in a billion names
        raise HandshakeError(f"could not find a free socket name in {base!r}")
    if len(path.encode()) > _SUN_PATH_MAX:
        raise HandshakeError(
            f"socket path {path!r} is longer than the {_SUN_PATH_MAX}-byte unix socket limit; "
            "set PLUGIN_UNIX_SOCKET_DIR to a shorter directory")
    return path


def handshake_line(app_protocol: int, path: str) -> str:
    """``CORE|APP|NETWORK|ADDR|PROTOCOL|SERVERCERT`` (cert empty: Nomad uses no TLS)."""
    return f"{CORE_PROTOCOL}|{app_protocol}|unix|{path}|grpc|\n"


if TYPE_CHECKING:
    ServiceTable = dict[str, grpc.RpcMethodHandler[Any, Any]]
    _GenericHandler = grpc.GenericRpcHandler[Any, Any]
else:  # grpc's classes are not generic at run time
    ServiceTable = dict
    _GenericHandler = grpc.GenericRpcHandler
# ServiceTable: ``/package.Service/Method`` -> handler, as the generated ``add_*_to_server`` make them.


class _Malformed:
    """A request that did not parse; the handler answers it as grpc's sync server did."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    def deserialize(raw: bytes) -> Any:
        if deserializer is None:
            return raw
        try:
            return deserializer(raw)
        except Exception as exc:
            return _Malformed(exc)
    return deserialize


def _guarded(behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    async def handle(request: Any, context: Any) -> Any:
        if isinstance(request, _Malformed):
            log.debug("request did not parse", extra={"kv": {"error": str(request.error)}})
            await context.abort(grpc.StatusCode.INTERNAL, "Exception deserializing request!")
        return await behavior(request, context)
    return handle


def _bytes_or(serializer: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """``serializer``, except that a response already serialized (``bytes``) goes out as it is:
    TaskStats samples are serialized on the pool thread, off the event loop."""
    if serializer is None:
        return None

    def serialize(message: Any) -> bytes:
        return message if message.__class__ is bytes else serializer(message)
    return serialize


def _with_request_check(handler: Any) -> Any:
    """``handler`` answering a request that does not parse with INTERNAL "Exception deserializing
    request!" (grpc's sync server did so; aio would say UNKNOWN), and sending ``bytes`` responses
    as they are (:func:`_bytes_or`). Streamed requests are read by the method itself and are left
    as they are."""
    if handler.request_streaming:
        return handler
    make = grpc.unary_stream_rpc_method_handler if handler.response_streaming else grpc.unary_unary_rpc_method_handler
    behavior = handler.unary_stream if handler.response_streaming else handler.unary_unary
    return make(_guarded(behavior), request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=_bytes_or(handler.response_serializer))


class _Collector:
    """Stands in for a server in the generated ``add_*Servicer_to_server`` functions: keeps their
    method handlers in a table instead of registering them."""

    def __init__(self) -> None:
        self.table: ServiceTable = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the same handlers also arrive below, by name

    def add_registered_method_handlers(self, service: str,
                                       handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]) -> None:
        for name, handler in handlers.items():
            self.table[f"/{service}/{name}"] = _with_request_check(handler)


def collect_handlers(*adders: Callable[[Any], None]) -> ServiceTable:
    """The method table of servicers added by ``adders`` (each ``lambda srv: add_X_to_server(x, srv)``)."""
    collector = _Collector()
    for add in adders:
        add(collector)
    return collector.table


class LazyHandlers(_GenericHandler):
    """Method handlers by service, each service's built by its builder on the first call to it.

    Keeps the services' imports (protobufs, cty, the driver) off the launch path: before the
    handshake line only ``grpc`` is imported, and a validation launch that only asks PluginInfo,
    ConfigSchema and SetConfig never imports the Driver service.
    """

    def __init__(self, builders: Mapping[str, Callable[[], ServiceTable]]) -> None:
        self._builders = dict(builders)  # "package.Service" -> builder of its method table
        self._tables: dict[str, ServiceTable] = {}
        self._lock = threading.Lock()

    def table(self, service: str) -> ServiceTable | None:
        table = self._tables.get(service)
        if table is None:
            build = self._builders.get(service)
            if build is None:
                return None
            with self._lock:
                table = self._tables.get(service)
                if table is None:
                    table = self._tables[service] = build()
                    # What the services imported lives as long as the process: keep it out of the
                    # collector's full passes (each streamed message allocates, and full passes
                    # over every module and descriptor would cost more than the messages).
                    gc.freeze()
        return table

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        table = self.table(method[1:].partition("/")[0])
        return None if table is None else table.get(method)


def _go_plugin_services(request_stop: Callable[[str], None]) -> ServiceTable:
    """``plugin.GRPCController`` and ``plugin.GRPCStdio`` on raw bytes: both speak only
    ``plugin.Empty`` (no fields, empty on the wire), so they need no protobuf import and answer
    at once, even right after launch (go-plugin's Kill)."""

    async def shutdown(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        """Shutdown: ask the server to stop once the reply is sent."""
        log.debug("controller shutdown requested")

        def stop_after_reply(_ctx: Any) -> None:
            request_stop("controller")

        context.add_done_callback(cast(Any, stop_after_reply))
        return b""  # plugin.Empty

    async def stream_stdio(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """StreamStdio: stays open and sends nothing (Nomad discards it); it ends when the client
        cancels it or the server stops (both cancel the call)."""
        await asyncio.get_running_loop().create_future()

    return {"/plugin.GRPCController/Shutdown": grpc.unary_unary_rpc_method_handler(shutdown),
            "/plugin.GRPCStdio/StreamStdio": grpc.unary_stream_rpc_method_handler(stream_stdio)}


class _Health:
    """``grpc.health.v1.Health``: "plugin" (and "") SERVING until the server stops.

    Our own small servicer instead of grpc_health's servicer (its module pulls in more than
    serving needs); the messages are grpc_health's.
    """

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping
        self.services = {"plugin", ""}

    def _status(self, service: str) -> Any:
        from grpc_health.v1 import health_pb2

        if service not in self.services:
            return None
        if self._stopping.is_set():
            return health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse.SERVING

    async def Check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        from grpc_health.v1 import health_pb2

        status = self._status(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def List(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        from grpc_health.v1 import health_pb2

        resp = health_pb2.HealthListResponse()
        for service in sorted(self.services):
            resp.statuses[service].status = self._status(service)
        return resp

    async def Watch(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        from grpc_health.v1 import health_pb2

        status = self._status(request.service)
        await context.write(health_pb2.HealthCheckResponse(
            status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN if status is None else status))
        await asyncio.get_running_loop().create_future()  # until cancelled or the server stops


@dataclass
class PluginServer:
    """One plugin process's gRPC server, from handshake to exit.

    ``services`` maps each app service (``package.Service``: BasePlugin, Driver) to the builder of
    its method table, called on the first call to that service, not before the handshake.
    ``on_stop`` runs after the server stopped (e.g. to let the driver release its helpers),
    bounded. All ``async`` methods run on one loop.
    """

    services: Mapping[str, Callable[[], ServiceTable]]
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    on_stop: Callable[[], None] | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    socket_path: str = ""

    def __post_init__(self) -> None:
        self._stop_reason = ""
        self._server: grpc.aio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self.health = _Health(self.stopping)
        self.handlers = LazyHandlers({
            "grpc.health.v1.Health": self._health_service,
            "plugin.GRPCController": lambda: _go_plugin_services(self.request_stop),
            "plugin.GRPCStdio": lambda: _go_plugin_services(self.request_stop),
            **self.services})

    def _health_service(self) -> ServiceTable:
        from grpc_health.v1 import health_pb2_grpc

        return collect_handlers(lambda srv: health_pb2_grpc.add_HealthServicer_to_server(self.health, srv))

    def request_stop(self, reason: str) -> None:
        """Ask the server to stop (callable from any thread, or from the loop)."""
        if not self._stop_reason:
            self._stop_reason = reason
        loop, event = self._loop, self._stop_requested
        if loop is None or event is None:
            return
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:  # pragma: no cover - loop already closed
            pass

    async def start(self) -> str:
        """Negotiate, bind and start the server; returns the handshake line (not yet printed)."""
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        app = negotiate_protocol(self.env)
        path = new_socket_path(self.env)
        server = grpc.aio.server(handlers=[self.handlers],
                                 options=[("grpc.max_send_message_length", _MAX_MESSAGE),
                                          ("grpc.max_receive_message_length", _MAX_MESSAGE),
                                          ("grpc.so_reuseport", 0)])
        if server.add_insecure_port(f"unix:{path}") == 0:
            raise HandshakeError(f"could not listen on unix socket {path!r}")
        self._apply_socket_group(path)
        await server.start()
        self._server = server
        self.socket_path = path
        log.debug("plugin server listening", extra={"kv": {"network": "unix", "address": path,
                                                            "protocol": app}})
        return handshake_line(app, path)

    def _apply_socket_group(self, path: str) -> None:
        group = self.env.get("PLUGIN_UNIX_SOCKET_GROUP")
        if not group:
            return
        import grp

        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
            os.chown(path, -1, gid)
            os.chmod(path, 0o660)
        except (KeyError, OSError) as exc:
            raise HandshakeError(f"PLUGIN_UNIX_SOCKET_GROUP {group!r}: {exc}") from exc

    def announce(self, line: str) -> None:
        """Print the handshake line, then point fd 1 at /dev/null: nothing else goes to stdout."""
        self.stdout.write(line)
        self.stdout.flush()
        if self.stdout is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.close(devnull)

    async def wait(self) -> str:
        """Block until Shutdown or SIGTERM; returns the reason."""
        assert self._stop_requested is not None, "start() first"
        if self._stop_reason:  # asked before the loop knew about it
            return self._stop_reason
        await self._stop_requested.wait()
        return self._stop_reason or "unknown"

    def _run_on_stop(self) -> None:
        assert self.on_stop is not None
        try:
            self.on_stop()
        except Exception:
            log.exception("error while stopping the driver")

    async def stop(self) -> None:
        """Stop serving: cancel every RPC (ends the long-lived streams), release the driver's
        helpers (bounded), remove the socket. The caller exits right after, so nothing waits for
        the cancelled RPCs to unwind: go-plugin measures Kill() until the process is gone."""
        self.stopping.set()
        if self.socket_path:
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.stop(grace=None), 1.0)
            except TimeoutError:
                log.warning("the gRPC server did not stop within 1 s; exiting anyway")
        if self.on_stop is not None:
            # Bounded: go-plugin SIGKILLs us 2 s after Shutdown anyway; never hang the exit on it.
            t = threading.Thread(target=self._run_on_stop, name="on-stop", daemon=True)
            t.start()
            t.join(timeout=1.0)
            if t.is_alive():
                log.warning("driver cleanup did not finish within 1 s; exiting anyway")

    async def run(self) -> int:
        """Start, announce, serve until asked to stop, stop; returns the exit code."""
        try:
            line = await self.start()
        except (HandshakeError, InvalidConfigError) as exc:
            log.error(str(exc))
            return 1
        loop = asyncio.get_running_loop()
        # SIGINT ignored for ever (the agent's Ctrl-C reaches our group too); SIGTERM stops.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM")
        self.announce(line)
        reason = await self.wait()
        log.debug("plugin exiting", extra={"kv": {"reason": reason}})
        await self.stop()
        return 0


def serve(services: Mapping[str, Callable[[], ServiceTable]], on_stop: Callable[[], None] | None = None,
          env: Mapping[str, str] | None = None, stopping: threading.Event | None = None) -> int:
    """Run a plugin process to completion; returns the exit code.

    The event loop is left as it is at the end (not closed, executor not joined): threads may be
    parked in long driver calls, and the caller exits the process right after.
    """
    env = dict(os.environ) if env is None else env
    try:
        check_cookie(env)
    except HandshakeError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Every streamed message allocates a handful of short-lived objects (futures, operations,
    # the message): with 200 TaskStats streams the default thresholds (700, 10, 10) run a young
    # collection many times a second and a full one every few seconds, over every live call.
    # Rarer passes let most of those objects die by reference count first; cyclic garbage is
    # still collected (a full pass every ~4 million allocations).
    gc.set_threshold(10_000, 20, 20)
    server = PluginServer(services=services, env=env, on_stop=on_stop,
                          stopping=stopping if stopping is not None else threading.Event())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop.run_until_complete(server.run())
