"""Fake OpenAI: Images (sync ``data[].b64_json``) and Videos (async; bytes from ``/content`` with auth)."""

from __future__ import annotations

import base64
import time
from typing import Any

from aiohttp import web

from assetgen_dev.fake_providers.base import FAIL_TEXT, FakeProvider, FakeTask

__all__ = ["FakeOpenAIImages", "FakeOpenAIVideos"]


def _error(status: int, message: str, code: str, kind: str = "invalid_request_error") -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": None, "code": code}}, status=status
    )


class FakeOpenAIImages(FakeProvider):
    """``POST /v1/images/generations`` → ``{"created", "data": [{"b64_json"}]}``."""

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/images/generations", self.generate)

    async def generate(self, request: web.Request) -> web.Response:
        if not self.bearer_ok(request):
            return _error(401, "Incorrect API key provided", "invalid_api_key")
        body = await request.json()
        prompt = str(body.get("prompt", ""))
        if "[fail]" in prompt:
            return _error(400, FAIL_TEXT, "content_policy_violation")
        task = self.new_task(prompt, body)
        encoded = base64.b64encode(task.result).decode("ascii")
        return web.json_response({"created": int(time.time()), "data": [{"b64_json": encoded}]})


class FakeOpenAIVideos(FakeProvider):
    """``POST /v1/videos``, ``GET /v1/videos/{id}`` (with ``openai-poll-after-ms``), ``GET .../content``."""

    media = "video"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/videos", self.create)
        app.router.add_get("/v1/videos/{id}", self.get)
        app.router.add_get("/v1/videos/{id}/content", self.content)
        app.router.add_delete("/v1/videos/{id}", self.delete)

    def _video(self, task: FakeTask, status: str) -> dict[str, Any]:
        video: dict[str, Any] = {
            "id": task.id,
            "object": "video",
            "model": task.request.get("model", "sora-2"),
            "status": status,
            "progress": 100 if status == "completed" else 40 if status == "in_progress" else 0,
            "created_at": 1702345678,
            "seconds": task.request.get("seconds", "4"),
            "size": task.request.get("size", "1280x720"),
            "error": None,
        }
        if status == "failed":
            video["error"] = {"code": "moderation_blocked", "message": FAIL_TEXT}
        return video

    async def create(self, request: web.Request) -> web.Response:
        if not self.bearer_ok(request):
            return _error(401, "Incorrect API key provided", "invalid_api_key")
        body = await request.json()
        task = self.new_task(str(body.get("prompt", "")), body, task_id=f"video_{len(self.tasks) + 1:06d}")
        return web.json_response(self._video(task, "queued"))

    async def get(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.match_info["id"])
        if not self.bearer_ok(request):
            return _error(401, "Incorrect API key provided", "invalid_api_key")
        if task is None:
            return _error(404, "Video not found", "not_found")
        status = "in_progress"
        if self.done(task):
            status = "failed" if task.outcome == "fail" else "completed"
        return web.json_response(self._video(task, status), headers={"openai-poll-after-ms": "200"})

    async def content(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.match_info["id"])
        if not self.bearer_ok(request):
            return _error(401, "Incorrect API key provided", "invalid_api_key")
        if task is None or request.query.get("variant", "video") != "video":
            return _error(404, "Video not found", "not_found")
        return web.Response(body=task.result, content_type="video/mp4")

    async def delete(self, request: web.Request) -> web.Response:
        task = self.tasks.pop(request.match_info["id"], None)
        if task is None:
            return _error(404, "Video not found", "not_found")
        return web.json_response({"id": task.id, "object": "video.deleted", "deleted": True})
