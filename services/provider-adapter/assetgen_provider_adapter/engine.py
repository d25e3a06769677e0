"""The generic provider engine: submits, polls and cancels tasks exactly as a provider profile says.

Nothing here knows any provider; Kie.ai and every other family are data (``presets/*.json``). The
engine runs the three calls over its parts: ``request_builder`` renders the requests, ``sending``
sends them (retries, caps) and ``answers`` reads what came back.

Errors a call can end with:

* a :class:`TaskResult` with state ``FAILED`` — the provider answered and said no (a non-retryable
  HTTP status, ``accept_when`` false, ``failure_when`` true, or a failed task), with its own text;
* :class:`ProviderUnreachable` (UNAVAILABLE) — transient trouble that outlived a few quick retries
  (connect errors, the profile's retryable statuses or ``retry_when`` bodies); for a submit it means
  nothing was accepted, so sending again later is safe;
* :class:`SubmitOutcomeUnknown` (FAILED_PRECONDITION) — a submit was sent but no answer came back
  (read timeout, dropped connection) or a 408/5xx did: the task may or may not exist, so it must not
  be sent again — unless the profile names an ``idempotency_header``: then the submit carries a key
  stable per asset attempt and is retried like any idempotent request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from assetgen_provider_adapter.answers import (
    TooLarge,
    captured,
    failure,
    outputs_of,
    reported_failure,
    state_of,
    status_of,
    submit_answer,
)
from assetgen_provider_adapter.callbacks import inject_callback
from assetgen_provider_adapter.engine_types import (
    CANCELED,
    COMPLETED,
    FAILED,
    PENDING,
    PROCESSING,
    Output,
    ProviderAnswer,
    ProviderTarget,
    TaskResult,
)
from assetgen_provider_adapter.errors import KeyRefused, ProviderUnreachable, SubmitOutcomeUnknown
from assetgen_provider_adapter.paths import evaluate, truthy
from assetgen_provider_adapter.pricing import usage_of
from assetgen_provider_adapter.profile_sections import RequestSpec
from assetgen_provider_adapter.profiles import Profile
from assetgen_provider_adapter.request_builder import AuthValues, RequestBuilder
from assetgen_provider_adapter.sending import RetryPolicy, Sender, WireLog
from assetgen_provider_adapter.signed_auth import TokenCache
from assetgen_provider_adapter.templates import render_text
from assetgen_runtime.http import DirectClient
from assetgen_runtime.netguard import NetworkGuard

__all__ = [
    "CANCELED",
    "COMPLETED",
    "FAILED",
    "PENDING",
    "PROCESSING",
    "Output",
    "ProviderEngine",
    "ProviderTarget",
    "ProviderUnreachable",
    "RetryPolicy",
    "SubmitOutcomeUnknown",
    "TaskResult",
    "handle_variables",
]

logger = logging.getLogger(__name__)

# A poll refused for the key (authentication, billing), not for the task.
_KEY_REFUSED_STATUSES = frozenset({401, 402, 403})


def _raise_if_key_refused(target: ProviderTarget, answer: ProviderAnswer, result: TaskResult) -> None:
    """A poll refused for the key says nothing of the task, which may still run: KeyRefused, so the
    caller polls again (the key may be fixed) and fails the task only at its deadline."""
    refused = answer.status in _KEY_REFUSED_STATUSES or (
        bool(result.error_code) and result.error_code in target.profile.http_errors.key_refused_codes
    )
    if refused:
        code = result.error_code or str(answer.status)
        raise KeyRefused(
            f"provider {target.name} refused its API key while polling ({code}: {result.error_message})"
        )


def handle_variables(profile: Profile, variables: Mapping[str, Any], api_endpoint: str) -> dict[str, Any]:
    """The generation variables (and ``submit_path``) later requests use, kept in the task's handle."""
    needed = profile.handle_variables
    if not needed:
        return {}
    kept = {name: variables[name] for name in needed if variables.get(name) is not None}
    if "submit_path" in needed:
        kept["submit_path"] = render_text(api_endpoint or profile.submit.request.url, variables)
    return kept


