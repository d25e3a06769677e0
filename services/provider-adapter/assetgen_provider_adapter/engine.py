"""The generic provider engine: submits and polls tasks exactly as a provider profile says.

Nothing here knows any provider; Kie.ai and every other family are data (``presets/*.json``).

Errors a call can end with:

* a :class:`TaskResult` with state ``FAILED`` — the provider answered and said no (a non-retryable
  HTTP status, ``accept_when`` false, ``failure_when`` true, or a failed task), with its own text;
* :class:`ProviderUnreachable` (UNAVAILABLE) — transient trouble that outlived a few quick retries
  (connect errors, the profile's retryable statuses or ``retry_when`` bodies); for a submit it means
  nothing was accepted, so sending again later is safe;
* :class:`SubmitOutcomeUnknown` (FAILED_PRECONDITION) — a submit was sent but no answer came back
  (read timeout, dropped connection): the task may or may not exist, so it must not be sent again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from assetgen_provider_adapter.errors import ProviderUnreachable, SubmitOutcomeUnknown
from assetgen_provider_adapter.paths import search, truthy
from assetgen_provider_adapter.profiles import Profile
from assetgen_provider_adapter.templates import render, render_text

__all__ = [
    "ProviderEngine",
    "ProviderTarget",
    "ProviderUnreachable",
    "RetryPolicy",
    "SubmitOutcomeUnknown",
    "TaskResult",
]

logger = logging.getLogger(__name__)

PENDING = "PENDING"
PROCESSING = "PROCESSING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELED = "CANCELED"

# Longest provider text we keep when a response is not the JSON the profile expects.
_MAX_TEXT = 500

# Errors raised before any byte of the request can have reached the provider.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """Quick in-call retries of transient trouble: exponential backoff with full jitter, bounded.

    The orchestrator retries durably with its own backoff, so these only smooth over blips.
    """

    attempts: int = 3
    base_delay: float = 0.25
    max_delay: float = 2.0
    max_total: float = 4.0


@dataclass(frozen=True)
class ProviderTarget:
    """One provider as the engine needs it: its name (for messages), base URL, profile and key."""

    name: str
    base_url: str
    profile: Profile
    api_key: str | None = field(default=None, repr=False)


@dataclass
class TaskResult:
    """A task's normalised state after a submit or poll."""

    state: str
    task_id: str = ""
    raw_state: str = ""
    handle: dict[str, Any] = field(default_factory=dict)
    progress: float = 0.0
    error_message: str = ""
    error_code: str = ""
    outputs: list[tuple[str, str]] = field(default_factory=list)
    poll_after_ms: int = 0


@dataclass
class _Response:
    status: int
    headers: httpx.Headers
    body: Any
    text: str


class _Transient(Exception):
    """A retryable answer; carries the description and the provider's Retry-After, if any."""

    def __init__(self, description: str, retry_after: float | None = None) -> None:
        super().__init__(description)
        self.retry_after = retry_after


def _parse_body(response: httpx.Response) -> tuple[Any, str]:
    text = response.text
    try:
        return response.json(), text
    except ValueError:
        return None, text


def _as_text(value: Any) -> str:
    if value is None or value is False:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _join_url(base_url: str, url: str) -> str:
    if url.startswith(("http://", "https://")):
        return url
    return f"{base_url.rstrip('/')}/{url.lstrip('/')}"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _retry_after_seconds(headers: httpx.Headers, name: str | None) -> float | None:
    if not name or name not in headers:
        return None
    try:
        return max(0.0, float(headers[name]))
    except ValueError:
        return None  # an HTTP-date: rare for these APIs, and our own backoff is fine then


