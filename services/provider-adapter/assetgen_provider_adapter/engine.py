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
import base64
import binascii
import json
import logging
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlsplit

import grpc
import httpx

from assetgen_provider_adapter.errors import ProviderUnreachable, SubmitOutcomeUnknown
from assetgen_provider_adapter.paths import search, truthy
from assetgen_provider_adapter.profiles import Profile
from assetgen_provider_adapter.templates import render, render_text
from assetgen_runtime.errors import InvalidArgument
from assetgen_runtime.http import DirectClient
from assetgen_runtime.netguard import FetchFailed, NetworkGuard, guarded_stream

__all__ = [
    "Output",
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

_WHOLE_PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z_][A-Za-z0-9_-]*\s*\??\s*\}\}")

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


@dataclass(frozen=True)
class Output:
    """One result file: a plain URL for storage's ingest, bytes that arrived inline, or a download
    the adapter must make itself (it needs the provider's auth, or is the raw body of a request).
    """

    kind: str  # "url" | "inline" | "download"
    content_type: str = ""
    url: str = ""
    data: bytes = field(default=b"", repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def needs_upload(self) -> bool:
        """Whether the adapter stores this output itself instead of handing storage a URL."""
        return self.kind != "url"


class _TooLarge(Exception):
    """An inline result exceeds the size cap."""


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
    outputs: list[Output] = field(default_factory=list)
    poll_after_ms: int = 0


@dataclass
class _Response:
    status: int
    headers: httpx.Headers
    body: Any
    text: str
    content: bytes = b""
    too_large: bool = False


class _Transient(Exception):
    """A retryable answer; carries the description and the provider's Retry-After, if any."""

    def __init__(self, description: str, retry_after: float | None = None) -> None:
        super().__init__(description)
        self.retry_after = retry_after


def _parse_body(content: bytes, content_type: str) -> tuple[Any, str]:
    if content_type and not any(kind in content_type for kind in ("json", "text")):
        return None, ""  # a binary body (image, video) is never JSON and not worth decoding
    text = content.decode("utf-8", errors="replace")
    try:
        return json.loads(text), text
    except ValueError:
        return None, text


def _decode_data_uri(uri: str) -> tuple[bytes, str]:
    """(bytes, media type) of a ``data:`` URI; raises ValueError when it is malformed."""
    header, sep, payload = uri[5:].partition(",")
    if not sep:
        raise ValueError("data: URI without a comma")
    media_type, _, params = header.partition(";")
    if params.split(";")[-1] == "base64":
        return base64.b64decode(payload, validate=False), media_type
    return unquote_to_bytes(payload), media_type


def _as_text(value: Any) -> str:
    if value is None or value is False:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _render_url(template: str, context: Mapping[str, Any], raw_vars: Any) -> str:
    """Renders a URL; values are percent-escaped except those named in ``raw_vars`` (Veo's
    ``operations/...`` names are paths) and a URL that is one placeholder as a whole.
    """
    if "{{" not in template:
        return template
    if _WHOLE_PLACEHOLDER.fullmatch(template.strip()):
        return render_text(template, context)
    raw = set(raw_vars)
    escaped = {
        name: value if name in raw or not isinstance(value, str | int | float) else quote(str(value), safe="")
        for name, value in context.items()
    }
    return render_text(template, escaped)


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
    """Talks to providers over one shared HTTP client as their profiles describe.

    API calls go straight to the client's transport (:meth:`DirectClient.send_direct`): they need
    none of the client's cookie, auth or redirect handling, and polls are the adapter's main work.

    ``guard`` checks every URL the provider supplied (captured status/result URLs, input files)
    before it is fetched; ``max_inline_bytes`` caps a response body held in memory (an inline
    result, a base64 field, an input file).
    """

    def __init__(
        self,
        client: DirectClient,
        *,
        default_timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        guard: NetworkGuard | None = None,
        max_inline_bytes: int = 64 * 1024**2,
    ) -> None:
        self._client = client
        self._default_timeout = default_timeout
        self._retry = retry or RetryPolicy()
        self._guard = guard or NetworkGuard()
        self._max_inline = max_inline_bytes

    # -- requests ---------------------------------------------------------------------------

    def _secret_allowed(self, target: ProviderTarget, url: str) -> bool:
        """The key goes only to the provider's own base URL origin and hosts the profile lists."""
        scheme, host, port = _origin(url)
        if (scheme, host, port) == _origin(target.base_url):
            return True
        extra = {item.lower() for item in target.profile.auth.get("hosts", ())}
        return scheme == "https" and host in extra

    def _timeout(self, profile: Profile) -> httpx.Timeout:
        timeout = profile.timeout_seconds(self._default_timeout)
        return httpx.Timeout(timeout, connect=min(timeout, 10.0))

    def submit_seconds(self, profile: Profile) -> float:
        """The longest one submit's provider exchange can take: every attempt running into the
        timeout, plus the backoff between attempts.
        """
        return profile.timeout_seconds(self._default_timeout) * self._retry.attempts + self._retry.max_total

    def auth_headers(self, target: ProviderTarget, url: str) -> dict[str, str]:
        """The auth header for ``url`` when the profile sends the key there, else nothing."""
        auth = target.profile.auth
        if auth["in"] != "header" or not target.api_key or not self._secret_allowed(target, url):
            return {}
        return {auth["name"]: render_text(auth["template"], {"secret": target.api_key})}

    async def _build(
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
            url = _render_url(url_override, context, ())
        elif "url_from" in spec:
            url = str(context.get(spec["url_from"]) or "")
            if not url:
                raise ProviderUnreachable(
                    f"provider {target.name}: the task handle lacks {spec['url_from']!r} needed to reach it"
                )
            # A URL the provider handed us: it must not point into our own network.
            await self._guard.check_url(_join_url(target.base_url, url))
        else:
            url = _render_url(spec["url"], context, spec.get("raw_path_vars", ()))
        # A relative URL is on the base URL's origin by construction: no need to parse it to know.
        own_origin = not url.startswith(("http://", "https://"))
        url = _join_url(target.base_url, url)
        query = {key: render_text(value, context) for key, value in spec.get("query", {}).items()}
        headers = {**profile.default_headers, **spec.get("headers", {})}
        headers = {key: render_text(value, context) for key, value in headers.items()}
        if "accept" in spec:
            headers["Accept"] = spec["accept"]
        auth = profile.auth
        if auth["in"] != "none" and target.api_key and (own_origin or self._secret_allowed(target, url)):
            value = render_text(auth["template"], {"secret": target.api_key})
            if auth["in"] == "header":
                headers[auth["name"]] = value
            else:
                query[auth["name"]] = value
        content: bytes | None = None
        files: dict[str, tuple[str | None, bytes | str, str | None]] | None = None
        body = spec.get("body", {"type": "none"})
        template = body.get("template", body_template)
        if body["type"] == "json":
            content = json.dumps(render(template, context), ensure_ascii=False).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        elif body["type"] == "multipart":
            files = await self._multipart(template, body.get("files", {}), context)
            # httpx writes the multipart Content-Type with its boundary itself.
            headers = {key: value for key, value in headers.items() if key.lower() != "content-type"}
        return self._client.build_request(
            spec["method"],
            url,
            params={key: value for key, value in query.items() if value != ""},
            headers=headers,
            content=content,
            files=files,
            timeout=self._timeout(profile),
        )

    async def _multipart(
        self, template: Any, file_specs: Mapping[str, str], context: Mapping[str, Any]
    ) -> dict[str, tuple[str | None, bytes | str, str | None]]:
        """Form fields rendered from ``template`` plus files fetched from URLs; always multipart."""
        rendered = render(template, context) if template is not None else {}
        if not isinstance(rendered, Mapping):
            raise InvalidArgument("a multipart body template must be a JSON object of form fields")
        parts: dict[str, tuple[str | None, bytes | str, str | None]] = {
            name: (None, _as_text(value), None) for name, value in rendered.items()
        }
        for name, source in file_specs.items():
            url = render_text(source, context)
            if not url:
                continue  # an optional file placeholder left unset
            data, media_type = await self._fetch_input(url)
            parts[name] = (name, data, media_type or "application/octet-stream")
        return parts

    async def _fetch_input(self, url: str) -> tuple[bytes, str]:
        """An input file (e.g. the image of an image-to-video task), guarded and size-capped."""
        if url.startswith("data:"):
            try:
                return _decode_data_uri(url)
            except ValueError as exc:
                raise InvalidArgument(f"malformed data: URI input: {exc}") from None
        chunks: list[bytes] = []
        size = 0
        try:
            async with self._guarded_stream(url, {}, self._default_timeout) as response:
                media_type = response.headers.get("content-type", "")
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self._max_inline:
                        raise InvalidArgument(f"input file larger than {self._max_inline} bytes")
                    chunks.append(chunk)
        except FetchFailed as exc:
            # Nothing was sent to the provider yet: transient trouble may be retried, the rest is final.
            if exc.code == grpc.StatusCode.UNAVAILABLE:
                raise ProviderUnreachable(f"fetching an input file failed: {exc}") from None
            raise InvalidArgument(f"fetching an input file failed: {exc}") from None
        return b"".join(chunks), media_type

    def _guarded_stream(self, url: str, headers: Mapping[str, str], timeout: float) -> Any:
        return guarded_stream(self._client, url, guard=self._guard, headers=headers, timeout=timeout)

    async def _send_once(
        self, target: ProviderTarget, request: httpx.Request, *, idempotent: bool
    ) -> _Response:
        profile = target.profile
        try:
            response = await self._client.send_direct(request)
            try:
                content, too_large = await self._read_capped(response)
            finally:
                await response.aclose()
        except _NOT_SENT_ERRORS as exc:
            raise _Transient(f"cannot connect: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            if idempotent:
                raise _Transient(f"no answer: {type(exc).__name__}") from exc
            raise SubmitOutcomeUnknown(
                f"provider {target.name} received the submission but its answer was lost "
                f"({type(exc).__name__}); the outcome is unknown and it will not be resubmitted"
            ) from exc
        body, text = _parse_body(content, response.headers.get("content-type", ""))
        retry_after = _retry_after_seconds(response.headers, profile.http_errors.get("retry_after_header"))
        if response.status_code in profile.retryable_statuses:
            raise _Transient(f"HTTP {response.status_code}", retry_after)
        retry_when = profile.http_errors.get("retry_when")
        if retry_when and body is not None and truthy(search(retry_when, body)):
            message = _as_text(search(profile.error["message"], body)) if "message" in profile.error else ""
            raise _Transient(f"transient error {message or text[:_MAX_TEXT]!r}", retry_after)
        return _Response(
            status=response.status_code,
            headers=response.headers,
            body=body,
            text=text,
            content=content,
            too_large=too_large,
        )

    async def _read_capped(self, response: httpx.Response) -> tuple[bytes, bool]:
        """The body, or ``b""`` and True once it passes the inline cap (memory stays bounded)."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_inline:
            return b"", True
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_inline:
                return b"", True
            chunks.append(chunk)
        return b"".join(chunks), False

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

    def _outputs(self, target: ProviderTarget, response: _Response | None, body: Any) -> list[Output]:
        """The result files a (status, submit or result) response names, per ``result.outputs``.

        Raises _TooLarge when an inline result passes the cap; ValueError when one is malformed.
        """
        if response is not None and response.too_large:
            raise _TooLarge()
        result_spec = target.profile.result
        inherit = result_spec.get("download", {}).get("auth", "none") == "inherit"
        outputs: list[Output] = []
        for spec in result_spec["outputs"]:
            kind = spec["kind"]
            declared = spec.get("content_type", "")
            if kind == "raw_body":
                if response is None:
                    continue
                media_type = response.headers.get("content-type", "").split(";")[0].strip()
                content_type = media_type if declared in ("", "from_header") else declared
                if response.content:
                    outputs.append(Output(kind="inline", content_type=content_type, data=response.content))
                continue
            if body is None:
                continue
            value = search(spec["path"], body)
            items = value if isinstance(value, list) else [value]
            for item in items:
                item_type = declared
                if isinstance(item, Mapping):
                    item_type = declared or str(item.get("content_type") or "")
                    item = item.get("url")
                if not isinstance(item, str) or not item:
                    continue
                if kind == "base64":
                    if len(item) * 3 // 4 > self._max_inline:
                        raise _TooLarge()
                    try:
                        data = base64.b64decode(item, validate=False)
                    except (binascii.Error, ValueError) as exc:
                        raise ValueError(f"the provider's base64 result is malformed: {exc}") from None
                    outputs.append(Output(kind="inline", content_type=item_type, data=data))
                elif item.startswith("data:"):
                    if len(item) * 3 // 4 > self._max_inline:
                        raise _TooLarge()
                    data, media_type = _decode_data_uri(item)
                    outputs.append(Output(kind="inline", content_type=item_type or media_type, data=data))
                elif inherit:
                    outputs.append(
                        Output(
                            kind="download",
                            content_type=item_type,
                            url=item,
                            headers=self.auth_headers(target, item),
                        )
                    )
                else:
                    outputs.append(Output(kind="url", content_type=item_type, url=item))
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
        self,
        target: ProviderTarget,
        result: TaskResult,
        response: _Response | None,
        context: Mapping[str, Any],
    ) -> TaskResult:
        """Fills outputs of a COMPLETED result; success without any result is a failure."""
        profile = target.profile
        body = response.body if response is not None else None
        if profile.result["source"] == "request":
            request = await self._build(target, profile.result["request"], context)
            if all(spec["kind"] == "raw_body" for spec in profile.result["outputs"]):
                # The result *is* this request's body (OpenAI's /content, with auth): the adapter
                # streams it into storage itself rather than holding it here.
                result.outputs = [
                    Output(
                        kind="download",
                        url=str(request.url),
                        headers=dict(request.headers),
                        content_type=profile.result["outputs"][0].get("content_type", "from_header"),
                    )
                ]
                result.progress = 1.0
                return result
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
            failure_when = profile.error.get("failure_when")
            if failure_when and body is not None and truthy(search(failure_when, body)):
                failed = self._failure(profile, response, "the provider reported a failure")
                failed.task_id, failed.handle, failed.raw_state = (
                    result.task_id,
                    result.handle,
                    result.raw_state,
                )
                return failed
        try:
            result.outputs = self._outputs(target, response, body)
        except _TooLarge:
            result.state = FAILED
            result.error_message = f"the provider's inline result is larger than {self._max_inline} bytes"
            return result
        except ValueError as exc:
            result.state = FAILED
            result.error_message = str(exc)
            return result
        if not result.outputs:
            result.state = FAILED
            result.error_message = "the provider reported success but returned no result"
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
        request = await self._build(
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
            return await self._finish(target, result, response, {**handle, "task_id": task_id})
        if not task_id:
            return TaskResult(
                state=FAILED,
                error_message=f"the provider's answer lacks a task id at {profile.submit['task_id']!r}",
            )
        if profile.mode == "hybrid":
            result = self._status_of(target, response, task_id, handle)
            if result.state == COMPLETED:
                return await self._finish(target, result, response, {**handle, "task_id": task_id})
            if result.state in (FAILED, CANCELED):
                return result
        return TaskResult(state=PROCESSING, task_id=task_id, handle=handle)

    async def poll(self, target: ProviderTarget, task_id: str, handle: Mapping[str, Any]) -> TaskResult:
        """Asks the provider where a task is; stateless, safe to repeat."""
        profile = target.profile
        context = {**handle, "task_id": task_id}
        started = time.monotonic()
        request = await self._build(target, profile.poll["request"], context)
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
            result = await self._finish(target, result, response, context)
        hint_header = profile.poll.get("interval", {}).get("honor_header")
        if hint_header and hint_header in response.headers:
            try:
                result.poll_after_ms = max(0, int(float(response.headers[hint_header])))
            except ValueError:
                pass  # a malformed hint is no hint
        if logger.isEnabledFor(logging.DEBUG):  # polls are the hot path: no log record built for nothing
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

    async def cancel(
        self, target: ProviderTarget, task_id: str, handle: Mapping[str, Any]
    ) -> tuple[bool, bool, str]:
        """Asks the provider to stop a task: (supported, accepted, the provider's message)."""
        spec = target.profile.data.get("cancel", {})
        if "request" not in spec or spec.get("supported") is False:
            return False, False, "the provider has no cancel"
        request = await self._build(target, spec["request"], {**handle, "task_id": task_id})
        response = await self._send(target, request, idempotent=True)
        if 200 <= response.status < 300:
            return True, True, ""
        failed = self._failure(target.profile, response, f"cancel answered HTTP {response.status}")
        return True, False, failed.error_message
