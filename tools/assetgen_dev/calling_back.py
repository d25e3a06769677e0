"""Fake providers that call back: a task finishes after a while and its callback URL hears of it,
signed the way its family signs (Kie HMAC, Standard Webhooks for Replicate, ED25519 for fal,
HMAC ``t=,v1=`` for OpenRouter, none for Luma, Kling, MiniMax and Seedance). Also what tests need to
forge, replay or lose a callback, and fal's JWKS.

``CallingBack`` wraps one served fake. Tasks of a ``FakeKieJobs`` finish by its own timing; tasks of
the other fakes are made to finish (their next poll says done) just before their callback is sent.
Families that call back on every status change (Kling, MiniMax, Seedance) also send a progress
callback as soon as they see a task; MiniMax only for a task whose callback URL passed its challenge
(``FakeMiniMax`` sends that during the submit).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from assetgen_dev.fake_providers.base import serve
from assetgen_dev.fake_providers.kie_jobs import FakeKieJobs, kie_headers

__all__ = [
    "Callback",
    "CallingBack",
    "FalKeys",
    "fal_headers",
    "kie_headers",
    "openrouter_headers",
    "standard_webhooks_headers",
]


def standard_webhooks_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Standard Webhooks headers as Replicate sends them."""
    message_id = f"msg_{uuid.uuid4().hex}"
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def openrouter_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """OpenRouter's signature header: ``t=<unix>,v1=<hex HMAC-SHA256 of "<t>,<body>">``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"{stamp},".encode() + body, hashlib.sha256).hexdigest()
    return {"X-OpenRouter-Signature": f"t={stamp},v1={digest}"}


class FalKeys:
    """An ED25519 key pair and the JWKS that publishes its public half, served on loopback."""

    def __init__(self) -> None:
        self.private = Ed25519PrivateKey.generate()
        self.url = ""
        self._runner: web.AppRunner | None = None

    def jwks(self) -> dict[str, Any]:
        """The JWKS document."""
        raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "test"}]}

    async def start(self) -> str:
        """Serves the JWKS; returns its URL."""
        app = web.Application()

        async def handler(request: web.Request) -> web.Response:
            return web.json_response(self.jwks())

        app.router.add_get("/.well-known/jwks.json", handler)
        self._runner, base = await serve(app)
        self.url = f"{base}/.well-known/jwks.json"
        return self.url

    async def stop(self) -> None:
        """Stops serving."""
        if self._runner is not None:
            await self._runner.cleanup()


def fal_headers(keys: FalKeys, request_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """fal's signature headers: ED25519 over ``request_id\\nuser_id\\ntimestamp\\nsha256hex(body)``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    user_id = "user-test"
    message = f"{request_id}\n{user_id}\n{stamp}\n{hashlib.sha256(body).hexdigest()}".encode()
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user_id,
        "X-Fal-Webhook-Timestamp": stamp,
        "X-Fal-Webhook-Signature": keys.private.sign(message).hex(),
    }


_PROGRESS = {"kling": "processing", "minimax": "processing", "seedance": "running"}
"""The non-terminal state a family that calls back on every status change reports first."""
_URL_FIELDS = {"kie": "callBackUrl", "replicate": "webhook"}


@dataclass
class Callback:
    """A callback sent (or lost): where, what, and how it was answered."""

    task_id: str
    url: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    finished_at: float = 0.0
    answer: bytes = b""
    progress: bool = False
    """A non-terminal status change (Kling, MiniMax, Seedance), not the task's ending."""