class ProviderEngine:
    """Talks to providers over one shared ``httpx.AsyncClient`` as their profiles describe."""

    def __init__(
        self, client: httpx.AsyncClient, *, default_timeout: float = 30.0, retry: RetryPolicy | None = None
    ) -> None:
        self._client = client
        self._default_timeout = default_timeout
        self._retry = retry or RetryPolicy()

    # -- requests ---------------------------------------------------------------------------

    def _secret_allowed(self, target: ProviderTarget, url: str) -> bool:
        """The key goes only to the provider's own base URL origin and hosts the profile lists."""
        scheme, host, port = _origin(url)
        if (scheme, host, port) == _origin(target.base_url):
            return True
        extra = {item.lower() for item in target.profile.auth.get("hosts", ())}
        return scheme == "https" and host in extra

    def _build(
        self,
        target: ProviderTarget,
        spec: Mapping[str, Any],
        context: Mapping[str, Any],
        *,
        url_override: str = "",
        body_template: Any = None,
    ) -> httpx.Request:
        profile = target.profile
        if url_override:
            url = render_text(url_override, context)
        elif "url_from" in spec:
            url = str(context.get(spec["url_from"]) or "")
            if not url:
                raise ProviderUnreachable(
                    f"provider {target.name}: the task handle lacks {spec['url_from']!r} needed to reach it"
                )
        else:
            url = render_text(spec["url"], context)
        url = _join_url(target.base_url, url)
        query = {key: render_text(value, context) for key, value in spec.get("query", {}).items()}
        headers = {**profile.default_headers, **spec.get("headers", {})}
        headers = {key: render_text(value, context) for key, value in headers.items()}
        auth = profile.auth
        if auth["in"] != "none" and target.api_key and self._secret_allowed(target, url):
            value = render_text(auth["template"], {"secret": target.api_key})
            if auth["in"] == "header":
                headers[auth["name"]] = value
            else:
                query[auth["name"]] = value
        content: bytes | None = None
        body = spec.get("body", {"type": "none"})
        if body["type"] == "json":
            template = body.get("template", body_template)
            content = json.dumps(render(template, context), ensure_ascii=False).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        timeout = profile.timeout_seconds(self._default_timeout)
        return self._client.build_request(
            spec["method"],
            url,
            params={key: value for key, value in query.items() if value != ""},
            headers=headers,
            content=content,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        )

    async def _send_once(
        self, target: ProviderTarget, request: httpx.Request, *, idempotent: bool
    ) -> _Response:
        profile = target.profile
        try:
            response = await self._client.send(request)
        except _NOT_SENT_ERRORS as exc:
            raise _Transient(f"cannot connect: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            if idempotent:
                raise _Transient(f"no answer: {type(exc).__name__}") from exc
            raise SubmitOutcomeUnknown(
                f"provider {target.name} received the submission but its answer was lost "
                f"({type(exc).__name__}); the outcome is unknown and it will not be resubmitted"
            ) from exc
        body, text = _parse_body(response)
        retry_after = _retry_after_seconds(response.headers, profile.http_errors.get("retry_after_header"))
        if response.status_code in profile.retryable_statuses():
            raise _Transient(f"HTTP {response.status_code}", retry_after)
        retry_when = profile.http_errors.get("retry_when")
        if retry_when and body is not None and truthy(search(retry_when, body)):
            message = _as_text(search(profile.error["message"], body)) if "message" in profile.error else ""
            raise _Transient(f"transient error {message or text[:_MAX_TEXT]!r}", retry_after)
        return _Response(status=response.status_code, headers=response.headers, body=body, text=text)

    async def _send(self, target: ProviderTarget, request: httpx.Request, *, idempotent: bool) -> _Response:
        """Sends with quick retries of transient trouble; raises ProviderUnreachable when it persists."""
        policy = self._retry
        slept = 0.0
        for attempt in range(1, policy.attempts + 1):
            try:
                return await self._send_once(target, request, idempotent=idempotent)
            except _Transient as exc:
                delay = random.uniform(0, min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1)))
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                if attempt == policy.attempts or slept + delay > policy.max_total:
                    hint = f" (retry after {exc.retry_after:g}s)" if exc.retry_after is not None else ""
                    raise ProviderUnreachable(
                        f"provider {target.name} unreachable: {exc} after {attempt} attempt(s){hint}"
                    ) from None
                logger.info(
                    "transient provider trouble, retrying",
                    extra={"provider": target.name, "attempt": attempt, "problem": str(exc)},
                )
                slept += delay
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # the loop always returns or raises

    # -- interpretation ---------------------------------------------------------------------

    def _failure(self, profile: Profile, response: _Response, fallback: str) -> TaskResult:
        message = code = ""
        if response.body is not None:
            if "message" in profile.error:
                message = _as_text(search(profile.error["message"], response.body))
            if "code" in profile.error:
                code = _as_text(search(profile.error["code"], response.body))
        if not message:
            message = response.text.strip()[:_MAX_TEXT] if response.body is None else ""
        if not message:
            message = fallback
        if not code and not 200 <= response.status < 300:
            code = str(response.status)
        return TaskResult(state=FAILED, error_message=message, error_code=code)

    def _outputs(self, profile: Profile, body: Any) -> list[tuple[str, str]]:
        outputs: list[tuple[str, str]] = []
        for spec in profile.result["outputs"]:
            value = search(spec["path"], body)
            items = value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, Mapping):
                    item = item.get("url")
                if isinstance(item, str) and item:
                    outputs.append((item, spec.get("content_type", "")))
        return outputs

    def _state(self, profile: Profile, response: _Response) -> tuple[str, str]:
        """(normalised state, raw value); a value the map lacks is the profile's non-terminal default."""
        spec = profile.poll.get("state", {})
        if spec.get("source", "body") == "http_status":
            raw: Any = response.status
        else:
            raw = search(spec["path"], response.body) if response.body is not None else None
        if isinstance(raw, bool):
            text = "true" if raw else "false"
        else:
            text = _as_text(raw)
        return spec.get("map", {}).get(text, spec.get("unknown", PROCESSING)), text

    def _progress(self, profile: Profile, body: Any) -> float:
        path = profile.poll.get("progress")
        if not path or body is None:
            return 0.0
        try:
            value = float(search(path, body))
        except (TypeError, ValueError):
            return 0.0
        if value > 1.0:
            value /= 100.0  # a percentage
        return min(max(value, 0.0), 1.0)

    async def _finish(
        self, target: ProviderTarget, result: TaskResult, body: Any, context: Mapping[str, Any]
    ) -> TaskResult:
        """Fills outputs of a COMPLETED result; success without any result URL is a failure."""
        profile = target.profile
        if profile.result["source"] == "request":
            request = self._build(target, profile.result["request"], context)
            response = await self._send(target, request, idempotent=True)
            if not 200 <= response.status < 300:
                failed = self._failure(
                    profile, response, f"fetching the result failed with HTTP {response.status}"
                )
                failed.task_id, failed.handle, failed.raw_state = (
                    result.task_id,
                    result.handle,
                    result.raw_state,
                )
                return failed
            body = response.body
        result.outputs = self._outputs(profile, body) if body is not None else []
        if not result.outputs:
            result.state = FAILED
            result.error_message = "the provider reported success but returned no result URL"
        else:
            result.progress = 1.0
        return result

    def _status_of(
        self, target: ProviderTarget, response: _Response, task_id: str, handle: dict[str, Any]
    ) -> TaskResult:
        """Normalises a status response (a poll, or a hybrid submit's answer) without the outputs."""
        profile = target.profile
        failure_when = profile.error.get("failure_when")
        if failure_when and response.body is not None and truthy(search(failure_when, response.body)):
            result = self._failure(profile, response, "the provider reported a failure")
            result.task_id, result.handle = task_id, handle
            return result
        state, raw = self._state(profile, response)
        result = TaskResult(
            state=state,
            raw_state=raw,
            task_id=task_id,
            handle=handle,
            progress=self._progress(profile, response.body),
        )
        if state == FAILED:
            failed = self._failure(profile, response, f"the provider reported state {raw!r}")
            result.error_message, result.error_code = failed.error_message, failed.error_code
        return result

    # -- the two calls ----------------------------------------------------------------------

    async def submit(
        self,
        target: ProviderTarget,
        variables: Mapping[str, Any],
        *,
        request_schema: Any,
        api_endpoint: str = "",
    ) -> TaskResult:
        """Renders the model's template into the profile's submit request and sends it once.

        Raises ``MissingVariables`` (before sending) when the template needs a variable not given.
        """
        profile = target.profile
        request = self._build(
            target,
            profile.submit["request"],
            variables,
            url_override=api_endpoint,
            body_template=request_schema,
        )
        response = await self._send(target, request, idempotent=False)
        if not 200 <= response.status < 300:
            return self._failure(
                profile, response, f"the provider refused the task with HTTP {response.status}"
            )
        body = response.body
        accept_when = profile.submit.get("accept_when")
        if accept_when and (body is None or not truthy(search(accept_when, body))):
            return self._failure(profile, response, "the provider did not accept the task")
        failure_when = profile.error.get("failure_when")
        if failure_when and body is not None and truthy(search(failure_when, body)):
            return self._failure(profile, response, "the provider reported a failure")
        handle = {
            name: value
            for name, expression in profile.submit.get("captures", {}).items()
            if (value := search(expression, body)) is not None
        }
        task_id = _as_text(search(profile.submit["task_id"], body)) if "task_id" in profile.submit else ""
        if profile.mode == "sync":
            result = TaskResult(state=COMPLETED, task_id=task_id, handle=handle)
            return await self._finish(target, result, body, {**handle, "task_id": task_id})
        if not task_id:
            return TaskResult(
                state=FAILED,
                error_message=f"the provider's answer lacks a task id at {profile.submit['task_id']!r}",
            )
        if profile.mode == "hybrid":
            result = self._status_of(target, response, task_id, handle)
            if result.state == COMPLETED:
                return await self._finish(target, result, body, {**handle, "task_id": task_id})
            if result.state in (FAILED, CANCELED):
                return result
        return TaskResult(state=PROCESSING, task_id=task_id, handle=handle)

    async def poll(self, target: ProviderTarget, task_id: str, handle: Mapping[str, Any]) -> TaskResult:
        """Asks the provider where a task is; stateless, safe to repeat."""
        profile = target.profile
        context = {**handle, "task_id": task_id}
        started = time.monotonic()
        request = self._build(target, profile.poll["request"], context)
        response = await self._send(target, request, idempotent=True)
        state_spec = profile.poll["state"]
        by_status = state_spec.get("source", "body") == "http_status"
        if not 200 <= response.status < 300 and not (by_status and str(response.status) in state_spec["map"]):
            result = self._failure(
                profile, response, f"the provider answered the poll with HTTP {response.status}"
            )
            result.task_id, result.handle = task_id, dict(handle)
            return result
        result = self._status_of(target, response, task_id, dict(handle))
        if result.state == COMPLETED:
            result = await self._finish(target, result, response.body, context)
        hint_header = profile.poll.get("interval", {}).get("honor_header")
        if hint_header and hint_header in response.headers:
            try:
                result.poll_after_ms = max(0, int(float(response.headers[hint_header])))
            except ValueError:
                pass  # a malformed hint is no hint
        logger.debug(
            "polled task",
            extra={
                "provider": target.name,
                "task_id": task_id,
                "state": result.state,
                "elapsed_ms": int((time.monotonic() - started) * 1000),
            },
        )
        return result
