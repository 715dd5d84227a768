"""HTTP(S) download with httpx: redirects, headers, netrc, read timeout, size cap, retries, resume."""

from __future__ import annotations

import hashlib
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from rawexec.artifacts.config import GetterConfig
from rawexec.artifacts.failure import FetchFailure

__all__ = ["FetchFailure", "http_download", "http_get_small", "new_hasher_factory"]

_CHUNK = 1 << 20
_USER_AGENT = "rawexec-getter/0.1"


def _netrc_auth(url: httpx.URL, headers: Mapping[str, str]) -> httpx.Auth | None:
    if url.userinfo or any(k.lower() == "authorization" for k in headers):
        return None
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    if not os.path.isfile(path):
        return None
    try:
        return httpx.NetRCAuth(path)
    except Exception:
        return None  # an unreadable/malformed netrc is ignored, as curl and go-getter do


def _client(cfg: GetterConfig, insecure: bool) -> httpx.Client:
    read = cfg.http_read_timeout or None  # 0 = no read timeout
    timeout = httpx.Timeout(connect=cfg.http_connect_timeout, read=read, write=read,
                            pool=cfg.http_connect_timeout)
    return httpx.Client(follow_redirects=True, max_redirects=cfg.max_redirects, timeout=timeout,
                        verify=not insecure, trust_env=True)


def _status_failure(resp: httpx.Response) -> FetchFailure:
    code = resp.status_code
    # recoverable as every getter error in Nomad (the file may appear later: the restart policy
    # applies), but retried within the attempt only when transient: 408/425/429 and 5xx (any other
    # 4xx is the request's fault, and go-getter does not retry at all)
    return FetchFailure(f"bad response code: {code}", True, retry=code >= 500 or code in (408, 425, 429))


def _classify(exc: Exception) -> FetchFailure:
    if isinstance(exc, httpx.TooManyRedirects):
        return FetchFailure(f"too many redirects: {exc}", False)
    if isinstance(exc, httpx.UnsupportedProtocol):
        return FetchFailure(f"unsupported protocol: {exc}", False)
    if isinstance(exc, httpx.TimeoutException):
        return FetchFailure(f"timeout: {exc or type(exc).__name__}", True)
    if isinstance(exc, httpx.TransportError):
        return FetchFailure(f"{type(exc).__name__}: {exc}", True)
    return FetchFailure(f"{type(exc).__name__}: {exc}", True)


def _sleep_backoff(cfg: GetterConfig, attempt: int) -> None:
    if cfg.retry_backoff > 0:
        delay = min(cfg.retry_backoff * (2**attempt), 60.0)
        time.sleep(delay * (0.75 + random.random() / 2))


class _Sink:
    """Writes chunks to the file in the calling thread and hashes them in a worker thread.

    hashlib releases the GIL on large updates, so hashing overlaps with receiving the next bytes.
    """

    def __init__(self, out: Any, new_hasher: Callable[[], Any] | None) -> None:
        self.out = out
        self.new_hasher = new_hasher
        self._q: queue.Queue[tuple[Any, bytes] | None] = queue.Queue(maxsize=64)
        self._t: threading.Thread | None = None
        self.hasher: Any = None
        self.reset()

    def reset(self) -> None:
        """Start over: empty file, fresh hash."""
        self.drain()
        self.out.seek(0)
        self.out.truncate()
        self.hasher = self.new_hasher() if self.new_hasher else None
        if self.hasher is not None:
            self._t = threading.Thread(target=self._hash, name="hash", daemon=True)
            self._t.start()

    def _hash(self) -> None:
        while (item := self._q.get()) is not None:
            item[0].update(item[1])

    def write(self, chunk: bytes) -> None:
        self.out.write(chunk)
        if self.hasher is not None:
            self._q.put((self.hasher, chunk))

    def drain(self) -> Any:
        """Wait until every chunk is hashed; returns the hasher."""
        if self._t is not None:
            self._q.put(None)
            self._t.join()
            self._t = None
        return self.hasher


