"""Fake Stability AI v2beta: multipart-only stable-image (sync, base64 JSON or raw bytes, with
``finish_reason: CONTENT_FILTERED`` inside a 200) and image-to-video (an id, then 202 while running
and the raw MP4 on 200).
"""

from __future__ import annotations

import base64
import secrets

from aiohttp import web

from assetgen_dev.fake_providers.base import FAIL_TEXT, FakeProvider

__all__ = ["FakeStabilityImage", "FakeStabilityVideo"]


def _error(status: int, name: str, message: str) -> web.Response:
    return web.json_response({"id": secrets.token_hex(16), "name": name, "errors": [message]}, status=status)


class _Stability(FakeProvider):
    async def _form(self, request: web.Request) -> dict[str, bytes | str] | web.Response:
        if not self.bearer_ok(request, header="authorization"):
            return _error(401, "unauthorized", "authorization: missing or invalid API key")
        if not request.content_type.startswith("multipart/form-data"):
            return _error(400, "bad_request", "content-type: must be multipart/form-data")
        form: dict[str, bytes | str] = {}
        async for part in await request.multipart():
            data = bytes(await part.read())  # type: ignore[union-attr]
            form[part.name or ""] = data if part.filename else data.decode("utf-8")  # type: ignore[union-attr]
        return form


class FakeStabilityImage(_Stability):
    """``POST /v2beta/stable-image/generate/{core|sd3|ultra}``; needs a prompt field."""

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v2beta/stable-image/generate/{variant}", self.generate)

    async def generate(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        prompt = str(form.get("prompt", ""))
        if not prompt:
            return _error(400, "bad_request", "prompt: cannot be empty")
        if "[fail]" in prompt:
            return _error(403, "content_moderation", FAIL_TEXT)
        task = self.new_task(prompt, form)
        reason = "CONTENT_FILTERED" if task.outcome == "filtered" else "SUCCESS"
        if request.headers.get("accept", "").startswith("image/"):
            return web.Response(
                body=task.result, content_type="image/png", headers={"finish-reason": reason, "seed": "42"}
            )
        encoded = base64.b64encode(task.result).decode("ascii")
        return web.json_response({"image": encoded, "finish_reason": reason, "seed": 42})


class FakeStabilityVideo(_Stability):
    """``POST /v2beta/image-to-video`` (multipart with an ``image`` file) + ``GET .../result/{id}``."""

    media = "video"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v2beta/image-to-video", self.submit)
        app.router.add_get("/v2beta/image-to-video/result/{id}", self.result)

    async def submit(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        image = form.get("image")
        if not isinstance(image, bytes) or not image.startswith(b"\x89PNG"):
            return _error(400, "bad_request", "image: a PNG or JPEG file is required")
        task = self.new_task(
            str(form.get("prompt", form.get("seed", ""))), form, task_id=secrets.token_hex(32)
        )
        return web.json_response({"id": task.id})

    async def result(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.match_info["id"])
        if not self.bearer_ok(request, header="authorization"):
            return _error(401, "unauthorized", "authorization: missing or invalid API key")
        if task is None:
            return _error(404, "not_found", "generation not found or expired")
        if not self.done(task):
            return web.json_response({"id": task.id, "status": "in-progress"}, status=202)
        if "[fail]" in task.prompt:
            return _error(500, "generation_failed", FAIL_TEXT)
        return web.Response(body=task.result, content_type="video/mp4", headers={"finish-reason": "SUCCESS"})
