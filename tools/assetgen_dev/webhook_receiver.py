"""A webhook receiver for tests: records every request and answers with statuses a test chooses."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from aiohttp import web

from assetgen_dev.fake_providers.base import serve

__all__ = ["Received", "WebhookReceiver"]


@dataclass(frozen=True)
class Received:
    """One request the receiver got: its headers (lower-case names), raw body and the status answered."""

    headers: dict[str, str]
    body: bytes
    status: int


class WebhookReceiver:
    """Serves ``POST /hook`` on loopback; answers each request with the next of ``answers`` (then 200)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: deque[int] = deque()
        self.url = ""
        self._runner: web.AppRunner | None = None

    def answer(self, *statuses: int) -> None:
        """Queues the statuses the next requests are answered with."""
        self.answers.extend(statuses)

    async def start(self) -> str:
        """Starts serving; returns the endpoint URL."""
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner, base = await serve(app)
        self.url = f"{base}/hook"
        return self.url

    async def stop(self) -> None:
        """Stops serving."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        status = self.answers.popleft() if self.answers else 200
        body = await request.read()
        headers = {key.lower(): value for key, value in request.headers.items()}
        self.received.append(Received(headers, body, status))
        return web.Response(status=status, text="ok" if status < 300 else "no")
