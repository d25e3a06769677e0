"""Faults a chaos provider injects, decided per request, and the middleware that injects them.

Every provider call is one of three kinds: a **submit** (creates a task), a **poll** (any other API
read) or a **download** (a result file). Per call, independently:

* submit: 10 % an HTTP 5xx before the task is created, 10 % a 429 with ``Retry-After``, 3 % a lost
  response (the task *is* created, then the client gets a 502, as from a proxy that timed out);
* poll: 10 % a 5xx, 10 % a 429 with ``Retry-After``;
* download: 5 % fail (half a 503, half a body cut off after half its bytes).

Task failures (10 %) are decided where tasks are made (``providers``). Every fault is counted, and
every submit is remembered with the prompt it carried and what it got, for the checker.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

__all__ = [
    "FaultInjector",
    "FaultPlan",
    "SubmitRecord",
    "prompt_of",
]

SUBMIT, POLL, DOWNLOAD, OTHER = "submit", "poll", "download", "other"
# Submit outcomes as the checker reads them.
OK, SERVER_ERROR, RATE_LIMITED, LOST = "ok", "5xx", "429", "lost"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class FaultPlan:
    """How often each fault happens (shares of calls, 0 to 1) and the seed of the dice."""

    task_failure: float = 0.10
    server_error: float = 0.10
    rate_limited: float = 0.10
    lost_response: float = 0.03
    failed_download: float = 0.05
    retry_after_seconds: tuple[int, int] = (1, 3)
    seed: int = 0

    def to_json(self) -> str:
        """The plan as JSON (how the driver hands it to the providers' process)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FaultPlan:
        """A plan from :meth:`to_json`."""
        values = json.loads(text)
        values["retry_after_seconds"] = tuple(values["retry_after_seconds"])
        return cls(**values)


@dataclass
class SubmitRecord:
    """One submit request as the provider saw it: its prompt, what it got, the task it made."""

    prompt: str
    outcome: str  # OK, SERVER_ERROR, RATE_LIMITED or LOST
    task_id: str = ""
    at: float = field(default_factory=time.time)


def prompt_of(body: Any) -> str:
    """The prompt a submitted JSON body carries (top level or under ``input``), else ""."""
    if not isinstance(body, dict):
        return ""
    prompt = body.get("prompt")
    if prompt is None and isinstance(body.get("input"), dict):
        prompt = body["input"].get("prompt")
    return str(prompt or "")


class FaultInjector:
    """Rolls the dice for each call and answers faulty ones itself; counts and remembers them.

    ``is_submit(request)`` says which calls create tasks; ``tasks_for(prompt)`` lists the task ids
    made for a prompt so far (to name the one a lost response made).
    """

    def __init__(
        self,
        plan: FaultPlan,
        *,
        is_submit: Callable[[web.Request], bool],
        tasks_for: Callable[[str], list[str]],
        rng: random.Random | None = None,
    ) -> None:
        self.plan = plan
        self.counts: Counter[str] = Counter()
        self.submits: list[SubmitRecord] = []
        self._is_submit = is_submit
        self._tasks_for = tasks_for
        self._rng = rng or random.Random(plan.seed)

    def kind(self, request: web.Request) -> str:
        """Which kind of call ``request`` is."""
        if request.path.startswith(("/_chaos/", "/_demo/", "/inputs/")):
            return OTHER
        if request.path.startswith("/files/"):
            return DOWNLOAD
        if request.method == "POST" and self._is_submit(request):
            return SUBMIT
        if request.method == "GET":
            return POLL
        return OTHER

    def _retry_after(self) -> web.Response:
        low, high = self.plan.retry_after_seconds
        seconds = self._rng.randint(low, high)
        return web.json_response(
            {"code": 429, "msg": "rate limited (chaos)", "detail": "rate limited (chaos)"},
            status=429,
            headers={"Retry-After": str(seconds)},
        )

    def _server_error(self) -> web.Response:
        status = self._rng.choice((500, 502, 503, 504))
        return web.json_response({"code": status, "msg": "server error (chaos)"}, status=status)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The aiohttp middleware: faults first, else the family's own handler."""
        kind = self.kind(request)
        if kind == SUBMIT:
            return await self._submit(request, handler)
        roll = self._rng.random()
        plan = self.plan
        if kind == POLL:
            if roll < plan.server_error:
                self.counts["poll_5xx"] += 1
                return self._server_error()
            if roll < plan.server_error + plan.rate_limited:
                self.counts["poll_429"] += 1
                return self._retry_after()
        if kind == DOWNLOAD and roll < plan.failed_download:
            self.counts["download_failed"] += 1
            if self._rng.random() < 0.5:
                return web.json_response({"msg": "unavailable (chaos)"}, status=503)
            return await self._cut_off(request, handler)
        return await handler(request)

    async def _submit(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            prompt = prompt_of(await request.json())
        except ValueError:
            prompt = ""
        roll = self._rng.random()
        plan = self.plan
        if roll < plan.server_error:
            self.counts["submit_5xx"] += 1
            self.submits.append(SubmitRecord(prompt, SERVER_ERROR))
            return self._server_error()
        if roll < plan.server_error + plan.rate_limited:
            self.counts["submit_429"] += 1
            self.submits.append(SubmitRecord(prompt, RATE_LIMITED))
            return self._retry_after()
        before = len(self._tasks_for(prompt))
        response = await handler(request)
        made = self._tasks_for(prompt)
        task_id = made[-1] if len(made) > before else ""
        if roll < plan.server_error + plan.rate_limited + plan.lost_response:
            self.counts["submit_lost"] += 1
            self.submits.append(SubmitRecord(prompt, LOST, task_id))
            return web.Response(status=502, text="bad gateway (chaos: the task was created)")
        self.submits.append(SubmitRecord(prompt, OK, task_id))
        return response

    async def _cut_off(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Sends the head and half the body of the real answer, then drops the connection."""
        answer = await handler(request)
        body = answer.body if isinstance(answer, web.Response) else None
        if not isinstance(body, bytes) or len(body) < 2:
            return web.json_response({"msg": "unavailable (chaos)"}, status=503)
        stream = web.StreamResponse(headers={"Content-Type": answer.headers.get("Content-Type", "")})
        stream.content_length = len(body)
        await stream.prepare(request)
        await stream.write(body[: len(body) // 2])
        if request.transport is not None:
            request.transport.abort()
        return stream
