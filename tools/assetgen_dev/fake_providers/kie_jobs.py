"""The one fake of Kie.ai's jobs API, for `make run`'s demo, the tests and the bench.

It speaks the wire shapes of https://docs.kie.ai (market/jobs family) exactly:

* ``POST /api/v1/jobs/createTask`` with ``Authorization: Bearer <key>`` and ``{"model", "input": {...}}``
  → ``{"code": 200, "msg": "success", "data": {"taskId": "..."}}``; a wrong or missing key →
  ``{"code": 401, "msg": "You do not have access permissions"}`` (HTTP 200: the envelope carries it).
* ``GET /api/v1/jobs/recordInfo?taskId=...`` → ``{"code": 200, "message": "success", "data": {...}}``
  with ``state`` ``waiting`` (the first 30 % of a timed task) → ``generating`` → ``success``,
  ``resultJson`` a JSON *string* ``{"resultUrls": [...]}``, and ``failCode``/``failMsg`` ``null``
  while running (as Kie's own copies show) and ``""`` on success.
* ``GET /files/<taskId>.<png|mp4>`` serves a finished task's result (no auth, like a CDN link).
* A prompt containing ``[fail]`` ends the task in ``fail`` (``failCode`` ``"400"``).
* ``busy_submits`` set to N refuses the next N submissions with HTTP 429 and ``Retry-After: 1``.
* Accounts: more keys may be accepted (``add_key``); a task belongs to the key that submitted it
  (another key's poll gets "task not found", counted in ``foreign_polls``), and ``per_key_limit``
  caps the tasks one key runs at once (over it: HTTP 429, counted in ``refused_over_limit``), as
  providers limit each account; ``peak_by_key`` is the most each key ran at once.
* Callbacks: with ``callback_secret`` set, a task whose submission named a ``callBackUrl`` is called
  back there when it finishes (at its finish time, a held one once released), signed as Kie signs
  (``X-Webhook-Signature``: base64 HMAC-SHA256 of ``taskId.timestamp`` under that key); when each
  was sent and how it was answered is in ``/_demo/tasks``.

What differs between its users is plugged in:

* **timing** — when a task finishes: ``instant``, ``fixed(seconds)``, or any callable of the
  submitted body (``from_input`` reads ``finish_after`` / ``hold`` from the input, for the bench);
  ``None`` holds a task until ``release()``. ``polls_before_done`` further makes a task report
  running for that many polls (the tests' way to keep work in flight);
* **results** — what a finished task's file is (``media.MediaResults``: a PNG or MP4;
  ``media.SizedResults``: sized filler bytes).

Statistics are kept always, cheaply enough for the bench: submissions, polls (each task's poll
times, ``time.time()``: the clock the services stamp events with), result downloads. Control and
measurement routes: ``GET /_demo/stats`` (counters), ``GET /_demo/tasks`` (every task with its
finish time, first poll that saw it finished and poll times; ``?polls_since=t``: those from ``t``),
``GET /_demo/downloads`` (start, end, bytes, task id, and with ``digest_downloads`` the SHA-256 of
the bytes sent) and ``POST /_demo/release {"at": t, "over": s}`` (held tasks finish one after
another, in submission order, evenly from ``t`` to ``t + s``; tasks held later finish at once).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import heapq
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from assetgen_dev.fake_providers.base import FAIL_TEXT, serve
from assetgen_dev.fake_providers.media import MediaResults, ResultFile, Results, make_png

__all__ = [
    "FAIL_MESSAGE",
    "FakeKieJobs",
    "KieTask",
    "TaskTiming",
    "fixed",
    "from_input",
    "instant",
    "kie_headers",
]

TaskTiming = Callable[[Mapping[str, Any]], float | None]
"""Seconds from submission until a task (given its submitted body) finishes; None: held until released."""

FAIL_MESSAGE = f"{FAIL_TEXT}: the prompt contains [fail]"
_UNAUTHORIZED = {"code": 401, "msg": "You do not have access permissions"}
_NOT_FOUND = {"code": 404, "msg": "task not found"}
# A timed task reports "waiting" (queued) for this share of its time, then "generating".
_WAITING_SHARE = 0.3
# Callbacks on the wire at once: a release of thousands at one moment must not open thousands of sockets.
_CALLBACKS_AT_ONCE = 64


def kie_headers(secret: str, task_id: str, timestamp: int | None = None) -> dict[str, str]:
    """Kie's callback signature headers: base64 HMAC-SHA256 of ``taskId.timestamp``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"{task_id}.{stamp}".encode(), hashlib.sha256).digest()
    return {"X-Webhook-Timestamp": stamp, "X-Webhook-Signature": base64.b64encode(digest).decode()}


