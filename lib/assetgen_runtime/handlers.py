"""Rebuilding a gRPC method handler around wrapped behaviour, whatever its kind of call.

Server interceptors (error mapping, metrics, auth) wrap what a handler does; grpc needs the wrapped
handler to be of the same kind (unary or streaming request and response) as the original.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

__all__ = ["StreamBehavior", "UnaryBehavior", "rewrap"]

UnaryBehavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
StreamBehavior = Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]


def rewrap(
    handler: grpc.RpcMethodHandler,
    *,
    unary: Callable[[UnaryBehavior], UnaryBehavior],
    streaming: Callable[[StreamBehavior], StreamBehavior],
) -> grpc.RpcMethodHandler:
    """A handler of ``handler``'s kind: ``unary`` wraps single-response calls, ``streaming`` the others."""
    kinds = (handler.request_deserializer, handler.response_serializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), *kinds)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), *kinds)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), *kinds)
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), *kinds)
