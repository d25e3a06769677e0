"""The public GatewayService: forwards to the service that owns each resource.

Boxes, assets and generation go to the orchestrator; providers and models to the provider-adapter;
file bytes to storage; projects and keys to the orchestrator's AccessService (``access_api``). The
same servicer object answers gRPC and (through ``http_api``) HTTP, so both share one behaviour.
Servicer methods never touch their ``context`` except to read metadata, which is what lets the HTTP
side call them with a small stand-in; who calls comes from ``access.current_caller()``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

import grpc

from assetgen.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    orchestrator_pb2,
    orchestrator_pb2_grpc,
    provider_adapter_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
)
from assetgen_gateway.access import current_caller
from assetgen_gateway.access_api import AccessRpcs
from assetgen_gateway.limits import PerKeyLimit
from assetgen_gateway.upload_registration import register_upload
from assetgen_gateway.watch import EventWatcher, asset_subject, box_subject
from assetgen_gateway.watch_tokens import WatchTokenSigner
from assetgen_gateway.webhook_api import WebhookRpcs
from assetgen_runtime.batching import Batcher
from assetgen_runtime.errors import InvalidArgument, TooLarge, Unauthenticated, Unavailable
from assetgen_runtime.ids import new_id

__all__ = [
    "FORWARDED_METADATA",
    "IDEMPOTENCY_KEY_CHARS",
    "IDEMPOTENCY_KEY_MAX",
    "GatewayApi",
    "MetadataContext",
]

logger = logging.getLogger(__name__)

# Request metadata the gateway passes on to the orchestrator.
FORWARDED_METADATA = ("idempotency-key",)
# The orchestrator's name for the gateway's id of one Generate call (its idempotency key when the
# client sent none).
REQUEST_ID_METADATA = "x-assetgen-request-id"
# The caller's key id, which the orchestrator records in the cost ledger (usage by key).
KEY_METADATA = "x-assetgen-key"
# What an Idempotency-Key may be: printable ASCII, as gRPC metadata must be, and no longer than
# the orchestrator stores.
IDEMPOTENCY_KEY_MAX = 200
IDEMPOTENCY_KEY_CHARS = r"[\x20-\x7e]"
_IDEMPOTENCY_KEY = re.compile(rf"{IDEMPOTENCY_KEY_CHARS}{{0,{IDEMPOTENCY_KEY_MAX}}}")


class MetadataContext:
    """The part of a gRPC ServicerContext the servicer uses: request metadata (HTTP headers)."""

    def __init__(self, metadata: Iterable[tuple[str, str]]) -> None:
        self._metadata = tuple((key.lower(), value) for key, value in metadata)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        """The request's metadata as (lower-case key, value) pairs."""
        return self._metadata


def _key_metadata() -> tuple[str, str]:
    """The caller's key id as metadata (empty outside an authenticated request)."""
    try:
        return KEY_METADATA, current_caller().key_id
    except Unauthenticated:
        return KEY_METADATA, ""


def _forwarded(context: object) -> list[tuple[str, str]]:
    invocation = getattr(context, "invocation_metadata", None)
    if invocation is None:
        return []
    forwarded = [(key, str(value)) for key, value in invocation() or () if key in FORWARDED_METADATA]
    for key, value in forwarded:
        if key == "idempotency-key" and not _IDEMPOTENCY_KEY.fullmatch(value):
            raise InvalidArgument(
                f"Idempotency-Key must be at most {IDEMPOTENCY_KEY_MAX} printable ASCII characters"
            )
    return forwarded


