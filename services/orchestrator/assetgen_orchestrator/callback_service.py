"""The CallbackService gRPC servicer: what a provider's callback makes happen.

A callback is a reason to look, never the truth: once its token names a live asset attempt and the
adapter has checked it (signature, freshness) and read its task id, the task is polled at once
through the normal lifecycle — by a job of a new generation, which supersedes the one waiting for
the next (sparse) poll. The body alone never completes or fails an asset. A callback for a
submission whose answer was lost ("outcome unknown"; the asset waits for it in ``waiting_callback``,
still PROCESSING) adopts the task it names, and the asset goes on to completion: it ends once, and
the task is never submitted again. Repeats are harmless: a finished asset
ignores them, and one callback per asset attempt a second is acted on. A callback whose state the
profile does not act on (Kling and Ark call back on every status change) is answered and changes
nothing — unless it names the task of a lost submission, which it adopts all the same. A handshake
(MiniMax's challenge) is answered with the adapter's echo and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import grpc
from prometheus_client import Counter

from assetgen.v1 import (
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    provider_adapter_pb2,
    provider_adapter_pb2_grpc,
)
from assetgen_orchestrator.callback_tokens import CallbackUrls, parse_token
from assetgen_orchestrator.events import EventPublisher
from assetgen_orchestrator.jobs import Job, JobPublisher
from assetgen_orchestrator.models import AssetRow, Status, Step, utcnow
from assetgen_orchestrator.store import AssetStore
from assetgen_orchestrator.variables import build_variables
from assetgen_runtime.errors import NotFound, Unavailable

__all__ = ["CALLBACKS", "CallbackServicer"]

logger = logging.getLogger(__name__)

CALLBACKS = Counter(
    "assetgen_callbacks_total",
    "Provider callbacks received, by outcome: polled, adopted, answered (a handshake), ignored "
    "(finished asset, repeat, a state not acted on), early (its submit still unanswered after a wait: "
    "503, call again), unknown (token or task), refused (did not verify; by provider in "
    "assetgen_provider_callbacks_total).",
    ["outcome"],
)
_REPEAT_WINDOW = 1.0
_MAX_CAS_RETRIES = 5
# A callback that overtakes its submit's answer waits for it this long at most (well below the
# gateway's deadline for the call), asking the database this often.
_SUBMIT_ANSWER_WAIT = 10.0
_SUBMIT_ANSWER_POLL = 0.1


class CallbackServicer(orchestrator_pb2_grpc.CallbackServiceServicer):
    """Acts on verified provider callbacks."""

    def __init__(
        self,
        store: AssetStore,
        adapter: provider_adapter_pb2_grpc.ProviderAdapterServiceStub,
        jobs: JobPublisher,
        events: EventPublisher,
        urls: CallbackUrls,
        *,
        rpc_timeout: float,
    ) -> None:
        self._store = store
        self._adapter = adapter
        self._jobs = jobs
        self._events = events
        self._urls = urls
        self._rpc_timeout = rpc_timeout
        self._recent: dict[tuple[str, int], float] = {}

    async def ProviderCallback(
        self, request: orchestrator_pb2.ProviderCallbackRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.ProviderCallbackResponse:
        named = parse_token(self._urls.secret, request.token)
        asset = await self._store.find_asset(named[0]) if named else None
        if named is None or asset is None or asset.attempt != named[1]:
            CALLBACKS.labels("unknown").inc()
            raise NotFound("unknown callback")
        verified = await self._verify(asset, request)
        if verified.reply:
            CALLBACKS.labels("answered").inc()
            logger.info("provider callback: a handshake answered", extra={"asset_id": asset.id})
            return orchestrator_pb2.ProviderCallbackResponse(outcome="answered", reply=verified.reply)
        if verified.task_id and _submitting(asset):
            # The callback overtook the submit's own answer (a fast task, or an answer being lost):
            # what it means depends on how that answer ends, so wait for it.
            asset = await self._submit_answered(asset, context)
            if asset.step == Step.WAITING_CALLBACK:
                verified = await self._verify(asset, request)  # now with what an adopted task keeps
        task_id = verified.task_id
        if task_id and asset.external_task_id and task_id != asset.external_task_id:
            CALLBACKS.labels("unknown").inc()
            raise NotFound("the callback is about another task than this asset's")
        outcome = await self._act(
            asset, task_id, passed_over=bool(verified.passed_over), handle_json=verified.handle_json
        )
        CALLBACKS.labels(outcome).inc()
        logger.info(
            "provider callback: %s",
            outcome,
            extra={
                "asset_id": asset.id,
                "task_id": task_id,
                "verified": verified.verified,
                "passed_over": verified.passed_over,
            },
        )
        return orchestrator_pb2.ProviderCallbackResponse(outcome=outcome)

    async def _verify(
        self, asset: AssetRow, request: orchestrator_pb2.ProviderCallbackRequest
    ) -> provider_adapter_pb2.VerifyCallbackResponse:
        try:
            # UNAUTHENTICATED from the adapter (bad signature, stale) goes back to the provider as 401.
            return await self._adapter.VerifyCallback(
                provider_adapter_pb2.VerifyCallbackRequest(
                    model=asset.model,
                    headers=dict(request.headers),
                    body=request.body,
                    # Only a lost submission's asset adopts a task: its polls need what the submit kept.
                    variables_json=json.dumps(build_variables(asset))
                    if asset.step == Step.WAITING_CALLBACK
                    else "",
                ),
                timeout=self._rpc_timeout,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                CALLBACKS.labels("refused").inc()
            raise

    async def _submit_answered(self, asset: AssetRow, context: grpc.aio.ServicerContext) -> AssetRow:
        """The asset once its submission is answered (sent, or outcome unknown and waiting for this
        callback), polled until a bound below the caller's deadline; still submitting then, the
        provider is asked to call again (503), as providers that retry do."""
        remaining = context.time_remaining()
        bound = _SUBMIT_ANSWER_WAIT if remaining is None else min(_SUBMIT_ANSWER_WAIT, remaining - 1.0)
        deadline = time.monotonic() + bound
        while _submitting(asset):
            if time.monotonic() >= deadline:
                CALLBACKS.labels("early").inc()
                raise Unavailable("the submission of this task is still being answered; call back later")
            await asyncio.sleep(_SUBMIT_ANSWER_POLL)
            fresh = await self._store.find_asset(asset.id)
            if fresh is None or fresh.attempt != asset.attempt:
                raise NotFound("unknown callback")
            asset = fresh
        return asset

    async def _act(self, asset: AssetRow, task_id: str, *, passed_over: bool, handle_json: str) -> str:
        key = (asset.id, asset.attempt)
        now = time.monotonic()
        if self._recent.get(key, 0.0) > now:
            return "ignored"
        outcome = ""
        for _ in range(_MAX_CAS_RETRIES):
            if Status(asset.status).terminal:
                return "ignored"
            if asset.step == Step.WAITING_CALLBACK:
                # Any callback naming the task tells it reached the provider, whatever its state.
                if not task_id or asset.external_task_id:
                    return "ignored"
                if await self._adopt(asset, task_id, handle_json):
                    outcome = "adopted"
                    break
            elif passed_over:
                return "ignored"
            elif asset.step != Step.POLLING or not asset.external_task_id:
                # Still submitting: the submit's own answer brings the task id and its first poll.
                return "ignored"
            elif await self._store.update_asset(asset, job_generation=asset.job_generation + 1):
                outcome = "polled"
                break
            fresh = await self._store.find_asset(asset.id)
            if fresh is None or fresh.attempt != asset.attempt:
                return "ignored"
            asset = fresh
        if not outcome:
            return "ignored"
        await self._jobs.publish(Job(asset.id, asset.attempt, asset.job_generation))
        if len(self._recent) > 10_000:
            self._recent = {k: v for k, v in self._recent.items() if v > now}
        self._recent[key] = now + _REPEAT_WINDOW
        return outcome

    async def _adopt(self, asset: AssetRow, task_id: str, handle_json: str) -> bool:
        adopted = await self._store.update_asset(
            asset,
            step=Step.POLLING,
            external_task_id=task_id,
            task_handle_json=handle_json or '{"assetgen_callback":1}',
            error_message="",
            error_count=0,
            submitted_at=asset.submitted_at or utcnow(),
            job_generation=asset.job_generation + 1,
            message=f"the provider called back about task {task_id}: its submission reached it after all",
        )
        if adopted:
            await self._events.publish(asset)
        return adopted


def _submitting(asset: AssetRow) -> bool:
    """Whether the asset's submission has not been answered yet (no task id, not waiting for a callback)."""
    return not Status(asset.status).terminal and Step(asset.step) in (Step.QUEUED, Step.SUBMITTING)
