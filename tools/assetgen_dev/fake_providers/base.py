"""What every fake provider shares: tasks that finish after a few polls, results, auth, a free port.

A fake follows its family's documented wire shapes (``/work/shared/reference/provider-apis.md``);
the prompt picks the outcome: ``[fail]`` ends the task failed with ``FAIL_TEXT``, ``[filtered]``
ends it filtered by a safety check where the family has one. Every task's result bytes are kept in
``tasks`` so a test can compare them with what landed in S3.
"""

from __future__ import annotations

import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from assetgen_dev.fake_providers.media import demo_video, make_png

__all__ = ["FAIL_TEXT", "FILTER_TEXT", "FakeProvider", "FakeTask", "demo_video", "serve"]

FAIL_TEXT = "The model could not render this prompt (asked to fail)"
FILTER_TEXT = "Your request was flagged by our safety system"


async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Serves ``app`` on ``port`` (0: a free one); returns its runner (``cleanup()`` stops it), base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    await web.SockSite(runner, sock).start()
    return runner, f"http://{host}:{sock.getsockname()[1]}"


@dataclass
class FakeTask:
    """One task at a fake provider."""

    id: str
    prompt: str
    request: Any
    result: bytes
    content_type: str
    polls: int = 0
    canceled: bool = False
    created_at: float = field(default_factory=time.monotonic)
    finished: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        """``fail``, ``filtered`` or ``success``, from the prompt's marker."""
        if "[fail]" in self.prompt:
            return "fail"
        if "[filtered]" in self.prompt:
            return "filtered"
        return "success"


class FakeProvider:
    """Base of the fakes: subclasses add their family's routes in :meth:`routes`."""

    media = "image"

    def __init__(self, api_key: str, *, polls_before_done: int = 1) -> None:
        self.api_key = api_key
        self.polls_before_done = polls_before_done
        self.tasks: dict[str, FakeTask] = {}
        self.peak_running = 0
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    # -- for subclasses ---------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        """Adds the family's routes."""
        raise NotImplementedError

    def new_task(self, prompt: str, request: Any, task_id: str = "") -> FakeTask:
        """A task with a fresh id and its result bytes (a PNG from the id, or the demo MP4)."""
        task_id = task_id or uuid.uuid4().hex
        if self.media == "video":
            result, content_type = demo_video(), "video/mp4"
        else:
            result, content_type = make_png(task_id), "image/png"
        task = FakeTask(task_id, prompt, request, result, content_type)
        self.tasks[task_id] = task
        self.peak_running = max(self.peak_running, self.running)
        return task

    @property
    def running(self) -> int:
        """Tasks created and not yet reported finished."""
        return sum(1 for task in self.tasks.values() if not task.finished)

    def done(self, task: FakeTask) -> bool:
        """Counts a poll; True once the task has been polled enough to be finished."""
        task.polls += 1
        if task.polls > self.polls_before_done:
            task.finished = True
        return task.finished

    def bearer_ok(self, request: web.Request, header: str = "Authorization", scheme: str = "Bearer") -> bool:
        """Whether the request carries the key the way the family wants it."""
        expected = f"{scheme} {self.api_key}" if scheme else self.api_key
        return request.headers.get(header) == expected

    def file_url(self, task: FakeTask) -> str:
        """Where the task's result is served (no auth needed, like a CDN link)."""
        return f"{self.base_url}/files/{task.id}"

    async def _serve_file(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            raise web.HTTPNotFound()
        return web.Response(body=task.result, content_type=task.content_type)

    async def _serve_input(self, request: web.Request) -> web.Response:
        return web.Response(body=make_png("input"), content_type="image/png")

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs, dict(request.headers)))
        response: web.StreamResponse = await handler(request)
        return response

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1") -> str:
        """Serves on a free port; returns the base URL."""
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/files/{task_id}", self._serve_file)
        app.router.add_get("/inputs/image.png", self._serve_input)
        self.routes(app)
        self._runner, self.base_url = await serve(app, host)
        return self.base_url

    async def stop(self) -> None:
        """Stops serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def task_by_prompt(self, prompt: str) -> FakeTask:
        """The (last) task created with ``prompt``."""
        matches = [task for task in self.tasks.values() if task.prompt == prompt]
        if not matches:
            raise KeyError(prompt)
        return matches[-1]


def json_error(status: int, body: Any) -> web.Response:
    """A JSON error response."""
    return web.json_response(body, status=status)
