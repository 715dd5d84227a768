"""``/v1/client/fs/{ls,stat,cat,readat,stream,logs}/:alloc_id``: an allocation's files and task logs.

Paths are relative to the allocation directory; anything that resolves outside it (``..``,
an absolute symlink, a symlink chain) is refused with 400, never served.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import os
import stat
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from rawexec.api.common import ApiError, LiveStreamingResponse, json_response, query_bool, query_int, to_thread
from rawexec.api.protocol import AgentAPI
from rawexec.logs.reader import StreamFrame, follow_logs, read_logs, stream_frames

__all__ = ["fs_cat", "fs_logs", "fs_ls", "fs_readat", "fs_stat", "fs_stream", "resolve_in_alloc"]

_HEARTBEAT_S = 10.0
_CAT_CHUNK = 64 * 1024
_POLL_S = 0.1
FILE_DELETED = "file deleted"
FILE_TRUNCATED = "file truncated"


def resolve_in_alloc(alloc_dir: str, rel: str) -> str:
    """The host path of ``rel`` inside ``alloc_dir``; :class:`ApiError` 400 if it escapes."""
    if "\x00" in rel:
        raise ApiError(400, "Path contains a NUL byte")
    root = os.path.realpath(alloc_dir)
    target = os.path.realpath(os.path.join(root, rel.lstrip("/")))
    if target != root and os.path.commonpath([root, target]) != root:
        raise ApiError(400, f'Path "{rel}" is outside of the allocation directory')
    return target


def _mode_string(mode: int) -> str:
    return stat.filemode(mode)


def _rfc3339(ts: float) -> str:
    whole = int(ts)
    frac = round((ts - whole) * 1e9)
    if frac >= 1_000_000_000:
        whole, frac = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{frac:09d}Z"


def _file_info(name: str, st: os.stat_result) -> dict[str, Any]:
    is_dir = stat.S_ISDIR(st.st_mode)
    ctype = "" if is_dir else (mimetypes.guess_type(name)[0] or "application/octet-stream")
    return {"Name": name, "IsDir": is_dir, "Size": st.st_size, "FileMode": _mode_string(st.st_mode),
            "ModTime": _rfc3339(st.st_mtime), "ContentType": ctype}


async def _alloc_path(agent: AgentAPI, request: Request) -> tuple[str, str]:
    alloc_id = request.path_params["alloc_id"]
    alloc_dir = await to_thread(agent.alloc_dir, alloc_id)
    rel = request.query_params.get("path", "/") or "/"
    return alloc_dir, resolve_in_alloc(alloc_dir, rel)


def _stat(path: str, rel: str) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise ApiError(404, f'file "{rel}" not found') from None
    except NotADirectoryError:
        raise ApiError(404, f'file "{rel}" not found') from None


async def fs_ls(agent: AgentAPI, request: Request) -> Response:
    _alloc_dir, path = await _alloc_path(agent, request)
    rel = request.query_params.get("path", "/")

    def listing() -> list[dict[str, Any]]:
        st = _stat(path, rel)
        if not stat.S_ISDIR(st.st_mode):
            return [_file_info(os.path.basename(path), st)]
        out = []
        with os.scandir(path) as it:
            for entry in sorted(it, key=lambda e: e.name):
                try:
                    out.append(_file_info(entry.name, entry.stat(follow_symlinks=False)))
                except FileNotFoundError:
                    continue
        return out

    return json_response(await to_thread(listing), index=1)


async def fs_stat(agent: AgentAPI, request: Request) -> Response:
    _alloc_dir, path = await _alloc_path(agent, request)
    rel = request.query_params.get("path", "/")
    st = await to_thread(_stat, path, rel)
    return json_response(_file_info(os.path.basename(path) or "/", st), index=1)


async def fs_cat(agent: AgentAPI, request: Request) -> Response:
    _alloc_dir, path = await _alloc_path(agent, request)
    rel = request.query_params.get("path", "")
    if rel in ("", "/"):
        raise ApiError(400, "must provide a file path")
    st = await to_thread(_stat, path, rel)
    if stat.S_ISDIR(st.st_mode):
        raise ApiError(400, f'file "{rel}" is a directory; use fs ls')

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while True:
                data = f.read(_CAT_CHUNK)
                if not data:
                    return
                yield data

    return StreamingResponse(chunks(), media_type="application/octet-stream")


def _file_path(request: Request) -> str:
    rel = request.query_params.get("path", "")
    if not rel:
        raise ApiError(400, "must provide a file name: add ?path=<file relative to the allocation directory>")
    return rel


async def _regular_file(agent: AgentAPI, request: Request) -> tuple[str, str, os.stat_result]:
    """(host path, path as asked, its stat) of the ``path`` a request names; 400 for a directory."""
    rel = _file_path(request)
    _alloc_dir, path = await _alloc_path(agent, request)
    st = await to_thread(_stat, path, rel)
    if stat.S_ISDIR(st.st_mode):
        raise ApiError(400, f'file "{rel}" is a directory; use fs ls')
    return path, rel, st


async def fs_readat(agent: AgentAPI, request: Request) -> Response:
    """Nomad's ``readat``: ``limit`` bytes (0 or absent: all) of ``path`` from byte ``offset``, raw."""
    if not request.query_params.get("offset"):
        raise ApiError(400, "must provide an offset: add ?offset=N (bytes from the start of the file)")
    offset = query_int(request, "offset")
    limit = query_int(request, "limit", 0)
    path, _rel, _st = await _regular_file(agent, request)

    def chunks() -> Iterator[bytes]:
        left = limit or None
        with open(path, "rb") as f:
            f.seek(offset)
            while left is None or left > 0:
                data = f.read(_CAT_CHUNK if left is None else min(_CAT_CHUNK, left))
                if not data:
                    return
                if left is not None:
                    left -= len(data)
                yield data

    return StreamingResponse(chunks(), media_type="application/octet-stream")


