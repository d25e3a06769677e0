"""Sending a provider request: the one send path, its quick retries and the inline-size cap.

How a send can end:

* a :class:`ProviderAnswer` — the provider answered (any status the profile does not call transient);
* :class:`ProviderUnreachable` — transient trouble (connect errors, the profile's retryable statuses
  or ``retry_when`` bodies) outlived the retries; for a submit nothing was accepted; when the last
  trouble was a refusal (a 429, a ``retry_when`` body) it is :class:`ProviderBusy`, with the
  provider's Retry-After, and a submit waits rather than failing;
* :class:`SubmitOutcomeUnknown` — a non-idempotent request (a submit) was sent and then failed in
  a way that does not prove the provider refused it (a lost answer, a 408 or 5xx), so it must not be
  sent again. Only a refused connect, a 429 or a ``retry_when`` body (the provider's own "not
  accepted" envelope) is a definite refusal, retried as any transient trouble.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from assetgen_provider_adapter.engine_types import MAX_TEXT, ProviderAnswer, ProviderTarget, as_text
from assetgen_provider_adapter.errors import ProviderBusy, ProviderUnreachable, SubmitOutcomeUnknown
from assetgen_provider_adapter.paths import evaluate, truthy
from assetgen_runtime.http import DirectClient

__all__ = ["RetryPolicy", "Sender", "WireLog"]

logger = logging.getLogger(__name__)

# Errors raised before any byte of the request can have reached the provider.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# The one answer status that says "not taken" for certain: a provider rate-limits before it accepts.
_REFUSED_STATUS = 429


class WireLog(Protocol):
    """Told when a request goes on the wire and when it came back definitely refused, so that the
    window in which its outcome could be unknown is exactly the time it is on the wire."""

    async def sending(self) -> None:
        """Right before the request goes out (durably recorded when it returns)."""

    async def refused(self) -> None:
        """The request was definitely refused (it may wait to be retried)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Quick in-call retries of transient trouble: exponential backoff with full jitter, bounded.

    The orchestrator retries durably with its own backoff, so these only smooth over blips.
    """

    attempts: int = 3
    base_delay: float = 0.25
    max_delay: float = 2.0
    max_total: float = 4.0


class _Transient(Exception):
    """A retryable answer; carries the description and the provider's Retry-After, if any."""

    def __init__(self, description: str, retry_after: float | None = None, *, busy: bool = False) -> None:
        super().__init__(description)
        self.retry_after = retry_after
        self.busy = busy
        """The provider refused for now (a 429, a ``retry_when`` body): definitely not accepted."""


def _parse_body(content: bytes, content_type: str) -> tuple[Any, str]:
    if content_type and not any(kind in content_type for kind in ("json", "text")):
        return None, ""  # a binary body (image, video) is never JSON and not worth decoding
    text = content.decode("utf-8", errors="replace")
    try:
        return json.loads(text), text
    except ValueError:
        return None, text


def _retry_after_seconds(headers: httpx.Headers, name: str) -> float | None:
    if not name or name not in headers:
        return None
    try:
        return max(0.0, float(headers[name]))
    except ValueError:
        return None  # an HTTP-date: rare for these APIs, and our own backoff is fine then


class Sender:
    """Sends requests straight to the shared client's transport (:meth:`DirectClient.send_direct`):
    API calls need none of the client's cookie, auth or redirect handling.

    ``max_inline_bytes`` caps a response body held in memory (an inline result, a base64 field).
    """

    def __init__(self, client: DirectClient, *, retry: RetryPolicy, max_inline_bytes: int) -> None:
        self._client = client
        self._retry = retry
        self._max_inline = max_inline_bytes

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy every send follows."""
        return self._retry

    async def send(
        self,
        target: ProviderTarget,
        request: httpx.Request,
        *,
        idempotent: bool,
        wire: WireLog | None = None,
    ) -> ProviderAnswer:
        """Sends with quick retries of transient trouble; raises ProviderUnreachable when it persists.

        ``wire`` (a submit's ledger entry) hears of every attempt going out and of every refusal.
        """
        policy = self._retry
        slept = 0.0
        for attempt in range(1, policy.attempts + 1):
            try:
                if wire is not None:
                    await wire.sending()
                return await self._send_once(target, request, idempotent=idempotent)
            except _Transient as exc:
                if wire is not None:
                    await wire.refused()
                delay = random.uniform(0, min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1)))
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                if attempt == policy.attempts or slept + delay > policy.max_total:
                    hint = f" (retry after {exc.retry_after:g}s)" if exc.retry_after is not None else ""
                    if exc.busy:
                        raise ProviderBusy(
                            f"provider {target.name} busy: {exc} after {attempt} attempt(s){hint}",
                            retry_after=exc.retry_after,
                        ) from None
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

    async def _send_once(
        self, target: ProviderTarget, request: httpx.Request, *, idempotent: bool
    ) -> ProviderAnswer:
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
                f"outcome unknown at {target.name}: provider {target.name} received the submission but "
                f"its answer was lost ({type(exc).__name__}); the outcome is unknown and it will not be "
                "resubmitted"
            ) from exc
        body, text = _parse_body(content, response.headers.get("content-type", ""))
        http_errors = profile.http_errors
        retry_after = _retry_after_seconds(response.headers, http_errors.retry_after_header)
        if response.status_code in http_errors.retryable:
            if not idempotent and response.status_code != _REFUSED_STATUS:
                # A 408 or 5xx can come after the provider created the task (a gateway timing out
                # in front of it): sending again could pay twice.
                raise SubmitOutcomeUnknown(
                    f"outcome unknown at {target.name}: provider {target.name} answered the submission "
                    f"with HTTP {response.status_code}, which does not say whether it created the task; "
                    "the outcome is unknown and it will not be resubmitted"
                )
            raise _Transient(
                f"HTTP {response.status_code}", retry_after, busy=response.status_code == _REFUSED_STATUS
            )
        if (
            http_errors.retry_when is not None
            and body is not None
            and truthy(evaluate(http_errors.retry_when, body))
        ):
            message_paths, _ = profile.error.paths(task=False)
            message = as_text(evaluate(message_paths[0], body)) if message_paths else ""
            raise _Transient(f"transient error {message or text[:MAX_TEXT]!r}", retry_after, busy=True)
        return ProviderAnswer(
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