class GatewayApi(AccessRpcs, WebhookRpcs, gateway_pb2_grpc.GatewayServiceServicer):
    """Implements every public RPC by calling the owning internal service with a deadline."""

    def __init__(
        self,
        orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub,
        adapter: provider_adapter_pb2_grpc.ProviderAdapterServiceStub,
        storage: storage_pb2_grpc.StorageServiceStub,
        *,
        timeout: float,
        max_upload_bytes: int,
        watcher: EventWatcher | None = None,
        access: orchestrator_pb2_grpc.AccessServiceStub | None = None,
        webhooks: orchestrator_pb2_grpc.WebhookServiceStub | None = None,
        callbacks: orchestrator_pb2_grpc.CallbackServiceStub | None = None,
        watch_tokens: WatchTokenSigner | None = None,
        on_key_revoked: Callable[[str], None] = lambda key_id: None,
        max_watchers_per_key: int = 32,
        max_uploads_per_key: int = 4,
    ) -> None:
        self._access = access
        self._webhooks = webhooks
        self._callbacks = callbacks
        self._watch_tokens = watch_tokens
        self._on_key_revoked = on_key_revoked
        self._watchers = PerKeyLimit("open watches", max_watchers_per_key, "ASSETGEN_MAX_WATCHERS_PER_KEY")
        self._uploads = PerKeyLimit("uploads in flight", max_uploads_per_key, "ASSETGEN_MAX_UPLOADS_PER_KEY")
        self._orchestrator = orchestrator
        self._adapter = adapter
        self._storage = storage
        self._timeout = timeout
        self._max_upload_bytes = max_upload_bytes
        self._watcher = watcher
        self._file_urls: Batcher[str, str] = Batcher(self._read_urls, max_batch=500)

    # Boxes and assets: the orchestrator's.

    async def CreateBox(self, request: gateway_pb2.CreateBoxRequest, context: object) -> common_pb2.Box:
        return await self._orchestrator.CreateBox(request, timeout=self._timeout)

    async def GetBox(self, request: gateway_pb2.GetBoxRequest, context: object) -> common_pb2.Box:
        return await self._orchestrator.GetBox(request, timeout=self._timeout)

    async def ListBoxes(
        self, request: gateway_pb2.ListBoxesRequest, context: object
    ) -> gateway_pb2.ListBoxesResponse:
        return await self._orchestrator.ListBoxes(request, timeout=self._timeout)

    async def UpdateBox(self, request: gateway_pb2.UpdateBoxRequest, context: object) -> common_pb2.Box:
        return await self._orchestrator.UpdateBox(request, timeout=self._timeout)

    async def DeleteBox(
        self, request: gateway_pb2.DeleteBoxRequest, context: object
    ) -> gateway_pb2.DeleteBoxResponse:
        return await self._orchestrator.DeleteBox(request, timeout=self._timeout)

    async def DeleteAsset(
        self, request: gateway_pb2.DeleteAssetRequest, context: object
    ) -> gateway_pb2.DeleteAssetResponse:
        return await self._orchestrator.DeleteAsset(request, timeout=self._timeout)

    async def CancelAsset(self, request: gateway_pb2.CancelAssetRequest, context: object) -> common_pb2.Asset:
        asset = await self._orchestrator.CancelAsset(request, timeout=self._timeout)
        await self._fill_file_urls([asset])
        return asset

    async def RetryAsset(self, request: gateway_pb2.RetryAssetRequest, context: object) -> common_pb2.Asset:
        return await self._orchestrator.RetryAsset(request, timeout=self._timeout, metadata=[_key_metadata()])

    async def GetUsage(
        self, request: gateway_pb2.GetUsageRequest, context: object
    ) -> gateway_pb2.GetUsageResponse:
        return await self._orchestrator.GetUsage(request, timeout=self._timeout)

    async def ListAssetHistory(
        self, request: gateway_pb2.ListAssetHistoryRequest, context: object
    ) -> gateway_pb2.ListAssetHistoryResponse:
        return await self._orchestrator.ListAssetHistory(request, timeout=self._timeout)

    async def GetAsset(self, request: gateway_pb2.GetAssetRequest, context: object) -> common_pb2.Asset:
        asset = await self._orchestrator.GetAsset(request, timeout=self._timeout)
        await self._fill_file_urls([asset])
        return asset

    async def ListAssets(
        self, request: gateway_pb2.ListAssetsRequest, context: object
    ) -> gateway_pb2.ListAssetsResponse:
        page = await self._orchestrator.ListAssets(request, timeout=self._timeout)
        await self._fill_file_urls(page.items)
        return page

    async def Generate(self, request: gateway_pb2.GenerateRequest, context: object) -> common_pb2.Asset:
        metadata = _forwarded(context)
        if not any(key == "idempotency-key" for key, _ in metadata):
            # The channel retries an UNAVAILABLE call; this id makes a retry of a call that the
            # orchestrator committed return the same asset rather than create another.
            metadata.append((REQUEST_ID_METADATA, new_id("req")))
        metadata.append(_key_metadata())
        return await self._orchestrator.Generate(request, timeout=self._timeout, metadata=metadata)

    async def Upload(
        self, request_iterator: AsyncIterator[gateway_pb2.UploadRequest], context: object
    ) -> common_pb2.Asset:
        first = await anext(request_iterator, None)
        if first is None or first.WhichOneof("part") != "metadata":
            raise InvalidArgument("the first upload message must carry the metadata")

        async def chunks() -> AsyncIterator[bytes]:
            async for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgument("only chunks may follow the upload metadata")
                yield message.chunk

        meta = first.metadata
        return await self.upload_stream(meta.box_id, meta.filename, meta.content_type, chunks())

    async def upload_stream(
        self, box_id: str, filename: str, content_type: str, chunks: AsyncIterator[bytes]
    ) -> common_pb2.Asset:
        """Streams a file into storage and records it as an UPLOADED asset; a refused registration
        leaves nothing behind (see ``upload_registration``)."""
        with self._uploads.hold(current_caller().key_id):
            return await self._upload_stream(box_id, filename, content_type, chunks)

    async def _upload_stream(
        self, box_id: str, filename: str, content_type: str, chunks: AsyncIterator[bytes]
    ) -> common_pb2.Asset:
        await self._orchestrator.GetBox(gateway_pb2.GetBoxRequest(id=box_id), timeout=self._timeout)
        asset_id = new_id("ast")
        limit = self._max_upload_bytes

        async def messages() -> AsyncIterator[storage_pb2.StorageUploadRequest]:
            yield storage_pb2.StorageUploadRequest(
                metadata=storage_pb2.StorageUploadMetadata(
                    box_id=box_id,
                    asset_id=asset_id,
                    filename=filename,
                    content_type=content_type,
                    require_media=True,
                )
            )
            total = 0
            async for chunk in chunks:
                total += len(chunk)
                if total > limit:
                    raise TooLarge(f"file is larger than the {limit} byte limit")
                yield storage_pb2.StorageUploadRequest(chunk=chunk)

        stored = await _upload_to_storage(self._storage, messages())
        asset = await register_upload(
            self._orchestrator,
            self._storage,
            orchestrator_pb2.RegisterUploadRequest(
                asset_id=asset_id, box_id=box_id, filename=filename, object=stored
            ),
            timeout=self._timeout,
        )
        await self._fill_file_urls([asset])
        return asset

    # Live status: the orchestrator's events stream, read directly (see ``watch``).

    async def WatchBox(
        self, request: gateway_pb2.WatchBoxRequest, context: object
    ) -> AsyncIterator[gateway_pb2.AssetEvent]:
        async for event in _grpc_events(self.watch_box(request.box_id, request.after_sequence), context):
            yield event

    async def WatchAsset(
        self, request: gateway_pb2.WatchAssetRequest, context: object
    ) -> AsyncIterator[gateway_pb2.AssetEvent]:
        async for event in _grpc_events(self.watch_asset(request.asset_id, request.after_sequence), context):
            yield event

    def watch_box(self, box_id: str, after_sequence: int = 0) -> AsyncIterator[gateway_pb2.AssetEvent | None]:
        """A box's events (snapshot of every asset first); ``None`` marks an idle heartbeat."""

        async def snapshot() -> list[common_pb2.Asset]:
            await self._orchestrator.GetBox(gateway_pb2.GetBoxRequest(id=box_id), timeout=self._timeout)
            assets: list[common_pb2.Asset] = []
            cursor = ""
            while True:
                page = await self.ListAssets(
                    gateway_pb2.ListAssetsRequest(box_id=box_id, page_size=500, cursor=cursor), None
                )
                assets.extend(page.items)
                cursor = page.next_cursor
                if not cursor:
                    return assets[::-1]  # oldest first, as the events that follow

        return self._watchers.holding(
            current_caller().key_id,
            self._require_watcher().watch(
                box_subject(box_id), after_sequence, snapshot, end_on_terminal=False
            ),
        )

    def watch_asset(
        self, asset_id: str, after_sequence: int = 0
    ) -> AsyncIterator[gateway_pb2.AssetEvent | None]:
        """One asset's events (its current state first), ending after a terminal status."""

        async def snapshot() -> list[common_pb2.Asset]:
            return [await self.GetAsset(gateway_pb2.GetAssetRequest(id=asset_id), None)]

        return self._watchers.holding(
            current_caller().key_id,
            self._require_watcher().watch(
                asset_subject(asset_id), after_sequence, snapshot, end_on_terminal=True
            ),
        )

    def _require_watcher(self) -> EventWatcher:
        if self._watcher is None:
            raise Unavailable("live events are not configured on this gateway")
        return self._watcher

    # Providers and models: the provider-adapter's.

    async def ListPresets(
        self, request: gateway_pb2.ListPresetsRequest, context: object
    ) -> gateway_pb2.ListPresetsResponse:
        return await self._adapter.ListPresets(request, timeout=self._timeout)

    async def CreateProvider(
        self, request: gateway_pb2.CreateProviderRequest, context: object
    ) -> common_pb2.Provider:
        return await self._adapter.CreateProvider(request, timeout=self._timeout)

    async def GetProvider(
        self, request: gateway_pb2.GetProviderRequest, context: object
    ) -> common_pb2.Provider:
        return await self._adapter.GetProvider(request, timeout=self._timeout)

    async def ListProviders(
        self, request: gateway_pb2.ListProvidersRequest, context: object
    ) -> gateway_pb2.ListProvidersResponse:
        return await self._adapter.ListProviders(request, timeout=self._timeout)

    async def CreateModel(self, request: gateway_pb2.CreateModelRequest, context: object) -> common_pb2.Model:
        return await self._adapter.CreateModel(request, timeout=self._timeout)

    async def GetModel(self, request: gateway_pb2.GetModelRequest, context: object) -> common_pb2.Model:
        return await self._adapter.GetModel(request, timeout=self._timeout)

    async def ListModels(
        self, request: gateway_pb2.ListModelsRequest, context: object
    ) -> gateway_pb2.ListModelsResponse:
        return await self._adapter.ListModels(request, timeout=self._timeout)

    async def UpdateProvider(
        self, request: gateway_pb2.UpdateProviderRequest, context: object
    ) -> common_pb2.Provider:
        return await self._adapter.UpdateProvider(request, timeout=self._timeout)

    async def DeleteProvider(
        self, request: gateway_pb2.DeleteProviderRequest, context: object
    ) -> gateway_pb2.DeleteProviderResponse:
        return await self._adapter.DeleteProvider(request, timeout=self._timeout)

    async def UpdateModel(self, request: gateway_pb2.UpdateModelRequest, context: object) -> common_pb2.Model:
        return await self._adapter.UpdateModel(request, timeout=self._timeout)

    async def DeleteModel(
        self, request: gateway_pb2.DeleteModelRequest, context: object
    ) -> gateway_pb2.DeleteModelResponse:
        return await self._adapter.DeleteModel(request, timeout=self._timeout)

    async def CreateProviderKey(
        self, request: gateway_pb2.CreateProviderKeyRequest, context: object
    ) -> gateway_pb2.ProviderKey:
        return await self._adapter.CreateProviderKey(request, timeout=self._timeout)

    async def ListProviderKeys(
        self, request: gateway_pb2.ListProviderKeysRequest, context: object
    ) -> gateway_pb2.ListProviderKeysResponse:
        return await self._adapter.ListProviderKeys(request, timeout=self._timeout)

    async def UpdateProviderKey(
        self, request: gateway_pb2.UpdateProviderKeyRequest, context: object
    ) -> gateway_pb2.ProviderKey:
        return await self._adapter.UpdateProviderKey(request, timeout=self._timeout)

    async def DeleteProviderKey(
        self, request: gateway_pb2.DeleteProviderKeyRequest, context: object
    ) -> gateway_pb2.DeleteProviderKeyResponse:
        return await self._adapter.DeleteProviderKey(request, timeout=self._timeout)

    async def _fill_file_urls(self, assets: Sequence[common_pb2.Asset]) -> None:
        """Sets each stored asset's file_url to a URL made fresh now (presigned or public).

        The keys of concurrent requests go to storage together, one GetObjectUrls call per batch.
        """
        stored = [asset for asset in assets if asset.object_key]
        urls = await asyncio.gather(*(self._file_urls.load(asset.object_key) for asset in stored))
        for asset, url in zip(stored, urls, strict=True):
            asset.file_url = url

    async def _read_urls(self, keys: list[str]) -> list[str]:
        response = await self._storage.GetObjectUrls(
            storage_pb2.GetObjectUrlsRequest(keys=keys), timeout=self._timeout
        )
        return [response.urls.get(key, "") for key in keys]


