"""Domain errors and their one mapping to gRPC status codes and HTTP statuses.

Hierarchy::

    AssetGenError                 INTERNAL            500
    ├── InvalidArgument           INVALID_ARGUMENT    400
    │   └── UnsupportedMediaType  INVALID_ARGUMENT    415 (reason UNSUPPORTED_MEDIA_TYPE)
    ├── Unauthenticated           UNAUTHENTICATED     401
    ├── PermissionDenied          PERMISSION_DENIED   403
    ├── NotFound                  NOT_FOUND           404
    ├── AlreadyExists             ALREADY_EXISTS      409
    ├── FailedPrecondition        FAILED_PRECONDITION 409
    ├── Aborted                   ABORTED             409
    ├── TooLarge                  RESOURCE_EXHAUSTED  413 (reason TOO_LARGE)
    ├── BudgetExceeded            RESOURCE_EXHAUSTED  402 (reason BUDGET_EXCEEDED)
    ├── RateLimited               RESOURCE_EXHAUSTED  429
    ├── Unavailable               UNAVAILABLE         503
    └── DeadlineExceeded          DEADLINE_EXCEEDED   504

A service raises these; :class:`ErrorMappingInterceptor` turns them into statuses (with the reason in
the ``assetgen-reason`` trailing metadata), and any other exception into INTERNAL without internals.
A batch RPC that answers each item on its own reports an item's failure as the ``google.rpc.Status``
of :func:`rpc_status`, the same mapping (the reason as a ``google.rpc.ErrorInfo`` detail), and its
caller turns it back into the error a single call would have raised with :func:`status_error`.
The gateway maps a status (and reason) back to HTTP with :func:`http_status`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from assetgen_runtime.handlers import StreamBehavior, UnaryBehavior, rewrap

__all__ = [
    "REASON_METADATA_KEY",
    "Aborted",
    "AlreadyExists",
    "AssetGenError",
    "BudgetExceeded",
    "DeadlineExceeded",
    "ErrorMappingInterceptor",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "TooLarge",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedMediaType",
    "http_status",
    "reason_of",
    "rpc_status",
    "status_error",
    "to_rpc_error",
]

logger = logging.getLogger(__name__)

REASON_METADATA_KEY = "assetgen-reason"


class AssetGenError(Exception):
    """Base of every error a caller is meant to see; the message is shown to the caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = ""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(AssetGenError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class UnsupportedMediaType(InvalidArgument):
    reason = "UNSUPPORTED_MEDIA_TYPE"


class Unauthenticated(AssetGenError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(AssetGenError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(AssetGenError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(AssetGenError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(AssetGenError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(AssetGenError):
    code = grpc.StatusCode.ABORTED


class TooLarge(AssetGenError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "TOO_LARGE"


class BudgetExceeded(AssetGenError):
    """A generation would take a project's or box's spend past its budget."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "BUDGET_EXCEEDED"


class RateLimited(AssetGenError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(AssetGenError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(AssetGenError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


_HTTP_BY_CODE = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
_HTTP_BY_REASON = {"TOO_LARGE": 413, "UNSUPPORTED_MEDIA_TYPE": 415, "BUDGET_EXCEEDED": 402}


def http_status(code: grpc.StatusCode, reason: str = "") -> int:
    """The HTTP status for a gRPC status code and optional ``assetgen-reason``."""
    return _HTTP_BY_REASON.get(reason) or _HTTP_BY_CODE.get(code, 500)


def reason_of(error: grpc.aio.AioRpcError) -> str:
    """The ``assetgen-reason`` a peer attached to its error, or ''."""
    for key, value in error.trailing_metadata() or ():
        if key == REASON_METADATA_KEY:
            return str(value)
    return ""


def to_rpc_error(exc: BaseException) -> tuple[grpc.StatusCode, str, str]:
    """(code, details, reason) for any exception, hiding internals of unexpected ones."""
    if isinstance(exc, AssetGenError):
        return exc.code, exc.message, exc.reason
    if isinstance(exc, grpc.aio.AioRpcError):
        # A peer's error passes through as it is, so callers see the real cause.
        return exc.code(), exc.details() or "", reason_of(exc)
    return grpc.StatusCode.INTERNAL, "internal error", ""


def _mapped(exc: BaseException) -> tuple[grpc.StatusCode, str, str]:
    """:func:`to_rpc_error`, logging an unexpected exception (its details are hidden from the caller)."""
    code, details, reason = to_rpc_error(exc)
    if code == grpc.StatusCode.INTERNAL and not isinstance(exc, AssetGenError):
        logger.exception("unhandled error in RPC", exc_info=exc)
    return code, details, reason


_ERROR_DOMAIN = "assetgen"
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def rpc_status(exc: BaseException) -> status_pb2.Status:
    """The ``google.rpc.Status`` a call failing with ``exc`` ends with: code, details and reason."""
    code, details, reason = _mapped(exc)
    status = status_pb2.Status(code=code.value[0], message=details)
    if reason:
        status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain=_ERROR_DOMAIN))
    return status


def status_error(status: status_pb2.Status) -> grpc.aio.AioRpcError:
    """The error a single call would have raised for a batch item's :func:`rpc_status`."""
    code = _STATUS_CODES.get(status.code, grpc.StatusCode.UNKNOWN)
    trailing = grpc.aio.Metadata()
    info = error_details_pb2.ErrorInfo()
    for detail in status.details:
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info) and info.domain == _ERROR_DOMAIN:
            trailing.add(REASON_METADATA_KEY, info.reason)
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=status.message)


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    code, details, reason = _mapped(exc)
    if reason:
        context.set_trailing_metadata(((REASON_METADATA_KEY, reason),))
    await context.abort(code, details)


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """Maps exceptions escaping any handler to gRPC statuses, in one place."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return rewrap(handler, unary=_mapped_unary, streaming=_mapped_streaming)


def _mapped_unary(behavior: UnaryBehavior) -> UnaryBehavior:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behavior(request, context)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:  # every escape becomes a status
            await _abort(context, exc)

    return wrapped


def _mapped_streaming(behavior: StreamBehavior) -> StreamBehavior:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in behavior(request, context):
                yield item
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:
            await _abort(context, exc)

    return wrapped
