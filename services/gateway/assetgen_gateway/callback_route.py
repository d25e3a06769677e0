"""``POST /api/callbacks/{token}``: where providers call back. No bearer token: the unguessable token
in the path (minted by the orchestrator per asset attempt) and the provider's own signature, checked
by the provider-adapter, vouch for the call. The raw body and headers go to the orchestrator's
CallbackService as they arrived (signatures cover the exact bytes); it answers 200, 401 (bad
signature, stale timestamp) or 404 (unknown token or task), and changes nothing but when to poll.
A handshake (MiniMax's challenge) is answered with the echo the orchestrator returns, as it is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from assetgen.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from assetgen_gateway.responses import json_response
from assetgen_runtime.errors import TooLarge, Unavailable

__all__ = ["MAX_CALLBACK_BYTES", "callback_handler"]

MAX_CALLBACK_BYTES = 1024 * 1024
"""Largest callback body accepted (a status document, never a result file)."""


def callback_handler(
    callbacks: Callable[[], orchestrator_pb2_grpc.CallbackServiceStub | None], timeout: float
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The handler of the callback route, forwarding to the stub ``callbacks()`` returns."""

    async def handle(request: web.Request) -> web.Response:
        stub = callbacks()
        if stub is None:
            raise Unavailable("provider callbacks are not configured on this gateway")
        if request.content_length and request.content_length > MAX_CALLBACK_BYTES:
            raise TooLarge(f"a callback body is at most {MAX_CALLBACK_BYTES} bytes")
        body = await request.content.read(MAX_CALLBACK_BYTES + 1)
        if len(body) > MAX_CALLBACK_BYTES:
            raise TooLarge(f"a callback body is at most {MAX_CALLBACK_BYTES} bytes")
        headers = {key.lower(): value for key, value in request.headers.items()}
        answer = await stub.ProviderCallback(
            orchestrator_pb2.ProviderCallbackRequest(
                token=request.match_info["token"], headers=headers, body=body
            ),
            timeout=timeout,
        )
        if answer.reply:
            return web.Response(body=answer.reply, content_type="application/json")
        return json_response({"outcome": answer.outcome})

    return handle