async def _grpc_events(
    events: AsyncIterator[gateway_pb2.AssetEvent | None], context: object
) -> AsyncIterator[gateway_pb2.AssetEvent]:
    """The events of a watch without its heartbeats; initial metadata goes out once subscribed.

    Sending the metadata then lets a client's ``wait_for_connection()`` return before any event,
    as a sign that nothing published from now on can be missed.
    """
    sent = False
    try:
        async for event in events:
            if event is not None:
                sent = True
                yield event
            elif not sent and hasattr(context, "send_initial_metadata"):
                sent = True
                await context.send_initial_metadata(())
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def _upload_to_storage(
    storage: storage_pb2_grpc.StorageServiceStub, messages: AsyncIterator[storage_pb2.StorageUploadRequest]
) -> common_pb2.StoredObject:
    """Client-streams ``messages`` to storage; an error raised while producing them cancels the call.

    grpc.aio would swallow an exception raised inside the request iterator and report CANCELLED, so
    the iterator's own error is captured and re-raised instead (storage aborts its multipart upload
    when the stream is cancelled, leaving nothing behind).
    """
    failure: list[BaseException] = []

    async def guarded() -> AsyncIterator[storage_pb2.StorageUploadRequest]:
        try:
            async for message in messages:
                yield message
        except BaseException as exc:
            failure.append(exc)
            raise

    call = storage.Upload(guarded(), timeout=None)
    try:
        return await call
    except grpc.aio.AioRpcError:
        if failure:
            raise failure[0] from None
        raise
    except BaseException:
        call.cancel()
        if failure:
            raise failure[0] from None
        raise