@dataclass
class CallingBack:
    """Finishes ``fake``'s tasks ``after`` seconds from submission and POSTs their callbacks.

    ``family`` is ``kie``, ``replicate``, ``fal``, ``luma``, ``kling``, ``minimax``, ``seedance`` or
    ``openrouter``; ``secret`` signs Kie's, Replicate's and OpenRouter's, ``fal_keys`` fal's. Task
    ids in ``lose`` finish without a callback (a lost one).
    """

    fake: Any
    family: str
    after: float
    secret: str = ""
    fal_keys: FalKeys | None = None
    lose: set[str] = field(default_factory=set)
    lose_all: bool = False
    sent: list[Callback] = field(default_factory=list)
    _done: set[str] = field(default_factory=set)
    _seen: set[str] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None
    _client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Starts watching the fake's tasks."""
        self._client = httpx.AsyncClient(timeout=10)
        self._task = asyncio.create_task(self._watch(), name="calling-back")

    async def stop(self) -> None:
        """Stops watching."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()

    async def _watch(self) -> None:
        while True:
            now = time.time()
            for task_id, task in list(self.fake.tasks.items()):
                if task_id not in self._seen:
                    self._seen.add(task_id)
                    if self.family in _PROGRESS:
                        await self._progress(task_id, task)
                if task_id in self._done or self._created(task) + self.after > now:
                    continue
                self._done.add(task_id)
                await self._finish(task_id, task)
            await asyncio.sleep(0.02)  # a fake provider's clock tick, not a wait for our state

    def _created(self, task: Any) -> float:
        if isinstance(self.fake, FakeKieJobs):
            return float(task.created_at)
        created: float = task.extra.setdefault("created_wall", time.time())
        return created

    def _calls_back(self, task_id: str, task: Any) -> bool:
        if self.lose_all or task_id in self.lose or not self._callback_url(task_id, task):
            return False
        return self.family != "minimax" or bool(task.extra.get("callback_validated"))

    async def _send(self, callback: Callback) -> None:
        assert self._client is not None
        response = await self._client.post(callback.url, content=callback.body, headers=callback.headers)
        callback.status, callback.answer = response.status_code, response.content
        self.sent.append(callback)

    async def _progress(self, task_id: str, task: Any) -> None:
        if not self._calls_back(task_id, task):
            return
        body, headers = self.signed(task_id, task, state=_PROGRESS[self.family])
        await self._send(Callback(task_id, self._callback_url(task_id, task), headers, body, progress=True))

    async def _finish(self, task_id: str, task: Any) -> None:
        if isinstance(self.fake, FakeKieJobs):
            task.finish_at = min(task.finish_at or time.time(), time.time())
        else:
            task.finished = True
            task.polls = max(task.polls, 1)  # past fal's first "IN_QUEUE" answer too
        if not self._calls_back(task_id, task):
            return
        body, headers = self.signed(task_id, task)
        url = self._callback_url(task_id, task)
        await self._send(Callback(task_id, url, headers, body, finished_at=time.time()))

    def _callback_url(self, task_id: str, task: Any) -> str:
        if self.family == "fal":
            index = list(self.fake.tasks).index(task_id)
            posts = [
                path for method, path, _ in self.fake.requests if method == "POST" and "fal_webhook" in path
            ]
            if index >= len(posts):
                return ""
            return parse_qs(urlsplit(posts[index]).query)["fal_webhook"][0]
        return str(task.request.get(_URL_FIELDS.get(self.family, "callback_url")) or "")

    def signed(
        self, task_id: str, task: Any, *, timestamp: int | None = None, state: str = ""
    ) -> tuple[bytes, dict[str, str]]:
        """The callback body of a finished task (or one in ``state``, for the families that report
        every change) and its signature headers, as the family sends them."""
        if self.family in ("kling", "minimax", "seedance", "openrouter"):
            return self._video_family(task, state, timestamp)
        if self.family == "kie":
            body = json.dumps(
                {"code": 200, "msg": "success", "data": {"taskId": task_id, "state": "success"}}
            )
            return body.encode(), {
                "Content-Type": "application/json",
                **kie_headers(self.secret, task_id, timestamp),
            }
        if self.family == "replicate":
            raw = json.dumps(
                {"id": task_id, "status": "succeeded", "output": ["https://example.invalid/x.png"]}
            )
            encoded = raw.encode()
            return encoded, {
                "Content-Type": "application/json",
                **standard_webhooks_headers(self.secret, encoded, timestamp),
            }
        if self.family == "fal":
            raw = json.dumps({"request_id": task_id, "status": "OK", "payload": {"images": []}})
            assert self.fal_keys is not None
            encoded = raw.encode()
            return encoded, {
                "Content-Type": "application/json",
                **fal_headers(self.fal_keys, task_id, encoded, timestamp),
            }
        body = json.dumps({"id": task_id, "state": "completed", "assets": {"video": None}})
        return body.encode(), {"Content-Type": "application/json"}

    def _video_family(self, task: Any, state: str, timestamp: int | None) -> tuple[bytes, dict[str, str]]:
        failed = task.outcome == "fail"
        headers = {"Content-Type": "application/json"}
        document: dict[str, Any]
        if self.family == "kling":
            # The bare task object: the poll answer's ``data``, without the code/data envelope.
            document = self.fake._task(task, state or ("failed" if failed else "succeed"))["data"]
        elif self.family == "minimax":
            document = self.fake.callback_body(task, state or ("failed" if failed else "success"))
        elif self.family == "seedance":
            document = {**self.fake._task(task), **({"status": state} if state else {})}
        else:
            status = state or ("failed" if failed else "completed")
            document = {
                "type": f"video.generation.{status}",
                "created_at": int(time.time()),
                "data": self.fake._job(task, status),
            }
            headers["X-OpenRouter-Idempotency-Key"] = f"{task.id}-{status}"
        body = json.dumps(document).encode()
        if self.family == "openrouter":
            headers.update(openrouter_headers(self.secret, body, timestamp))
        return body, headers