class ProviderEngine:
    """Talks to providers over one shared HTTP client as their profiles describe.

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
        tokens: TokenCache | None = None,
    ) -> None:
        self._default_timeout = default_timeout
        self._max_inline = max_inline_bytes
        self._requests = RequestBuilder(
            client,
            default_timeout=default_timeout,
            guard=guard or NetworkGuard(),
            max_inline_bytes=max_inline_bytes,
            auth=AuthValues(tokens),
        )
        self._sender = Sender(client, retry=retry or RetryPolicy(), max_inline_bytes=max_inline_bytes)

    def submit_seconds(self, profile: Profile) -> float:
        """The longest one submit's provider exchange can take: every attempt running into the
        timeout, plus the backoff between attempts.
        """
        retry = self._sender.retry
        return profile.timeout_seconds(self._default_timeout) * retry.attempts + retry.max_total

    def auth_headers(self, target: ProviderTarget, url: str) -> dict[str, str]:
        """The auth header for ``url`` when the profile sends the key there, else nothing."""
        return self._requests.auth.headers(target, url)

    async def submit(
        self,
        target: ProviderTarget,
        variables: Mapping[str, Any],
        *,
        request_schema: Any,
        api_endpoint: str = "",
        idempotency_key: str = "",
        wire: WireLog | None = None,
        callback_url: str = "",
    ) -> TaskResult:
        """Renders the model's template into the profile's submit request and sends it once.

        With the profile's ``idempotency_header`` and an ``idempotency_key`` (stable per asset
        attempt) the provider deduplicates, so transient trouble after sending is retried too.
        ``wire`` hears when the request goes out and when it was refused (the submission ledger).
        Raises ``MissingVariables`` (before sending) when the template needs a variable not given.
        """
        profile = target.profile
        submit = profile.submit
        request = await self._requests.build(
            target, submit.request, variables, url_override=api_endpoint, body_template=request_schema
        )
        if callback_url and profile.webhook is not None:
            request = inject_callback(request, profile.webhook, callback_url)
        deduplicated = bool(submit.idempotency_header and idempotency_key)
        if deduplicated:
            request.headers[submit.idempotency_header] = idempotency_key
        answer = await self._sender.send(target, request, idempotent=deduplicated, wire=wire)
        if not answer.ok:
            return failure(profile, answer, f"the provider refused the task with HTTP {answer.status}")
        body = answer.body
        if submit.accept_when is not None and (
            body is None or not truthy(evaluate(submit.accept_when, body))
        ):
            return failure(profile, answer, "the provider did not accept the task")
        failed = reported_failure(profile, answer, task=False)
        if failed is not None:
            return failed
        task_id, handle = submit_answer(profile, body)
        handle = {**handle_variables(profile, variables, api_endpoint), **handle}
        if submit.mode == "sync":
            usage = usage_of(profile.billing, body)
            result = TaskResult(state=COMPLETED, task_id=task_id, handle=handle, usage=usage)
            return await self._finish(target, result, answer, {**handle, "task_id": task_id})
        if not task_id:
            expression = submit.task_id.expression if submit.task_id is not None else None
            return TaskResult(
                state=FAILED, error_message=f"the provider's answer lacks a task id at {expression!r}"
            )
        if submit.mode == "hybrid":
            result = status_of(profile, answer, task_id, handle)
            if result.state == COMPLETED:
                return await self._finish(target, result, answer, {**handle, "task_id": task_id})
            if result.state in (FAILED, CANCELED):
                return result
        return TaskResult(state=PROCESSING, task_id=task_id, handle=handle)

    async def fetch_document(self, target: ProviderTarget, spec: RequestSpec) -> Any:
        """The JSON the provider answers a plain request of ``spec`` with (its key attached as the
        profile says); ProviderUnreachable unless it answers 2xx."""
        request = await self._requests.build(target, spec, {})
        answer = await self._sender.send(target, request, idempotent=True)
        if not answer.ok:
            raise ProviderUnreachable(f"provider {target.name} answered HTTP {answer.status} to {spec.url}")
        return answer.body

    async def poll(self, target: ProviderTarget, task_id: str, handle: Mapping[str, Any]) -> TaskResult:
        """Asks the provider where a task is; stateless, safe to repeat."""
        profile = target.profile
        poll = profile.poll
        if poll is None:
            raise ValueError(f"provider {target.name} submits synchronously: it has no task to poll")
        context = {**handle, "task_id": task_id}
        started = time.monotonic()
        request = await self._requests.build(target, poll.request, context)
        answer = await self._sender.send(target, request, idempotent=True)
        mapped_status = poll.state.from_http_status and str(answer.status) in poll.state.map
        if not answer.ok and not mapped_status:
            refused = failure(
                profile,
                answer,
                f"the provider answered the poll with HTTP {answer.status}",
                task_id=task_id,
                handle=dict(handle),
            )
            if answer.status == 401:
                # A signed token the provider no longer takes (clock skew, an early revocation):
                # the next request signs a new one rather than repeating it until it expires.
                self._requests.auth.forget(target)
            _raise_if_key_refused(target, answer, refused)
            return refused
        result = status_of(profile, answer, task_id, dict(handle))
        if result.state == FAILED:
            _raise_if_key_refused(target, answer, result)
        if result.state == COMPLETED:
            if poll.captures and answer.body is not None:
                context = {**context, **captured(poll.captures, answer.body)}
            result = await self._finish(target, result, answer, context)
        if profile.billing is not None and result.state in (COMPLETED, FAILED):
            result.usage = usage_of(profile.billing, answer.body)
        if poll.honor_header and poll.honor_header in answer.headers:
            try:
                result.poll_after_ms = max(0, int(float(answer.headers[poll.honor_header])))
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
        cancel = target.profile.cancel
        if cancel is None:
            return False, False, "the provider has no cancel"
        context = {**handle, "task_id": task_id}
        if cancel.when_state:
            refusal = await self._cancel_refusal(target, cancel.when_state, context)
            if refusal:
                return True, False, refusal
        request = await self._requests.build(target, cancel.request, context)
        answer = await self._sender.send(target, request, idempotent=True)
        if answer.ok:
            return True, True, ""
        return (
            True,
            False,
            failure(target.profile, answer, f"cancel answered HTTP {answer.status}").error_message,
        )

    async def _cancel_refusal(
        self, target: ProviderTarget, allowed: frozenset[str], context: Mapping[str, Any]
    ) -> str:
        """Why the task may not be canceled now (its raw state is not one of ``allowed``), or ""."""
        poll = target.profile.poll
        if poll is None:
            return ""
        answer = await self._sender.send(
            target, await self._requests.build(target, poll.request, context), idempotent=True
        )
        if not answer.ok and not poll.state.from_http_status:
            return failure(
                target.profile,
                answer,
                f"asking the task's state before canceling answered HTTP {answer.status}",
            ).error_message
        _, raw = state_of(poll.state, answer)
        if raw in allowed:
            return ""
        return (
            f"provider {target.name} cancels a task only while it is {' or '.join(sorted(allowed))}; "
            f"this one is {raw!r}, so no cancel was sent"
        )

    async def _finish(
        self,
        target: ProviderTarget,
        result: TaskResult,
        answer: ProviderAnswer | None,
        context: Mapping[str, Any],
    ) -> TaskResult:
        """Fills outputs of a COMPLETED result; success without any result is a failure."""
        profile = target.profile
        spec = profile.result
        body = answer.body if answer is not None else None
        if spec.source == "request" and spec.request is not None:
            request = await self._requests.build(target, spec.request, context)
            if spec.only_raw_body:
                # The result *is* this request's body (OpenAI's /content, with auth): the adapter
                # streams it into storage itself rather than holding it here.
                result.outputs = [
                    Output(
                        kind="download",
                        url=str(request.url),
                        headers=dict(request.headers),
                        content_type=spec.outputs[0].content_type or "from_header",
                    )
                ]
                result.progress = 1.0
                return result
            answer = await self._sender.send(target, request, idempotent=True)
            failed = (
                reported_failure(profile, answer)
                if answer.ok
                else failure(
                    profile, answer, f"fetching the result failed with HTTP {answer.status}", task=True
                )
            )
            if failed is not None:
                failed.task_id, failed.handle, failed.raw_state = (
                    result.task_id,
                    result.handle,
                    result.raw_state,
                )
                return failed
            body = answer.body
        try:
            result.outputs = outputs_of(
                target,
                answer,
                body,
                max_inline=self._max_inline,
                auth_headers=lambda url: self._requests.auth.headers(target, url),
            )
        except TooLarge:
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
