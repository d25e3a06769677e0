"""The multipart upload route: a box's new asset from the request's ``file`` field, streamed.

A body aiohttp can't parse as multipart (no boundary, a boundary that never comes, broken part
headers) is the client's mistake: it is refused with 400, never an internal error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from assetgen_gateway.api import GatewayApi
from assetgen_gateway.request_text import check_text
from assetgen_gateway.responses import json_response
from assetgen_runtime.codec import message_to_json
from assetgen_runtime.errors import InvalidArgument, TooLarge

__all__ = ["upload_handler"]

T = TypeVar("T")

_UPLOAD_CHUNK = 1024 * 1024
# Room for the multipart framing and the other form fields around the file itself.
_MULTIPART_OVERHEAD = 64 * 1024


def upload_handler(api: GatewayApi, max_upload_bytes: int) -> Any:
    """The handler of ``UPLOAD_PATH``: streams the file part to storage without holding it whole."""

    async def handle(request: web.Request) -> web.Response:
        if request.content_length and request.content_length > max_upload_bytes + _MULTIPART_OVERHEAD:
            raise TooLarge(f"file is larger than the {max_upload_bytes} byte limit")
        if not request.content_type.startswith("multipart/"):
            raise InvalidArgument('upload must be multipart/form-data with a "file" field')
        reader = await _parsed(request.multipart())
        part = await _file_part(reader)

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await _parsed(part.read_chunk(_UPLOAD_CHUNK)):
                yield chunk
            # aiohttp ends a part at the end of the body too: without its boundary the file may be cut.
            if not part.at_eof():
                raise InvalidArgument("malformed multipart body: it ends inside the file part")

        asset = await api.upload_stream(
            check_text(request.match_info["box_id"], "box_id"),
            check_text(part.filename or "", "filename"),
            part.headers.get("Content-Type", ""),
            chunks(),
        )
        return json_response(message_to_json(asset), status=201)

    return handle


async def _file_part(reader: MultipartReader) -> BodyPartReader:
    """The body's ``file`` part, the parts before it skipped."""
    while True:
        part = await _parsed(reader.next())
        if part is None:
            raise InvalidArgument('multipart body has no "file" field')
        if isinstance(part, BodyPartReader) and part.name == "file":
            return part
        await _parsed(part.release())


# What aiohttp's multipart parser raises on a malformed body.
_MALFORMED = (ValueError, RuntimeError, HttpProcessingError)
_MAX_REASON = 200


async def _parsed(step: Awaitable[T]) -> T:
    """``step`` of reading the multipart body, a malformed body refused as InvalidArgument."""
    try:
        return await step
    except _MALFORMED as exc:
        reason = str(exc)[:_MAX_REASON] or type(exc).__name__
        raise InvalidArgument(f"malformed multipart body: {reason}") from None
