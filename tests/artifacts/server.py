"""A scriptable HTTP server on 127.0.0.1:0 for the getter tests (threaded http.server)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    ranges: bool = False  # advertise and honour Range
    fail_first: int = 0  # answer the first N requests with fail_status
    fail_status: int = 500
    cut_first: int = 0  # on the first N requests close the connection after cut_at bytes
    cut_at: int = 0
    reset: bool = False  # send headers + half the body, then RST the connection
    stall: float = 0.0  # send headers + half the body, then wait this long before finishing
    location: str | None = None  # redirect target
    require_header: tuple[str, str] | None = None
    requests: list[dict[str, str]] = field(default_factory=list)


class TestServer:
    __test__ = False  # not a test class

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.stop_event = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                route = server.routes.get(self.path.split("?")[0])
                if route is None:
                    self._send(404, b"not found")
                    return
                n = len(route.requests)
                route.requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                if route.require_header:
                    k, v = route.require_header
                    if self.headers.get(k) != v:
                        self._send(403, b"forbidden")
                        return
                if n < route.fail_first:
                    self._send(route.fail_status, b"try again")
                    return
                if route.location is not None:
                    self.send_response(route.status)
                    self.send_header("Location", route.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if route.status != 200:
                    self._send(route.status, route.body)
                    return
                body, status, extra = route.body, 200, dict(route.headers)
                rng = self.headers.get("Range")
                if route.ranges:
                    extra["Accept-Ranges"] = "bytes"
                    extra["ETag"] = '"v1"'
                    if rng and rng.startswith("bytes=") and rng.endswith("-"):
                        start = int(rng[6:-1])
                        status = 206
                        extra["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
                        body = body[start:]
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if n < route.cut_first:
                    self.wfile.write(body[: route.cut_at])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if route.reset or route.stall:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    if route.reset:
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        self.close_connection = True
                        return
                    server.stop_event.wait(route.stall)
                    self.wfile.write(body[len(body) // 2:])
                    return
                self.wfile.write(body)

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, **kw: object) -> Route:
        route = Route(**kw)  # type: ignore[arg-type]
        self.routes[path] = route
        return route

    def close(self) -> None:
        self.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_until(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.01)
    return False
