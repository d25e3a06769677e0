"""Fake OpenRouter video generation under ``/api/v1``.

``POST /videos`` answers 202 ``{"id", "polling_url", "status": "pending"}``; ``GET /videos/{id}``
the job (``pending`` → ``in_progress`` → ``completed`` with ``unsigned_urls``, ``failed`` with
``error`` as a string, or ``expired``); ``GET /videos/{id}/content?index=0`` the bytes, only with the
key (401 without it, as the real proxy). HTTP errors are ``{"error": {"code", "message",
"metadata"}}``. Markers: ``[fail]``, ``[filtered]`` (403 moderation at submit), ``[expired]``.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from assetgen_dev.fake_providers.base import FAIL_TEXT, FakeProvider, FakeTask

__all__ = ["OPENROUTER_FILTER_TEXT", "FakeOpenRouterVideo"]

OPENROUTER_FILTER_TEXT = "Your prompt was flagged by the provider's moderation"


def _error(status: int, message: str, metadata: dict[str, Any] | None = None) -> web.Response:
    return web.json_response(
        {"error": {"code": status, "message": message, "metadata": metadata or {}}}, status=status
    )


class FakeOpenRouterVideo(FakeProvider):
    """OpenRouter's video jobs; ``content_requests`` counts downloads and whether they had the key."""

    media = "video"

    def __init__(self, api_key: str, *, polls_before_done: int = 1) -> None:
        super().__init__(api_key, polls_before_done=polls_before_done)
        self.content_requests: list[bool] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/videos", self.create)
        app.router.add_get("/api/v1/videos/{id}", self.get)
        app.router.add_get("/api/v1/videos/{id}/content", self.content)

    def _job(self, task: FakeTask, status: str) -> dict[str, Any]:
        job: dict[str, Any] = {"id": task.id, "polling_url": f"/api/v1/videos/{task.id}", "status": status}
        if status == "completed":
            job["generation_id"] = f"gen-{task.id}"
            job["unsigned_urls"] = [f"{self.base_url}/api/v1/videos/{task.id}/content?index=0"]
            job["usage"] = {"cost": 0.5, "is_byok": False}
        elif status == "failed":
            job["error"] = FAIL_TEXT
        return job

    async def create(self, request: web.Request) -> web.Response:
        if not self.bearer_ok(request):
            return _error(401, "No auth credentials found")
        body = await request.json()
        prompt = str(body.get("prompt", ""))
        if "[filtered]" in prompt:
            return _error(
                403, OPENROUTER_FILTER_TEXT, {"reasons": ["violence"], "flagged_input": prompt[:40]}
            )
        task = self.new_task(prompt, body, task_id=f"job-{uuid.uuid4().hex[:12]}")
        return web.json_response(self._job(task, "pending"), status=202)

    async def get(self, request: web.Request) -> web.Response:
        if not self.bearer_ok(request):
            return _error(401, "No auth credentials found")
        task = self.tasks.get(request.match_info["id"])
        if task is None:
            return _error(404, "Video job not found")
        if not self.done(task):
            return web.json_response(self._job(task, "in_progress"))
        if "[expired]" in task.prompt:
            return web.json_response(self._job(task, "expired"))
        return web.json_response(self._job(task, "failed" if task.outcome == "fail" else "completed"))

    async def content(self, request: web.Request) -> web.Response:
        authorized = self.bearer_ok(request)
        self.content_requests.append(authorized)
        if not authorized:
            return _error(401, "No auth credentials found")
        task = self.tasks.get(request.match_info["id"])
        if task is None or request.query.get("index", "0") != "0":
            return _error(404, "Video content not found")
        return web.Response(body=task.result, content_type="video/mp4")
