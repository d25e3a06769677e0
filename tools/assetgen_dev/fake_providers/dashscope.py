"""Fake Alibaba Cloud Model Studio (DashScope) Wan video synthesis.

``POST /api/v1/services/aigc/video-generation/video-synthesis`` needs ``X-DashScope-Async: enable``
(without it the real service answers 403 AccessDenied "current user api does not support
synchronous calls") and answers ``{"output": {"task_id", "task_status": "PENDING"}, "request_id"}``;
``GET /api/v1/tasks/{id}`` reports ``output.task_status`` (PENDING → RUNNING → SUCCEEDED with
``output.video_url``, FAILED with ``output.code/message``, or UNKNOWN); ``POST
/api/v1/tasks/{id}/cancel`` cancels a PENDING task only. Transport errors are top-level
``{"request_id", "code", "message"}``. Markers: ``[fail]``, ``[filtered]`` (DataInspectionFailed at
submit), ``[unknown]``, ``[hold]`` (stays PENDING), ``[running]`` (stays RUNNING).
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from assetgen_dev.fake_providers.base import FAIL_TEXT, FakeProvider, FakeTask

__all__ = ["DASHSCOPE_FILTER_TEXT", "DASHSCOPE_SYNC_TEXT", "FakeDashScope"]

DASHSCOPE_FILTER_TEXT = "Input data may contain inappropriate content."
DASHSCOPE_SYNC_TEXT = "current user api does not support synchronous calls"


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"request_id": uuid.uuid4().hex, "code": code, "message": message}, status=status
    )


class FakeDashScope(FakeProvider):
    """DashScope's async task API with bearer auth; ``canceled_ids`` lists tasks a cancel stopped."""

    media = "video"

    def __init__(self, api_key: str, *, polls_before_done: int = 1) -> None:
        super().__init__(api_key, polls_before_done=polls_before_done)
        self.canceled_ids: list[str] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/services/aigc/video-generation/video-synthesis", self.create)
        app.router.add_get("/api/v1/tasks/{id}", self.get)
        app.router.add_post("/api/v1/tasks/{id}/cancel", self.cancel)

    def _status(self, task: FakeTask) -> str:
        if task.canceled:
            return "CANCELED"
        if "[running]" in task.prompt:
            return "RUNNING"
        if "[hold]" in task.prompt or task.polls == 0:
            return "PENDING"
        if not task.finished:
            return "RUNNING"
        if "[unknown]" in task.prompt:
            return "UNKNOWN"
        return "FAILED" if task.outcome == "fail" else "SUCCEEDED"

    async def create(self, request: web.Request) -> web.Response:
        if not self.bearer_ok(request):
            return _error(401, "InvalidApiKey", "Invalid API-key provided.")
        if request.headers.get("X-DashScope-Async") != "enable":
            return _error(403, "AccessDenied", DASHSCOPE_SYNC_TEXT)
        body = await request.json()
        prompt = str(body.get("input", {}).get("prompt", ""))
        if "[filtered]" in prompt:
            return _error(400, "DataInspectionFailed", DASHSCOPE_FILTER_TEXT)
        task = self.new_task(prompt, body, task_id=str(uuid.uuid4()))
        return web.json_response(
            {"output": {"task_id": task.id, "task_status": "PENDING"}, "request_id": uuid.uuid4().hex}
        )

    async def get(self, request: web.Request) -> web.Response:
        if not self.bearer_ok(request):
            return _error(401, "InvalidApiKey", "Invalid API-key provided.")
        task = self.tasks.get(request.match_info["id"])
        if task is None:
            return _error(404, "NotFound", "task not found")
        if not task.canceled and "[hold]" not in task.prompt and "[running]" not in task.prompt:
            self.done(task)
        status = self._status(task)
        output: dict[str, Any] = {
            "task_id": task.id,
            "task_status": status,
            "submit_time": "2026-12-04 10:00:00.000",
            "scheduled_time": "2026-12-04 10:00:01.000",
        }
        if status == "SUCCEEDED":
            output["video_url"] = self.file_url(task)
            output["end_time"] = "2026-12-04 10:01:00.000"
        elif status == "FAILED":
            output["code"], output["message"] = "InternalError.Algo", FAIL_TEXT
        return web.json_response(
            {"request_id": uuid.uuid4().hex, "output": output, "usage": {"duration": 5, "video_count": 1}}
        )

    async def cancel(self, request: web.Request) -> web.Response:
        if not self.bearer_ok(request):
            return _error(401, "InvalidApiKey", "Invalid API-key provided.")
        task = self.tasks.get(request.match_info["id"])
        if task is None:
            return _error(404, "NotFound", "task not found")
        if self._status(task) != "PENDING":
            return _error(
                400,
                "UnsupportedOperation",
                "Failed to cancel the task, please confirm if the task is in PENDING status.",
            )
        task.canceled = task.finished = True
        self.canceled_ids.append(task.id)
        return web.json_response({"request_id": uuid.uuid4().hex})
