"""ProviderAdapterService: the catalog RPCs and the three calls the orchestrator makes per generation.

PrepareGeneration checks a model and its variables before any asset exists; SubmitTask renders and
sends a task once per (asset_id, attempt); PollTask asks the provider where a task is, statelessly,
and PollTasks does the same for many tasks in one call, each answered on its own.

(A little over 400 lines: one servicer implements one gRPC service, so its RPCs stay together; the
messages it answers with live in ``messages``.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import json_format

from assetgen.v1 import common_pb2, gateway_pb2, provider_adapter_pb2, provider_adapter_pb2_grpc
from assetgen_provider_adapter.callback_rpcs import CallbackRpcs
from assetgen_provider_adapter.callbacks import (
    CALLBACK_MARK,
    JwksCache,
    awaiting_callback,
    callback_policy,
    expects_callbacks,
)
from assetgen_provider_adapter.catalog import Catalog, ResolvedModel
from assetgen_provider_adapter.engine import (
    COMPLETED,
    FAILED,
    ProviderEngine,
    ProviderUnreachable,
    SubmitOutcomeUnknown,
    TaskResult,
)
from assetgen_provider_adapter.errors import ProviderBusy
from assetgen_provider_adapter.key_pool import (
    HANDLE_KEY,
    QUEUED,
    ChosenKey,
    KeyPool,
    NoUsableKey,
    PoolFull,
    Slots,
    tightest,
)
from assetgen_provider_adapter.key_rpcs import KeyRpcs
from assetgen_provider_adapter.ledger import SubmissionLedger, SubmissionWire
from assetgen_provider_adapter.messages import model_message, poll_policy_of, provider_message, to_task_status
from assetgen_provider_adapter.pricing import PriceError
from assetgen_provider_adapter.profiles import Profile, load_presets
from assetgen_provider_adapter.results import ResultStore, StoreFailed
from assetgen_provider_adapter.submission_queue import SubmissionQueue
from assetgen_provider_adapter.submission_queue import retry_seconds as queue_retry_seconds
from assetgen_provider_adapter.templates import MissingVariables, render
from assetgen_provider_adapter.webhook_secrets import WebhookSecrets
from assetgen_runtime.errors import FailedPrecondition, InvalidArgument, rpc_status
from assetgen_runtime.jsontext import NotAJsonObject, parse_json_object

__all__ = ["MAX_POLL_BATCH", "ProviderAdapterServicer", "poll_policy_of", "to_task_status"]

logger = logging.getLogger(__name__)

MAX_POLL_BATCH = 1000
"""Most tasks one PollTasks call may carry (protos/assetgen/v1/provider_adapter.proto)."""

_TERMINAL = frozenset(
    {
        provider_adapter_pb2.TASK_STATE_COMPLETED,
        provider_adapter_pb2.TASK_STATE_FAILED,
        provider_adapter_pb2.TASK_STATE_CANCELED,
    }
)


def _parse_variables(text: str) -> dict[str, Any]:
    try:
        return parse_json_object(text, "variables_json", blank={})
    except NotAJsonObject as exc:
        raise InvalidArgument(str(exc)) from None


def _refused_key(profile: Profile, status: provider_adapter_pb2.TaskStatus) -> bool:
    """Whether a submission failed because the provider refused the API key (401/402/403 or the
    profile's own codes for it), rather than the task."""
    code = status.error_code
    return (
        status.state == provider_adapter_pb2.TASK_STATE_FAILED
        and bool(code)
        and (code in ("401", "402", "403") or code in profile.http_errors.key_refused_codes)
    )


def _charges_failures(resolved: ResolvedModel) -> bool:
    billing = resolved.target.profile.billing
    return billing is not None and billing.charges_failures


def _parse_handle(text: str) -> Mapping[str, Any]:
    try:
        return parse_json_object(text, "task_handle_json", blank={})
    except NotAJsonObject as exc:
        raise InvalidArgument(str(exc)) from None


def _retirement(profile: Profile) -> common_pb2.Retirement | None:
    retired = profile.retired
    return None if retired is None else common_pb2.Retirement(date=retired.date, reason=retired.reason)


def _with_warning(provider: common_pb2.Provider, preset: str) -> common_pb2.Provider:
    """The provider, with a warning when it was just made from a preset retired upstream."""
    profile = load_presets().get(preset) if preset else None
    if profile is not None and profile.retired is not None:
        provider.warning = (
            f"preset {preset!r} is retired upstream since {profile.retired.date}: "
            f"{profile.retired.reason} (created anyway, for compatible deployments)"
        )
    return provider


class ProviderAdapterServicer(
    KeyRpcs, CallbackRpcs, provider_adapter_pb2_grpc.ProviderAdapterServiceServicer
):
    """Implements ProviderAdapterService over a catalog, a submission ledger and the provider engine.

    ``poll_concurrency`` bounds how many tasks of one PollTasks call are polled at once. Submissions
    run in tasks of their own that outlive a caller who goes away; :meth:`aclose` waits for them at
    shutdown.
    """

    def __init__(
        self,
        catalog: Catalog,
        ledger: SubmissionLedger,
        engine: ProviderEngine,
        results: ResultStore | None = None,
        *,
        poll_concurrency: int = 16,
        webhook_secrets: WebhookSecrets | None = None,
        jwks: JwksCache | None = None,
        keys: KeyPool | None = None,
        queue: SubmissionQueue | None = None,
    ) -> None:
        self._keys = keys
        self._queue = queue
        self._webhook_secrets = webhook_secrets
        self._jwks = jwks
        self._catalog = catalog
        self._ledger = ledger
        self._engine = engine
        self._results = results
        self._poll_concurrency = max(1, poll_concurrency)
        self._submissions: set[asyncio.Task[provider_adapter_pb2.TaskStatus]] = set()

    async def aclose(self, timeout: float = 10.0) -> None:
        """At shutdown: lets submissions still running reach their recorded outcome for up to
        ``timeout`` seconds, then cancels the rest (their claims age into SubmitOutcomeUnknown).
        """
        running = set(self._submissions)
        if not running:
            return
        _, late = await asyncio.wait(running, timeout=timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if late:
            logger.warning("submissions cancelled at shutdown", extra={"count": len(late)})

    async def _stored_output(
        self, result: TaskResult, *, box_id: str, asset_id: str, once: bool = False
    ) -> common_pb2.StoredObject | None:
        """Stores a COMPLETED result's first output when only the adapter can (inline, authenticated).

        Raises :class:`StoreFailed` (UNAVAILABLE) when storage or the download fails.
        """
        if result.state != COMPLETED or not result.outputs or not result.outputs[0].needs_upload:
            return None
        if self._results is None or not box_id:
            raise FailedPrecondition(
                "this result arrives inline or needs the provider's auth, so the adapter must store it, "
                "which needs box_id and a storage service"
            )
        if once:
            return await self._results.store_once(
                (asset_id, result.task_id), result.outputs[0], box_id=box_id, asset_id=asset_id
            )
        return await self._results.store(result.outputs[0], box_id=box_id, asset_id=asset_id)

    # -- catalog --------------------------------------------------------------------------

    async def ListPresets(
        self, request: gateway_pb2.ListPresetsRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ListPresetsResponse:
        return gateway_pb2.ListPresetsResponse(
            items=[
                common_pb2.Preset(
                    name=name,
                    description=profile.description,
                    profile_json=json.dumps(profile.data),
                    retired=_retirement(profile),
                )
                for name, profile in sorted(load_presets().items())
            ]
        )

    async def CreateProvider(
        self, request: gateway_pb2.CreateProviderRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Provider:
        row = await self._catalog.create_provider(
            request.name,
            request.preset,
            request.base_url,
            request.api_key,
            request.profile_json,
            request.api_key_ref,
            api_key_parts=dict(request.api_key_parts),
            max_concurrency=request.max_concurrency,
        )
        if request.webhook_secret:
            await self._set_webhook_secret(row.id, request.webhook_secret)
        return _with_warning(provider_message(row), request.preset)

    async def _set_webhook_secret(self, provider_id: str, secret: str) -> None:
        if self._webhook_secrets is None:
            raise InvalidArgument("webhook secrets are not configured on this adapter")
        await self._webhook_secrets.set(provider_id, secret)

    async def GetProvider(
        self, request: gateway_pb2.GetProviderRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Provider:
        return provider_message(await self._catalog.get_provider(request.id))

    async def ListProviders(
        self, request: gateway_pb2.ListProvidersRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ListProvidersResponse:
        rows = await self._catalog.list_providers()
        return gateway_pb2.ListProvidersResponse(items=[provider_message(row) for row in rows])

    async def CreateModel(
        self, request: gateway_pb2.CreateModelRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Model:
        row, provider = await self._catalog.create_model(
            request.provider,
            request.name,
            request.model_type,
            request.api_endpoint,
            request.request_schema_json,
            request.price_json,
        )
        return model_message(row, provider)

    async def GetModel(
        self, request: gateway_pb2.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Model:
        return model_message(*await self._catalog.get_model(request.id))

    async def ListModels(
        self, request: gateway_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ListModelsResponse:
        rows = await self._catalog.list_models(request.provider)
        return gateway_pb2.ListModelsResponse(
            items=[model_message(model, provider) for model, provider in rows]
        )

    async def UpdateProvider(
        self, request: gateway_pb2.UpdateProviderRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Provider:
        def given(name: str) -> str | None:
            return getattr(request, name) if request.HasField(name) else None

        row = await self._catalog.update_provider(
            request.id,
            base_url=given("base_url"),
            api_key=given("api_key"),
            api_key_ref=given("api_key_ref"),
            profile_json=given("profile_json"),
            preset=given("preset"),
            api_key_parts=dict(request.api_key_parts) or None,
            max_concurrency=request.max_concurrency if request.HasField("max_concurrency") else None,
        )
        if request.HasField("webhook_secret"):
            await self._set_webhook_secret(row.id, request.webhook_secret)
        return _with_warning(provider_message(row), given("preset") or "")

    async def DeleteProvider(
        self, request: gateway_pb2.DeleteProviderRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.DeleteProviderResponse:
        await self._catalog.delete_provider(request.id)
        return gateway_pb2.DeleteProviderResponse()

    async def UpdateModel(
        self, request: gateway_pb2.UpdateModelRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Model:
        row, provider = await self._catalog.update_model(
            request.id,
            model_type=request.model_type if request.HasField("model_type") else None,
            api_endpoint=request.api_endpoint if request.HasField("api_endpoint") else None,
            request_schema_json=request.request_schema_json
            if request.HasField("request_schema_json")
            else None,
            price_json=request.price_json if request.HasField("price_json") else None,
        )
        return model_message(row, provider)

    async def DeleteModel(
        self, request: gateway_pb2.DeleteModelRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.DeleteModelResponse:
        await self._catalog.delete_model(request.id)
        return gateway_pb2.DeleteModelResponse()

    # -- generation -----------------------------------------------------------------------

    async def PrepareGeneration(
        self, request: provider_adapter_pb2.PrepareGenerationRequest, context: grpc.aio.ServicerContext
    ) -> provider_adapter_pb2.PrepareGenerationResponse:
        resolved = await self._catalog.resolve(request.model)
        variables = _parse_variables(request.variables_json)
        given = {name for name, value in variables.items() if value is not None}
        missing = [
            name
            for name in resolved.variables.required
            if name not in given and name not in request.deferred_variables
        ]
        if missing:
            raise MissingVariables(missing)
        cost = None
        if resolved.price is not None:
            try:
                cost = resolved.price.estimate(variables)
            except PriceError as exc:
                raise InvalidArgument(str(exc)) from None
        return provider_adapter_pb2.PrepareGenerationResponse(
            model=model_message(resolved.model, resolved.provider),
            poll_policy=poll_policy_of(resolved.target.profile),
            cost=cost,
        )

    async def SubmitTask(
        self, request: provider_adapter_pb2.SubmitTaskRequest, context: grpc.aio.ServicerContext
    ) -> provider_adapter_pb2.TaskStatus:
        if not request.asset_id:
            raise InvalidArgument("asset_id is required")
        resolved = await self._catalog.resolve(request.model)
        variables = _parse_variables(request.variables_json)
        # Render once before claiming the submission, so a bad request never leaves a claim behind.
        render(resolved.template, variables)
        # Shielded: if the caller goes away mid-call (an orchestrator crash), the submission still runs
        # to its recorded outcome, so the redelivered job finds SENT rather than an unknown SENDING.
        submission = asyncio.create_task(self._submit_once(request, resolved, variables))
        self._submissions.add(submission)
        submission.add_done_callback(self._submissions.discard)
        try:
            return await asyncio.shield(submission)
        except SubmitOutcomeUnknown as unknown:
            profile, name = resolved.target.profile, resolved.provider.name
            raise awaiting_callback(unknown, profile, name, request.callback_url) from None

    async def _submit_once(
        self,
        request: provider_adapter_pb2.SubmitTaskRequest,
        resolved: ResolvedModel,
        variables: Mapping[str, Any],
    ) -> provider_adapter_pb2.TaskStatus:
        profile = resolved.target.profile
        held = await self._still_queued(request, resolved)
        if held is not None:
            return held
        stored = await self._ledger.begin(
            request.asset_id,
            request.attempt,
            resolved.model.id,
            resolved.provider.id,
            in_progress_for=self._engine.submit_seconds(profile),
        )
        if stored is not None:
            logger.info(
                "submission already sent; returning its recorded status",
                extra={"asset_id": request.asset_id, "attempt": request.attempt},
            )
            return json_format.Parse(stored, provider_adapter_pb2.TaskStatus())
        limits = profile.limits
        key, place, capacity = None, 0, 0
        running_for = profile.poll_timing.deadline_ms / 1000
        try:
            slots = await self._free_slots(resolved, claimed=True)
            if slots is not None and self._queue is not None:
                # Something limits the provider: its free slots go to the waiters in turn.
                queued, waiting = await self._queue.place(
                    resolved.provider.id, request.asset_id, request.attempt, request.project
                )
                QUEUED.labels(resolved.provider.name).set(max(waiting - slots.free, 0))
                place, capacity = queued - slots.free + 1, slots.capacity
                if place > 0:
                    raise PoolFull(f"queued at provider {resolved.provider.name}")
            if limits.any:
                # Its turn by the queue's count; the ledger's claim-then-count keeps the profile's
                # limits across replicas racing for the same slot.
                wait = await self._ledger.hold_back(resolved.provider.id, limits, running_for=running_for)
                if wait > 0:
                    # Over a limit: nothing is sent; the caller keeps the work PENDING and asks again.
                    await self._ledger.abandon(request.asset_id, request.attempt)
                    logger.info(
                        "provider limit reached; submission held back",
                        extra={
                            "asset_id": request.asset_id,
                            "provider": resolved.provider.name,
                            "wait_s": wait,
                        },
                    )
                    held = provider_adapter_pb2.TaskStatus(
                        state=provider_adapter_pb2.TASK_STATE_PENDING,
                        raw_state="held back: provider limit reached",
                        poll_after_ms=int(wait * 1000),
                        poll_policy=poll_policy_of(profile),
                    )
                    if slots is not None and self._queue is not None:
                        # It lost a race for its turn's slot: still first in line, soon asked again.
                        held.queue_position = 1
                        held.poll_after_ms = int(min(wait, queue_retry_seconds(1, slots.capacity)) * 1000)
                    return held
            if self._keys is not None:
                key = await self._keys.claim(
                    resolved.provider, request.asset_id, request.attempt, running_for=running_for
                )
            if slots is not None and self._queue is not None:
                await self._queue.leave(resolved.provider.id, request.asset_id, request.attempt)
        except NoUsableKey:
            await self._ledger.abandon(request.asset_id, request.attempt)
            raise
        except PoolFull:
            # Every key of the pool is at its own limit: nothing is sent; asked again later.
            await self._ledger.abandon(request.asset_id, request.attempt)
            return provider_adapter_pb2.TaskStatus(
                state=provider_adapter_pb2.TASK_STATE_PENDING,
                raw_state="held back: queued for a free slot at the provider",
                # A queued waiter asks again by its place; one that lost a race for a slot, soon.
                poll_after_ms=int(
                    (queue_retry_seconds(place, capacity) if capacity else limits.retry_seconds) * 1000
                ),
                poll_policy=poll_policy_of(profile),
                queue_position=max(place, 1),
            )
        try:
            status = await self._send(request, resolved, variables, key)
        except ProviderBusy as busy:
            # Refused for now (its claim released): the work waits PENDING, as over our own limits,
            # instead of spending the generation's tries on a provider that is only busy.
            wait = max(busy.retry_after or 0.0, limits.retry_seconds)
            if key is not None and self._keys is not None:
                await self._keys.cool(key.id, wait)  # the pool's other keys keep working meanwhile
            logger.info(
                "provider busy; submission held back",
                extra={"asset_id": request.asset_id, "provider": resolved.provider.name, "wait_s": wait},
            )
            return provider_adapter_pb2.TaskStatus(
                state=provider_adapter_pb2.TASK_STATE_PENDING,
                raw_state="held back: the provider is busy (rate limited)",
                poll_after_ms=int(wait * 1000),
                poll_policy=poll_policy_of(profile),
            )
        if key is not None and self._keys is not None and _refused_key(profile, status):
            # The provider refused the key itself, not the task: nothing was accepted. The key
            # leaves the pool's work (last_error for admins) and the submission goes to another.
            error = f"{status.error_code}: {status.error_message}"
            disabled = await self._keys.disable(key.id, error)
            await self._ledger.abandon(request.asset_id, request.attempt)
            held = provider_adapter_pb2.TaskStatus(
                state=provider_adapter_pb2.TASK_STATE_PENDING,
                raw_state="held back: the provider refused an API key; another is tried",
                poll_policy=poll_policy_of(profile),
            )
            if disabled:  # the orchestrator announces it (provider.key_disabled), once
                held.key_disabled.CopyFrom(
                    provider_adapter_pb2.KeyDisabled(
                        provider=resolved.provider.name, key_id=key.id, key_name=key.name, error=error[:500]
                    )
                )
            return held
        try:
            await self._ledger.record(
                request.asset_id,
                request.attempt,
                status.task_id,
                json_format.MessageToJson(status),
                running=status.state not in _TERMINAL,
            )
        except Exception:
            # The provider has the task but we could not write it down: say which, for an operator.
            logger.exception(
                "submission sent but its outcome could not be recorded",
                extra={"asset_id": request.asset_id, "attempt": request.attempt, "task_id": status.task_id},
            )
            raise
        return status

    async def _still_queued(
        self, request: provider_adapter_pb2.SubmitTaskRequest, resolved: ResolvedModel
    ) -> provider_adapter_pb2.TaskStatus | None:
        """A submission waiting in its provider's queue that asks again before its turn is told its
        place without claiming anything (a thousand waiters ask every few seconds); None otherwise:
        not waiting (never sent since it joined), or its turn, which the usual way claims."""
        if self._queue is None:
            return None
        profile = resolved.target.profile
        slots = await self._free_slots(resolved, claimed=False)
        if slots is None:
            return None
        placed = await self._queue.waiting_place(resolved.provider.id, request.asset_id, request.attempt)
        if placed is None:
            return None
        queued, waiting = placed
        place = queued - slots.free + 1
        if place <= 0:
            return None
        QUEUED.labels(resolved.provider.name).set(max(waiting - slots.free, 0))
        return provider_adapter_pb2.TaskStatus(
            state=provider_adapter_pb2.TASK_STATE_PENDING,
            raw_state="held back: queued for a free slot at the provider",
            poll_after_ms=int(queue_retry_seconds(place, slots.capacity) * 1000),
            poll_policy=poll_policy_of(profile),
            queue_position=place,
        )

    async def _free_slots(self, resolved: ResolvedModel, *, claimed: bool) -> Slots | None:
        """How many more tasks the provider may start now, and run at once, under every limit the
        fair queue hands out: its pool's keys, its overall limit, its profile's ``limits``; None when
        nothing limits it. ``claimed``: the caller's submission is claimed in the ledger (not held
        against it)."""
        profile = resolved.target.profile
        running_for = profile.poll_timing.deadline_ms / 1000
        pool = (
            await self._keys.free_slots(resolved.provider, running_for=running_for, claimed=claimed)
            if self._keys is not None
            else None
        )
        own = (
            await self._ledger.free_slots(
                resolved.provider.id, profile.limits, running_for=running_for, claimed=claimed
            )
            if profile.limits.any
            else None
        )
        return tightest(pool, own)

    async def _send(
        self,
        request: provider_adapter_pb2.SubmitTaskRequest,
        resolved: ResolvedModel,
        variables: Mapping[str, Any],
        key: ChosenKey | None = None,
    ) -> provider_adapter_pb2.TaskStatus:
        log_fields = {"asset_id": request.asset_id, "attempt": request.attempt, "model": resolved.model.name}
        target = resolved.target
        if key is not None and key.secret is not None:  # a pool key other than the provider's own
            target = dataclasses.replace(resolved.target, api_key=key.secret)
        try:
            result = await self._engine.submit(
                target,
                variables,
                request_schema=resolved.template,
                api_endpoint=resolved.model.api_endpoint,
                idempotency_key=f"assetgen-{request.asset_id}-{request.attempt}",
                wire=SubmissionWire(self._ledger, request.asset_id, request.attempt),
                callback_url=request.callback_url,
            )
        except (ProviderUnreachable, InvalidArgument):
            # Nothing reached the provider, or it definitely refused (a 429, a refused connect), or
            # it deduplicates by our key: a later call may send it.
            await self._ledger.abandon(request.asset_id, request.attempt)
            logger.warning("submission not sent; released", extra=log_fields)
            raise
        except SubmitOutcomeUnknown:
            # This call is over: a repeat must hear "unknown" at once, not "in progress". The entry
            # is kept (never released) for an operator: the provider may have the task.
            await self._ledger.record_unknown(request.asset_id, request.attempt)
            raise
        if request.callback_url and resolved.target.profile.webhook is not None:
            result.handle[CALLBACK_MARK] = 1  # the handle travels with every poll: polls stay sparse
        if key is not None:
            result.handle[HANDLE_KEY] = key.id  # every later call about the task uses this key
        stored = None
        try:
            stored = await self._stored_output(result, box_id=request.box_id, asset_id=request.asset_id)
        except (StoreFailed, FailedPrecondition) as exc:
            # The provider already did the work and a sync answer cannot be asked for again: the
            # recorded outcome is a failure that says why.
            result.state, result.outputs = FAILED, []
            result.error_message = f"the provider finished but its result could not be stored: {exc}"
        logger.info(
            "task submitted",
            extra={
                **log_fields,
                "task_id": result.task_id,
                "state": result.state,
                "error": result.error_message,
            },
        )
        return to_task_status(
            result,
            callback_policy(resolved.target.profile, result.handle),
            stored,
            charges_failures=_charges_failures(resolved),
        )

    async def PollTask(
        self, request: provider_adapter_pb2.PollTaskRequest, context: grpc.aio.ServicerContext
    ) -> provider_adapter_pb2.TaskStatus:
        status = await self._poll(request)
        if status.state in _TERMINAL:
            await self._ledger.finish([(request.asset_id, request.task_id)])
        return status

    async def PollTasks(
        self, request: provider_adapter_pb2.PollTasksRequest, context: grpc.aio.ServicerContext
    ) -> provider_adapter_pb2.PollTasksResponse:
        tasks = request.tasks
        if len(tasks) > MAX_POLL_BATCH:
            raise InvalidArgument(f"at most {MAX_POLL_BATCH} tasks per PollTasks call, got {len(tasks)}")
        response = provider_adapter_pb2.PollTasksResponse()
        results = [(task, response.results.add()) for task in tasks]
        pending = iter(results)

        async def worker() -> None:
            # A few workers share the tasks rather than one task each: bounded, and fewer to create.
            for task, result in pending:
                try:
                    result.status.CopyFrom(await self._poll(task))
                except Exception as exc:  # one task's failure is its own answer, never the call's
                    result.error.CopyFrom(rpc_status(exc))

        await asyncio.gather(*(worker() for _ in range(min(self._poll_concurrency, len(tasks)))))
        # The tasks seen finished free their concurrency slots together, with one statement.
        finished = [
            (task, result)
            for task, result in results
            if result.HasField("status") and result.status.state in _TERMINAL
        ]
        try:
            await self._ledger.finish([(task.asset_id, task.task_id) for task, _ in finished])
        except Exception as exc:  # their polls are not over until the slots are free: asked again
            for _, result in finished:
                result.error.CopyFrom(rpc_status(exc))
        return response

    async def _poll(self, request: provider_adapter_pb2.PollTaskRequest) -> provider_adapter_pb2.TaskStatus:
        """One task's status, as PollTask answers it (the caller frees a finished task's slot)."""
        if not request.task_id:
            raise InvalidArgument("task_id is required")
        resolved = await self._catalog.resolve(request.model)
        handle = _parse_handle(request.task_handle_json)
        result = await self._engine.poll(await self._task_target(resolved, handle), request.task_id, handle)
        if expects_callbacks(handle) and result.handle:
            result.handle[CALLBACK_MARK] = 1
        stored = await self._stored_output(
            result, box_id=request.box_id, asset_id=request.asset_id, once=True
        )
        return to_task_status(
            result,
            callback_policy(resolved.target.profile, handle),
            stored,
            charges_failures=_charges_failures(resolved),
        )

    async def CancelTask(
        self, request: provider_adapter_pb2.CancelTaskRequest, context: grpc.aio.ServicerContext
    ) -> provider_adapter_pb2.CancelTaskResponse:
        if not request.task_id and request.asset_id and self._queue is not None:
            # Not submitted: the asset waits in its provider's queue, which it leaves at once.
            await self._queue.withdraw(request.asset_id)
            return provider_adapter_pb2.CancelTaskResponse(
                supported=True, canceled=True, message="withdrawn from the provider's queue"
            )
        if not request.task_id:
            raise InvalidArgument("task_id is required")
        resolved = await self._catalog.resolve(request.model)
        handle = _parse_handle(request.task_handle_json)
        supported, canceled, message = await self._engine.cancel(
            await self._task_target(resolved, handle), request.task_id, handle
        )
        if canceled:
            await self._ledger.finish([(request.asset_id, request.task_id)])
        logger.info(
            "cancel requested at the provider",
            extra={"asset_id": request.asset_id, "task_id": request.task_id, "canceled": canceled},
        )
        return provider_adapter_pb2.CancelTaskResponse(
            supported=supported, canceled=canceled, message=message
        )
