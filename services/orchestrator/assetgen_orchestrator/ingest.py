"""The end of a generation: copying the provider's result into storage and completing the asset.

A copy over within ``QUIET_INGEST`` seconds — most images — completes its asset with one write. A
longer one is recorded as the step INGESTING meanwhile, so watchers see the provider done and the
copy under way, and a job redelivered after a crash resumes the copy. A copy that nobody wants any
more (the asset moved on meanwhile) is cancelled, and its object deleted if it was stored already.

A copy that fails (storage or S3 unreachable, the provider's file server down) records the step
INGESTING with the provider's result reference first, so the retry copies again — it never polls or
submits again — until the generation's deadline.

A copy stored but never recorded (the process died first, or storage's answer was lost) would stay in
the bucket for ever, so a completion by a step that may repeat an earlier one (a copy retried, a
job resumed after another process: ``jobs.step_resumed``) prunes the asset's other objects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

import grpc

from assetgen.v1 import common_pb2, storage_pb2, storage_pb2_grpc
from assetgen_orchestrator.events import EventPublisher
from assetgen_orchestrator.jobs import Done, Outcome, step_resumed
from assetgen_orchestrator.metrics import TRANSITIONS
from assetgen_orchestrator.models import AssetRow, Status, Step, utcnow
from assetgen_orchestrator.store import AssetStore

__all__ = ["QUIET_INGEST", "ResultIngest"]

logger = logging.getLogger(__name__)

QUIET_INGEST = 1.0
"""A result copied within this many seconds completes its asset with one write and no INGESTING step."""


class ResultIngest:
    """Copies results into storage and records them as their assets' files."""

    def __init__(
        self,
        store: AssetStore,
        storage: storage_pb2_grpc.StorageServiceStub,
        events: EventPublisher,
        *,
        rpc_timeout: float,
        ingest_timeout: float,
    ) -> None:
        self._store = store
        self._storage = storage
        self._events = events
        self._rpc_timeout = rpc_timeout
        self._ingest_timeout = ingest_timeout

    async def start(self, asset: AssetRow, changes: dict[str, object]) -> bool:
        """Records the step INGESTING (the provider is done, the copy under way) and tells watchers."""
        if not await self._store.update_asset(
            asset,
            step=Step.INGESTING,
            status=Status.PROCESSING,
            message="provider finished; copying the result into storage",
            **changes,
        ):
            return False
        await self._events.publish(asset)
        return True

    async def copy_and_record(self, asset: AssetRow, changes: dict[str, object]) -> Outcome | None:
        """Copies a polled task's result (``changes["result_url"]``) and completes the asset with ``changes``.

        Before the INGESTING write a redelivered job polls the provider again, which answers the same;
        a copy that fails is recorded INGESTING before its error is raised, so the retry is a copy.
        """
        copying: asyncio.Future[common_pb2.StoredObject] = asyncio.ensure_future(
            self._copy(asset, str(changes["result_url"]))
        )
        try:
            done, _ = await asyncio.wait({copying}, timeout=QUIET_INGEST)
            if not done:
                if not await self.start(asset, changes):
                    await self._abandon(copying)  # someone else moved the asset on
                    return None
                changes = {}
            try:
                stored = await copying
            except Exception:
                if changes and not await self.start(asset, changes):
                    return None  # someone else moved the asset on meanwhile
                raise
        finally:
            # Cancelling the call makes storage discard what it copied so far.
            copying.cancel()
        return await self.record(asset, stored, prune=step_resumed(), **changes)

    async def resume(self, asset: AssetRow) -> Outcome | None:
        """Copies the result of an asset in the step INGESTING (its ``result_url``) and completes it.

        A copy before this one may be stored (its answer lost, or its process gone): pruned once done.
        """
        return await self.record(asset, await self._copy(asset, asset.result_url), prune=True)

    async def record(
        self, asset: AssetRow, stored: common_pb2.StoredObject, *, prune: bool = False, **changes: object
    ) -> Outcome | None:
        """Completes the asset with its stored file (ingested, or uploaded by the adapter); with
        ``prune``, then deletes the asset's other objects (earlier copies nobody recorded)."""
        if not await self._store.update_asset(
            asset,
            status=Status.COMPLETED,
            step=Step.DONE,
            object_key=stored.key,
            content_type=stored.content_type,
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
            error_message="",
            finished_at=utcnow(),
            message="result stored",
            **changes,
        ):
            # Another worker finished it first; our copy is an orphan nobody references.
            await self._delete_orphan(stored.key)
            return None
        TRANSITIONS.labels(Status.COMPLETED.value).inc()
        if prune:
            await self._prune(asset, stored.key)
        await self._events.publish(asset, file_url=stored.url or await self.file_url(asset.object_key))
        return Done()

    async def _prune(self, asset: AssetRow, keep: str) -> None:
        """Deletes the completed asset's objects but ``keep``; only logs if storage cannot now."""
        try:
            answer = await self._storage.Prune(
                storage_pb2.PruneRequest(box_id=asset.box_id, asset_id=asset.id, keep_key=keep),
                timeout=self._rpc_timeout,
            )
        except grpc.aio.AioRpcError as exc:
            logger.warning(
                "could not prune the asset's unrecorded copies",
                extra={"asset_id": asset.id, "error": exc.details()},
            )
            return
        if answer.deleted_keys:
            logger.info(
                "pruned copies an interrupted step left",
                extra={"asset_id": asset.id, "keys": list(answer.deleted_keys)},
            )

    async def file_url(self, key: str) -> str:
        """The URL a client downloads the stored object ``key`` from."""
        response = await self._storage.GetObjectUrls(
            storage_pb2.GetObjectUrlsRequest(keys=[key]), timeout=self._rpc_timeout
        )
        return response.urls.get(key, "")

    async def _abandon(self, copying: asyncio.Future[common_pb2.StoredObject]) -> None:
        """Stops a copy nobody wants any more, and deletes its object if it was stored already."""
        copying.cancel()
        await asyncio.wait({copying})
        if not copying.cancelled() and copying.exception() is None:
            await self._delete_orphan(copying.result().key)

    async def _delete_orphan(self, key: str) -> None:
        await self._storage.Delete(storage_pb2.DeleteRequest(key=key), timeout=self._rpc_timeout)

    def _copy(self, asset: AssetRow, url: str) -> Awaitable[common_pb2.StoredObject]:
        """The storage call that copies the result at ``url`` into the asset's place."""
        return self._storage.Ingest(
            storage_pb2.IngestRequest(url=url, box_id=asset.box_id, asset_id=asset.id),
            timeout=self._ingest_timeout,
        )
