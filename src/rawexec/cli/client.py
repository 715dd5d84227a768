"""CLI glue for commands that talk to a running agent: ``-address``/``-token``/``-json`` and errors.

The address comes from ``-address``, else ``RAWEXEC_ADDR``, else the first agent socket found
at the well-known places (the ``-dev`` agent's, then ``/var/lib/rawexec/api.sock``), else
``http://127.0.0.1:4646``. The token comes from ``-token`` or ``RAWEXEC_TOKEN``, the namespace from ``-namespace`` or
``RAWEXEC_NAMESPACE`` (the agent's default: "default").
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from rawexec.api.client import ApiClient, ApiResponseError, path_escape
from rawexec.errors import RawExecError

__all__ = [
    "ClientCtx",
    "api_command",
    "dev_data_dir",
    "die",
    "format_time_ns",
    "kv_table",
    "print_json",
    "resolve_alloc",
    "table",
]

F = TypeVar("F", bound=Callable[..., Any])

SYSTEM_SOCKET = "/var/lib/rawexec/api.sock"
DEFAULT_HTTP = "http://127.0.0.1:4646"


def dev_data_dir() -> str:
    """Where ``rawexec agent -dev`` keeps its state when no ``-data-dir`` is given."""
    return os.path.join(tempfile.gettempdir(), f"rawexec-dev-{os.getuid()}")


def default_address() -> str:
    env = os.environ.get("RAWEXEC_ADDR")
    if env:
        return env
    for sock in (os.path.join(dev_data_dir(), "api.sock"), SYSTEM_SOCKET):
        if os.path.exists(sock):
            return f"unix://{sock}"
    return DEFAULT_HTTP


class ClientCtx:
    """What a command needs: the client and the output mode."""

    def __init__(self, address: str | None, token: str | None, as_json: bool, namespace: str | None = None) -> None:
        self.address = address or default_address()
        self.token = token if token is not None else os.environ.get("RAWEXEC_TOKEN", "")
        self.namespace = namespace if namespace is not None else os.environ.get("RAWEXEC_NAMESPACE") or None
        self.as_json = as_json
        self._client: ApiClient | None = None

    @property
    def api(self) -> ApiClient:
        if self._client is None:
            self._client = ApiClient(self.address, self.token, namespace=self.namespace)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def die(message: str, code: int = 1) -> None:
    click.echo(message, err=True)
    sys.exit(code)


def api_command(doing: str, *, json_flag: bool = True) -> Callable[[F], F]:
    """Add ``-address``, ``-token`` (and ``-json``) and turn errors into one line + exit 1."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, address: str | None, token: str | None, namespace: str | None, as_json: bool = False,
                    **kw: Any) -> Any:
            ctx = ClientCtx(address, token, as_json, namespace)
            try:
                return fn(ctx, *args, **kw)
            except ApiResponseError as e:
                die(f"Error {doing}: {e.message} (HTTP {e.status})")
            except RawExecError as e:
                die(f"Error {doing}: {e.message}")
            except KeyboardInterrupt:
                sys.exit(130)
            finally:
                ctx.close()

        opts = [
            click.option("-address", "--address", "address", default=None, metavar="ADDR",
                         help="The agent's API: unix:///path/api.sock or http://host:port (env RAWEXEC_ADDR)."),
            click.option("-token", "--token", "token", default=None, metavar="SECRET",
                         help="ACL token secret (env RAWEXEC_TOKEN)."),
            click.option("-namespace", "--namespace", "namespace", default=None, metavar="NAME",
                         help='The namespace of the jobs and allocations (env RAWEXEC_NAMESPACE; default "default"; '
                              '"*" lists every namespace).'),
        ]
        if json_flag:
            opts.append(click.option("-json", "--json", "as_json", is_flag=True, help="Print JSON."))
        out: Any = wrapper
        for o in reversed(opts):
            out = o(out)
        return out  # type: ignore[no-any-return]

    return deco


filter_opt = click.option(
    "-filter", "--filter", "filter_expr", default=None, metavar="EXPR",
    help='Only what matches this expression (Nomad\'s filter syntax, e.g. \'Status == "running"\').')


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=4, sort_keys=False))


def format_time_ns(ns: Any) -> str:
    if not isinstance(ns, int | float) or ns <= 0:
        return "<none>"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Nomad's column layout: left-aligned columns separated by two spaces."""
    cols = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cols)


def kv_table(pairs: Sequence[tuple[str, Any]]) -> str:
    """``Key   = value`` lines, as ``nomad ... status`` prints them."""
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)} = {v}" for k, v in pairs)


def resolve_alloc(ctx: ClientCtx, prefix: str) -> dict[str, Any]:
    """The full allocation for an id or unique prefix (Nomad's CLI lookup rules)."""
    if len(prefix) == 1:
        raise RawExecError("Alloc ID must contain at least two characters.")
    matches = ctx.api.get("/v1/allocations", prefix=prefix, task_states=False) or []
    if not matches:
        raise RawExecError(f'No allocation(s) with prefix or id "{prefix}" found')
    if len(matches) > 1:
        ids = "\n".join(str(m.get("ID")) for m in matches)
        raise RawExecError(f"Prefix matched multiple allocations\n\n{ids}")
    alloc: dict[str, Any] = ctx.api.get(f"/v1/allocation/{path_escape(str(matches[0]['ID']))}")
    return alloc
