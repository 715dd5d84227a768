"""Errors -> gRPC status: the one place the plugin translates exceptions (facts §3.7).

A :class:`rawexec.errors.RawExecError` becomes the status code named by its ``grpc_code``
with its message. A recoverable one (``exc.recoverable``) also carries, as the first status
detail, an ``Any`` packing ``hashicorp.nomad.plugins.shared.structs.RecoverableError{true}``
in the ``grpc-status-details-bin`` trailer; that is what makes Nomad retry a failed start
under the restart policy. Anything else is INTERNAL and logged with its traceback.
"""

from __future__ import annotations

import logging
from collections import namedtuple
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2

from rawexec.errors import RawExecError
from rawexec.plugin.gen import rpc_status_pb2, structs_pb2

__all__ = ["STATUS_DETAILS_KEY", "abort", "recoverable_detail", "to_status"]

log = logging.getLogger("rawexec.plugin.status")

STATUS_DETAILS_KEY = "grpc-status-details-bin"
RECOVERABLE_TYPE_URL = "type.googleapis.com/hashicorp.nomad.plugins.shared.structs.RecoverableError"


class _Status(namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status):
    """A concrete :class:`grpc.Status` (code, details text, trailing metadata)."""


def recoverable_detail(recoverable: bool = True) -> Any:
    """The ``Any`` detail Nomad checks for a retryable failure."""
    detail = any_pb2.Any()
    detail.Pack(structs_pb2.RecoverableError(recoverable=recoverable))
    return detail


def _code(name: str) -> grpc.StatusCode:
    try:
        return grpc.StatusCode[name]
    except KeyError:
        return grpc.StatusCode.INTERNAL


def to_status(exc: BaseException) -> grpc.Status:
    """The status to abort an RPC with for ``exc``."""
    if isinstance(exc, RawExecError):
        code = _code(exc.grpc_code)
        message = str(exc)
        recoverable = bool(exc.recoverable)
    else:
        code = grpc.StatusCode.INTERNAL
        message = f"internal error: {type(exc).__name__}: {exc}"
        recoverable = False
    metadata: tuple[tuple[str, bytes], ...] = ()
    if recoverable:
        rich = rpc_status_pb2.Status(code=code.value[0], message=message, details=[recoverable_detail()])
        metadata = ((STATUS_DETAILS_KEY, rich.SerializeToString()),)
    return _Status(code, message, metadata)


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException, method: str = "") -> NoReturn:
    """Log ``exc`` and end the RPC with its status (never returns: raises grpc's abort error)."""
    if isinstance(exc, RawExecError):
        log.debug("rpc failed", extra={"kv": {"method": method, "error": str(exc),
                                                 "code": exc.grpc_code}})
    else:
        log.error("rpc failed with an unexpected error", exc_info=exc, extra={"kv": {"method": method}})
    status = to_status(exc)
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("abort returned")  # pragma: no cover
