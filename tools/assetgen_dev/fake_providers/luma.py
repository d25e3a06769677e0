"""Fake Luma Dream Machine: `POST /generations`, `GET/DELETE /generations/{id}` (Generation objects)."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from assetgen_dev.fake_providers.base import FAIL_TEXT, FakeProvider, FakeTask

__all__ = ["FakeLuma"]


class FakeLuma(FakeProvider):
    """States queued → dreaming → completed (``assets.video``) or failed (``failure_reason``)."""

    media = "video"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/dream-machine/v1/generations", self.create)
        app.router.add_get("/dream-machine/v1/generations/{id}", self.get)
        app.router.add_delete("/dream-machine/v1/generations/{id}", self.delete)

    def _generation(self, task: FakeTask, state: str) -> dict[str, Any]:
        generation: dict[str, Any] = {
            "id": task.id,
            "generation_type": "video",
            "state": state,
            "failure_reason": None,
            "created_at": "2024-06-27T19:49:32.335Z",
            "model": task.request.get("model", "ray-2"),
            "assets": {"video": None, "image": None, "progress_video": None},
            "request": task.request,
        }
        if state == "completed":
            generation["assets"]["video"] = self.file_url(task)
        elif state == "failed":
            generation["failure_reason"] = FAIL_TEXT
        return generation

    async def create(self, request: web.Request) -> web.Response:
        if not self.bearer_ok(request):
            return web.json_response({"detail": "Invalid API key provided"}, status=401)
        body = await request.json()
        task = self.new_task(str(body.get("prompt", "")), body, task_id=str(uuid.uuid4()))
        return web.json_response(self._generation(task, "queued"), status=201)

    async def get(self, request: web.Request) -> web.Response:
        if not self.bearer_ok(request):
            return web.json_response({"detail": "Invalid API key provided"}, status=401)
        task = self.tasks.get(request.match_info["id"])
        if task is None:
            return web.json_response({"detail": "Generation not found"}, status=404)
        if not self.done(task):
            return web.json_response(self._generation(task, "dreaming"))
        return web.json_response(self._generation(task, "failed" if task.outcome == "fail" else "completed"))

    async def delete(self, request: web.Request) -> web.Response:
        task = self.tasks.pop(request.match_info["id"], None)
        if task is None or not self.bearer_ok(request):
            return web.json_response({"detail": "Generation not found"}, status=404)
        return web.Response(status=204)
