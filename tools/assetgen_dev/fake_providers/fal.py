"""Fake fal.ai queue: submit returns status/response/cancel URLs (without the model's subpath);
status answers 202 while queued or running and 200 when COMPLETED; failures show only when the
result is fetched (a 422 ``{"detail": [...]}``).
"""

from __future__ import annotations

from aiohttp import web

from assetgen_dev.fake_providers.base import FAIL_TEXT, FakeProvider

__all__ = ["FakeFal"]


class FakeFal(FakeProvider):
    """Models are ``owner/app[/subpath]``; the queue URLs use ``owner/app`` only."""

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/{owner}/{app}/requests/{id}/status", self.status)
        app.router.add_get("/{owner}/{app}/requests/{id}", self.result)
        app.router.add_put("/{owner}/{app}/requests/{id}/cancel", self.cancel)
        app.router.add_post("/{model:.+}", self.submit)

    def _unauthorized(self) -> web.Response:
        return web.json_response({"detail": "Unauthorized"}, status=401)

    async def submit(self, request: web.Request) -> web.Response:
        if not self.bearer_ok(request, scheme="Key"):
            return self._unauthorized()
        body = await request.json()  # the model input itself, no wrapper
        task = self.new_task(str(body.get("prompt", "")), body)
        owner_app = "/".join(request.match_info["model"].split("/")[:2])
        base = f"{self.base_url}/{owner_app}/requests/{task.id}"
        task.extra["base"] = base
        return web.json_response(
            {
                "request_id": task.id,
                "response_url": base,
                "status_url": f"{base}/status",
                "cancel_url": f"{base}/cancel",
                "queue_position": 0,
            }
        )

    async def status(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.match_info["id"])
        if not self.bearer_ok(request, scheme="Key") or task is None:
            return self._unauthorized()
        if task.polls == 0:
            task.polls += 1
            body = {"status": "IN_QUEUE", "queue_position": 0, "response_url": task.extra["base"]}
            return web.json_response(body, status=202)
        if not self.done(task):
            return web.json_response(
                {"status": "IN_PROGRESS", "response_url": task.extra["base"]}, status=202
            )
        return web.json_response(
            {"status": "COMPLETED", "response_url": task.extra["base"], "metrics": {"inference_time": 0.4}}
        )

    async def result(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.match_info["id"])
        if not self.bearer_ok(request, scheme="Key") or task is None:
            return self._unauthorized()
        if task.outcome == "fail":
            detail = [{"loc": ["body", "prompt"], "msg": FAIL_TEXT, "type": "content_policy_violation"}]
            return web.json_response({"detail": detail}, status=422, headers={"X-Fal-Retryable": "false"})
        image = {"url": self.file_url(task), "content_type": task.content_type, "width": 96, "height": 96}
        return web.json_response({"images": [image], "seed": 42})

    async def cancel(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.match_info["id"])
        if task is None:
            return web.json_response({"status": "NOT_FOUND"}, status=404)
        task.canceled = True
        return web.json_response({"status": "CANCELLATION_REQUESTED"}, status=202)
