"""The key-pool RPCs of the provider-adapter, and the target a task's later calls go out with.

Mixed into the ``ProviderAdapterServicer``, which sets ``_keys``. Every call about a submitted task
(poll, cancel, result download) uses the key that submitted it (:data:`key_pool.HANDLE_KEY` in the
task's handle), deleted or disabled since or not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import grpc

from assetgen.v1 import gateway_pb2
from assetgen_provider_adapter.catalog import ResolvedModel
from assetgen_provider_adapter.engine_types import ProviderTarget
from assetgen_provider_adapter.key_pool import HANDLE_KEY, KeyPool
from assetgen_provider_adapter.messages import key_message
from assetgen_provider_adapter.submission_queue import SubmissionQueue
from assetgen_runtime.errors import Unavailable

__all__ = ["KeyRpcs"]


class KeyRpcs:
    """CreateProviderKey, ListProviderKeys, UpdateProviderKey, DeleteProviderKey; mixed into the servicer."""

    _keys: KeyPool | None
    _queue: SubmissionQueue | None

    def _pool(self) -> KeyPool:
        if self._keys is None:
            raise Unavailable("key pools are not configured on this provider-adapter")
        return self._keys

    async def _task_target(self, resolved: ResolvedModel, handle: Mapping[str, Any]) -> ProviderTarget:
        """The provider target of a submitted task: with the pool key that submitted it, if one did."""
        key_id = handle.get(HANDLE_KEY)
        if not key_id or self._keys is None:
            return resolved.target
        secret = await self._keys.secret(str(key_id))
        if secret is None:  # the provider's own key: its credential as stored now (rotations apply)
            return resolved.target
        return dataclasses.replace(resolved.target, api_key=secret)

    async def CreateProviderKey(
        self, request: gateway_pb2.CreateProviderKeyRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ProviderKey:
        view = await self._pool().create(
            request.provider,
            request.name,
            api_key=request.api_key,
            api_key_ref=request.api_key_ref,
            max_concurrency=request.max_concurrency,
            weight=request.weight or 1,
        )
        return key_message(view)

    async def ListProviderKeys(
        self, request: gateway_pb2.ListProviderKeysRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ListProviderKeysResponse:
        views = await self._pool().list_keys(request.provider)
        queued = await self._queue.length(views[0].row.provider_id) if views and self._queue else 0
        return gateway_pb2.ListProviderKeysResponse(
            items=[key_message(view) for view in views], queued=queued
        )

    async def UpdateProviderKey(
        self, request: gateway_pb2.UpdateProviderKeyRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ProviderKey:
        view = await self._pool().update(
            request.provider,
            request.id,
            enabled=request.enabled if request.HasField("enabled") else None,
            max_concurrency=request.max_concurrency if request.HasField("max_concurrency") else None,
            weight=request.weight if request.HasField("weight") else None,
        )
        return key_message(view)

    async def DeleteProviderKey(
        self, request: gateway_pb2.DeleteProviderKeyRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.DeleteProviderKeyResponse:
        await self._pool().delete(request.provider, request.id)
        return gateway_pb2.DeleteProviderKeyResponse()
