"""The multipart upload route: a box's new asset from the request's ``file`` field, streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import BodyPartReader, web

from assetgen_gateway.api import GatewayApi
from assetgen_gateway.responses import json_response
from assetgen_runtime.codec import message_to_json
from assetgen_runtime.errors import InvalidArgument, TooLarge

__all__ = ["upload_handler"]

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
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                raise InvalidArgument('multipart body has no "file" field')
            if isinstance(part, BodyPartReader) and part.name == "file":
                break
            await part.release()

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await part.read_chunk(_UPLOAD_CHUNK):
                yield chunk

        asset = await api.upload_stream(
            request.match_info["box_id"],
            part.filename or "",
            part.headers.get("Content-Type", ""),
            chunks(),
        )
        return json_response(message_to_json(asset), status=201)

    return handle
