"""Nomad's blocking queries: ``?index=N&wait=D`` on a read endpoint waits until the data's index
passes ``N`` (or ``D`` elapses), then answers with the current data and its ``X-Nomad-Index``.

As Nomad does: a query blocks only when ``index`` > 0; ``wait`` is a Go duration (``5s``, ``1m30s``),
default 5 minutes, at most 10 minutes, plus a random jitter of up to wait/16 so that many watchers
do not all come back at once. A malformed ``index`` or ``wait`` is a 400.

Waiting is asyncio only (no thread per request): :class:`IndexWatch` hears about every state commit
from the agent (``add_commit_listener``, called on the agent's writer thread) and wakes every waiter
with one ``call_soon_threadsafe``; each waiter then re-reads its data and compares the index.

A wait also ends when the client hangs up (the ASGI ``http.disconnect``: nothing is left waiting
for nobody) and when the server stops (:meth:`IndexWatch.close`: every waiter answers at once with
the current data, so a shutdown never has to cancel a request in the middle).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from rawexec.api.common import ApiError

__all__ = ["DEFAULT_WAIT_S", "MAX_WAIT_S", "IndexWatch", "QueryWait", "blocking", "parse_go_duration",
           "parse_query_wait"]

DEFAULT_WAIT_S = 300.0
"""Nomad's default blocking time (5m) when ``wait`` is absent or not positive."""
MAX_WAIT_S = 600.0
"""Nomad's cap on ``wait`` (10m)."""
JITTER_FRACTION = 16
"""The wait is stretched by a random amount up to wait/16 (Nomad's jitter)."""
_POLL_S = 1.0
"""Re-check interval when the agent cannot tell us about commits."""

_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")


def parse_go_duration(text: str) -> float:
    """Seconds from a Go duration string (``time.ParseDuration``): ``300ms``, ``1.5h``, ``2h45m``,
    ``-1s``; a bare number other than ``0`` has no unit and is refused. Raises ``ValueError`` with
    Go's wording."""
    s = text
    sign = 1.0
    if s[:1] in ("-", "+"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None or m.end() == pos:  # pragma: no cover - the pattern always matches something
            raise ValueError(f'time: invalid duration "{text}"')
        whole, frac, unit = m.group(1), m.group(2), m.group(3)
        if not whole and not frac:
            raise ValueError(f'time: invalid duration "{text}"')
        if not unit:
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
        total += float(f"{whole or '0'}.{frac or '0'}") * _UNITS[unit]
        pos = m.end()
    return sign * total


@dataclass(frozen=True)
class QueryWait:
    """A request's blocking parameters: ``min_index`` 0 means "answer at once"."""

    min_index: int
    timeout: float
    """Seconds to wait at most, jitter included."""


def parse_query_wait(request: Request) -> QueryWait:
    """``index`` and ``wait`` of a request, checked (400 naming the parameter when malformed)."""
    q = request.query_params
    wait = DEFAULT_WAIT_S
    raw_wait = q.get("wait")
    if raw_wait:
        try:
            wait = parse_go_duration(raw_wait)
        except ValueError as e:
            raise ApiError(400, f'Invalid wait time: {e}; use a Go duration such as "5s" or "1m"') from None
        if wait > MAX_WAIT_S:
            wait = MAX_WAIT_S
        elif wait <= 0:
            wait = DEFAULT_WAIT_S
    min_index = 0
    raw_index = q.get("index")
    if raw_index:
        if not raw_index.isascii() or not raw_index.isdigit() or int(raw_index) >= 1 << 64:
            raise ApiError(400, f'Invalid index: "{raw_index}" is not an unsigned integer; pass the '
                                "X-Nomad-Index of the previous answer")
        min_index = int(raw_index)
    return QueryWait(min_index, wait + random.uniform(0, wait / JITTER_FRACTION))


class IndexWatch:
    """Wakes every waiting request after each state commit of the agent."""

    def __init__(self, agent: Any) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._pending = False
        self.closed = False
        """Set by :meth:`close`: the server is stopping, nobody waits any more."""
        self.waiting = 0
        """Blocking queries waiting now (read on any thread)."""
        listen = getattr(agent, "add_commit_listener", None)
        self.live = listen is not None
        """False when the agent cannot report commits: waiters then re-check every second."""
        if listen is not None:
            listen(self.poke)

    def poke(self) -> None:
        """Something was committed (any thread; cheap: at most one hop to the loop in flight)."""
        loop = self._loop
        if loop is None or self._pending:
            return
        self._pending = True
        try:
            loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop is closed (server stopped)
            self._pending = False

    def close(self) -> None:
        """The server is stopping (any thread): wake every waiter, and let no request wait from now on."""
        self.closed = True
        self.poke()

    async def wait_closed(self) -> None:
        """Return once :meth:`close` was called (for streams that must end when the server stops)."""
        while not self.closed:
            await self.current().wait()

    def _wake(self) -> None:
        self._pending = False
        ev, self._event = self._event, None
        if ev is not None:
            ev.set()

    def current(self) -> asyncio.Event:
        """The event the next commit sets; take it *before* reading the data, so a commit during the
        read is not missed."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._event = loop, None
        if self._event is None:
            self._event = asyncio.Event()
        return self._event


def _index_of(resp: Response) -> int:
    try:
        return int(resp.headers.get("x-nomad-index", "0"))
    except ValueError:
        return 0


async def _disconnected(receive: Receive) -> None:
    """Return once the client has gone (a GET's empty body is read and dropped on the way)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def blocking(watch: IndexWatch, request: Request, fetch: Callable[[], Awaitable[Response]]) -> Response:
    """Answer ``request`` with ``fetch()``, blocking as Nomad does when it carries ``index``: until
    the answer's ``X-Nomad-Index`` is greater than ``index`` or the wait is over. ``fetch`` reads the
    data afresh on each call (bind the namespace, id, filters in the closure); errors it raises end
    the wait. The wait ends early, with the data as it is, when the server stops; and when the client
    goes away (what is returned then is sent to nobody)."""
    q = parse_query_wait(request)
    if q.min_index == 0:
        return await fetch()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + q.timeout
    gone = asyncio.ensure_future(_disconnected(request.receive))
    watch.waiting += 1
    try:
        while True:
            ev = watch.current()
            resp = await fetch()
            remaining = deadline - loop.time()
            if (resp.status_code != 200 or _index_of(resp) > q.min_index or remaining <= 0 or watch.closed
                    or gone.done()):
                return resp
            woken = asyncio.ensure_future(ev.wait())
            try:
                await asyncio.wait((woken, gone), timeout=remaining if watch.live else min(remaining, _POLL_S),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
            if gone.done():
                return resp  # nobody to answer: do not read the data again
    finally:
        watch.waiting -= 1
        gone.cancel()
        if gone.done() and not gone.cancelled():
            gone.exception()  # a receive that failed: the client is gone all the same (retrieved, not logged)
