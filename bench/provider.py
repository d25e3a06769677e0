"""The benchmarks' fake provider: Kie.ai's jobs API, as fast as aiohttp goes, with a stopwatch.

Wire shapes are the kie-ai preset's (``createTask`` / ``recordInfo`` / a result URL). What a task does
is chosen per task through its ``input`` (the bench model's template fills these from ``config``):

* ``finish_after`` (seconds after submission; 0 or absent: finished at once), or ``hold: true``: the
  task runs until ``POST /_bench/release`` gives it a finish time;
* ``size``: result bytes (default ``--result-bytes``), PNG-headed so storage takes it as an image;
  large results are streamed, never held whole.

Every poll is counted with its timestamp (``time.time()``, the clock the services stamp events with),
so the bench can compute polls per second and lateness. Control and measurement routes:

* ``POST /_bench/release {"at": t, "over": s}``: held tasks finish one after another, in submission
  order, evenly from ``t`` to ``t + s``; tasks submitted later with ``hold`` finish at once;
* ``GET /_bench/stats``: counters; ``GET /_bench/tasks``: every task with its finish time, first
  successful poll and poll times; ``GET /_bench/downloads``: result downloads with start/end times.

Run: ``python -m bench.provider --port N --api-key K [--result-bytes 102400]``.
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["main", "make_app", "result_block", "result_head", "write_result"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHUNK = 1024 * 1024
_UNAUTHORIZED = {"code": 401, "msg": "You do not have access permissions"}


def result_head() -> bytes:
    """The first bytes of every result: a PNG signature and an IHDR chunk, enough for any sniffer."""
    return PNG_SIGNATURE + bytes.fromhex("0000000d49484452000000600000006008020000004b6d2a4e")


def result_block() -> bytes:
    """One MiB that results are made of: the PNG head, then seeded random bytes (incompressible).

    Seeded, so the ingest reference can write the very same bytes to disk.
    """
    head = result_head()
    return head + random.Random(8).randbytes(_CHUNK - len(head))


def write_result(path: str, size: int) -> None:
    """Writes the bytes a ``size``-byte result consists of to ``path``."""
    block = result_block()
    with open(path, "wb") as file:
        remaining = size
        while remaining > 0:
            piece = block[: min(remaining, _CHUNK)]
            file.write(piece)
            remaining -= len(piece)


@dataclass
class _Task:
    task_id: str
    created: float
    size: int
    finish_at: float | None
    polls: list[float] = field(default_factory=list)
    first_success_poll: float | None = None


class _Provider:
    """Tasks, their polls and the result downloads."""

    def __init__(self, api_key: str, result_bytes: int) -> None:
        self.api_key = api_key
        self.result_bytes = result_bytes
        self.tasks: dict[str, _Task] = {}
        self.submits = 0
        self.polls = 0
        self.downloads: list[dict[str, float]] = []
        self._ids = itertools.count(1)
        self._released = False
        self._block = result_block()
        self._small: dict[int, bytes] = {}

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "") == f"Bearer {self.api_key}"

    async def create_task(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response(_UNAUTHORIZED)
        body = await request.json()
        payload = body.get("input") or {}
        now = time.time()
        if payload.get("hold") and not self._released:
            finish_at: float | None = None
        else:
            finish_at = now + float(payload.get("finish_after") or 0)
        task = _Task(
            task_id=f"bench_{next(self._ids)}",
            created=now,
            size=int(payload.get("size") or self.result_bytes),
            finish_at=finish_at,
        )
        self.tasks[task.task_id] = task
        self.submits += 1
        return web.json_response({"code": 200, "msg": "success", "data": {"taskId": task.task_id}})

    async def record_info(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response(_UNAUTHORIZED)
        now = time.time()
        self.polls += 1
        task = self.tasks.get(request.query.get("taskId", ""))
        if task is None:
            return web.json_response({"code": 404, "msg": "task not found"})
        task.polls.append(now)
        data: dict[str, Any] = {"taskId": task.task_id, "state": "generating", "resultJson": ""}
        if task.finish_at is not None and task.finish_at <= now:
            if task.first_success_poll is None:
                task.first_success_poll = now
            url = f"{request.url.origin()}/files/{task.task_id}.png"
            data.update(state="success", resultJson='{"resultUrls": ["' + url + '"]}', failMsg="")
        return web.json_response({"code": 200, "message": "success", "data": data})

    def _small_body(self, size: int) -> bytes:
        body = self._small.get(size)
        if body is None:
            body = (self._block * (size // _CHUNK + 1))[:size]
            self._small[size] = body
        return body

    async def file(self, request: web.Request) -> web.StreamResponse:
        task = self.tasks.get(request.match_info["name"].removesuffix(".png"))
        if task is None or task.finish_at is None:
            raise web.HTTPNotFound()
        started = time.time()
        if task.size <= 4 * _CHUNK:
            response = web.Response(body=self._small_body(task.size), content_type="image/png")
            self.downloads.append({"start": started, "end": time.time(), "bytes": task.size})
            return response
        stream = web.StreamResponse(headers={"Content-Type": "image/png"})
        stream.content_length = task.size
        await stream.prepare(request)
        remaining = task.size
        while remaining > 0:
            piece = self._block if remaining >= _CHUNK else self._block[:remaining]
            await stream.write(piece)
            remaining -= len(piece)
        await stream.write_eof()
        self.downloads.append({"start": started, "end": time.time(), "bytes": task.size})
        return stream

    async def release(self, request: web.Request) -> web.Response:
        body = await request.json()
        at, over = float(body["at"]), float(body.get("over", 0))
        held = sorted((t for t in self.tasks.values() if t.finish_at is None), key=lambda t: t.created)
        for rank, task in enumerate(held):
            task.finish_at = at + over * rank / len(held)
        self._released = True
        return web.json_response({"released": len(held)})

    async def stats(self, request: web.Request) -> web.Response:
        now = time.time()
        finished = sum(1 for t in self.tasks.values() if t.finish_at is not None and t.finish_at <= now)
        return web.json_response(
            {
                "tasks": len(self.tasks),
                "submits": self.submits,
                "polls": self.polls,
                "finished": finished,
                "polled_tasks": sum(1 for t in self.tasks.values() if t.polls),
                "downloads": len(self.downloads),
            }
        )

    async def task_list(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    "task_id": t.task_id,
                    "created": t.created,
                    "finish_at": t.finish_at,
                    "first_success_poll": t.first_success_poll,
                    "polls": t.polls,
                }
                for t in self.tasks.values()
            ]
        )

    async def download_list(self, request: web.Request) -> web.Response:
        return web.json_response(self.downloads)


def make_app(api_key: str, result_bytes: int) -> web.Application:
    """The fake provider's application."""
    provider = _Provider(api_key, result_bytes)
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/api/v1/jobs/createTask", provider.create_task)
    app.router.add_get("/api/v1/jobs/recordInfo", provider.record_info)
    app.router.add_get("/files/{name}", provider.file)
    app.router.add_post("/_bench/release", provider.release)
    app.router.add_get("/_bench/stats", provider.stats)
    app.router.add_get("/_bench/tasks", provider.task_list)
    app.router.add_get("/_bench/downloads", provider.download_list)
    return app


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.provider --port N --api-key K [--result-bytes B]``."""
    parser = argparse.ArgumentParser(description="AssetGen benchmarks' fake Kie-shaped provider")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--result-bytes", type=int, default=100 * 1024)
    args = parser.parse_args(argv)
    web.run_app(
        make_app(args.api_key, args.result_bytes),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