def http_download(url: str, path: str, *, headers: Mapping[str, str], insecure: bool, cfg: GetterConfig,
                  new_hasher: Callable[[], Any] | None,
                  progress: Callable[[int, int | None], None]) -> tuple[int, Any]:
    """Download ``url`` into the new file ``path``; returns (bytes, hasher or None).

    The hash is computed while the bytes stream in. A transient failure is retried
    ``cfg.http_retries`` times with exponential backoff; when the server advertised
    ``Accept-Ranges: bytes`` the retry resumes with ``Range`` (and ``If-Range`` on its validator),
    otherwise it starts over.
    """
    base_headers = {"User-Agent": _USER_AGENT, **headers, "Accept-Encoding": "identity"}
    done = 0
    can_resume = False
    validator: str | None = None
    last: FetchFailure | None = None
    with _client(cfg, insecure) as client, open(path, "wb") as out:
        sink = _Sink(out, new_hasher)
        try:
            auth = _netrc_auth(httpx.URL(url), headers)
            for attempt in range(cfg.http_retries + 1):
                if attempt:
                    _sleep_backoff(cfg, attempt - 1)
                req_headers = dict(base_headers)
                resuming = done > 0 and can_resume
                if resuming:
                    req_headers["Range"] = f"bytes={done}-"
                    if validator:
                        req_headers["If-Range"] = validator
                elif done:
                    sink.reset()
                    done = 0
                try:
                    with client.stream("GET", url, headers=req_headers,
                                       auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT) as resp:
                        if resuming and resp.status_code == 206 and \
                                resp.headers.get("content-range", "").startswith(f"bytes {done}-"):
                            pass  # continue where we stopped
                        elif resp.status_code == 200:
                            if done:
                                sink.reset()
                                done = 0
                        else:
                            raise _status_failure(resp)
                        length = resp.headers.get("content-length")
                        total = done + int(length) if length and length.isdigit() else None
                        if cfg.http_max_size and total is not None and total > cfg.http_max_size:
                            raise FetchFailure(f"download of {total} bytes exceeds http_max_size "
                                               f"({cfg.http_max_size} bytes)", False)
                        can_resume = resp.headers.get("accept-ranges", "").lower() == "bytes"
                        etag = resp.headers.get("etag")
                        validator = etag if etag and not etag.startswith("W/") else \
                            resp.headers.get("last-modified")
                        progress(done, total)
                        for chunk in resp.iter_raw():  # no chunk_size: a chunker drops its buffer on error
                            sink.write(chunk)
                            done += len(chunk)
                            if cfg.http_max_size and done > cfg.http_max_size:
                                raise FetchFailure(f"download exceeds http_max_size ({cfg.http_max_size} bytes)",
                                                   False)
                            progress(done, total)
                        if total is not None and done < total:
                            raise FetchFailure(f"connection closed after {done} of {total} bytes", True)
                    out.flush()
                    return done, sink.drain()
                except FetchFailure as exc:
                    if not exc.retry:
                        raise
                    last = exc
                except httpx.HTTPError as exc:
                    failure = _classify(exc)
                    if not failure.retry:
                        raise failure from None
                    last = failure
        finally:
            sink.drain()
    assert last is not None
    attempts = cfg.http_retries + 1
    raise FetchFailure(f"{last} (after {attempts} attempt{'s' if attempts > 1 else ''})", True)


def http_get_small(url: str, *, headers: Mapping[str, str], insecure: bool, cfg: GetterConfig,
                   limit: int = 1 << 20) -> bytes:
    """GET a small document (a checksum file) with the same client rules and retries."""
    last: FetchFailure | None = None
    with _client(cfg, insecure) as client:
        for attempt in range(cfg.http_retries + 1):
            if attempt:
                _sleep_backoff(cfg, attempt - 1)
            try:
                with client.stream("GET", url, headers={"User-Agent": _USER_AGENT, **headers}) as resp:
                    if resp.status_code != 200:
                        raise _status_failure(resp)
                    body = bytearray()
                    for chunk in resp.iter_bytes():
                        body += chunk
                        if len(body) > limit:
                            raise FetchFailure(f"checksum file larger than {limit} bytes", False)
                    return bytes(body)
            except FetchFailure as exc:
                if not exc.retry:
                    raise
                last = exc
            except httpx.HTTPError as exc:
                failure = _classify(exc)
                if not failure.retry:
                    raise failure from None
                last = failure
    assert last is not None
    raise last


def new_hasher_factory(kind: str) -> Callable[[], Any]:
    return lambda: hashlib.new(kind)
