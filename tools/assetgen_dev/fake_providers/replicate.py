"""Fake Replicate: predictions with ``Prefer: wait`` (hybrid), ``urls.get``/``urls.cancel``, data: URIs."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from assetgen_dev.fake_providers.base import FAIL_TEXT, FakeProvider, FakeTask

__all__ = ["FakeReplicate"]


class FakeReplicate(FakeProvider):
    """A prompt containing ``[sync]`` finishes within the held-open submit, as a ``data:`` URI."""

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/predictions", self.create)
        app.router.add_get("/v1/predictions/{id}", self.get)
        app.router.add_post("/v1/predictions/{id}/cancel", self.cancel)
        app.router.add_get("/v1/webhooks/default/secret", self.webhook_secret_of_account)

    webhook_secret = ""
    """The account's webhook signing secret, as ``GET /v1/webhooks/default/secret`` tells it."""

    async def webhook_secret_of_account(self, request: web.Request) -> web.Response:
        if not self.bearer_ok(request):
            return self._auth_error()
        return web.json_response({"key": self.webhook_secret})

    def _prediction(self, task: FakeTask, status: str) -> dict[str, Any]:
        url = f"{self.base_url}/v1/predictions/{task.id}"
        prediction: dict[str, Any] = {
            "id": task.id,
            "version": task.request.get("version"),
            "urls": {"get": url, "cancel": f"{url}/cancel"},
            "status": status,
            "input": task.request.get("input"),
            "output": None,
            "error": None,
            "logs": "",
        }
        if status == "succeeded":
            if "[sync]" in task.prompt:
                encoded = base64.b64encode(task.result).decode("ascii")
                prediction["output"] = f"data:{task.content_type};base64,{encoded}"
            else:
                prediction["output"] = [self.file_url(task)]
        elif status == "failed":
            prediction["error"] = FAIL_TEXT
        return prediction

    def _auth_error(self) -> web.Response:
        return web.json_response(
            {
                "title": "Unauthenticated",
                "detail": "You did not pass a valid authentication token",
                "status": 401,
            },
            status=401,
        )

    async def create(self, request: web.Request) -> web.Response:
        if not self.bearer_ok(request):
            return self._auth_error()
        body = await request.json()
        task = self.new_task(str(body.get("input", {}).get("prompt", "")), body)
        if request.headers.get("Prefer", "").startswith("wait") and "[sync]" in task.prompt:
            return web.json_response(self._prediction(task, "succeeded"), status=201)
        return web.json_response(self._prediction(task, "starting"), status=201)

    async def get(self, request: web.Request) -> web.Response:
        if not self.bearer_ok(request):
            return self._auth_error()
        task = self.tasks.get(request.match_info["id"])
        if task is None:
            return web.json_response({"detail": "Not found."}, status=404)
        if task.canceled:
            return web.json_response(self._prediction(task, "canceled"))
        if not self.done(task):
            return web.json_response(self._prediction(task, "processing"))
        return web.json_response(self._prediction(task, "failed" if task.outcome == "fail" else "succeeded"))

    async def cancel(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.match_info["id"])
        if task is None or not self.bearer_ok(request):
            return web.json_response({"detail": "Not found."}, status=404)
        task.canceled = True
        return web.json_response(self._prediction(task, "canceled"))
