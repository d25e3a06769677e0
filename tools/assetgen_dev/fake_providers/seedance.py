"""Fake ByteDance Seedance on BytePlus ModelArk: content generation tasks under ``/api/v3``.

``POST /contents/generations/tasks`` answers ``{"id": "cgt-..."}``; ``GET .../tasks/{id}`` the task
(``queued`` → ``running`` → ``succeeded`` with ``content.video_url``, or ``failed`` with
``error.{code,message}``, or ``expired``); ``DELETE .../tasks/{id}`` cancels a queued task and deletes
a finished one (refused while running). Prompt markers: ``[fail]``, ``[filtered]`` (refused at submit,
as the input moderation does), ``[expired]``, ``[hold]`` (stays queued), ``[running]`` (stays running).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiohttp import web

from assetgen_dev.fake_providers.base import FAIL_TEXT, FakeProvider, FakeTask

__all__ = ["SEEDANCE_FILTER_TEXT", "FakeSeedance"]

SEEDANCE_FILTER_TEXT = "The request failed because the input text may contain sensitive information."
_PREFIX = "/api/v3/contents/generations/tasks"


def _error(status: int, code: str, message: str, kind: str) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message, "param": "", "type": kind}}, status=status
    )


class FakeSeedance(FakeProvider):
    """ModelArk's task API with bearer auth; ``deleted`` lists the ids a DELETE reached."""

    media = "video"

    def __init__(self, api_key: str, *, polls_before_done: int = 1) -> None:
        super().__init__(api_key, polls_before_done=polls_before_done)
        self.deleted: list[str] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post(_PREFIX, self.create)
        app.router.add_get(_PREFIX + "/{id}", self.get)
        app.router.add_delete(_PREFIX + "/{id}", self.delete)

    def _status(self, task: FakeTask) -> str:
        if task.canceled:
            return "cancelled"
        if "[hold]" in task.prompt:
            return "queued"
        if "[running]" in task.prompt:
            return "running"
        if task.polls == 0:
            return "queued"
        if not task.finished:
            return "running"
        if "[expired]" in task.prompt:
            return "expired"
        return "failed" if task.outcome == "fail" else "succeeded"

    def _task(self, task: FakeTask) -> dict[str, Any]:
        status = self._status(task)
        body: dict[str, Any] = {
            "id": task.id,
            "model": task.request.get("model", ""),
            "status": status,
            "error": None,
            "created_at": int(time.time()),
            "updated_at": int(time.time()),
            "content": None,
            "seed": 42,
            "resolution": "720p",
            "ratio": "16:9",
            "duration": 5,
            "framespersecond": 24,
            "service_tier": "default",
            "execution_expires_after": 172800,
        }
        if status == "succeeded":
            body["content"] = {"video_url": self.file_url(task)}
            body["usage"] = {"completion_tokens": 108900, "total_tokens": 108900}
        elif status == "failed":
            body["error"] = {"code": "InternalServiceError", "message": FAIL_TEXT}
        return body

    async def create(self, request: web.Request) -> web.Response:
        if not self.bearer_ok(request):
            return _error(401, "AuthenticationError", "the API key is invalid", "Unauthorized")
        body = await request.json()
        texts = [item.get("text", "") for item in body.get("content", []) if item.get("type") == "text"]
        prompt = " ".join(texts)
        if "[filtered]" in prompt:
            return _error(400, "InputTextSensitiveContentDetected", SEEDANCE_FILTER_TEXT, "BadRequest")
        task = self.new_task(
            prompt, body, task_id=f"cgt-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:5]}"
        )
        return web.json_response({"id": task.id})

    async def get(self, request: web.Request) -> web.Response:
        if not self.bearer_ok(request):
            return _error(401, "AuthenticationError", "the API key is invalid", "Unauthorized")
        task = self.tasks.get(request.match_info["id"])
        if task is None:
            return _error(404, "ResourceNotFound", "The specified task is not found.", "NotFound")
        if not task.canceled and "[hold]" not in task.prompt and "[running]" not in task.prompt:
            self.done(task)
        return web.json_response(self._task(task))

    async def delete(self, request: web.Request) -> web.Response:
        if not self.bearer_ok(request):
            return _error(401, "AuthenticationError", "the API key is invalid", "Unauthorized")
        task = self.tasks.get(request.match_info["id"])
        if task is None:
            return _error(404, "ResourceNotFound", "The specified task is not found.", "NotFound")
        status = self._status(task)
        if status in ("running", "cancelled"):
            return _error(
                400, "InvalidAction", f"A task in status {status} cannot be cancelled.", "BadRequest"
            )
        self.deleted.append(task.id)
        if status == "queued":
            task.canceled = task.finished = True
        else:
            del self.tasks[task.id]
        return web.json_response({})
