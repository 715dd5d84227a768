"""Shared pieces of the HTTP API: JSON responses, Nomad-style errors, query parsing, thread hops."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from rawexec.errors import RawExecError

__all__ = [
    "ApiError",
    "LiveStreamingResponse",
    "error_response",
    "filter_list",
    "filtered_json_response",
    "json_response",
    "query_bool",
    "query_int",
    "read_json_body",
    "status_for",
    "to_thread",
]

T = TypeVar("T")

MAX_BODY_BYTES = 8 * 1024 * 1024

_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
}


class ApiError(Exception):
    """An HTTP error with Nomad's plain-text body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def status_for(exc: BaseException) -> int:
    """The HTTP status for an exception raised by the agent (one translation point)."""
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, RawExecError):
        return _STATUS.get(exc.grpc_code, 500)
    if isinstance(exc, KeyError | LookupError):
        return 404
    return 500


def error_response(exc: BaseException) -> Response:
    msg = exc.message if isinstance(exc, ApiError | RawExecError) else str(exc) or type(exc).__name__
    return PlainTextResponse(msg, status_code=status_for(exc))


def _index_of(obj: Any) -> int:
    if isinstance(obj, Mapping):
        v = obj.get("ModifyIndex", obj.get("JobModifyIndex", 0))
        return v if isinstance(v, int) else 0
    if isinstance(obj, list):
        return max((_index_of(o) for o in obj), default=0)
    return 0


def json_response(obj: Any, *, status: int = 200, index: int | None = None) -> Response:
    """JSON with Nomad's query-meta headers (``X-Nomad-Index`` etc.)."""
    body = json.dumps(obj, separators=(",", ":"), default=str).encode("utf-8")
    idx = _index_of(obj) if index is None else index
    headers = {"X-Nomad-Index": str(max(idx, 1)), "X-Nomad-KnownLeader": "true", "X-Nomad-LastContact": "0"}
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def read_json_body(request: Request, *, required: bool = True) -> Any:
    """The decoded JSON body; 400 with a clear message when it is missing, too big or malformed."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise ApiError(413, f"Request body too large: {length} bytes (limit {MAX_BODY_BYTES})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"Request body too large (limit {MAX_BODY_BYTES} bytes)")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if required:
            raise ApiError(400, "Failed to decode request body: the body is empty; send a JSON object")
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ApiError(400, f"Failed to decode request body: {e}") from None


def query_bool(request: Request, name: str, default: bool = False) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if raw == "":
        return True
    low = raw.lower()
    if low in ("1", "t", "true"):
        return True
    if low in ("0", "f", "false"):
        return False
    raise ApiError(400, f'Failed to parse value of "{name}" ({raw!r}) as a boolean: use true or false')


def query_int(request: Request, name: str, default: int = 0, *, minimum: int | None = 0) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f'Failed to parse value of "{name}" ({raw!r}) as an integer') from None
    if minimum is not None and value < minimum:
        raise ApiError(400, f'"{name}" must be >= {minimum}, got {value}')
    return value


async def to_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking agent call off the event loop."""
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


def query_namespaces(request: Request) -> str | None:
    """A list endpoint's ``?namespace=`` (Nomad's default: "default"); ``*``: every namespace (None)."""
    ns = request.query_params.get("namespace") or "default"
    return None if ns == "*" else ns


def query_namespace(request: Request) -> str:
    """The one namespace a request names with ``?namespace=`` (Nomad's default: "default")."""
    ns = query_namespaces(request)
    if ns is None:
        raise ApiError(400, 'namespace "*" only works when listing; name the namespace, e.g. ?namespace=default')
    return ns


def filter_list(items: Any, expression: str | None) -> Any:
    """``items`` (a list as the endpoint would send it) narrowed by a ``?filter=`` expression.

    Evaluated against the JSON the client would receive (decoded again, so field names and value
    types are exactly the response's). No expression (or an empty one) returns ``items`` unchanged.
    Errors are 400 with Nomad's texts: "failed to create result paginator: failed to read filter
    expression: ..." for a malformed expression, "failed to read result page: ..." when it cannot be
    applied (an unknown field, a value of the wrong type).
    """
    if not expression:
        return items
    from rawexec.api.bexpr import Filter, FilterError  # loaded with the first filter

    try:
        flt = Filter(expression)
    except FilterError as e:
        raise ApiError(400, "failed to create result paginator: failed to read filter expression: "
                       + e.message) from None
    decoded = json.loads(items) if isinstance(items, bytes) else json.loads(json.dumps(items, default=str))
    try:
        return flt.select(decoded)
    except FilterError as e:
        raise ApiError(400, f"failed to read result page: {e.message}") from None


def filtered_json_response(items: Any, expression: str | None, *, index: int | None = None) -> Response:
    """:func:`json_response` of ``filter_list(items, expression)``; ``items`` may be a JSON body (bytes).

    The ``X-Nomad-Index`` stays that of the whole list (as Nomad's is the table's), not of what passed.
    """
    if isinstance(items, bytes):
        items = json.loads(items)
    idx = _index_of(items) if index is None else index
    return json_response(filter_list(items, expression), index=idx)


def prefix_filter(items: Iterable[dict[str, Any]], prefix: str | None, key: str = "ID") -> list[dict[str, Any]]:
    if not prefix:
        return list(items)
    return [i for i in items if str(i.get(key, "")).startswith(prefix)]


class LiveStreamingResponse(StreamingResponse):
    """A streaming response that notices a client hanging up even while no data flows.

    (Starlette only watches for ``http.disconnect`` on old ASGI spec versions; a log follow or an
    event stream can be quiet for a long time, so we always watch.) Cancelling the body iterator
    runs its ``finally``, which tells the blocking producer to stop.

    ``until``, when given, is awaited alongside: when it returns (the server is stopping) the
    stream ends cleanly, its last chunk sent, instead of being cancelled mid-response.
    """

    def __init__(self, content: Any, *, media_type: str | None = None,
                 until: Callable[[], Awaitable[None]] | None = None) -> None:
        super().__init__(content, media_type=media_type)
        self.until = until

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent = {"start": False, "end": False}

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent["start"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                sent["end"] = True
            await send(message)

        stopping = False
        async with anyio.create_task_group() as tg:

            async def body() -> None:
                try:
                    await self.stream_response(tracked_send)
                except OSError:
                    pass  # the client went away while we were sending
                tg.cancel_scope.cancel()

            async def watch() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        break
                tg.cancel_scope.cancel()

            async def server_stops(until: Callable[[], Awaitable[None]]) -> None:
                nonlocal stopping
                await until()
                stopping = True
                tg.cancel_scope.cancel()

            tg.start_soon(body)
            tg.start_soon(watch)
            if self.until is not None:
                tg.start_soon(server_stops, self.until)
        if stopping and not sent["end"]:
            with contextlib.suppress(OSError):
                if not sent["start"]:
                    await send({"type": "http.response.start", "status": self.status_code,
                                "headers": self.raw_headers})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
