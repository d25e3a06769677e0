"""Fake MiniMax (Hailuo) video generation, V1: errors inside HTTP 200 bodies (``base_resp``), and a
second call to turn a finished task's ``file_id`` into a download URL.

``POST /v1/video_generation`` answers ``{"task_id", "base_resp": {"status_code": 0, "status_msg":
"success"}}`` (1026 "input new_sensitive" for ``[filtered]``, still HTTP 200); ``GET
/v1/query/video_generation?task_id=`` the task (Queueing → Processing → Success with a
``file_id``, or Fail with 1027 for ``[fail]``); ``GET /v1/files/retrieve?file_id=`` the file with
``file.download_url``. ``retrieved`` lists the file ids asked for.

A submit with a ``callback_url`` first validates it as MiniMax does: it POSTs ``{"challenge": …}``
there and expects the same back as JSON within 3 s (``handshakes`` records each); only a validated
task's callbacks are sent (``assetgen_dev.calling_back``), with the lowercase callback statuses.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from aiohttp import web

from assetgen_dev.fake_providers.base import FAIL_TEXT, FakeProvider, FakeTask

__all__ = ["MINIMAX_FILTER_TEXT", "FakeMiniMax", "Handshake"]

MINIMAX_FILTER_TEXT = "input new_sensitive"


@dataclass
class Handshake:
    """One callback URL validation: the challenge sent, what came back and how long it took."""

    url: str
    challenge: str
    status: int
    answer: bytes
    seconds: float

    @property
    def validated(self) -> bool:
        """Whether the answer echoed the challenge (as JSON, with a 200) in time."""
        try:
            echoed = json.loads(self.answer)
        except ValueError:
            return False
        return self.status == 200 and echoed == {"challenge": self.challenge} and self.seconds < 3.0


def _base(code: int = 0, message: str = "success") -> dict[str, Any]:
    return {"status_code": code, "status_msg": message}


class FakeMiniMax(FakeProvider):
    """MiniMax's V1 video API with bearer auth; a bad key is also an HTTP 200 (code 1004)."""

    media = "video"

    def __init__(self, api_key: str, *, polls_before_done: int = 1) -> None:
        super().__init__(api_key, polls_before_done=polls_before_done)
        self.retrieved: list[str] = []
        self.handshakes: list[Handshake] = []
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
        validated = await self._handshake(str(body["callback_url"])) if body.get("callback_url") else False
        task = self.new_task(prompt, body, task_id=str(random.randrange(10**14, 10**15)))
        task.extra["callback_validated"] = validated
        return web.json_response({"task_id": task.id, "base_resp": _base()})

    async def _handshake(self, url: str) -> bool:
        challenge = uuid.uuid4().hex
        started = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=3.0) as client:
                answer = await client.post(url, json={"challenge": challenge})
            status, content = answer.status_code, answer.content
        except httpx.HTTPError:
            status, content = 0, b""
        handshake = Handshake(url, challenge, status, content, time.monotonic() - started)
        self.handshakes.append(handshake)
        return handshake.validated

    def callback_body(self, task: FakeTask, status: str) -> dict[str, Any]:
        """A pushed status change: the query answer's shape with a lowercase ``status``."""
        body: dict[str, Any] = {"task_id": task.id, "status": status, "file_id": "", "base_resp": _base()}
        if status == "success":
            body["file_id"] = self._file_id(task)
        elif status == "failed":
            body["base_resp"] = _base(1027, FAIL_TEXT)
        return body

    def _file_id(self, task: FakeTask) -> str:
        file_id: str = task.extra.setdefault("file_id", str(random.randrange(10**14, 10**15)))
        self._files[file_id] = task
        return file_id

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
                answer.update(
                    status="Success", file_id=self._file_id(task), video_width=1280, video_height=720
                )
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
