"""The OrchestratorService gRPC servicer: boxes, assets, and accepting generations and uploads.

Every box belongs to a project. A call carrying ``x-assetgen-project`` metadata (the gateway sets it
for a project's key) reaches only that project's boxes and their assets (``scope``): another
project's box or asset answers NOT_FOUND, as a missing one does, and lists hold only the project's.
A call without it (an admin's) reaches every project. That only the gateway calls here is the deployment's to
ensure (issue 21 part 5: service credentials).
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from urllib.parse import urlsplit

import grpc
from sqlalchemy.exc import IntegrityError

from assetgen.v1 import (
    common_pb2,
    gateway_pb2,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    provider_adapter_pb2,
    provider_adapter_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
)
from assetgen_orchestrator.access import AccessStore, project_budget
from assetgen_orchestrator.convert import (
    asset_to_proto,
    box_to_proto,
    poll_policy_json,
    source_type_name,
    status_name,
    transition_to_proto,
)
from assetgen_orchestrator.cost_ledger import CostLedger
from assetgen_orchestrator.costs import AssetCost
from assetgen_orchestrator.events import EventPublisher
from assetgen_orchestrator.jobs import Job, JobPublisher
from assetgen_orchestrator.models import DEFAULT_PROJECT_ID, AssetRow, Status, Step, utcnow
from assetgen_orchestrator.scope import ProjectScope, caller_project
from assetgen_orchestrator.store import AssetStore
from assetgen_orchestrator.usage import get_usage
from assetgen_orchestrator.variables import build_variables
from assetgen_runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from assetgen_runtime.ids import new_id
from assetgen_runtime.jsontext import NotAJsonObject, parse_json_object

__all__ = ["IDEMPOTENCY_KEY_METADATA", "OrchestratorServicer"]

logger = logging.getLogger(__name__)

IDEMPOTENCY_KEY_METADATA = "idempotency-key"
# The gateway's own id of one Generate call, the same on each of the channel's retries of it: without
# an Idempotency-Key it is the idempotency key, so a retried call never creates a second asset.
REQUEST_ID_METADATA = "x-assetgen-request-id"
# The id of the API key that asked for a generation (the gateway's), recorded in the cost ledger.
KEY_METADATA = "x-assetgen-key"
_REQUEST_KEY_PREFIX = "request:"
_MAX_NAME = 200
_MAX_PROMPT = 20_000


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    """Validates requests, records them, and hands generations to the job queue."""

    def __init__(
        self,
        store: AssetStore,
        adapter: provider_adapter_pb2_grpc.ProviderAdapterServiceStub,
        storage: storage_pb2_grpc.StorageServiceStub,
        jobs: JobPublisher,
        events: EventPublisher,
        *,
        access: AccessStore,
        ledger: CostLedger,
        rpc_timeout: float,
    ) -> None:
        self._store = store
        self._scope = ProjectScope(store)
        self._access = access
        self._ledger = ledger
        self._adapter = adapter
        self._storage = storage
        self._jobs = jobs
        self._events = events
        self._rpc_timeout = rpc_timeout

    # -- boxes and assets -----------------------------------------------------------------------

    async def CreateBox(self, request: gateway_pb2.CreateBoxRequest, context: object) -> common_pb2.Box:
        project = caller_project(context)
        if not project:
            project = (await self._access.get_project(request.project or DEFAULT_PROJECT_ID)).id
        elif request.project and request.project != project:
            try:
                named = (await self._access.get_project(request.project)).id
            except NotFound:
                named = ""
            if named != project:
                raise PermissionDenied("a project's key creates boxes in its own project only")
        box = await self._store.create_box(
            new_id("box"), _box_name(request.name), project, budget=project_budget(request.budget)
        )
        return box_to_proto(box)

    async def GetBox(self, request: gateway_pb2.GetBoxRequest, context: object) -> common_pb2.Box:
        return box_to_proto(await self._scope.box(request.id, context))

    async def ListBoxes(
        self, request: gateway_pb2.ListBoxesRequest, context: object
    ) -> gateway_pb2.ListBoxesResponse:
        project = caller_project(context)
        page = await self._store.list_boxes(request.page_size, request.cursor, project)
        return gateway_pb2.ListBoxesResponse(
            items=[box_to_proto(box) for box in page.items], next_cursor=page.next_cursor
        )

    async def GetAsset(self, request: gateway_pb2.GetAssetRequest, context: object) -> common_pb2.Asset:
        return asset_to_proto(await self._scope.asset(request.id, context))

    async def ListAssets(
        self, request: gateway_pb2.ListAssetsRequest, context: object
    ) -> gateway_pb2.ListAssetsResponse:
        await self._scope.box(request.box_id, context)
        page = await self._store.list_assets(
            request.box_id,
            request.page_size,
            request.cursor,
            status=status_name(request.status),
            source_type=source_type_name(request.source_type),
            model=request.model,
        )
        return gateway_pb2.ListAssetsResponse(
            items=[asset_to_proto(asset) for asset in page.items], next_cursor=page.next_cursor
        )

    async def Generate(
        self, request: gateway_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Asset:
        idempotency_key = _metadata(context, IDEMPOTENCY_KEY_METADATA)
        await self._scope.check_box(request.box_id, context)
        if idempotency_key:
            existing = await self._store.find_by_idempotency_key(request.box_id, idempotency_key)
            if existing is not None:
                return asset_to_proto(existing)
        elif request_id := _metadata(context, REQUEST_ID_METADATA):
            # No lookup first: a repeat is rare, and the insert's unique key catches it (insert_asset).
            idempotency_key = _REQUEST_KEY_PREFIX + request_id
        draft = _draft_generation(request, idempotency_key)
        parent_url, deferred = "", []
        if request.parent_asset:
            parent = await self._store.find_asset(request.parent_asset)
            if parent is not None:
                try:
                    await self._scope.check_asset(parent, context)
                except NotFound:
                    parent = None
            if parent is None:
                raise InvalidArgument(f"parent asset {request.parent_asset!r} not found")
            if parent.status in (Status.FAILED, Status.CANCELED):
                raise InvalidArgument(
                    f"parent asset {parent.id} is {parent.status}: {parent.error_message or 'no file'}"
                )
            if parent.status == Status.COMPLETED:
                parent_url = await self._file_url(parent.object_key)
            else:
                deferred = ["image_url", "image_urls"]
                draft.step = Step.WAITING_PARENT
        prepared = await self._adapter.PrepareGeneration(
            provider_adapter_pb2.PrepareGenerationRequest(
                model=request.model,
                variables_json=json.dumps(build_variables(draft, parent_url)),
                deferred_variables=deferred,
            ),
            timeout=self._rpc_timeout,
        )
        draft.model = prepared.model.name
        draft.poll_policy_json = poll_policy_json(prepared.poll_policy)
        if prepared.HasField("cost"):
            # Refused here (BudgetExceeded) before the asset exists.
            cost = AssetCost.of_estimate(prepared.cost)
            draft.cost_json = cost.text()
            await self._ledger.open(
                asset_id=draft.id,
                attempt=draft.attempt,
                box_id=draft.box_id,
                model=draft.model,
                key_id=_metadata(context, KEY_METADATA),
                cost=cost,
            )
        asset = await self._store.insert_asset(
            draft, "waiting for the parent asset" if deferred else "accepted"
        )
        if asset is not draft:
            if draft.cost_json:
                await self._ledger.discard(draft.id, draft.attempt)
            return asset_to_proto(asset)  # lost an idempotency race: the first request's asset
        await self._events.publish(asset)
        await self._schedule(asset)
        logger.info("generation accepted", extra={"asset_id": asset.id, "model": asset.model})
        return asset_to_proto(asset)

    async def _schedule(self, asset: AssetRow) -> None:
        """Publishes the asset's job; if the job queue cannot take it now, the reconciler will.

        The asset is recorded, in flight, before its job is published, so it is never without
        one for long: the reconciler publishes a job for every in-flight asset that has none.
        """
        try:
            await self._jobs.publish(Job(asset.id, asset.attempt, asset.job_generation))
        except Exception as exc:
            logger.warning(
                "could not publish the generation's job now (%s); the reconciler will publish it",
                exc,
                extra={"asset_id": asset.id},
            )

    async def UpdateBox(self, request: gateway_pb2.UpdateBoxRequest, context: object) -> common_pb2.Box:
        box = await self._scope.box(request.id, context)
        budget_given = request.HasField("budget")
        name = _box_name(request.name) if request.name or not budget_given else box.name
        budget = project_budget(request.budget) if budget_given else box.budget
        return box_to_proto(await self._store.update_box(request.id, name, budget))

    async def DeleteBox(
        self, request: gateway_pb2.DeleteBoxRequest, context: object
    ) -> gateway_pb2.DeleteBoxResponse:
        await self._scope.box(request.id, context)
        assets = await self._store.box_assets(request.id)
        for asset in assets:
            await self._discard(asset)
        await self._store.delete_box(request.id)
        logger.info("box deleted", extra={"box_id": request.id, "assets": len(assets)})
        return gateway_pb2.DeleteBoxResponse(deleted_assets=len(assets))

    async def DeleteAsset(
        self, request: gateway_pb2.DeleteAssetRequest, context: object
    ) -> gateway_pb2.DeleteAssetResponse:
        asset = await self._scope.asset(request.id, context)
        await self._discard(asset)
        await self._store.delete_asset(asset.id)
        return gateway_pb2.DeleteAssetResponse()

    async def CancelAsset(self, request: gateway_pb2.CancelAssetRequest, context: object) -> common_pb2.Asset:
        await self._scope.asset(request.id, context)
        for _ in range(5):
            asset = await self._store.get_asset(request.id)
            if Status(asset.status).terminal:
                raise FailedPrecondition(
                    f"asset {asset.id} is already {asset.status}; only in-flight assets cancel"
                )
            if await self._cancel(asset, "canceled on request"):
                return asset_to_proto(asset)
        raise Unavailable("the asset kept changing while cancelling; try again")

    async def RetryAsset(self, request: gateway_pb2.RetryAssetRequest, context: object) -> common_pb2.Asset:
        asset = await self._scope.asset(request.id, context)
        if asset.status not in (Status.FAILED, Status.CANCELED):
            raise FailedPrecondition(
                f"asset {asset.id} is {asset.status}; only FAILED or CANCELED assets retry"
            )
        if asset.source_type == "UPLOADED":
            raise FailedPrecondition("uploaded assets have nothing to retry")
        step = Step.QUEUED
        if asset.parent_asset_id:
            parent = await self._store.find_asset(asset.parent_asset_id)
            if parent is None:
                raise FailedPrecondition(f"parent asset {asset.parent_asset_id} no longer exists")
            if parent.status != Status.COMPLETED:
                step = Step.WAITING_PARENT
        attempt = asset.attempt + 1
        cost = AssetCost.parse(asset.cost_json)
        if cost is not None:
            # A reservation left by an unknown outcome is cleared by the operator's retry; the new
            # attempt's estimate must fit the budgets like a new generation's.
            await self._ledger.release(asset.id, asset.attempt)
            cost = cost.fresh()
            await self._ledger.open(
                asset_id=asset.id,
                attempt=attempt,
                box_id=asset.box_id,
                model=asset.model,
                key_id=_metadata(context, KEY_METADATA),
                cost=cost,
            )
        if not await self._store.update_asset(
            asset,
            status=Status.PENDING,
            step=step,
            attempt=attempt,
            external_task_id="",
            task_handle_json="",
            result_url="",
            raw_status="",
            error_message="",
            progress=0.0,
            error_count=0,
            submitted_at=None,
            finished_at=None,
            attempt_started_at=utcnow(),
            cost_json=cost.text() if cost is not None else "",
            message=f"retry: attempt {attempt}",
        ):
            if cost is not None:
                await self._ledger.discard(asset.id, attempt)
            raise Unavailable("the asset changed while retrying; try again")
        await self._events.publish(asset)
        await self._schedule(asset)
        return asset_to_proto(asset)

    async def ListAssetHistory(
        self, request: gateway_pb2.ListAssetHistoryRequest, context: object
    ) -> gateway_pb2.ListAssetHistoryResponse:
        await self._scope.asset(request.id, context)
        history, next_cursor = await self._store.history_page(request.id, request.page_size, request.cursor)
        return gateway_pb2.ListAssetHistoryResponse(
            items=[transition_to_proto(item) for item in history], next_cursor=next_cursor
        )

    async def _cancel(self, asset: AssetRow, reason: str) -> bool:
        """Ends an in-flight asset CANCELED, then asks the provider to stop (best effort).

        Its cost is released if it was never submitted; once the provider may have started it, the
        estimate is charged (providers bill work canceled midway).
        """
        cost = AssetCost.parse(asset.cost_json)
        submitted = asset.step not in (Step.QUEUED, Step.WAITING_PARENT)
        charge = Decimal(cost.estimated) if cost is not None and submitted else Decimal(0)
        settled = {"cost_json": cost.settled(charge).text()} if cost is not None and not cost.charged else {}
        if not await self._store.update_asset(
            asset,
            status=Status.CANCELED,
            step=Step.DONE,
            error_message=reason,
            finished_at=utcnow(),
            message=reason,
            **settled,
        ):
            return False
        if settled:
            # After the asset's write: a cancel that lost its race to the lifecycle moves nothing.
            if submitted:
                await self._ledger.settle(asset.id, asset.attempt, charge)
            else:
                await self._ledger.release(asset.id, asset.attempt)
        await self._events.publish(asset)
        if asset.external_task_id or asset.queue_position:
            try:
                # Without a task id (still queued at the provider's keys) it leaves the queue.
                await self._adapter.CancelTask(
                    provider_adapter_pb2.CancelTaskRequest(
                        asset_id=asset.id,
                        model=asset.model,
                        task_id=asset.external_task_id,
                        task_handle_json=asset.task_handle_json,
                    ),
                    timeout=self._rpc_timeout,
                )
            except grpc.aio.AioRpcError as error:
                logger.warning("provider cancel failed: %s", error.details(), extra={"asset_id": asset.id})
        return True

    async def _discard(self, asset: AssetRow) -> None:
        """Cancels an in-flight asset and removes its file, before its row is deleted."""
        if not Status(asset.status).terminal:
            await self._cancel(asset, "deleted")
        elif asset.cost_json:
            await self._ledger.release(asset.id, asset.attempt)  # an unknown outcome's reservation
        if asset.object_key:
            await self._storage.Delete(
                storage_pb2.DeleteRequest(key=asset.object_key), timeout=self._rpc_timeout
            )

    async def RegisterUpload(
        self, request: orchestrator_pb2.RegisterUploadRequest, context: object
    ) -> common_pb2.Asset:
        if not request.asset_id or not request.object.key:
            raise InvalidArgument("asset_id and object.key are required")
        await self._scope.check_box(request.box_id, context)
        stored = request.object
        asset = AssetRow(
            id=request.asset_id,
            box_id=request.box_id,
            status=Status.COMPLETED,
            step=Step.DONE,
            source_type="UPLOADED",
            filename=request.filename[:300],
            object_key=stored.key,
            content_type=stored.content_type,
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
            finished_at=utcnow(),
        )
        try:
            await self._store.insert_asset(asset, "uploaded")
        except IntegrityError:
            # The gateway's asset id is the registration's idempotency key: a retry of a registration
            # that committed (its answer was lost) gets the same asset; it is announced again in
            # case the first call ended before it was.
            existing = await self._store.find_asset(request.asset_id)
            if existing is None or (existing.box_id, existing.object_key) != (request.box_id, stored.key):
                raise
            asset = existing
        await self._events.publish(asset, file_url=await self._file_url(stored.key))
        return asset_to_proto(asset)

    async def GetUsage(
        self, request: gateway_pb2.GetUsageRequest, context: object
    ) -> gateway_pb2.GetUsageResponse:
        return await get_usage(self._ledger, self._access, request, context)

    async def _file_url(self, key: str) -> str:
        response = await self._storage.GetObjectUrls(
            storage_pb2.GetObjectUrlsRequest(keys=[key]), timeout=self._rpc_timeout
        )
        return response.urls.get(key, "")


def _box_name(raw: str) -> str:
    name = raw.strip()
    if not name:
        raise InvalidArgument("name is required")
    if len(name) > _MAX_NAME:
        raise InvalidArgument(f"name must be at most {_MAX_NAME} characters")
    return name


def _draft_generation(request: gateway_pb2.GenerateRequest, idempotency_key: str) -> AssetRow:
    """A new, not yet stored, asset for a generate request; refuses malformed input."""
    if not request.model.strip():
        raise InvalidArgument("model is required")
    if len(request.prompt) > _MAX_PROMPT:
        raise InvalidArgument(f"prompt must be at most {_MAX_PROMPT} characters")
    for url in [request.image_url, *request.image_urls]:
        if url and urlsplit(url).scheme not in ("http", "https"):
            raise InvalidArgument(f"image URL must be http(s): {url[:200]!r}")
    try:
        config = parse_json_object(request.config_json, "config", blank={})
    except NotAJsonObject as exc:
        raise InvalidArgument(str(exc)) from None
    return AssetRow(
        id=new_id("ast"),
        box_id=request.box_id,
        status=Status.PENDING,
        step=Step.QUEUED,
        source_type="IMG2VID" if request.parent_asset else "GENERATED",
        model=request.model.strip(),
        prompt=request.prompt,
        image_url=request.image_url,
        image_urls_json=json.dumps(list(request.image_urls)),
        config_json=json.dumps(config),
        parent_asset_id=request.parent_asset or None,
        idempotency_key=idempotency_key or None,
        attempt_started_at=utcnow(),
    )


def _metadata(context: object, key: str) -> str:
    invocation = getattr(context, "invocation_metadata", None)
    if invocation is None:
        return ""
    for item_key, value in invocation() or ():
        if item_key == key:
            return str(value)[:200]
    return ""
