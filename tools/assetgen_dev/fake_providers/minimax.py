"""Fake MiniMax (Hailuo) video generation, V1: errors inside HTTP 200 bodies (``base_resp``), and a
second call to turn a finished task's ``file_id`` into a download URL.

``POST /v1/video_generation`` answers ``{"task_id", "base_resp": {"status_code": 0, "status_msg":
"success"}}`` (1026 "input new_sensitive" for ``[filtered]``, still HTTP 200); ``GET
/v1/query/video_generation?task_id=`` the task (Queueing → Processing → Success with a
``file_id``, or Fail with 1027 for ``[fail]``); ``GET /v1/files/retrieve?file_id=`` the file with
``file.download_url``. ``retrieved`` lists the file ids asked for.
"""

from __future__ import annotations

import random
import time
from typing import Any

from aiohttp import web

from assetgen_dev.fake_providers.base import FAIL_TEXT, FakeProvider, FakeTask

__all__ = ["MINIMAX_FILTER_TEXT", "FakeMiniMax"]

MINIMAX_FILTER_TEXT = "input new_sensitive"


def _base(code: int = 0, message: str = "success") -> dict[str, Any]:
    return {"status_code": code, "status_msg": message}


class FakeMiniMax(FakeProvider):
    """MiniMax's V1 video API with bearer auth; a bad key is also an HTTP 200 (code 1004)."""

    media = "video"

    def __init__(self, api_key: str, *, polls_before_done: int = 1) -> None:
        super().__init__(api_key, polls_before_done=polls_before_done)
        self.retrieved: list[str] = []
        self._files: dict[str, FakeTask] = {}

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/video_generation", self.create)
        app.router.add_get("/v1/query/video_generation", self.query)
        app.router.add_get("/v1/files/retrieve", self.retrieve)

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        if self.bearer_ok(request):
            return None
        return web.json_response({"base_resp": _base(1004, "login fail: Please carry the API secret key")})

    async def create(self, request: web.Request) -> web.Response:
        refusal = self._unauthorized(request)
        if refusal is not None:
            return refusal
        body = await request.json()
        prompt = str(body.get("prompt", ""))
        if "[filtered]" in prompt:
            return web.json_response({"task_id": "", "base_resp": _base(1026, MINIMAX_FILTER_TEXT)})
        task = self.new_task(prompt, body, task_id=str(random.randrange(10**14, 10**15)))
        return web.json_response({"task_id": task.id, "base_resp": _base()})

    async def query(self, request: web.Request) -> web.Response:
        refusal = self._unauthorized(request)
        if refusal is not None:
            return refusal
        task = self.tasks.get(request.query.get("task_id", ""))
        if task is None:
            return web.json_response(
                {"task_id": "", "status": "", "base_resp": _base(2013, "invalid task_id")}
            )
        answer: dict[str, Any] = {
            "task_id": task.id,
            "status": "Queueing",
            "file_id": "",
            "base_resp": _base(),
        }
        if task.polls > 0:
            answer["status"] = "Processing"
        if self.done(task):
            if task.outcome == "fail":
                answer.update(status="Fail", base_resp=_base(1027, FAIL_TEXT))
            else:
                file_id = str(random.randrange(10**14, 10**15))
                self._files[file_id] = task
                answer.update(status="Success", file_id=file_id, video_width=1280, video_height=720)
        return web.json_response(answer)

    async def retrieve(self, request: web.Request) -> web.Response:
        refusal = self._unauthorized(request)
        if refusal is not None:
            return refusal
        file_id = request.query.get("file_id", "")
        self.retrieved.append(file_id)
        task = self._files.get(file_id)
        if task is None:
            return web.json_response({"base_resp": _base(1000, "file not found")})
        file = {
            "file_id": int(file_id),
            "bytes": len(task.result),
            "created_at": int(time.time()),
            "filename": "output_aigc.mp4",
            "purpose": "video_generation",
            "download_url": self.file_url(task),
        }
        return web.json_response({"file": file, "base_resp": _base()})
