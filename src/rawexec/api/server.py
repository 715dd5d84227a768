"""Serve the API with uvicorn: always ``<data_dir>/api.sock`` (mode 0600), TCP only when configured.

A non-loopback TCP address is refused unless ACLs are enabled. The server runs on its own
thread and event loop, so the caller's main thread stays free for signals and the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import socket
import threading
from typing import Any

import uvicorn

from rawexec.agent.agentconfig import AgentConfig
from rawexec.api.acl import TokenStore
from rawexec.api.app import ApiInfo, create_app
from rawexec.api.blocking import IndexWatch
from rawexec.api.protocol import AgentAPI
from rawexec.errors import InvalidConfigError, UnavailableError

__all__ = ["SOCKET_NAME", "ApiServer", "bind_unix", "check_bind_allowed"]

SOCKET_NAME = "api.sock"
_UNIX_PATH_MAX = 107
_START_TIMEOUT_S = 10.0

log = logging.getLogger("rawexec.api")


def check_bind_allowed(host: str, *, acl_enabled: bool) -> None:
    """Refuse a TCP address reachable from the network when no ACL protects the API."""
    try:
        ip = ipaddress.ip_address(host)
        loopback = ip.is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not acl_enabled:
        raise InvalidConfigError(
            f'bind_addr "{host}" is not a loopback address: the HTTP API would be reachable from the network '
            'without authentication; set acl { enabled = true } or bind_addr = "127.0.0.1"')


def bind_unix(path: str) -> socket.socket:
    """A listening unix socket at ``path`` with mode 0600; refuses to replace a live one."""
    if len(path.encode()) > _UNIX_PATH_MAX:
        raise InvalidConfigError(f"the API socket path {path} is longer than {_UNIX_PATH_MAX} bytes; "
                                 "use a shorter data_dir")
    if os.path.lexists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale: nobody listens
        else:
            raise UnavailableError(f"another rawexec agent is already serving {path}; stop it first or use "
                                   "another -data-dir")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(OSError):  # big listings (1,000 allocs = 2.5 MB) in fewer wakeups
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        sock.bind(path)
        os.chmod(path, 0o600)  # before listen(): nobody can connect in between
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UnavailableError(f"cannot listen on {host}:{port}: the address is already in use; "
                                   "set another ports { http = N }") from None
        raise UnavailableError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.setblocking(False)
    return sock


class ApiServer:
    """The API for one agent. ``start()`` binds and serves on a thread; ``stop()`` ends it."""

    def __init__(self, agent: AgentAPI, config: AgentConfig, *, tokens: TokenStore | None = None,
                 tcp: tuple[str, int] | None = None, access_log: bool = False) -> None:
        data_dir = config.require_data_dir()
        self.unix_path = os.path.join(data_dir, SOCKET_NAME)
        self.tokens = tokens or TokenStore(data_dir, enabled=config.acl_enabled)
        self.tcp = tcp if tcp is not None else config.http_address()
        if self.tcp is not None:
            check_bind_allowed(self.tcp[0], acl_enabled=config.acl_enabled)
        self.info = ApiInfo(self.unix_path)
        self.watch = IndexWatch(agent)
        self.app = create_app(agent, self.tokens, self.info, watch=self.watch)
        self._access_log = access_log
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sockets: list[socket.socket] = []
        self._error: BaseException | None = None

    @property
    def http_addr(self) -> tuple[str, int] | None:
        return self.info.http_addr

    @property
    def http_url(self) -> str | None:
        if self.info.http_addr is None:
            return None
        host, port = self.info.http_addr
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> None:
        unix = bind_unix(self.unix_path)
        self._sockets = [unix]
        try:
            if self.tcp is not None:
                tcp = _bind_tcp(*self.tcp)
                self._sockets.append(tcp)
                addr = tcp.getsockname()
                self.info.http_addr = (str(addr[0]), int(addr[1]))
        except BaseException:
            self._close_sockets()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)  # ours: bind_unix made it
            raise
        cfg = uvicorn.Config(self.app, lifespan="off", log_config=None, access_log=self._access_log,
                             timeout_graceful_shutdown=2, ws_ping_interval=None, ws_per_message_deflate=False,
                             limit_concurrency=None, backlog=2048)
        self._server = uvicorn.Server(cfg)
        self._thread = threading.Thread(target=self._run, name="rawexec-api", daemon=True)
        self._thread.start()
        deadline = _START_TIMEOUT_S
        waited = 0.0
        while not self._server.started and self._error is None and self._thread.is_alive():
            self._thread.join(0.01)
            waited += 0.01
            if waited > deadline:
                break
        if not self._server.started:
            self.stop()
            raise UnavailableError(f"the HTTP API did not start: {self._error or 'timed out'}")

    def _run(self) -> None:
        assert self._server is not None
        try:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            import anyio.to_thread

            async def main() -> None:
                anyio.to_thread.current_default_thread_limiter().total_tokens = 128
                assert self._server is not None
                await self._server.serve(sockets=self._sockets)

            loop.run_until_complete(main())
            loop.close()
        except BaseException as e:  # reported by start()/stop()
            self._error = e
            log.error("HTTP API server failed: %s", e)

    def stop(self) -> None:
        # first end the blocking queries and streams (each answers or finishes its response), so
        # uvicorn's graceful shutdown finds no request to wait for and none to cancel
        self.watch.close()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10.0)
        self._close_sockets()
        with contextlib.suppress(FileNotFoundError):
            if os.path.exists(self.unix_path):
                os.unlink(self.unix_path)

    def _close_sockets(self) -> None:
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()
        self._sockets = []

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
