"""Live status over HTTP: Server-Sent Events and a WebSocket, both fed by the gateway's watch.

A stream's first event is read before the response starts, so a refusal (404, 401…) is still an
ordinary JSON error response; after that, errors travel inside the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from assetgen.v1 import gateway_pb2
from assetgen_gateway.api import GatewayApi
from assetgen_runtime.codec import message_to_json
from assetgen_runtime.errors import AssetGenError, InvalidArgument

__all__ = ["sse_handler", "websocket_handler"]

logger = logging.getLogger(__name__)

_END = object()
# No caching, and no buffering by a reverse proxy (nginx honours X-Accel-Buffering): events go out at once.
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _after_sequence(value: str | None) -> int:
    if not value:
        return 0
    try:
        sequence = int(value)
    except ValueError:
        raise InvalidArgument(f"event id must be a non-negative integer, not {value!r}") from None
    if sequence < 0:
        raise InvalidArgument(f"event id must be a non-negative integer, not {value!r}")
    return sequence


def _open_watch(api: GatewayApi, request: web.Request) -> AsyncIterator[gateway_pb2.AssetEvent | None]:
    after = _after_sequence(request.headers.get("Last-Event-ID") or request.query.get("after_sequence"))
    if "asset_id" in request.match_info:
        return api.watch_asset(request.match_info["asset_id"], after)
    return api.watch_box(request.match_info["box_id"], after)


async def _first(events: AsyncIterator[Any]) -> Any:
    """The stream's first item, so that a refusal (404, 401…) is still an ordinary JSON response."""
    try:
        return await anext(events, _END)
    except BaseException:
        await events.aclose()  # type: ignore[attr-defined]
        raise


def _sse_frame(event: gateway_pb2.AssetEvent) -> bytes:
    data = json.dumps(message_to_json(event), ensure_ascii=False)
    return f"id: {event.sequence}\nevent: asset\ndata: {data}\n\n".encode()


def sse_handler(api: GatewayApi) -> Any:
    """Server-Sent Events: ``id`` is the stream sequence, so EventSource's reconnect resumes exactly."""

    async def handle(request: web.Request) -> web.StreamResponse:
        events = _open_watch(api, request)
        item = await _first(events)
        if item is _END:
            # Nothing will ever come (resumed after the terminal event): 204 tells EventSource to stop.
            return web.Response(status=204)
        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
        try:
            while item is not _END:
                await response.write(b": keep-alive\n\n" if item is None else _sse_frame(item))
                item = await anext(events, _END)
        except ConnectionError:
            pass  # the client went away
        except AssetGenError as exc:
            # Headers are gone; the error travels as an event and the client's reconnect retries.
            await response.write(f"event: error\ndata: {json.dumps({'error': exc.message})}\n\n".encode())
        except Exception:
            logger.exception("event stream failed")
            await response.write(b'event: error\ndata: {"error": "internal error"}\n\n')
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        return response

    return handle


def websocket_handler(api: GatewayApi, heartbeat: float) -> Any:
    """A WebSocket sending each event as a JSON text message; ``?after_sequence=`` resumes."""

    async def handle(request: web.Request) -> web.StreamResponse:
        events = _open_watch(api, request)
        item = await _first(events)
        socket = web.WebSocketResponse(heartbeat=heartbeat)
        await socket.prepare(request)

        async def pump() -> None:
            current = item
            try:
                while current is not _END:
                    if current is not None:
                        await socket.send_str(json.dumps(message_to_json(current), ensure_ascii=False))
                    current = await anext(events, _END)
            except ConnectionError:
                pass  # the client went away
            except AssetGenError as exc:
                await socket.send_str(json.dumps({"error": exc.message}))
            except Exception:
                logger.exception("event WebSocket failed")
                await socket.send_str(json.dumps({"error": "internal error"}))
            finally:
                await events.aclose()  # type: ignore[attr-defined]
                await socket.close()

        sender = asyncio.create_task(pump())
        try:
            async for _message in socket:
                pass  # nothing to read from clients; the loop ends when they close
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
        return socket

    return handle
