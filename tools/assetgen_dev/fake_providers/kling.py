"""Fake Kling AI: every request must carry a JWT the account's secret key signed (HS256), checked
here the way Kling does: signature, ``iss`` = the access key, ``nbf`` not in the future, ``exp`` not
past (401 with code 1003 / 1004 otherwise).

``POST /v1/videos/{family}`` answers ``{"code": 0, "message": "SUCCEED", "data": {"task_id",
"task_status": "submitted"}}``; ``GET /v1/videos/{family}/{id}`` the task in the same family only
(another family's path is 404 code 1203): submitted → processing → succeed with
``data.task_result.videos[]`` or failed with ``task_status_msg``. Markers: ``[fail]``,
``[filtered]`` (1301 at submit). ``tokens`` lists every token seen, to check reuse.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import random
import time
import uuid
from typing import Any

from aiohttp import web

from assetgen_dev.fake_providers.base import FAIL_TEXT, FakeProvider, FakeTask

__all__ = ["KLING_FILTER_TEXT", "FakeKling"]

KLING_FILTER_TEXT = "Failure to pass the risk control system"
_FAMILIES = ("text2video", "image2video", "omni-video")


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {"code": code, "message": message, "request_id": uuid.uuid4().hex}, status=status
    )


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeKling(FakeProvider):
    """Kling's video API with JWT auth; ``api_key`` is the access key, ``secret_key`` signs."""

    media = "video"

    def __init__(self, access_key: str, secret_key: str, *, polls_before_done: int = 1) -> None:
        super().__init__(access_key, polls_before_done=polls_before_done)
        self.secret_key = secret_key
        self.tokens: list[str] = []
        self.claims: list[dict[str, Any]] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/videos/{family}", self.create)
        app.router.add_get("/v1/videos/{family}/{id}", self.get)

    def _refusal(self, request: web.Request) -> web.Response | None:
        """Why the request's token is not accepted, or None when it is."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return _error(401, 1000, "Authorization header is missing")
        token = header.removeprefix("Bearer ")
        self.tokens.append(token)
        try:
            head, payload, signature = token.split(".")
            expected = hmac.new(
                self.secret_key.encode(), f"{head}.{payload}".encode("ascii"), hashlib.sha256
            ).digest()
            if json.loads(_b64url_decode(head)).get("alg") != "HS256":
                return _error(401, 1002, "Authorization is invalid")
            if not hmac.compare_digest(expected, _b64url_decode(signature)):
                return _error(401, 1002, "Authorization signature is invalid")
            claims = json.loads(_b64url_decode(payload))
        except (ValueError, binascii.Error):
            return _error(401, 1002, "Authorization is invalid")
        self.claims.append(claims)
        now = time.time()
        if claims.get("iss") != self.api_key:
            return _error(401, 1002, "Authorization is invalid")
        if not isinstance(claims.get("nbf"), int) or claims["nbf"] > now:
            return _error(401, 1003, "Authorization is not yet valid")
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= now:
            return _error(401, 1004, "Authorization has expired")
        return None

    def _task(self, task: FakeTask, status: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "task_id": task.id,
            "task_status": status,
            "task_info": {"external_task_id": task.request.get("external_task_id", "")},
            "created_at": int(task.created_at * 1000),
            "updated_at": int(time.time() * 1000),
        }
        if status == "succeed":
            data["task_result"] = {
                "videos": [{"id": f"v{task.id}", "url": self.file_url(task), "duration": "5.042"}]
            }
            data["final_unit_deduction"] = "1"
        elif status == "failed":
            data["task_status_msg"] = FAIL_TEXT
        return {"code": 0, "message": "SUCCEED", "request_id": uuid.uuid4().hex, "data": data}

    async def create(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        family = request.match_info["family"]
        if family not in _FAMILIES:
            return _error(404, 1203, "resource does not exist")
        body = await request.json()
        prompt = str(body.get("prompt", ""))
        if "[filtered]" in prompt:
            return _error(400, 1301, KLING_FILTER_TEXT)
        if family == "image2video" and not body.get("image"):
            return _error(400, 1201, "image is required")
        task = self.new_task(prompt, body, task_id=str(random.randrange(10**17, 10**18)))
        task.extra["family"] = family
        return web.json_response(self._task(task, "submitted"))

    async def get(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        task = self.tasks.get(request.match_info["id"])
        if task is None or task.extra.get("family") != request.match_info["family"]:
            return _error(404, 1203, "task does not exist")
        if not self.done(task):
            return web.json_response(self._task(task, "processing"))
        return web.json_response(self._task(task, "failed" if task.outcome == "fail" else "succeed"))
