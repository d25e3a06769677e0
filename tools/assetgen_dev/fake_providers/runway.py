"""Fake Runway API: `X-Runway-Version` required, `POST /v1/image_to_video`, `GET/DELETE /v1/tasks/{id}`."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from assetgen_dev.fake_providers.base import FAIL_TEXT, FakeProvider, FakeTask

__all__ = ["RUNWAY_VERSION", "FakeRunway"]

RUNWAY_VERSION = "2024-11-06"


class FakeRunway(FakeProvider):
    """Tasks go PENDING → THROTTLED → RUNNING (with progress) → SUCCEEDED or FAILED."""

    media = "video"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/image_to_video", self.create)
        app.router.add_get("/v1/tasks/{id}", self.get)
        app.router.add_delete("/v1/tasks/{id}", self.delete)

    def _refusal(self, request: web.Request) -> web.Response | None:
        if not self.bearer_ok(request):
            return web.json_response({"error": "Invalid API key"}, status=401)
        if request.headers.get("X-Runway-Version") != RUNWAY_VERSION:
            error = f"X-Runway-Version header is required and must be {RUNWAY_VERSION}"
            return web.json_response({"error": error}, status=400)
        return None

    async def create(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        body = await request.json()
        if not isinstance(body.get("duration"), int):
            return web.json_response({"error": "duration: expected a number"}, status=400)
        task = self.new_task(str(body.get("promptText", "")), body, task_id=str(uuid.uuid4()))
        return web.json_response({"id": task.id})

    def _task(self, task: FakeTask, status: str) -> dict[str, Any]:
        body: dict[str, Any] = {"id": task.id, "status": status, "createdAt": "2024-06-27T19:49:32.335Z"}
        if status == "RUNNING":
            body["progress"] = 0.5
        elif status == "SUCCEEDED":
            body["output"] = [f"{self.file_url(task)}?_jwt=abc"]
        elif status == "FAILED":
            body.update(failure=FAIL_TEXT, failureCode="SAFETY.INPUT.TEXT")
        return body

    async def get(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        task = self.tasks.get(request.match_info["id"])
        if task is None:
            return web.json_response({"error": "Task not found"}, status=404)
        if task.canceled:
            return web.json_response(self._task(task, "CANCELLED"))
        task.polls += 1
        if task.polls <= self.polls_before_done:
            return web.json_response(self._task(task, ("THROTTLED", "RUNNING")[min(task.polls - 1, 1)]))
        return web.json_response(self._task(task, "FAILED" if task.outcome == "fail" else "SUCCEEDED"))

    async def delete(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        task = self.tasks.get(request.match_info["id"])
        if task is None:
            return web.json_response({"error": "Task not found"}, status=404)
        task.canceled = True
        return web.Response(status=204)