def file_frames(path: str, name: str, offset: int, *, follow: bool, stop: Callable[[], bool],
                heartbeat_interval: float = _HEARTBEAT_S, poll_interval: float = _POLL_S,
                frame_size: int = _CAT_CHUNK) -> Generator[StreamFrame, None, None]:
    """One file's content from ``offset`` as Nomad's stream frames (``File`` is ``name``, ``Offset``
    the position after the data). With ``follow``: waits for more, sends a heartbeat frame after
    ``heartbeat_interval`` without data, starts again from 0 after a truncation (a frame with
    ``FileEvent`` "file truncated") and ends after a frame "file deleted" when the file is removed or
    replaced; until ``stop()``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        ident = (st.st_dev, st.st_ino)
        offset = min(offset, st.st_size)
        last = time.monotonic()
        while True:
            data = os.pread(fd, frame_size, offset)
            if data:
                offset += len(data)
                last = time.monotonic()
                yield StreamFrame(name, offset, data)
                continue
            if not follow:
                return
            try:
                now_st = os.stat(path)
            except FileNotFoundError:
                now_st = None
            if now_st is None or (now_st.st_dev, now_st.st_ino) != ident:
                yield StreamFrame(name, offset, b"", FILE_DELETED)
                return
            if os.fstat(fd).st_size < offset:
                offset = 0
                last = time.monotonic()
                yield StreamFrame(name, 0, b"", FILE_TRUNCATED)
                continue
            if stop():
                return
            if time.monotonic() - last >= heartbeat_interval:
                last = time.monotonic()
                yield StreamFrame()
            time.sleep(poll_interval)
    finally:
        os.close(fd)


async def fs_stream(agent: AgentAPI, request: Request, *,
                    until: Callable[[], Awaitable[None]] | None = None) -> Response:
    """Nomad's ``stream``: ``path`` from ``offset`` (counted from ``origin`` "start" or "end") as
    framed JSON, following it (``follow``, true unless false) until the client leaves, the file is
    deleted or the server stops (``until``)."""
    rel = _file_path(request)
    follow = query_bool(request, "follow", True)
    offset = query_int(request, "offset", 0)
    origin = request.query_params.get("origin", "start") or "start"
    if origin not in ("start", "end"):
        raise ApiError(400, f'origin must be start or end, got "{origin}"')
    path, _rel, st = await _regular_file(agent, request)
    start = max(0, st.st_size - offset) if origin == "end" else offset
    stop = threading.Event()

    def frames() -> Generator[bytes, None, None]:
        for fr in file_frames(path, rel, start, follow=follow, stop=stop.is_set):
            yield json.dumps(fr.to_dict(), separators=(",", ":")).encode() + b"\n"

    return LiveStreamingResponse(_threaded(frames(), stop), media_type="application/json", until=until)


async def _threaded(gen: Generator[bytes, None, None], stop: threading.Event) -> AsyncIterator[bytes]:
    """Drive a blocking generator from a worker thread; on cancellation (client gone) tell it to stop.

    The worker is abandoned on cancel (it notices ``stop`` within its poll interval), so a vanished
    client never holds the event loop or leaves a follow running.
    """
    sentinel = object()

    def step() -> object:
        return next(gen, sentinel)

    try:
        while True:
            item = await anyio.to_thread.run_sync(step, abandon_on_cancel=True)
            if item is sentinel:
                return
            assert isinstance(item, bytes)
            yield item
    finally:
        stop.set()
        with contextlib.suppress(ValueError):  # ValueError: still running in the worker; it sees `stop`
            gen.close()


def _log_params(request: Request) -> tuple[str, str, Any, int, bool, bool]:
    q = request.query_params
    task = q.get("task", "")
    if not task:
        raise ApiError(400, "must include task name: add ?task=<name>")
    log_type = q.get("type", "")
    if log_type not in ("stdout", "stderr"):
        raise ApiError(400, f'Invalid log type "{log_type}": use type=stdout or type=stderr')
    origin = q.get("origin", "start") or "start"
    if origin not in ("start", "end"):
        raise ApiError(400, f'Origin must be "start" or "end", got "{origin}"')
    offset = query_int(request, "offset", 0)
    return task, log_type, origin, offset, query_bool(request, "follow"), query_bool(request, "plain")


async def fs_logs(agent: AgentAPI, request: Request, task_names: Callable[[str], list[str]], *,
                  until: Callable[[], Awaitable[None]] | None = None) -> Response:
    """Nomad's log endpoint: framed JSON ``StreamFrame`` objects, or raw bytes with ``plain=true``.
    ``until`` returns when the server stops (a follow then ends)."""
    alloc_id = request.path_params["alloc_id"]
    task, log_type, origin, offset, follow, plain = _log_params(request)
    alloc_dir = await to_thread(agent.alloc_dir, alloc_id)
    known = await to_thread(task_names, alloc_id)
    if known and task not in known:
        raise ApiError(400, f'unknown task name "{task}"')  # Nomad's status and text
    log_dir = os.path.join(alloc_dir, "alloc", "logs")
    stop = threading.Event()
    stream: Any = log_type
    gen: Generator[bytes, None, None]
    if plain:
        if follow:
            gen = follow_logs(log_dir, task, stream, origin=origin, offset=offset, stop=stop.is_set)
        else:
            gen = read_logs(log_dir, task, stream, origin=origin, offset=offset)
        return LiveStreamingResponse(_threaded(gen, stop), media_type="text/plain; charset=utf-8", until=until)

    def frames() -> Generator[bytes, None, None]:
        for fr in stream_frames(log_dir, task, stream, origin=origin, offset=offset, follow=follow,
                                stop=stop.is_set, heartbeat_interval=_HEARTBEAT_S if follow else None):
            yield json.dumps(fr.to_dict(), separators=(",", ":")).encode() + b"\n"

    return LiveStreamingResponse(_threaded(frames(), stop), media_type="application/json", until=until)
