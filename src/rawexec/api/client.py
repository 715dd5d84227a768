"""A small client for the agent's HTTP API (used by the CLI), over a unix socket or TCP.

Addresses: ``unix:///path/to/api.sock`` (or a bare absolute path) or ``http://host:port``.
The token goes in ``X-Nomad-Token``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from rawexec.errors import InvalidConfigError, RawExecError, UnavailableError

if TYPE_CHECKING:
    import httpx

__all__ = ["ApiClient", "ApiResponseError", "parse_address", "path_escape"]


class ApiResponseError(RawExecError):
    """The agent answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message.strip() or f"HTTP {status}")
        self.status = status
        if status == 404:
            self.grpc_code = "NOT_FOUND"
        elif status == 400:
            self.grpc_code = "INVALID_ARGUMENT"
        elif status == 403:
            self.grpc_code = "PERMISSION_DENIED"


def path_escape(segment: str) -> str:
    """``segment`` (a job, allocation, node or evaluation id) escaped for one URL path segment, as
    Go's ``url.PathEscape`` in Nomad's API client: ``q#x`` -> ``q%23x``, ``a/b`` -> ``a%2Fb``,
    ``../x`` -> ``..%2Fx`` (one segment, never a dot-segment the URL resolves away)."""
    return quote(segment, safe="")


def parse_address(address: str) -> tuple[str, str | None]:
    """``(base_url, unix_socket_path_or_None)`` for an address; clear error for a bad one."""
    addr = address.strip()
    if addr.startswith("/"):
        addr = "unix://" + addr
    u = urlsplit(addr)
    if u.scheme == "unix":
        path = (u.netloc + u.path) if u.netloc else u.path
        if not path:
            raise InvalidConfigError(f'address "{address}": a unix address needs a path, e.g. '
                                     "unix:///var/lib/rawexec/api.sock")
        return "http://rawexec", path
    if u.scheme in ("http", "https") and u.netloc:
        return f"{u.scheme}://{u.netloc}", None
    raise InvalidConfigError(f'address "{address}" is not valid: use unix:///path/to/api.sock or '
                             "http://127.0.0.1:4646")


class ApiClient:
    """Thin wrapper over httpx with Nomad's error bodies turned into :class:`ApiResponseError`."""

    def __init__(self, address: str, token: str | None = None, *, timeout: float = 60.0,
                 namespace: str | None = None) -> None:
        self.address = address
        self.base_url, self.unix_path = parse_address(address)
        self.token = token or ""
        #: sent as ``?namespace=`` with every request when set (else the agent's default, "default")
        self.namespace = namespace or None
        headers = {"X-Nomad-Token": self.token} if self.token else {}
        import httpx  # here, not at module level: importing the CLI or `rawexec agent` must not load it

        transport = httpx.HTTPTransport(uds=self.unix_path) if self.unix_path else None
        self._http = httpx.Client(base_url=self.base_url, transport=transport, headers=headers,
                                  params={"namespace": self.namespace} if self.namespace else None,
                                  timeout=httpx.Timeout(timeout, connect=5.0))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unreachable(self, e: Exception) -> UnavailableError:
        hint = "is `rawexec agent` running? set -address or RAWEXEC_ADDR"
        if self.unix_path and not os.path.exists(self.unix_path):
            return UnavailableError(f"cannot reach the agent at {self.address}: no such socket; {hint}")
        return UnavailableError(f"cannot reach the agent at {self.address}: {e}; {hint}")

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: Any = None) -> Any:
        """One request; the decoded JSON answer."""
        import httpx

        content = None if body is None else json.dumps(body).encode()
        try:
            r = self._http.request(method, path, params=_params(params), content=content)
        except httpx.TransportError as e:
            raise self._unreachable(e) from None
        if r.status_code >= 400:
            raise ApiResponseError(r.status_code, r.text)
        if not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            return r.text

    def get(self, endpoint: str, /, **params: Any) -> Any:
        return self.request("GET", endpoint, params=params)

    def put(self, endpoint: str, body: Any = None, /, **params: Any) -> Any:
        return self.request("PUT", endpoint, params=params, body=body)

    def delete(self, endpoint: str, /, **params: Any) -> Any:
        return self.request("DELETE", endpoint, params=params)

    @contextlib.contextmanager
    def stream(self, endpoint: str, /, **params: Any) -> Iterator[httpx.Response]:
        """A streaming GET (logs, events); raises on an error status before yielding."""
        import httpx

        try:
            with self._http.stream("GET", endpoint, params=_params(params), timeout=httpx.Timeout(None, connect=5.0)) \
                    as r:
                if r.status_code >= 400:
                    r.read()
                    raise ApiResponseError(r.status_code, r.text)
                yield r
        except httpx.TransportError as e:
            raise self._unreachable(e) from None

    def websocket_url(self, endpoint: str, /, **params: Any) -> str:
        if self.namespace:
            params = {"namespace": self.namespace, **params}
        query = urlencode(_params(params) or {})
        base = "ws://rawexec" if self.unix_path else self.base_url.replace("http", "ws", 1)
        return f"{base}{endpoint}" + (f"?{query}" if query else "")


def _params(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    if not params:
        return None
    out: dict[str, str] = {}
    for k, v in params.items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out
