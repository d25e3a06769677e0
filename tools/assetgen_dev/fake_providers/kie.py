"""Fake Kie.ai: the Veo family and the Flux Kontext family (docs.kie.ai shapes).

The market/jobs API, which `make run` and the bench use too, is ``kie_jobs.FakeKieJobs``.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from assetgen_dev.fake_providers.base import FAIL_TEXT, FakeProvider, FakeTask

__all__ = ["FakeKieFluxKontext", "FakeKieVeo"]

_UNAUTHORIZED = {"code": 401, "msg": "You do not have access permissions"}


def _created(task: FakeTask) -> web.Response:
    return web.json_response({"code": 200, "msg": "success", "data": {"taskId": task.id}})


class _Kie(FakeProvider):
    async def _submit(self, request: web.Request) -> FakeTask | web.Response:
        if not self.bearer_ok(request):
            return web.json_response(_UNAUTHORIZED)  # Kie puts the 401 in a 200's envelope
        body: dict[str, Any] = await request.json()
        prompt = body.get("prompt") or body.get("input", {}).get("prompt", "")
        return self.new_task(str(prompt), body)

    def _task(self, request: web.Request) -> FakeTask | None:
        return self.tasks.get(request.query.get("taskId", ""))


class FakeKieVeo(_Kie):
    """``POST /api/v1/veo/generate`` + ``GET /api/v1/veo/record-info``; state is the int successFlag."""

    media = "video"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/veo/generate", self.create)
        app.router.add_get("/api/v1/veo/record-info", self.record)

    async def create(self, request: web.Request) -> web.Response:
        task = await self._submit(request)
        return task if isinstance(task, web.Response) else _created(task)

    async def record(self, request: web.Request) -> web.Response:
        task = self._task(request)
        if not self.bearer_ok(request) or task is None:
            return web.json_response(_UNAUTHORIZED)
        data: dict[str, Any] = {
            "taskId": task.id,
            "paramJson": json.dumps(task.request),
            "response": None,
            "successFlag": 0,
            "errorCode": None,
            "errorMessage": "",
            "createTime": "2025-06-06 10:25:00",
            "fallbackFlag": False,
        }
        if self.done(task):
            if task.outcome == "fail":
                data.update(successFlag=3, errorCode=400, errorMessage=FAIL_TEXT)
            else:
                data["successFlag"] = 1
                data["response"] = {
                    "taskId": task.id,
                    "resultUrls": [self.file_url(task)],
                    "originUrls": [self.file_url(task)],
                    "resolution": "1080p",
                }
        return web.json_response({"code": 200, "msg": "success", "data": data})


class FakeKieFluxKontext(_Kie):
    """Kie's Flux Kontext family: ``successFlag`` 0-3 and a single ``resultImageUrl`` string.

    No preset covers it; the tests drive it through an inline profile.
    """

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/flux/kontext/generate", self.create)
        app.router.add_get("/api/v1/flux/kontext/record-info", self.record)

    async def create(self, request: web.Request) -> web.Response:
        task = await self._submit(request)
        return task if isinstance(task, web.Response) else _created(task)

    async def record(self, request: web.Request) -> web.Response:
        task = self._task(request)
        if not self.bearer_ok(request) or task is None:
            return web.json_response(_UNAUTHORIZED)
        data: dict[str, Any] = {"taskId": task.id, "successFlag": 0, "response": None, "errorMessage": None}
        if self.done(task):
            if task.outcome == "fail":
                data.update(successFlag=3, errorCode=500, errorMessage=FAIL_TEXT)
            else:
                data.update(successFlag=1, response={"resultImageUrl": self.file_url(task)})
        return web.json_response({"code": 200, "msg": "success", "data": data})
