"""A local stand-in for Kie.ai's jobs API, for `make run`, demos and tests.

It speaks the wire shapes of https://docs.kie.ai (market/jobs family) exactly:

* ``POST /api/v1/jobs/createTask`` with ``Authorization: Bearer <key>`` and ``{"model", "input": {...}}``
  → ``{"code": 200, "msg": "success", "data": {"taskId": "..."}}``; a wrong or missing key →
  ``{"code": 401, "msg": "You do not have access permissions"}`` (HTTP 200, as the envelope carries it).
* ``GET /api/v1/jobs/recordInfo?taskId=...`` → ``{"code": 200, "message": "success", "data": {...}}``
  with ``state`` going ``waiting`` → ``generating`` → ``success`` after ``delay`` seconds, ``resultJson``
  a JSON *string* ``{"resultUrls": [...]}``, and ``failCode``/``failMsg`` ``null`` while running (as Kie's
  own copies show) and ``""`` on success.
* ``GET /files/<taskId>.png|.mp4`` serves the result: a real PNG whose picture depends on the prompt,
  or a real H.264 MP4 (``demo_video.mp4``) for video models (``model`` containing "video", or an
  ``input.image_urls`` on a model not named as an image model).
* A prompt containing ``[fail]`` ends the task in ``fail`` with a ``failMsg``.
* ``GET /_demo/stats`` → ``{"submits": n, "polls": n, "last_submit": <body>}``, for tests.

Run it with ``python -m assetgen_dev.demo_provider --port 8099 --api-key demo --delay 3``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import socket
import struct
import time
import zlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

__all__ = ["main", "make_app", "make_png", "start_demo_provider"]

_UNAUTHORIZED = {"code": 401, "msg": "You do not have access permissions"}
_FAIL_MESSAGE = "The demo provider was asked to fail: the prompt contains [fail]"
_PNG_SIZE = 96


def make_png(seed: str, size: int = _PNG_SIZE) -> bytes:
    """A valid RGB PNG whose colours and pattern are derived from ``seed`` (zlib + struct only)."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    start, end, stripe = digest[0:3], digest[3:6], digest[6:9]
    period = 4 + digest[9] % 12
    rows = bytearray()
    for y in range(size):
        rows.append(0)  # filter type: none
        for x in range(size):
            if (x + y) // period % 3 == 0:
                rows.extend(stripe)
                continue
            t = (x + y) / (2 * size - 2)
            rows.extend(int(a + (b - a) * t) for a, b in zip(start, end, strict=True))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


def _demo_video() -> bytes:
    return resources.files("assetgen_dev").joinpath("demo_video.mp4").read_bytes()


@dataclass
class _Task:
    task_id: str
    model: str
    prompt: str
    video: bool
    fail: bool
    created: float
    param: str


class _DemoProvider:
    """State of one demo provider: its tasks and the counters tests read."""

    def __init__(self, api_key: str, delay: float) -> None:
        self.api_key = api_key
        self.delay = delay
        self.tasks: dict[str, _Task] = {}
        self.submits = 0
        self.polls = 0
        self.last_submit: Any = None

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "") == f"Bearer {self.api_key}"

    async def create_task(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response(_UNAUTHORIZED)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"code": 422, "msg": "request body is not JSON"})
        if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
            return web.json_response({"code": 422, "msg": "model is required"})
        payload = body.get("input", {})
        if not isinstance(payload, dict):
            return web.json_response({"code": 422, "msg": "input must be an object"})
        self.submits += 1
        self.last_submit = body
        model = body["model"]
        prompt = str(payload.get("prompt", ""))
        lowered = model.lower()
        video = "video" in lowered or ("image" not in lowered and bool(payload.get("image_urls")))
        task = _Task(
            task_id=f"task_demo_{secrets.token_hex(8)}",
            model=model,
            prompt=prompt,
            video=video,
            fail="[fail]" in prompt,
            created=time.monotonic(),
            param=json.dumps(body),
        )
        self.tasks[task.task_id] = task
        return web.json_response({"code": 200, "msg": "success", "data": {"taskId": task.task_id}})

    def _state(self, task: _Task) -> str:
        elapsed = time.monotonic() - task.created
        if elapsed >= self.delay:
            return "fail" if task.fail else "success"
        return "waiting" if elapsed < self.delay * 0.3 else "generating"

    async def record_info(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response(_UNAUTHORIZED)
        self.polls += 1
        task = self.tasks.get(request.query.get("taskId", ""))
        if task is None:
            return web.json_response({"code": 404, "msg": "task not found"})
        state = self._state(task)
        data: dict[str, Any] = {
            "taskId": task.task_id,
            "model": task.model,
            "state": state,
            "param": task.param,
            "resultJson": "",
            "failCode": None,
            "failMsg": None,
            "costTime": None,
            "completeTime": None,
            "createTime": int(time.time() * 1000),
            "updateTime": int(time.time() * 1000),
        }
        if state == "success":
            extension = "mp4" if task.video else "png"
            url = f"{request.url.origin()}/files/{task.task_id}.{extension}"
            data.update(resultJson=json.dumps({"resultUrls": [url]}), failCode="", failMsg="")
        elif state == "fail":
            data.update(failCode="400", failMsg=_FAIL_MESSAGE)
        return web.json_response({"code": 200, "message": "success", "data": data})

    async def file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        task_id, _, extension = name.rpartition(".")
        task = self.tasks.get(task_id)
        if task is None or self._state(task) != "success" or extension != ("mp4" if task.video else "png"):
            raise web.HTTPNotFound()
        if task.video:
            return web.Response(body=_demo_video(), content_type="video/mp4")
        return web.Response(body=make_png(task.prompt), content_type="image/png")

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"submits": self.submits, "polls": self.polls, "last_submit": self.last_submit}
        )


def make_app(api_key: str, delay: float) -> web.Application:
    """The demo provider's aiohttp application."""
    provider = _DemoProvider(api_key, delay)
    app = web.Application()
    app.router.add_post("/api/v1/jobs/createTask", provider.create_task)
    app.router.add_get("/api/v1/jobs/recordInfo", provider.record_info)
    app.router.add_get("/files/{name}", provider.file)
    app.router.add_get("/_demo/stats", provider.stats)
    return app


async def start_demo_provider(
    host: str = "127.0.0.1", port: int = 0, api_key: str = "demo-key", delay: float = 2.0
) -> tuple[web.AppRunner, str]:
    """Starts the demo provider (port 0 picks a free one); returns its runner and base URL.

    Stop it with ``await runner.cleanup()``.
    """
    runner = web.AppRunner(make_app(api_key, delay), access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    site = web.SockSite(runner, sock)
    await site.start()
    bound = sock.getsockname()[1]
    return runner, f"http://{host}:{bound}"


def main(argv: list[str] | None = None) -> None:
    """``python -m assetgen_dev.demo_provider --host H --port N --api-key K --delay SECONDS``."""
    parser = argparse.ArgumentParser(
        description="A local Kie.ai-shaped provider that makes real PNG/MP4 files."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--api-key", default="demo-key")
    parser.add_argument("--delay", type=float, default=3.0, help="seconds from submission to success")
    args = parser.parse_args(argv)
    web.run_app(make_app(args.api_key, args.delay), host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
