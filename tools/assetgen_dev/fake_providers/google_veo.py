"""Fake Gemini API Veo: ``:predictLongRunning`` returns an operation whose name contains slashes; the
operation is read at ``/v1beta/{name}``; the video URI needs ``x-goog-api-key`` too; a safety filter
shows as ``done`` without samples plus ``raiMediaFilteredReasons``.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from assetgen_dev.fake_providers.base import FAIL_TEXT, FILTER_TEXT, FakeProvider, FakeTask

__all__ = ["FakeGoogleVeo"]


class FakeGoogleVeo(FakeProvider):
    """Serves ``/v1beta/models/{model}:predictLongRunning``, operations and file downloads."""

    media = "video"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/{tail:.+}", self.post)
        app.router.add_get("/v1beta/{tail:.+}", self.get)

    def _denied(self, request: web.Request) -> web.Response | None:
        if request.headers.get("x-goog-api-key") != self.api_key:
            error = {
                "code": 403,
                "message": "Method doesn't allow unregistered callers",
                "status": "PERMISSION_DENIED",
            }
            return web.json_response({"error": error}, status=403)
        return None

    async def post(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        tail = request.match_info["tail"]
        if not (tail.startswith("models/") and tail.endswith(":predictLongRunning")):
            return web.json_response({"error": {"code": 404, "message": "not found"}}, status=404)
        model = tail[len("models/") : -len(":predictLongRunning")]
        body = await request.json()
        prompt = str(body.get("instances", [{}])[0].get("prompt", ""))
        name = f"models/{model}/operations/{uuid.uuid4().hex[:12]}"
        self.new_task(prompt, body, task_id=name)
        return web.json_response({"name": name, "done": False, "metadata": {"progressPercent": 0}})

    def _operation(self, task: FakeTask) -> dict[str, Any]:
        if not self.done(task):
            return {"name": task.id, "done": False, "metadata": {"progressPercent": 50}}
        if task.outcome == "fail":
            return {"name": task.id, "done": True, "error": {"code": 3, "message": FAIL_TEXT}}
        if task.outcome == "filtered":
            response = {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [FILTER_TEXT]}
            return {"name": task.id, "done": True, "response": {"generateVideoResponse": response}}
        file_id = task.id.rsplit("/", 1)[-1]
        uri = f"{self.base_url}/v1beta/files/{file_id}:download?alt=media"
        samples = [{"video": {"uri": uri}}]
        return {
            "name": task.id,
            "done": True,
            "response": {"generateVideoResponse": {"generatedSamples": samples}},
        }

    async def get(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        tail = request.match_info["tail"]
        if tail.startswith("files/") and tail.endswith(":download"):
            file_id = tail[len("files/") : -len(":download")]
            for task in self.tasks.values():
                if task.id.endswith(f"/{file_id}"):
                    return web.Response(body=task.result, content_type="video/mp4")
            return web.json_response({"error": {"code": 404, "message": "file not found"}}, status=404)
        operation = self.tasks.get(tail)
        if operation is None:
            return web.json_response(
                {"error": {"code": 404, "message": f"operation {tail} not found"}}, status=404
            )
        return web.json_response(self._operation(operation))