def instant(body: Mapping[str, Any]) -> float | None:
    """Every task finishes as it is submitted."""
    return 0.0


def fixed(seconds: float) -> TaskTiming:
    """Every task finishes ``seconds`` after it is submitted."""
    return lambda body: seconds


def from_input(body: Mapping[str, Any]) -> float | None:
    """The task's own ``input.finish_after`` seconds (absent: at once), or held with ``input.hold``."""
    payload = body.get("input") or {}
    if payload.get("hold"):
        return None
    return float(payload.get("finish_after") or 0)


@dataclass(eq=False)
class KieTask:
    """One task at the fake: what was submitted, when it finishes, and how it was polled."""

    id: str
    request: dict[str, Any]
    prompt: str
    file: ResultFile
    param: str  # the submitted body as JSON text, as recordInfo echoes it
    created_at: float  # time.time()
    finish_at: float | None  # time.time() it finishes; None while held
    poll_times: list[float] = field(default_factory=list)
    first_finished_poll: float | None = None
    finished: bool = False  # a poll has reported it finished
    owner: str = ""  # the API key that submitted it
    called_back_at: float | None = None  # time.time() its callback was sent
    callback_status: int = 0  # the HTTP status its callback was answered with (-1: no answer)

    @property
    def polls(self) -> int:
        """How many times it was polled."""
        return len(self.poll_times)

    @property
    def outcome(self) -> str:
        """``fail`` when the prompt asks for it, else ``success``."""
        return "fail" if "[fail]" in self.prompt else "success"

    @property
    def content_type(self) -> str:
        """The result's media type."""
        return self.file.content_type

    @property
    def result(self) -> bytes:
        """The result's bytes."""
        return self.file.body()

    def due(self, now: float) -> bool:
        """Whether its finish time has come."""
        return self.finish_at is not None and self.finish_at <= now


