"""The go-plugin side of the plugin: handshake, socket, server and go-plugin's own services.

What go-plugin's Go server does, done in Python (facts §1.3): check the magic cookie,
negotiate the app protocol from ``PLUGIN_PROTOCOL_VERSIONS``, listen on a unix socket in
``PLUGIN_UNIX_SOCKET_DIR`` (or the temp dir), register grpc health ("plugin" SERVING),
``plugin.GRPCController`` and ``plugin.GRPCStdio`` next to the app services, print the one
handshake line on stdout, ignore SIGINT, and serve until ``GRPCController/Shutdown`` or SIGTERM.

Never ``os.fork`` here: the gRPC server is threaded. Task processes come from the driver's own
pre-started spawner.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rawexec.errors import InvalidConfigError
from rawexec.plugin.gen import plugin_pb2, plugin_pb2_grpc

__all__ = [
    "APP_PROTOCOL",
    "CORE_PROTOCOL",
    "MAGIC_COOKIE_KEY",
    "MAGIC_COOKIE_VALUE",
    "HandshakeError",
    "PluginServer",
    "check_cookie",
    "handshake_line",
    "negotiate_protocol",
    "new_socket_path",
]

log = logging.getLogger("rawexec.plugin.server")

MAGIC_COOKIE_KEY = "NOMAD_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "e4327c2e01eabfd75a8a67adb114fb34a757d57eee7728d857a8cec6e91a7255"
CORE_PROTOCOL = 1
APP_PROTOCOL = 2  # Nomad's plugin protocol since 0.9 (gRPC)
_SUN_PATH_MAX = 107


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


class _Controller:
    """``plugin.GRPCController``: Shutdown asks the server to stop once the reply is sent."""

    def __init__(self, request_stop: Callable[[str], None]) -> None:
        self._request_stop = request_stop

    def Shutdown(self, request: Any, context: grpc.ServicerContext) -> Any:
        log.debug("controller shutdown requested")
        if not context.add_callback(lambda: self._request_stop("controller")):
            self._request_stop("controller")
        return plugin_pb2.Empty()


class _Stdio:
    """``plugin.GRPCStdio``: a stream that stays open and sends nothing (Nomad discards it)."""

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping

    def StreamStdio(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        done = threading.Event()
        context.add_callback(done.set)
        while not done.is_set() and not self._stopping.is_set():
            done.wait()
        return
        yield  # pragma: no cover - makes this a generator


class _Health:
    """``grpc.health.v1.Health``: "plugin" (and "") SERVING until the server stops.

    Our own small servicer instead of grpc_health's, which imports grpc.aio/asyncio and costs
    launch time (every agent start launches the plugin three times).
    """

    def __init__(self, stopping: threading.Event) -> None:
        self._stopping = stopping
        self.services = {"plugin", ""}

    def _status(self, service: str) -> Any:
        if service not in self.services:
            return None
        if self._stopping.is_set():
            return health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse.SERVING

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:
        status = self._status(request.service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    def List(self, request: Any, context: grpc.ServicerContext) -> Any:
        resp = health_pb2.HealthListResponse()
        for service in sorted(self.services):
            resp.statuses[service].status = self._status(service)
        return resp

    def Watch(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        status = self._status(request.service)
        yield health_pb2.HealthCheckResponse(
            status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN if status is None else status)
        done = threading.Event()
        context.add_callback(done.set)
        while not done.is_set() and not self._stopping.is_set():
            done.wait()


@dataclass
class PluginServer:
    """One plugin process's gRPC server, from handshake to exit.

    ``register`` adds the app services (BasePlugin, Driver) to the server. ``on_stop`` runs
    after the server stopped (e.g. to let the driver release its helpers), bounded by the caller.
    """

    register: Callable[[grpc.Server], None]
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    on_stop: Callable[[], None] | None = None
    max_workers: int = 2048
    stopping: threading.Event = field(default_factory=threading.Event)
    socket_path: str = ""

    def __post_init__(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        self._stop_reason = ""
        self._server: grpc.Server | None = None
        self.health = _Health(self.stopping)

    def request_stop(self, reason: str) -> None:
        """Ask the main loop to stop (callable from any thread or a signal handler)."""
        if not self._stop_reason:
            self._stop_reason = reason
        try:
            os.write(self._wake_w, b"x")
        except OSError:  # pragma: no cover - pipe already closed
            pass

    def start(self) -> str:
        """Negotiate, bind and start the server; returns the handshake line (not yet printed)."""
        app = negotiate_protocol(self.env)
        path = new_socket_path(self.env)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.max_workers,
                                                        thread_name_prefix="rpc"),
                             options=[("grpc.max_send_message_length", 2**31 - 1),
                                      ("grpc.max_receive_message_length", 2**31 - 1),
                                      ("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        plugin_pb2_grpc.add_GRPCControllerServicer_to_server(_Controller(self.request_stop), server)
        plugin_pb2_grpc.add_GRPCStdioServicer_to_server(_Stdio(self.stopping), server)
        self.register(server)
        if server.add_insecure_port(f"unix:{path}") == 0:
            raise HandshakeError(f"could not listen on unix socket {path!r}")
        self._apply_socket_group(path)
        server.start()
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

    def wait(self) -> str:
        """Block until Shutdown or SIGTERM; returns the reason."""
        while True:
            try:
                data = os.read(self._wake_r, 64)
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
            if data:
                return self._stop_reason or "unknown"

    def _run_on_stop(self) -> None:
        assert self.on_stop is not None
        try:
            self.on_stop()
        except Exception:
            log.exception("error while stopping the driver")

    def stop(self) -> None:
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
            self._server.stop(grace=None)
        if self.on_stop is not None:
            # Bounded: go-plugin SIGKILLs us 2 s after Shutdown anyway; never hang the exit on it.
            t = threading.Thread(target=self._run_on_stop, name="on-stop", daemon=True)
            t.start()
            t.join(timeout=1.0)
            if t.is_alive():
                log.warning("driver cleanup did not finish within 1 s; exiting anyway")


def install_signal_handlers(server: PluginServer) -> None:
    """SIGINT ignored for ever (the agent's Ctrl-C reaches our group too); SIGTERM stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda _sig, _frame: server.request_stop("SIGTERM"))


def serve(register: Callable[[grpc.Server], None], on_stop: Callable[[], None] | None = None,
          env: Mapping[str, str] | None = None, stopping: threading.Event | None = None) -> int:
    """Run a plugin process to completion; returns the exit code."""
    env = dict(os.environ) if env is None else env
    try:
        check_cookie(env)
    except HandshakeError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    server = PluginServer(register=register, env=env, on_stop=on_stop,
                          stopping=stopping if stopping is not None else threading.Event())
    try:
        line = server.start()
    except (HandshakeError, InvalidConfigError) as exc:
        log.error(str(exc))
        return 1
    install_signal_handlers(server)
    server.announce(line)
    reason = server.wait()
    log.debug("plugin exiting", extra={"kv": {"reason": reason}})
    server.stop()
    return 0