class FakeKieJobs:
    """Kie.ai's ``createTask`` + ``recordInfo``, with pluggable timing and results, and statistics."""

    def __init__(
        self,
        api_key: str,
        *,
        timing: TaskTiming = instant,
        results: Results | None = None,
        polls_before_done: int = 1,
        callback_secret: str = "",
        digest_downloads: bool = False,
    ) -> None:
        self.api_key = api_key
        self.digest_downloads = digest_downloads
        """Set: each download's SHA-256 of the bytes sent is recorded with it (costs the hashing)."""
        self.callback_secret = callback_secret
        """Set: finished tasks are called back at their ``callBackUrl``, signed with this key."""
        self.timing = timing
        self.results: Results = results or MediaResults()
        self.polls_before_done = polls_before_done
        self.tasks: dict[str, KieTask] = {}
        self.submits = 0
        self.polls = 0
        self.last_submit: Any = None
        self.downloads: list[dict[str, Any]] = []
        self.peak_running = 0
        self.keys = {api_key}
        self.per_key_limit = 0
        self.refused_over_limit = 0
        self.foreign_polls = 0
        self.running_by_key: dict[str, int] = {}
        self.peak_by_key: dict[str, int] = {}
        self.busy_submits = 0
        """This many of the next submissions are refused with a 429 and ``Retry-After: 1`` (rate limited)."""
        self.refused_busy = 0
        self.base_url = ""
        self._running = 0
        self._released = False
        self._runner: web.AppRunner | None = None
        self._callbacks_due: list[tuple[float, str]] = []  # (finish time, task id), a heap
        self._callback_added = asyncio.Event()
        self._calling_back: asyncio.Task[None] | None = None

    # -- serving ----------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """Its aiohttp application (served by :meth:`start`, or by ``web.run_app`` in a process)."""
        app = web.Application()
        app.router.add_post("/api/v1/jobs/createTask", self.create_task)
        app.router.add_get("/api/v1/jobs/recordInfo", self.record_info)
        app.router.add_get("/files/{name}", self.serve_file)
        app.router.add_get("/inputs/image.png", self.serve_input)
        app.router.add_get("/_demo/stats", self.serve_stats)
        app.router.add_get("/_demo/tasks", self.serve_tasks)
        app.router.add_get("/_demo/downloads", self.serve_downloads)
        app.router.add_post("/_demo/release", self.serve_release)
        app.on_startup.append(self._start_calling_back)
        app.on_cleanup.append(self._stop_calling_back)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serves on ``port`` (0: a free one); returns the base URL."""
        self._runner, self.base_url = await serve(self.make_app(), host, port)
        return self.base_url

    async def stop(self) -> None:
        """Stops serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- the jobs API -----------------------------------------------------------------------

    async def create_task(self, request: web.Request) -> web.Response:
        """``POST /api/v1/jobs/createTask``."""
        key = self._caller(request)
        if key is None:
            return web.json_response(_UNAUTHORIZED)
        if self.per_key_limit and self.running_by_key.get(key, 0) >= self.per_key_limit:
            self.refused_over_limit += 1
            return web.json_response({"code": 429, "msg": "too many running tasks for this key"}, status=429)
        if self.busy_submits > 0:
            self.busy_submits -= 1
            self.refused_busy += 1
            return web.json_response(
                {"code": 429, "msg": "Rate limited"}, status=429, headers={"Retry-After": "1"}
            )
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"code": 422, "msg": "request body is not JSON"})
        if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
            return web.json_response({"code": 422, "msg": "model is required"})
        payload = body.get("input", {})
        if not isinstance(payload, dict):
            return web.json_response({"code": 422, "msg": "input must be an object"})
        task = self._new_task(body, payload)
        task.owner = key
        self.running_by_key[key] = self.running_by_key.get(key, 0) + 1
        self.peak_by_key[key] = max(self.peak_by_key.get(key, 0), self.running_by_key[key])
        return web.json_response({"code": 200, "msg": "success", "data": {"taskId": task.id}})

    def add_key(self, key: str) -> None:
        """Accepts another account's key too."""
        self.keys.add(key)

    def _caller(self, request: web.Request) -> str | None:
        """The accepted key the request carries, or None."""
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        return key if scheme == "Bearer" and key in self.keys else None

    def _new_task(self, body: dict[str, Any], payload: dict[str, Any]) -> KieTask:
        now = time.time()
        seconds = self.timing(body)
        if seconds is None and self._released:
            seconds = 0.0
        prompt = str(body.get("prompt") or payload.get("prompt", ""))
        task = KieTask(
            id=f"task_demo_{secrets.token_hex(8)}",
            request=body,
            prompt=prompt,
            file=self.results.file_for(body["model"], payload, prompt),
            param=json.dumps(body),
            created_at=now,
            finish_at=None if seconds is None else now + seconds,
        )
        self.tasks[task.id] = task
        self._call_back_at_finish(task)
        self.submits += 1
        self.last_submit = body
        self._running += 1
        self.peak_running = max(self.peak_running, self._running)
        return task

    async def record_info(self, request: web.Request) -> web.Response:
        """``GET /api/v1/jobs/recordInfo``: counts the poll and reports the task's state."""
        key = self._caller(request)
        if key is None:
            return web.json_response(_UNAUTHORIZED)
        now = time.time()
        self.polls += 1
        task = self.tasks.get(request.query.get("taskId", ""))
        if task is not None and task.owner and task.owner != key:
            self.foreign_polls += 1  # another account's task: the provider shows it only to its owner
            task = None
        if task is None:
            return web.json_response(_NOT_FOUND)
        task.poll_times.append(now)
        if not task.finished and task.due(now) and task.polls > self.polls_before_done:
            task.finished = True
            task.first_finished_poll = now
            self._running -= 1
            if task.owner:
                self.running_by_key[task.owner] -= 1
        data: dict[str, Any] = {
            "taskId": task.id,
            "model": task.request["model"],
            "state": self._state(task, now),
            "param": task.param,
            "resultJson": "",
            "failCode": None,
            "failMsg": None,
            "costTime": None,
            "completeTime": None,
            "createTime": int(task.created_at * 1000),
            "updateTime": int(now * 1000),
        }
        if data["state"] == "success":
            url = f"{request.url.origin()}/files/{task.id}.{task.file.extension}"
            data.update(resultJson=json.dumps({"resultUrls": [url]}), failCode="", failMsg="")
        elif data["state"] == "fail":
            data.update(failCode="400", failMsg=FAIL_MESSAGE)
        return web.json_response({"code": 200, "message": "success", "data": data})

    def _state(self, task: KieTask, now: float) -> str:
        if task.finished:
            return task.outcome
        if task.finish_at is not None and now - task.created_at < _WAITING_SHARE * (
            task.finish_at - task.created_at
        ):
            return "waiting"
        return "generating"

    async def serve_file(self, request: web.Request) -> web.StreamResponse:
        """``GET /files/<taskId>.<ext>``: a successful task's result (streamed when large)."""
        task_id, _, extension = request.match_info["name"].rpartition(".")
        task = self.tasks.get(task_id)
        started = time.time()
        if (
            task is None
            or not task.due(started)
            or task.outcome != "success"
            or extension != task.file.extension
        ):
            raise web.HTTPNotFound()
        file = task.file
        digest = hashlib.sha256() if self.digest_downloads else None
        if file.whole:
            body = file.body()
            if digest is not None:
                digest.update(body)
            response = web.Response(body=body, content_type=file.content_type)
            self._downloaded(task, started, file.size, digest)
            return response
        stream = web.StreamResponse(headers={"Content-Type": file.content_type})
        stream.content_length = file.size
        await stream.prepare(request)
        for piece in file.pieces():
            if digest is not None:
                digest.update(piece)
            await stream.write(piece)
        await stream.write_eof()
        self._downloaded(task, started, file.size, digest)
        return stream

    def _downloaded(self, task: KieTask, started: float, size: int, digest: Any) -> None:
        entry: dict[str, Any] = {"start": started, "end": time.time(), "bytes": size, "task_id": task.id}
        if digest is not None:
            entry["sha256"] = digest.hexdigest()
        self.downloads.append(entry)

    async def serve_input(self, request: web.Request) -> web.Response:
        """``GET /inputs/image.png``: a picture to pass as an input URL."""
        return web.Response(body=make_png("input"), content_type="image/png")

    # -- control and statistics -------------------------------------------------------------

    def release(self, at: float, over: float = 0.0) -> int:
        """Held tasks finish one after another from ``at`` to ``at + over``; later held ones at once."""
        held = sorted((t for t in self.tasks.values() if t.finish_at is None), key=lambda t: t.created_at)
        for rank, task in enumerate(held):
            task.finish_at = at + over * rank / len(held)
            self._call_back_at_finish(task)
        self._released = True
        return len(held)

    # -- callbacks --------------------------------------------------------------------------

    def _call_back_at_finish(self, task: KieTask) -> None:
        if self.callback_secret and task.finish_at is not None and task.request.get("callBackUrl"):
            heapq.heappush(self._callbacks_due, (task.finish_at, task.id))
            self._callback_added.set()

    async def _start_calling_back(self, app: web.Application) -> None:
        self._callback_added = asyncio.Event()  # of this loop; what is due is in the heap already
        self._calling_back = asyncio.create_task(self._call_back_when_due(), name="kie-callbacks")

    async def _stop_calling_back(self, app: web.Application) -> None:
        if self._calling_back is not None:
            self._calling_back.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._calling_back
            self._calling_back = None

    async def _call_back_when_due(self) -> None:
        """Sends each callback at its task's finish time (one timer for all: thousands are due)."""
        limit = asyncio.Semaphore(_CALLBACKS_AT_ONCE)
        sending: set[asyncio.Task[None]] = set()
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def send(task: KieTask) -> None:
                async with limit:
                    await self._call_back(session, task)

            try:
                while True:
                    self._callback_added.clear()
                    now = time.time()
                    while self._callbacks_due and self._callbacks_due[0][0] <= now:
                        _, task_id = heapq.heappop(self._callbacks_due)
                        sender = asyncio.create_task(send(self.tasks[task_id]))
                        sending.add(sender)
                        sender.add_done_callback(sending.discard)
                    wait = self._callbacks_due[0][0] - now if self._callbacks_due else None
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._callback_added.wait(), wait)
            finally:
                for sender in sending:
                    sender.cancel()
                await asyncio.gather(*sending, return_exceptions=True)

    async def _call_back(self, session: aiohttp.ClientSession, task: KieTask) -> None:
        body = {"code": 200, "msg": "success", "data": {"taskId": task.id, "state": task.outcome}}
        headers = {"Content-Type": "application/json", **kie_headers(self.callback_secret, task.id)}
        task.called_back_at = time.time()
        try:
            async with session.post(task.request["callBackUrl"], json=body, headers=headers) as response:
                task.callback_status = response.status
        except (aiohttp.ClientError, TimeoutError):
            task.callback_status = -1  # a lost callback: the safety poll is what finds the task then

    # -- statistics ---------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters: tasks, submissions, polls, tasks whose finish time came, tasks polled, downloads."""
        now = time.time()
        return {
            "tasks": len(self.tasks),
            "submits": self.submits,
            "polls": self.polls,
            "finished": sum(1 for t in self.tasks.values() if t.due(now)),
            "polled_tasks": sum(1 for t in self.tasks.values() if t.poll_times),
            "downloads": len(self.downloads),
            "last_submit": self.last_submit,
            "peak_running": self.peak_running,
            "peak_by_key": dict(self.peak_by_key),
            "refused_over_limit": self.refused_over_limit,
        }

    def task_by_prompt(self, prompt: str) -> KieTask:
        """The (last) task created with ``prompt``."""
        matches = [task for task in self.tasks.values() if task.prompt == prompt]
        if not matches:
            raise KeyError(prompt)
        return matches[-1]

    async def serve_stats(self, request: web.Request) -> web.Response:
        """``GET /_demo/stats``."""
        return web.json_response(self.stats())

    async def serve_tasks(self, request: web.Request) -> web.Response:
        """``GET /_demo/tasks[?polls_since=<epoch>]``: every task; with ``polls_since`` only the poll
        times from then on (a run holding 100,000 tasks polled for an hour need not send them all)."""
        since = float(request.query.get("polls_since", "-inf"))
        return web.json_response(
            [
                {
                    "task_id": t.id,
                    "created": t.created_at,
                    "finish_at": t.finish_at,
                    "first_finished_poll": t.first_finished_poll,
                    "polls": t.poll_times
                    if since == float("-inf")
                    else [p for p in t.poll_times if p >= since],
                    "called_back_at": t.called_back_at,
                    "callback_status": t.callback_status,
                }
                for t in self.tasks.values()
            ]
        )

    async def serve_downloads(self, request: web.Request) -> web.Response:
        """``GET /_demo/downloads``."""
        return web.json_response(self.downloads)

    async def serve_release(self, request: web.Request) -> web.Response:
        """``POST /_demo/release {"at": t, "over": s}``."""
        body = await request.json()
        released = self.release(float(body["at"]), float(body.get("over", 0)))
        return web.json_response({"released": released})
